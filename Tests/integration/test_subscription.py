"""The subscription system: instances announce their uwsgi socket to a router over UDP
(uWSGI's subscription packets, `--subscribe-to ROUTER:KEY`), and `apus router` proxies each
HTTP request to a live node of its Host.

- the plain path through `apus router` (bodies, chunked requests, HEAD, keep-alive, the
  vars the node sees, responses without a length), 503 for an unknown Host, config errors;
- failure handling: a node that refuses is dropped and the request goes to another one, a
  node that stops announcing expires, hostile datagrams are refused;
- under load (loadgen counts failures): 10 swaps of the instance behind the router (start
  B subscribed, wait until the router sends it traffic, SIGTERM A, which unsubscribes and
  drains) with zero failed requests; a node killed with SIGKILL costs at most the requests
  in flight on it (at most one per client);
- hostile nodes (malformed or smuggling responses: 502, or exactly the declared body), a
  large response to a client that reads late, the router's graceful stop;
- interop with uWSGI 2.0 (its `uwsgi` binary: from the test venv, which scripts/test.sh
  installs, else $UWSGI_BIN or PATH; skipped when there is none): a uWSGI instance behind
  `apus router`, and an Apus instance behind uWSGI's `--http-subscription-server`.

No timing assertions: waits are bounded, counts are exact.
"""
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from helpers import APPS, Conn, get, raw_request, stop_process_group, wait_until, workers_of
from loadgen import LoadGen, format_summary


def _uwsgi_bin():
    for candidate in (Path(sys.prefix) / "bin" / "uwsgi", os.environ.get("UWSGI_BIN"), shutil.which("uwsgi")):
        if candidate and os.access(str(candidate), os.X_OK):
            return str(candidate)
    return None


UWSGI = _uwsgi_bin()
needs_uwsgi = pytest.mark.skipif(UWSGI is None, reason="no uwsgi binary (pip install uwsgi in the test venv)")


def free_udp_port():
    for _ in range(200):
        port = conftest.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port")


def packet(key, address, command=0, **numbers):
    """A subscription packet as uWSGI writes it."""
    fields = [("key", key), ("address", address)]
    fields += [(k, str(v)) for k, v in numbers.items()]
    body = b""
    for k, v in fields:
        k, v = k.encode(), v.encode() if isinstance(v, str) else v
        body += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", 224, len(body), command) + body


def send_udp(port, data):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, ("127.0.0.1", port))


class Router:
    """`apus router` on a free HTTP port and a free UDP port."""

    def __init__(self, workdir, *args):
        self.port = conftest.free_port()
        self.udp = free_udp_port()
        self.log_path = Path(workdir) / f"router-{self.port}.stderr"
        self.cmd = [conftest.APUS_BIN, "router", "--http", f"127.0.0.1:{self.port}",
                    "--subscription-server", f"127.0.0.1:{self.udp}", *map(str, args)]
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, env=conftest.clean_env(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self._err, start_new_session=True)
        wait_until(lambda: "listening on" in self.log() or self.proc.poll() is not None, 10, what="router start")
        assert self.proc.poll() is None, self.log()

    @property
    def host(self):
        """The Host header loadgen and helpers.get send: the key instances subscribe with."""
        return f"127.0.0.1:{self.port}"

    def log(self):
        return self.log_path.read_text("utf-8", "replace")

    def get(self, path="/", host=None, **kw):
        headers = {"Host": host or self.host}
        headers.update(kw.pop("headers", {}))
        return get(self.port, path, headers=headers, **kw)

    def stop(self):
        rc = stop_process_group(self.proc, 10)
        self._err.close()
        return rc


@pytest.fixture
def router(tmp_path):
    started = []

    def start(*args):
        r = Router(tmp_path, *args)
        started.append(r)
        return r

    yield start
    for r in started:
        r.stop()


def start_node(apus, router, app="pidapp", key=None, *args, workers=1, wait=True):
    """An Apus instance serving `app` on a uwsgi socket, subscribed to `router`."""
    sock = conftest.free_port()
    srv = apus(app, "--socket", f"127.0.0.1:{sock}", "--processes", workers,
               "--subscribe-to", f"127.0.0.1:{router.udp}:{key or router.host}", "--subscribe-freq", "1",
               *args, bind=False, wait=False)
    srv.sock_port = sock
    if wait:
        wait_until(lambda: f"node 127.0.0.1:{sock} subscribed" in router.log() or srv.proc.poll() is not None,
                   30, what="the node's subscription")
        assert srv.proc.poll() is None, srv.describe()
    return srv


# -- the plain path ------------------------------------------------------------------------------


