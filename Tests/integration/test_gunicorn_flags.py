"""Gunicorn users' command lines, APUS_CMD_ARGS and `apus --from-gunicorn`, over the real binary."""
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from conftest import APPS, APUS_BIN, ApusServer, clean_env, free_port, run_apus
from helpers import IncompleteResponse, get, stop_process_group, wait_until

ACCESS = re.compile(r'^(?P<host>\S+) - - \[[^\]]+\] "(?P<req>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)$')


def gunicorn_style(tmp_path, *args, env=None, name="apus"):
    """A server started with -b instead of --http, as a Gunicorn user would."""
    port = free_port()
    srv = ApusServer("echo_env", ["-b", f"127.0.0.1:{port}", *args], workdir=tmp_path,
                     env=env, bind=False, port=port, name=name)
    return srv


def lines_with(text, tag):
    return [l for l in text.splitlines() if tag in l]


def test_gunicorn_command_line_serves(tmp_path):
    errors = tmp_path / "error.log"
    pidfile = tmp_path / "app.pid"
    srv = gunicorn_style(tmp_path, "-w", "2", "-k", "gthread", "--threads", "4",
                         "--access-logfile", "-", "--error-logfile", errors,
                         "--log-level", "warning", "--pid", pidfile)
    try:
        srv.start()
        tag = uuid.uuid4().hex
        for i in range(4):
            assert get(srv.port, f"/g-{tag}-{i}").status == 200
        assert pidfile.read_text().strip() == str(srv.pid)
        wait_until(lambda: len(srv.workers()) == 2, 10, what="2 workers")
        wait_until(lambda: len(lines_with(srv.stdout(), tag)) == 4, 10, what="4 access lines on stdout")
        for line in lines_with(srv.stdout(), tag):
            assert ACCESS.match(line), line
        assert lines_with(srv.log(), tag) == []  # not on stderr
        assert tag not in errors.read_text()      # not in the error log
        # threads per worker: the banner is INFO, so ask the app instead
        env = get(srv.port, "/").json()["environ"]
        assert env["wsgi.multithread"]["value"] is True
        assert env["wsgi.multiprocess"]["value"] is True
    finally:
        srv.stop()
    # --log-level warning: none of the INFO lines (banner, workers ready, stopping) were written.
    text = errors.read_text()
    assert "[INFO]" not in text, text[:3000]


def test_log_level_filters_own_lines(tmp_path):
    """An ini key that does nothing in Apus is a WARNING at start: written at info, not at error."""
    ini = tmp_path / "u.ini"
    ini.write_text("[uwsgi]\nmaster = true\n")
    logs = {}
    for level in ("info", "warning", "error"):
        logs[level] = tmp_path / f"{level}.log"
        srv = gunicorn_style(tmp_path, "--ini", ini, "--error-logfile", logs[level], "--log-level", level, name=level)
        try:
            srv.start()
            assert get(srv.port, "/").status == 200
        finally:
            srv.stop()
    info, warning, error = (logs[k].read_text() for k in ("info", "warning", "error"))
    assert "[INFO]" in info and "[WARNING]" in info and "master" in info, info[:3000]
    assert "[INFO]" not in warning and "[WARNING]" in warning, warning[:3000]
    assert "[INFO]" not in error and "[WARNING]" not in error, error[:3000]


def test_access_logfile_reopens_on_usr1(tmp_path):
    access = tmp_path / "access.log"
    srv = gunicorn_style(tmp_path, "-w", "2", "--access-logfile", access)
    try:
        srv.start()
        wait_until(lambda: len(srv.workers()) == 2, 10, what="2 workers")
        tag = uuid.uuid4().hex
        for i in range(6):
            assert get(srv.port, f"/before-{tag}-{i}").status == 200
        wait_until(lambda: len(lines_with(access.read_text(), f"before-{tag}")) == 6, 10, what="6 lines in the file")
        assert lines_with(srv.log(), tag) == []
        rotated = tmp_path / "access.log.1"
        os.rename(access, rotated)
        srv.signal(signal.SIGUSR1)
        wait_until(lambda: access.exists(), 10, what="the access log made again")
        # Each worker reopens on its own signal: keep asking until the lines land in the new file.
        n = 0

        def after_lines():
            nonlocal n
            get(srv.port, f"/after-{tag}-{n}")
            n += 1
            return len(lines_with(access.read_text(), f"after-{tag}")) >= 1

        wait_until(after_lines, 10, what="an access line in the new file")
        for i in range(20):
            assert get(srv.port, f"/later-{tag}-{i}").status == 200
        wait_until(lambda: len(lines_with(access.read_text(), f"later-{tag}")) == 20, 10, what="20 lines")
        assert lines_with(rotated.read_text(), f"later-{tag}") == []
        assert len(lines_with(rotated.read_text(), f"before-{tag}")) == 6
    finally:
        srv.stop()


