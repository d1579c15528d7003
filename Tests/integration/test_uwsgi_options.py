"""uWSGI options from real uwsgi.ini files: the ones Apus implements (daemonize, attach-daemon,
log-maxsize, log-5xx/log-4xx, logger) and the ones it accepts with a one-line note or refuses."""
import os
import re
import signal
import sys
import time
import uuid

import pytest

from conftest import APPS, APUS_BIN, clean_env, free_port, run_apus
from helpers import get, wait_until


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: /proc says so.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def app_args(port):
    return ["--venv", sys.prefix, "--chdir", str(APPS), "--pythonpath", str(APPS),
            "--http", f"127.0.0.1:{port}"]


def test_no_effect_keys_warn_once_each_and_the_server_serves(apus, tmp_path):
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nmaster = true\nvacuum = true\ndie-on-term = true\nthunder-lock = true\n"
                   "single-interpreter = true\nhook-master-start = unix_signal:15 gracefully_kill_them_all\n"
                   "processes = 2\n")
    srv = apus("echo_env", "--ini", ini, "--enable-threads", "--plugins", "python3", "--memory-report")
    assert get(srv.port, "/").status == 200
    log = srv.log()
    warnings = [l for l in log.splitlines() if "has no effect in Apus" in l]
    expected = [f"{ini}:2: master:", f"{ini}:3: vacuum:", f"{ini}:4: die-on-term:", f"{ini}:5: thunder-lock:",
                f"{ini}:6: single-interpreter:", f"{ini}:7: hook-master-start:",
                "--enable-threads:", "--plugins:", "--memory-report:"]
    for prefix in expected:
        mine = [l for l in warnings if f"master: {prefix} has no effect in Apus: " in l]
        assert len(mine) == 1, (prefix, warnings)
        assert "[WARNING]" in mine[0]
    assert len(warnings) == len(expected), warnings
    assert "Apus always runs a master process" in log


@pytest.mark.parametrize("args, start", [
    (["--route", "^/old redirect:/new"], "--route: not supported in Apus: uWSGI's internal routing"),
    (["--hook-master-start", "exec:touch /tmp/x"], "--hook-master-start: not supported in Apus"),
    (["--logger", "syslog:app"], '--logger: the "syslog" logger is not supported in Apus'),
    (["--log-maxsize", "1m"], "--log-maxsize: needs a log file"),
])
def test_refused_options_give_one_line_and_status_2(args, start):
    r = run_apus([*args, "--http", f"127.0.0.1:{free_port()}", "echo_env"])
    assert r.returncode == 2, r
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("apus: " + start), r.stderr


def test_refused_key_in_an_ini_file_names_the_line(tmp_path):
    ini = tmp_path / "uwsgi.ini"
    ini.write_text("[uwsgi]\nmodule = echo_env\nroute = ^/admin basicauth:Realm,user:pass\n")
    r = run_apus(["--ini", str(ini), "--http", f"127.0.0.1:{free_port()}"])
    assert r.returncode == 2
    assert r.stderr.startswith(f"apus: {ini}:3: route: not supported in Apus: "), r.stderr
    assert r.stderr.count("\n") == 1


def test_daemonize_detaches_writes_the_pidfile_and_logs_to_the_file(tmp_path):
    port = free_port()
    log = tmp_path / "daemon.log"
    pidfile = tmp_path / "apus.pid"
    started = time.monotonic()
    r = run_apus([*app_args(port), "--daemonize", str(log), "--pidfile", str(pidfile), "--processes", "2",
                  "echo_env"])
    pid = None
    try:
        # The command returns at once, with nothing on the terminal.
        assert r.returncode == 0, r
        assert r.stdout == "" and r.stderr == "", r
        assert time.monotonic() - started < 10
        wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="the pidfile")
        pid = int(pidfile.read_text())
        assert alive(pid)
        # Detached: a session of its own, no controlling terminal, parent is not us.
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ppid, session, tty = int(fields[1]), int(fields[3]), int(fields[4])
        assert ppid != os.getpid()
        assert session != os.getsid(0) and tty == 0
        wait_until(lambda: _answers(port), 30, what="the daemonized server to answer")
        tag = uuid.uuid4().hex
        assert get(port, f"/daemon-{tag}").status == 200
        wait_until(lambda: f"/daemon-{tag}" in log.read_text(), 10, what="the access line in the log file")
        text = log.read_text()
        assert f"[{pid}] [INFO] master:" in text, text[:3000]
        # Python's stdout goes to the log too, not to a closed terminal.
        assert os.readlink(f"/proc/{pid}/fd/1") == str(log)
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not alive(pid), 30, what="the daemon to stop on SIGTERM")
        assert not pidfile.exists()
        pid = None
    finally:
        if pid and alive(pid):
            os.killpg(os.getpgid(pid), signal.SIGKILL)


def _answers(port):
    try:
        return get(port, "/", timeout=2).status == 200
    except OSError:
        return False