def test_requests_through_the_router(apus, router):
    r = router()
    node = start_node(apus, r, "echo_env")
    resp = r.get("/a%20b/c?x=1&y=2", headers={"X-Thing": "one", "User-Agent": "t"})
    assert resp.status == 200, resp
    env = {k: v.get("value") for k, v in resp.json()["environ"].items()}
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/a b/c"
    assert env["QUERY_STRING"] == "x=1&y=2"
    assert env["REQUEST_URI"] == "/a%20b/c?x=1&y=2"
    assert env["SERVER_NAME"] == "127.0.0.1" and env["SERVER_PORT"] == str(r.port)
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["HTTP_X_THING"] == "one"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert "HTTP_TRANSFER_ENCODING" not in env
    node.stop()


def test_bodies_keep_alive_and_framing(apus, router):
    r = router()
    start_node(apus, r, "input_app")
    with Conn(r.port) as c:
        h = {"Host": r.host}
        resp = c.request("POST", "/read", h, body=b"hello body")
        assert resp.status == 200 and resp.json()["pieces"] == ["hello body"], resp
        big = bytes(random.getrandbits(7) for _ in range(300_000))
        resp = c.request("POST", "/read", h, body=big)
        assert resp.status == 200 and resp.json()["pieces"][0].encode("latin-1") == big
        c.send(b"POST /read HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" % r.host.encode())
        resp = c.response()
        assert resp.status == 200 and resp.json()["pieces"] == ["hello world"], resp
    # a response without Content-Length: chunked for HTTP/1.1, close-delimited for 1.0
    n = start_node(apus, r, "nolength", "nolength.test")
    with Conn(r.port) as c:
        resp = c.request("GET", "/", {"Host": "nolength.test"})
        assert resp.status == 200 and resp.framing == "chunked", resp
        assert resp.body == b"first,second,third," + b"x" * 10000 + b",last"
        resp = c.request("HEAD", "/", {"Host": "nolength.test"})
        assert resp.status == 200 and resp.body == b""
        resp = c.request("GET", "/gen", {"Host": "nolength.test"})
        assert resp.body == b"gen0;gen1;gen2;gen3;gen4;"
    data, _ = raw_request(r.port, b"GET / HTTP/1.0\r\nHost: nolength.test\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"connection: close" in data.lower()
    assert data.endswith(b",last")
    n.stop()


def test_unknown_host_gets_503(apus, router):
    r = router()
    start_node(apus, r)
    assert r.get().status == 200
    resp = r.get(host="nobody.example")
    assert resp.status == 503 and b"no node for this Host" in resp.body, resp
    # keep-alive survives a 503 without a body
    with Conn(r.port) as c:
        assert c.request("GET", "/", {"Host": "nobody.example"}).status == 503
        assert c.request("GET", "/", {"Host": r.host}).status == 200
    # HTTP/1.0 without Host
    data, _ = raw_request(r.port, b"GET / HTTP/1.0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 503")


def test_configuration_errors(tmp_path):
    res = conftest.run_apus(["--subscribe-to", "127.0.0.1:7000:k", "--http", "127.0.0.1:1", "pidapp"])
    assert res.returncode == 2 and "there is none: add --socket" in res.stderr, res.stderr
    res = conftest.run_apus(["router", "--http", "127.0.0.1:1"])
    assert res.returncode == 2 and "--subscription-server ADDR is required" in res.stderr, res.stderr
    res = conftest.run_apus(["router", "--subscription-server", "127.0.0.1:7000", "app"])
    assert res.returncode == 2 and "takes no application" in res.stderr, res.stderr
    res = conftest.run_apus(["router", "--subscription-server", "127.0.0.1:7000", "--processes", "2"])
    assert res.returncode == 2 and "not an option of apus router" in res.stderr, res.stderr
    res = conftest.run_apus(["--subscription-server", "127.0.0.1:7000", "pidapp"])
    assert res.returncode == 2 and "option of apus router only" in res.stderr, res.stderr


# -- failure handling ----------------------------------------------------------------------------


def test_refusing_node_is_dropped_and_the_request_retried(apus, router):
    r = router()
    start_node(apus, r)
    dead = conftest.free_port()  # nothing listens there
    send_udp(r.udp, packet(r.host, f"127.0.0.1:{dead}"))
    wait_until(lambda: f"node 127.0.0.1:{dead} subscribed" in r.log(), 10, what="the fake node")
    for _ in range(6):
        assert r.get().status == 200
    assert f"node 127.0.0.1:{dead} dropped: cannot connect" in r.log()


def test_silent_node_expires(router):
    r = router("--subscription-tolerance", "1")
    send_udp(r.udp, packet("ghost.example", "127.0.0.1:9"))
    wait_until(lambda: "ghost.example: node 127.0.0.1:9 subscribed" in r.log(), 10, what="the ghost")
    wait_until(lambda: "ghost.example: node 127.0.0.1:9 dropped (no announcement" in r.log(), 10, what="expiry")
    assert r.get(host="ghost.example").status == 503


def test_unsubscribe_packet_removes_node(router):
    r = router()
    send_udp(r.udp, packet("u.example", "127.0.0.1:9"))
    wait_until(lambda: "u.example: node 127.0.0.1:9 subscribed" in r.log(), 10, what="subscribe")
    send_udp(r.udp, packet("u.example", "127.0.0.1:9", command=1))
    wait_until(lambda: "u.example: node 127.0.0.1:9 unsubscribed" in r.log(), 10, what="unsubscribe")


def test_hostile_datagrams_are_refused(apus, router):
    r = router()
    start_node(apus, r)
    rng = random.Random(14)
    bad = [b"", b"\xe0", b"\xe0\xff\xff\x00", b"\x00\x05\x00\x00hello", packet("k", "a", command=7),
           packet("", "127.0.0.1:1"), packet("k\x00", "127.0.0.1:1"), packet("k", "127.0.0.1:1")[:-3],
           b"\xe0" + b"\xff" * 5000, packet("k", "127.0.0.1:1", weight="x1")]
    bad += [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300))) for _ in range(200)]
    bad += [b"\xe0" + bytes(rng.getrandbits(8) for _ in range(rng.randrange(3, 300))) for _ in range(200)]
    for d in bad:
        send_udp(r.udp, d)
    wait_until(lambda: "subscription packet refused" in r.log(), 10, what="a refusal in the log")
    assert r.get().status == 200
    assert r.proc.poll() is None