def test_access_lines_stay_whole_from_many_workers(tmp_path):
    """Four workers append long lines at once: every line in the file is one whole access line."""
    access = tmp_path / "access.log"
    srv = gunicorn_style(tmp_path, "-w", "4", "--threads", "4", "--access-logfile", access)
    try:
        srv.start()
        wait_until(lambda: len(srv.workers()) == 4, 10, what="4 workers")
        tag = uuid.uuid4().hex
        padding = "x" * 3000  # lines near PIPE_BUF: a batch of them needs several writes
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: get(srv.port, f"/{tag}/{i}/{padding}").status, range(400)))
        assert statuses == [200] * 400
        wait_until(lambda: len(lines_with(access.read_text(), tag)) == 400, 15, what="400 lines")
        for line in access.read_text().splitlines():
            m = ACCESS.match(line)
            assert m, line[:200]
            if tag in line:
                assert m["req"].endswith(f"/{padding} HTTP/1.1"), line[:200]
    finally:
        srv.stop()


def test_access_lines_stay_whole_on_a_pipe(tmp_path):
    """stdout a pipe (Docker, a supervisor): lines near PIPE_BUF from four workers never mix."""
    port = free_port()
    proc = subprocess.Popen([APUS_BIN, "--venv", sys.prefix, "--chdir", str(APPS), "-b", f"127.0.0.1:{port}",
                             "-w", "4", "--threads", "4", "--access-logfile", "-", "echo_env"],
                            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=open(tmp_path / "stderr", "wb"), start_new_session=True)
    chunks = []

    def read_slowly():
        # A reader that lags lets the pipe fill: a write longer than PIPE_BUF is then split,
        # and another worker's write lands in the middle (the build before this test did that
        # in 2 of 3 runs).
        while block := os.read(proc.stdout.fileno(), 4096):
            chunks.append(block)
            time.sleep(0.002)

    reader = threading.Thread(target=read_slowly)
    reader.start()
    try:
        wait_until(lambda: _answers(port), 30, what="apus serving")
        tag = uuid.uuid4().hex
        padding = "y" * 2500
        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(lambda i: get(port, f"/{tag}/{i}/{padding}").status, range(600)))
        assert statuses == [200] * 600
        wait_until(lambda: b"".join(chunks).count(tag.encode()) == 600, 20, what="600 lines on the pipe")
    finally:
        stop_process_group(proc, 20)
        reader.join(10)
    text = b"".join(chunks).decode()
    for line in text.splitlines():
        m = ACCESS.match(line)
        assert m, line[:200]
        if tag in line:
            assert m["req"].endswith(f"/{padding} HTTP/1.1"), line[:200]


def _answers(port):
    try:
        return get(port, "/", timeout=2).status == 200
    except (OSError, ValueError, IncompleteResponse):
        return False


def test_unsupported_worker_class_fails_before_binding(tmp_path):
    port = free_port()
    for klass, why in (("gevent", "greenlets"), ("eventlet", "greenlets"), ("tornado", "Tornado"),
                       ("uvicorn.workers.UvicornWorker", "ASGI"), ("nope", "sync or gthread")):
        r = run_apus(["--venv", sys.prefix, "-b", f"127.0.0.1:{port}", "-k", klass, "echo_env"])
        assert r.returncode == 2, r
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("apus: -k: ") and why in lines[0], r.stderr
        assert r.stdout == ""
        with socket.socket() as s:  # nothing was bound
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))


