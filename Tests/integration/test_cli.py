"""The command line: option errors, --help/--version, PORT and APUS_* variables, binds,
app resolution and import failures."""
import os
import socket

import pytest

from conftest import free_port, run_apus
from helpers import APPS, EXAMPLES, get, parse_response, raw_request, build_request, wait_until


def assert_usage_error(proc, option):
    assert proc.returncode == 2, f"status {proc.returncode}, stderr: {proc.stderr!r}"
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"
    assert option.lstrip("-").lower() in lines[0].lower(), f"{option} not named in {lines[0]!r}"


BAD_OPTIONS = [
    (["--processes", "abc"], "--processes"),
    (["--processes", "-3"], "--processes"),
    (["--workers", "x"], "--workers"),
    (["--threads", "many"], "--threads"),
    (["--threads", "0"], "--threads"),
    (["--http", "127.0.0.1:notaport"], "--http"),
    (["--http", "127.0.0.1:70000"], "--http"),
    (["--limit-request-line", "huge"], "--limit-request-line"),
    (["--limit-request-body", "-1"], "--limit-request-body"),
    (["--keep-alive", "soon"], "--keep-alive"),
    (["--header-timeout", "x"], "--header-timeout"),
    (["--shutdown-timeout", "never"], "--shutdown-timeout"),
    (["--env", "NO_EQUALS_SIGN"], "--env"),
    (["--no-such-option"], "--no-such-option"),
]