# -- under load ----------------------------------------------------------------------------------


def test_ten_swaps_under_load_lose_nothing(apus, router):
    r = router()
    current = start_node(apus, r)
    lg = LoadGen(r.port, "/", keepalive=2, per_request=2, max_duration=240)
    lg.start()
    try:
        for i in range(10):
            nxt = start_node(apus, r)
            new_workers = set()

            def served_by_next():
                new_workers.update(workers_of(nxt.pid))
                return any(rec.pid in new_workers for rec in lg.records[-50:] if rec.ok)

            wait_until(served_by_next, 30, what=f"swap {i}: traffic on the new node")
            current.signal(signal.SIGTERM)
            assert current.wait_exit(30) == 0, current.describe()
            assert f"unsubscribing from 127.0.0.1:{r.udp}" in current.log()
            current = nxt
        time.sleep(0.5)
    finally:
        lg.stop()
    s = lg.summary()
    print("10 swaps:", format_summary(s))
    assert s["failed"] == 0, format_summary(s) + "\n" + r.log()[-3000:]
    assert s["ok"] > 100


def test_sigkill_costs_only_the_requests_in_flight(apus, router):
    r = router()
    a = start_node(apus, r, workers=2)
    b = start_node(apus, r, workers=2)
    clients = 4
    lg = LoadGen(r.port, "/", keepalive=2, per_request=2, max_duration=120)
    lg.start()
    try:
        a_workers = set(workers_of(a.pid))
        wait_until(lambda: any(rec.pid in a_workers for rec in lg.records if rec.ok), 20, what="traffic on A")
        os.killpg(a.pid, signal.SIGKILL)
        killed_at = lg.mark("kill")
        wait_until(lambda: sum(1 for rec in lg.records if rec.ok and rec.start > killed_at + 0.5) > 50, 30,
                   what="traffic after the kill")
    finally:
        lg.stop()
    s = lg.summary()
    print("SIGKILL of one of two nodes:", format_summary(s))
    assert s["failed"] <= clients, format_summary(s)
    # dropped when a connection to it was refused or closed without an answer
    assert re.search(rf"node 127\.0\.0\.1:{a.sock_port} (dropped|closed without an answer \(502\); dropped)", r.log()), r.log()


# -- interop with uWSGI --------------------------------------------------------------------------