def test_attach_daemon_runs_is_respawned_and_stopped(apus, tmp_path):
    pids = tmp_path / "daemon.pids"
    srv = apus("echo_env", "--attach-daemon", f"echo $$ >> {pids}; exec sleep 1000",
               "--reload-mercy", "5")

    def recorded():
        return [int(p) for p in pids.read_text().split()] if pids.exists() else []

    wait_until(lambda: len(recorded()) == 1, 10, what="the daemon to start")
    first = recorded()[0]
    assert alive(first)
    assert os.getpgid(first) == first, "the daemon leads its own process group"
    with open(f"/proc/{first}/stat") as f:
        assert int(f.read().rsplit(")", 1)[1].split()[1]) == srv.pid, "the master is its parent"
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: len(recorded()) == 2, 15, what="the daemon to be started again")
    second = recorded()[1]
    assert second != first and alive(second)
    assert "attached daemon" in srv.log() and "starting it again" in srv.log()
    assert get(srv.port, "/").status == 200
    # A graceful reload keeps it.
    srv.signal(signal.SIGHUP)
    time.sleep(3)
    assert alive(second) and len(recorded()) == 2
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert not alive(second), "the daemon must be stopped with the server"
    assert "stopping attached daemon" in srv.log()


def test_attach_daemon_that_ignores_sigterm_is_killed_after_the_mercy(apus, tmp_path):
    pids = tmp_path / "daemon.pids"
    srv = apus("echo_env", "--attach-daemon", f"trap '' TERM; echo $$ >> {pids}; while true; do sleep 0.2; done",
               "--reload-mercy", "2")
    wait_until(lambda: pids.exists() and pids.read_text().strip(), 10, what="the daemon to start")
    pid = int(pids.read_text().split()[0])
    t = time.monotonic()
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert 1.5 <= time.monotonic() - t
    assert not alive(pid)
    assert "still running: killing it" in srv.log()


def test_log_maxsize_rotates_and_every_process_reopens(apus, tmp_path):
    logfile = tmp_path / "apus.log"
    srv = apus("echo_env", "--log-file", logfile, "--log-maxsize", "4k", "--processes", "2")
    before = set(tmp_path.glob("apus.log.*"))
    tag = uuid.uuid4().hex
    for i in range(60):
        get(srv.port, f"/fill-{tag}-{i}-" + "x" * 100)
    rotated = wait_until(lambda: set(tmp_path.glob("apus.log.*")) - before, 10, what="a rotated log file")
    name = sorted(rotated)[0].name
    assert re.fullmatch(r"apus\.log\.\d{10}", name), name
    assert "renaming it to" in sorted(rotated)[0].read_text()
    # Lines after the rotation go to the new file, from both workers.
    time.sleep(1.5)
    tag2 = uuid.uuid4().hex
    for i in range(20):
        get(srv.port, f"/after-{tag2}-{i}")
    wait_until(lambda: logfile.read_text().count(f"/after-{tag2}-") == 20, 10,
               what="every access line after the rotation in the new file")
    for old in tmp_path.glob("apus.log.*"):
        assert f"/after-{tag2}-" not in old.read_text()


def test_log_5xx_and_4xx_with_logging_disabled(apus):
    srv = apus("echo_env", "--disable-logging", "--log-5xx", "--log-4xx")
    tag = uuid.uuid4().hex
    for status in (200, 302, 404, 500, 503):
        assert get(srv.port, f"/cond-{tag}-{status}?status={status}").status == status
    time.sleep(1)
    get(srv.port, f"/cond-{tag}-last?status=500")
    wait_until(lambda: f"/cond-{tag}-last" in srv.log(), 10, what="the last 500")
    logged = {l.split(f"/cond-{tag}-")[1].split("?")[0] for l in srv.log().splitlines() if f"/cond-{tag}-" in l}
    assert logged == {"404", "500", "503", "last"}, logged


def test_logger_file_is_the_log_file(apus, tmp_path):
    logfile = tmp_path / "via-logger.log"
    srv = apus("echo_env", "--logger", f"file:{logfile}")
    tag = uuid.uuid4().hex
    get(srv.port, f"/logger-{tag}")
    wait_until(lambda: logfile.exists() and f"/logger-{tag}" in logfile.read_text(), 10, what="the access line")
    assert f"/logger-{tag}" not in srv.log()


def test_fifo_l_reopens_the_log_file(apus, tmp_path):
    logfile = tmp_path / "apus.log"
    fifo = tmp_path / "apus.fifo"
    srv = apus("echo_env", "--log-file", logfile, "--master-fifo", fifo)
    moved = tmp_path / "apus.log.1"
    logfile.rename(moved)
    with open(fifo, "w") as f:
        f.write("l")
    wait_until(lambda: logfile.exists() and "FIFO l: reopened" in logfile.read_text(), 10, what="the reopened log")
    tag = uuid.uuid4().hex
    get(srv.port, f"/after-{tag}")
    wait_until(lambda: f"/after-{tag}" in logfile.read_text(), 10, what="the worker's access line in the new file")
    assert f"/after-{tag}" not in moved.read_text()
