"""The master's observer endpoints (--metrics, --stats with --stats-http) against hostile and
careless clients: every byte is hostile, a client that never sends or never reads costs only
its own descriptor, and the app keeps serving throughout. What the endpoints say (stats,
metrics, readiness) is in test_stats.py and test_metrics.py."""
import socket
import time

import pytest

import helpers
from conftest import free_port, run_apus


def ask(port, data, timeout=10.0):
    """Send raw bytes to the observer port, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return helpers.read_until_close(s)


@pytest.fixture
def observed(apus):
    mport = free_port()
    srv = apus("whoami", "--processes", "2", "--metrics", f"127.0.0.1:{mport}")
    srv.mport = mport
    helpers.wait_until(lambda: b"200 OK" in ask(mport, b"GET /readyz HTTP/1.1\r\n\r\n"), 15, what="/readyz 200")
    return srv


def test_requests_that_are_not_http_get_a_4xx_and_a_closed_connection(observed):
    p = observed.mport
    assert ask(p, b"GARBAGE\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert ask(p, b"GET /metrics HTTP/9.9\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert ask(p, b"GET metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert ask(p, b"GET /\x00 HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert ask(p, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").startswith(b"HTTP/1.1 405 ")
    assert ask(p, b"GET /nothing-here HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404 ")
    # A head that never ends: refused at 8 KiB, not read forever.
    with socket.create_connection(("127.0.0.1", p), timeout=10) as s:
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 20000)
        except OSError:
            pass  # the server may close before it has read everything
        assert helpers.read_until_close(s).startswith(b"HTTP/1.1 431 ")
    # HEAD: the head alone, with the length of the body it would have.
    head = ask(p, b"HEAD /healthz HTTP/1.1\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n") and b"Content-Length: 3\r\n" in head
    assert observed.get("/").status == 200


def test_silent_and_non_reading_clients_do_not_stop_the_others(observed):
    p = observed.mport
    silent = [socket.create_connection(("127.0.0.1", p), timeout=10) for _ in range(80)]
    try:
        # More silent clients than the server holds: the newest are closed at once, the
        # others time out; meanwhile probes and the app are answered.
        for _ in range(5):
            assert observed.get("/").status == 200
        deadline = time.monotonic() + 15
        while True:
            try:
                if ask(p, b"GET /healthz HTTP/1.1\r\n\r\n", timeout=2).startswith(b"HTTP/1.1 200 "):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "/healthz never answered next to silent clients"
            time.sleep(0.2)
        # Each silent client is closed within the server's 5 s timeout.
        for s in silent:
            s.settimeout(10)
            assert s.recv(1) == b""
    finally:
        for s in silent:
            s.close()
    # A client that asks many times and never reads: the master carries on.
    lazy = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", p), timeout=10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        s.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        lazy.append(s)
    try:
        assert ask(p, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        assert observed.get("/").status == 200
    finally:
        for s in lazy:
            s.close()


def test_a_taken_observer_address_is_one_line_before_anything_starts(tmp_path):
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen(1)
        r = run_apus(["--chdir", str(helpers.APPS), "whoami", "--http", f"127.0.0.1:{free_port()}",
                      "--metrics", f"127.0.0.1:{port}"])
    assert r.returncode != 0
    errors = [l for l in r.stderr.splitlines() if "ERROR" in l]
    assert len(errors) == 1 and str(port) in errors[0], r.stderr
    assert "worker" not in r.stderr and "generation" not in r.stderr
    bad = run_apus(["--chdir", str(helpers.APPS), "whoami", "--metrics", "fd://3"])
    assert bad.returncode == 2 and "--metrics" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_unix_socket_metrics_address_is_removed_at_exit(apus, tmp_path):
    path = tmp_path / "metrics.sock"
    srv = apus("whoami", "--metrics", f"unix:{path}")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
        assert helpers.read_until_close(s).startswith(b"HTTP/1.1 200 ")
    assert srv.stop() == 0
    assert not path.exists()
