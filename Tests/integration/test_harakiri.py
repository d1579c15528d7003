"""--harakiri (alias --timeout, -t): a request that runs too long is answered 504 when
nothing was sent yet, logged with its request line and the Python stack of every thread,
and its worker is replaced (the replacement ready first) while other clients see nothing.

Everything runs over real sockets against the `stuck` app. No timing is asserted beyond
generous waits: the machine may be small and shared."""
import re
import socket
import threading
import time

import pytest

from helpers import alive, build_request, parse_response, read_until_close, wait_until, wait_log

HARAKIRI = ["--harakiri", "2", "--reload-mercy", "5"]


def _started(path, log):
    return lambda: log.exists() and any(l.split()[0] == path for l in log.read_text().splitlines())


def _ok_pid(srv):
    r = srv.get("/ok", timeout=30)
    assert r.status == 200, r
    return r.json()["pid"]


class Background:
    """A client that sends GET /ok, each on its own connection, until stopped, and keeps
    every failure. Fresh connections wait in the listen queue while the worker is stuck, so
    the replacement serves them."""

    def __init__(self, port):
        self.port = port
        self.failures = []
        self.answered = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                s.sendall(build_request("GET", "/ok", {"Connection": "close"}))
                r = parse_response(read_until_close(s))
                s.close()
                if r.status != 200:
                    self.failures.append(r)
                else:
                    self.answered += 1
            except Exception as e:  # noqa: BLE001  (any failure is the finding)
                self.failures.append(e)
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(90)


def _stuck_request(srv, path, headers=None):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    h = {"Connection": "close"}
    h.update(headers or {})
    s.sendall(build_request("GET", path, h))
    return s


def _replaced(srv, old):
    """A new worker answers and the stuck one is gone."""
    wait_until(lambda: _ok_pid(srv) != old, 60, interval=0.2, what="a replacement worker to answer")
    wait_until(lambda: not alive(old), 60, interval=0.2, what=f"the stuck worker {old} to exit")


VIEWS = [("/sleep", "sleep_view"), ("/spin", "spin_view"), ("/cblock", "cblock_compare")]


@pytest.mark.parametrize("threads", ["1", "2"])
@pytest.mark.parametrize("path,function", VIEWS, ids=[v[0][1:] for v in VIEWS])
def test_stuck_request_answered_504_logged_and_replaced(apus, tmp_path, path, function, threads):
    started = tmp_path / "started.log"
    srv = apus("stuck", *HARAKIRI, "--processes", "1", "--threads", threads,
               env={"STARTED_LOG": str(started)}, ready_path="/ok")
    old = _ok_pid(srv)
    s = _stuck_request(srv, path)
    wait_until(_started(path, started), 30, what=f"{path} inside the app")
    with Background(srv.port) as background:
        answer = parse_response(read_until_close(s))
        s.close()
        assert answer.status == 504, answer
        assert answer.header("Connection") == "close"
        m = wait_log(srv.log, rf"harakiri: GET {re.escape(path)} has run [0-9.]+ s \(--harakiri 2\.0 s\): "
                              r"its client was answered 504; replacing this worker; Python stacks follow", 30)
        # faulthandler's dump follows: the stuck view's frame, in the app's file.
        wait_log(srv.log, rf'File "[^"]*stuck\.py", line \d+ in {function}', 30)
        assert "Thread 0x" in srv.log()[m.start():]
        _replaced(srv, old)
        for _ in range(5):
            assert _ok_pid(srv) != old
    assert not background.failures, background.failures[:5]
    assert background.answered > 0
    assert re.search(rf"worker \d+ \(pid {old}\) has a request past --harakiri", srv.log()), srv.log()[-3000:]


def test_verbose_logs_the_headers(apus, tmp_path):
    started = tmp_path / "started.log"
    srv = apus("stuck", *HARAKIRI, "--harakiri-verbose", "--processes", "1",
               env={"STARTED_LOG": str(started)}, ready_path="/ok")
    old = _ok_pid(srv)
    s = _stuck_request(srv, "/sleep", {"X-Trace": "abc123"})
    answer = parse_response(read_until_close(s))
    s.close()
    assert answer.status == 504
    wait_log(srv.log, r"harakiri: headers of GET /sleep:\n\s+Host: localhost\n(\s+.*\n)*\s+X-Trace: abc123", 30)
    _replaced(srv, old)


def test_without_verbose_no_headers(apus, tmp_path):
    srv = apus("stuck", *HARAKIRI, "--processes", "1", ready_path="/ok")
    old = _ok_pid(srv)
    s = _stuck_request(srv, "/sleep", {"X-Trace": "abc123"})
    assert parse_response(read_until_close(s)).status == 504
    s.close()
    wait_log(srv.log, r"harakiri: GET /sleep has run", 30)
    _replaced(srv, old)
    assert "abc123" not in srv.log()


@pytest.mark.parametrize("threads", ["1", "2"])
def test_streaming_answer_is_not_504_but_worker_replaced(apus, tmp_path, threads):
    started = tmp_path / "started.log"
    srv = apus("stuck", *HARAKIRI, "--processes", "1", "--threads", threads,
               env={"STARTED_LOG": str(started)}, ready_path="/ok")
    old = _ok_pid(srv)
    s = _stuck_request(srv, "/stream")
    with Background(srv.port) as background:
        data = read_until_close(s)  # the head and first chunk, then the cut when the worker goes
        s.close()
        assert data.startswith(b"HTTP/1.1 200"), data[:200]
        assert b"first chunk" in data
        assert b"504" not in data and b"never sent" not in data
        wait_log(srv.log, r"harakiri: GET /stream has run [0-9.]+ s \(--harakiri 2\.0 s\): "
                          r"it had begun its answer, which is cut when this worker goes", 30)
        wait_log(srv.log, r'File "[^"]*stuck\.py", line \d+ in stream_view', 30)
        _replaced(srv, old)
    assert not background.failures, background.failures[:5]


@pytest.mark.parametrize("option", ["--timeout", "-t"])
def test_gunicorn_spelling(apus, tmp_path, option):
    srv = apus("stuck", option, "2", "--processes", "1", ready_path="/ok")
    old = _ok_pid(srv)
    s = _stuck_request(srv, "/spin")
    assert parse_response(read_until_close(s)).status == 504
    s.close()
    wait_log(srv.log, r"harakiri: GET /spin has run .*\(--harakiri 2\.0 s\)", 30)
    _replaced(srv, old)


def test_fast_requests_untouched(apus):
    """Requests well under the limit are answered as usual, keep-alive included."""
    srv = apus("stuck", "--harakiri", "1", "--processes", "1", "--threads", "2", ready_path="/ok")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    for _ in range(50):
        s.sendall(build_request("GET", "/ok"))
        data = b""
        while not data.endswith(b"}"):
            data += s.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
    s.close()
    time.sleep(1.5)
    assert "harakiri:" not in srv.log()