def test_config_py_is_not_run(tmp_path):
    conf = tmp_path / "gunicorn.conf.py"
    marker = tmp_path / "ran"
    conf.write_text(f"open({str(marker)!r}, 'w').close()\nworkers = 2\n")
    r = run_apus(["-c", str(conf), "echo_env"])
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and "--from-gunicorn" in r.stderr, r.stderr
    r = run_apus(["--from-gunicorn", str(conf)])
    assert r.returncode == 0, r.stderr
    assert "--processes 2" in r.stdout
    assert not marker.exists()


def test_cmd_args_precedence(tmp_path):
    ini = tmp_path / "app.ini"
    ini.write_text("[apus]\nprocesses = 1\nthreads = 1\n")
    env = {"APUS_INI": str(ini), "APUS_PROCESSES": "2", "APUS_THREADS": "2",
           "APUS_CMD_ARGS": "--workers 3 --access-logfile '-' --env 'GREETING=hello world'"}
    srv = gunicorn_style(tmp_path, env=env)
    try:
        srv.start()
        wait_until(lambda: len(srv.workers()) == 3, 10, what="3 workers (APUS_CMD_ARGS over APUS_PROCESSES)")
        r = get(srv.port, "/?osenv=GREETING").json()
        assert "hello world" in str(r), r
        assert r["environ"]["wsgi.multithread"]["value"] is True  # APUS_THREADS over the ini file
        wait_until(lambda: "GET /?osenv=GREETING" in srv.stdout(), 10, what="access line on stdout")
    finally:
        srv.stop()
    # The command line over APUS_CMD_ARGS.
    srv = gunicorn_style(tmp_path, "-w", "1", env=env, name="cli")
    try:
        srv.start()
        wait_until(lambda: len(srv.workers()) == 1, 10, what="1 worker (the command line over APUS_CMD_ARGS)")
    finally:
        srv.stop()
    r = run_apus(["echo_env"], env={"APUS_CMD_ARGS": "-w 'three"})
    assert r.returncode == 2 and r.stderr.strip() == "apus: APUS_CMD_ARGS: no closing quotation (')", r.stderr


def test_from_gunicorn_prints_options_that_serve(tmp_path):
    port = free_port()
    access = tmp_path / "access.log"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(f'''\
import multiprocessing
import os

bind = "127.0.0.1:{port}"
workers = 2
threads = int(os.environ.get("THREADS", "2"))
worker_class = "gthread"
accesslog = {str(access)!r}
loglevel = "warning"
raw_env = ["GREETING=from gunicorn.conf.py"]
keepalive = 2
max_requests = 500
wsgi_app = "echo_env:application"
secure_scheme_headers = {{"X-FORWARDED-PROTO": "https"}}

def post_fork(server, worker):
    server.log.info("worker forked")
''')
    r = run_apus(["--from-gunicorn", str(conf)])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    commands = [l for l in out.splitlines() if l.startswith("apus ")]
    assert len(commands) == 1, out
    assert f"{conf}:6: threads: computed" in out
    assert f"{conf}:14: secure_scheme_headers" in out
    assert f"{conf}:16: post_fork: a server hook" in out
    assert "[apus]" in out and "module = echo_env:application" in out
    words = shlex.split(commands[0])[1:]
    srv = ApusServer(None, [*words], workdir=tmp_path, bind=False, port=port, name="translated")
    try:
        srv.start()
        wait_until(lambda: len(srv.workers()) == 2, 10, what="2 workers")
        body = get(srv.port, "/?osenv=GREETING").json()
        assert "from gunicorn.conf.py" in str(body), body
        wait_until(lambda: "GET /?osenv=GREETING" in access.read_text(), 10, what="access line in the file")
    finally:
        srv.stop()
    assert "[INFO]" not in srv.log()


def test_from_gunicorn_syntax_error(tmp_path):
    conf = tmp_path / "broken.conf.py"
    conf.write_text("workers = (\n")
    r = run_apus(["--from-gunicorn", str(conf)])
    assert r.returncode == 1
    assert r.stderr.startswith(f"apus: --from-gunicorn: {conf}: syntax error at line 1") and len(r.stderr.splitlines()) == 1, r.stderr