@pytest.mark.parametrize("args,option", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_option_exits_2_with_one_line(args, option):
    proc = run_apus(["--chdir", str(EXAMPLES), *args, "hello"])
    assert_usage_error(proc, option)


def test_missing_option_value():
    proc = run_apus(["hello", "--processes"])
    assert_usage_error(proc, "--processes")


def test_bad_env_value_exits_2():
    proc = run_apus(["--chdir", str(EXAMPLES), "hello"], env={"APUS_PROCESSES": "lots"})
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "processes" in lines[0].lower(), lines


def test_no_app_exits_2():
    proc = run_apus([])
    assert proc.returncode == 2, proc.stderr
    assert len([l for l in proc.stderr.splitlines() if l.strip()]) == 1, proc.stderr


def test_help():
    proc = run_apus(["--help"])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for opt in ("--http", "--processes", "--threads", "--venv", "--python", "--chdir",
                "--mount", "--limit-request-body", "--keep-alive", "--shutdown-timeout",
                "--preload", "--wsgi-file"):
        assert opt in out, f"{opt} missing from --help"
    assert "usage" in out.lower()


def test_version():
    proc = run_apus(["--version"])
    assert proc.returncode == 0, proc.stderr
    import re
    assert re.search(r"\d+\.\d+", proc.stdout), proc.stdout
    assert "apus" in proc.stdout.lower()


def listening_on(port):
    """Local addresses (hex, as in /proc/net/tcp*) listening on `port`."""
    out = []
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    addr, st = parts[1], parts[3]
                    if st == "0A" and int(addr.rsplit(":", 1)[1], 16) == port:
                        out.append(addr.rsplit(":", 1)[0])
        except FileNotFoundError:
            pass
    return out


def test_port_env_binds_all_ipv4(apus):
    port = free_port()
    apus("hello", bind=False, port=port, chdir=EXAMPLES, env={"PORT": str(port)})
    assert get(port, "/").body == b"Hello, World!"
    assert "00000000" in listening_on(port), listening_on(port)


def test_apus_env_variables(apus):
    port = free_port()
    srv = apus("echo_env", bind=False, port=port,
               env={"APUS_HTTP": f"127.0.0.1:{port}", "APUS_PROCESSES": "2", "APUS_THREADS": "3"})
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 workers from APUS_PROCESSES")
    env = get(port, "/").json()["environ"]
    assert env["wsgi.multithread"]["value"] is True
    assert env["wsgi.multiprocess"]["value"] is True


def test_processes_alias_w(apus):
    srv = apus("pidapp", "-w", "3")
    wait_until(lambda: len(srv.workers()) == 3, 20, what="3 workers")


def test_env_option_sets_os_environ(apus):
    srv = apus("echo_env", "--env", "APUS_TEST_VAR=hello world", "--env", "OTHER=x=y")
    j = get(srv.port, "/?osenv=APUS_TEST_VAR&osenv=OTHER").json()
    assert j["osenv"] == {"APUS_TEST_VAR": "hello world", "OTHER": "x=y"}


def test_several_binds_tcp_ipv6_unix(apus, tmp_path):
    port2 = free_port()
    sock_path = str(tmp_path / "apus.sock")
    args = ["--http", f"127.0.0.1:{port2}", "--http", f"unix:{sock_path}"]
    has_v6 = socket.has_ipv6
    port6 = free_port()
    if has_v6:
        try:
            with socket.socket(socket.AF_INET6) as s:
                s.bind(("::1", port6))
        except OSError:
            has_v6 = False
    if has_v6:
        args += ["--http", f"[::1]:{port6}"]
    srv = apus("hello", *args, chdir=EXAMPLES)
    assert get(srv.port, "/").body == b"Hello, World!"
    assert get(port2, "/").body == b"Hello, World!"
    wait_until(lambda: os.path.exists(sock_path), 10, what="the unix socket")
    raw, _ = raw_request(f"unix:{sock_path}", build_request("GET", "/", {"Connection": "close"}))
    assert parse_response(raw).body == b"Hello, World!"
    if has_v6:
        raw, _ = raw_request(port6, build_request("GET", "/", {"Connection": "close"}), host="::1")
        assert parse_response(raw).body == b"Hello, World!"


def test_callable_falls_back_to_app(apus):
    srv = apus("apponly")
    assert get(srv.port, "/").body == b"app-only"


def test_module_colon_callable(apus):
    srv = apus("apponly:other")
    assert get(srv.port, "/").body == b"other"


def test_callable_option(apus):
    srv = apus("apponly", "--callable", "other")
    assert get(srv.port, "/").body == b"other"


def test_wsgi_file(apus, tmp_path):
    srv = apus(None, "--wsgi-file", str(APPS / "apponly.py"), chdir=tmp_path)
    assert get(srv.port, "/").body == b"app-only"


def test_pythonpath_without_chdir(apus, tmp_path):
    srv = apus("apponly", "--pythonpath", str(APPS), chdir=None)
    assert get(srv.port, "/").body == b"app-only"


def test_relative_venv_is_taken_from_the_start_directory_not_chdir(tmp_path):
    """--venv and --python name paths from where apus was started, as their checks do;
    --chdir only moves the app's working directory."""
    import subprocess
    import sys
    from conftest import APUS_BIN, clean_env
    from helpers import stop_process_group
    port = free_port()
    log = open(tmp_path / "stderr", "wb")
    proc = subprocess.Popen(
        [APUS_BIN, "--venv", os.path.basename(sys.prefix), "--chdir", str(APPS),
         "--http", f"127.0.0.1:{port}", "apponly"],
        cwd=os.path.dirname(sys.prefix), env=clean_env(), stdin=subprocess.DEVNULL,
        stdout=log, stderr=log, start_new_session=True)
    try:
        def answers():
            try:
                return get(port, "/").body == b"app-only"
            except OSError:
                assert proc.poll() is None, (tmp_path / "stderr").read_text()
                return False
        wait_until(answers, 30, what="apus with a relative --venv to answer")
    finally:
        stop_process_group(proc, 20)


def wait_failed_start(srv, timeout=40):
    rc = srv.wait_exit(timeout)
    assert rc is not None, f"apus kept running although the app cannot load\n{srv.describe()}"
    assert rc != 0
    return srv.log()


def test_import_failure_exits_with_traceback(apus):
    srv = apus("badimport", wait=False)
    log = wait_failed_start(srv)
    assert "Traceback (most recent call last)" in log
    assert "apus-test-marker-import-failed" in log


def test_missing_module_exits(apus):
    srv = apus("no_such_module_anywhere", wait=False)
    log = wait_failed_start(srv)
    assert "no_such_module_anywhere" in log


def test_missing_callable_exits(apus):
    srv = apus("apponly:missing_callable", wait=False)
    log = wait_failed_start(srv)
    assert "missing_callable" in log