@needs_uwsgi
def test_uwsgi_instance_behind_apus_router(router, tmp_path):
    r = router()
    sock = conftest.free_port()
    log = open(tmp_path / "uwsgi.log", "wb")
    proc = subprocess.Popen([UWSGI, "--master", "--socket", f"127.0.0.1:{sock}", "--wsgi-file",
                             str(APPS / "pidapp.py"), "--subscribe-to", f"127.0.0.1:{r.udp}:uw.example",
                             "--subscribe-freq", "1", "--processes", "1"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: f"uw.example: node 127.0.0.1:{sock} subscribed" in r.log(), 30, what="uWSGI's subscription")
        for _ in range(5):
            resp = r.get(host="uw.example")
            assert resp.status == 200 and "pid" in resp.json(), resp
        resp = r.get("/?x=1", host="uw.example", headers={"X-A": "b"})
        assert resp.status == 200
        proc.send_signal(signal.SIGINT)   # uWSGI unsubscribes when it stops
        wait_until(lambda: "uw.example: node" in r.log() and "unsubscribed" in r.log(), 30, what="uWSGI's unsubscribe")
        assert r.get(host="uw.example").status == 503
    finally:
        stop_process_group(proc, 10)
        log.close()


@needs_uwsgi
def test_apus_instance_behind_uwsgi_router(apus, tmp_path):
    port, udp, sock = conftest.free_port(), free_udp_port(), conftest.free_port()
    log_path = tmp_path / "uwsgi-router.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen([UWSGI, "--master", "--http", f"127.0.0.1:{port}",
                             "--http-subscription-server", f"127.0.0.1:{udp}"],
                            stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        node = apus("pidapp", "--socket", f"127.0.0.1:{sock}", "--subscribe-to", f"127.0.0.1:{udp}:apus.example",
                    "--subscribe-freq", "1", bind=False, wait=False)
        wait_until(lambda: f"apus.example => new node: 127.0.0.1:{sock}" in log_path.read_text(), 30,
                   what="the subscription at uWSGI's router")
        workers = set(workers_of(node.pid))
        resp = wait_until(lambda: _ok(lambda: get(port, "/", headers={"Host": "apus.example"})), 20, what="a 200")
        assert resp.json()["pid"] in workers | set(workers_of(node.pid))
        node.signal(signal.SIGTERM)
        assert node.wait_exit(30) == 0
        assert f"apus.example => marking 127.0.0.1:{sock} as failed" in log_path.read_text()
    finally:
        stop_process_group(proc, 10)
        log.close()


def _ok(fetch):
    try:
        resp = fetch()
    except (OSError, ValueError, Exception):
        return None
    return resp if resp.status == 200 else None


# -- hostile nodes and the router's own shutdown --------------------------------------------------


class FakeNode:
    """A uwsgi-socket node that reads a request packet and answers with fixed bytes."""

    def __init__(self, answer):
        import threading
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                head = b""
                while len(head) < 4:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                size = struct.unpack("<H", head[1:3])[0] if len(head) >= 3 else 0
                while len(head) < 4 + size:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head)
                try:
                    conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("answer,expect_status", [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", 502),
    (b"HTTP/1.1 200 OK\nContent-Length: 2\r\n\r\nok", 502),
    (b"HTTP/1.1 200 OK\r\nX-Split: a\rb\r\nContent-Length: 2\r\n\r\nok", 502),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", 502),
    (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", 502),
    (b"garbage", 502),
    (b"", 502),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsmuggl", 200),
])
def test_hostile_node_responses(router, answer, expect_status):
    r = router()
    node = FakeNode(answer)
    try:
        send_udp(r.udp, packet("evil.example", f"127.0.0.1:{node.port}"))
        wait_until(lambda: f"evil.example: node 127.0.0.1:{node.port} subscribed" in r.log(), 10, what="the fake node")
        with Conn(r.port) as c:
            resp = c.request("GET", "/", {"Host": "evil.example"})
            assert resp.status == expect_status, resp
            if expect_status == 200:
                # exactly the declared body; what the node sent after it never reaches the client
                assert resp.body == b"ok"
                resp2 = c.request("GET", "/", {"Host": "nobody.example"})
                assert resp2.status == 503, resp2
            else:
                assert resp.header("connection") == "close"
        assert r.proc.poll() is None
    finally:
        node.close()


def test_large_response_to_a_slow_reader(router):
    """8 MB through the router to a client that reads nothing for a while: the router stops
    reading the node once it holds 256 KiB for the client, and the body arrives intact."""
    body = os.urandom(8_000_000)
    node = FakeNode(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    r = router()
    try:
        send_udp(r.udp, packet("big.example", f"127.0.0.1:{node.port}"))
        wait_until(lambda: "big.example: node" in r.log(), 10, what="the fake node")
        s = socket.create_connection(("127.0.0.1", r.port))
        s.sendall(b"GET / HTTP/1.1\r\nHost: big.example\r\nConnection: close\r\n\r\n")
        time.sleep(1.0)
        data = bytearray()
        while True:
            chunk = s.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        s.close()
        head, _, got = bytes(data).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and got == body
    finally:
        node.close()


def test_router_drains_on_sigterm(apus, router):
    r = router()
    start_node(apus, r)
    with Conn(r.port, timeout=20) as c:
        c.send(b"GET /sleep?s=1 HTTP/1.1\r\nHost: %s\r\n\r\n" % r.host.encode())
        time.sleep(0.3)
        r.proc.send_signal(signal.SIGTERM)
        resp = c.response()
        assert resp.status == 200 and resp.header("connection") == "close", resp
    assert r.proc.wait(20) == 0
    assert "graceful shutdown" in r.log()
