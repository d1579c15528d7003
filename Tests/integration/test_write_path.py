"""How finished responses reach the socket: held per connection and written after each
batch of events, in order, without blocking the worker on a client that does not read."""
import socket
import time

import pytest

from helpers import Conn, build_request, connect, parse_response, raw_request, read_until_close


def pattern(tag, n):
    unit = (tag + "|").encode()
    return (unit * (n // len(unit) + 1))[:n]


@pytest.fixture(scope="module", params=["1", "3"], ids=["inline", "pool"])
def sized(apus_module, request):
    return apus_module("sized", "--threads", request.param, ready_path="/size/1")


def test_pipelined_responses_arrive_whole_and_in_order(sized):
    paths = ["/size/10", "/gen/70000", "/size/200000", "/size/3", "/gen/5000", "/size/0"]
    with Conn(sized.port) as c:
        c.send(b"".join(build_request("GET", p) for p in paths))
        for p in paths:
            r = c.response()
            assert r.status == 200 and r.complete, (p, r)
            n = int(p.rsplit("/", 1)[1])
            assert r.body == pattern(p, n), p


def test_a_client_that_does_not_read_holds_nobody_else(sized):
    """One client pipelines many responses and reads nothing: the worker keeps what the
    socket will not take and goes on serving others; the lazy client later gets all."""
    count, size = 400, 30000  # 12 MB of held responses: far more than the socket buffers
    lazy = connect(sized.port, timeout=30)
    try:
        lazy.sendall(b"".join(build_request("GET", f"/size/{size}") for _ in range(count)))
        time.sleep(0.5)
        started = time.monotonic()
        for i in range(5):
            with Conn(sized.port) as other:
                r = other.request("GET", f"/size/{i + 1}")
                assert r.status == 200 and r.body == pattern(f"/size/{i + 1}", i + 1)
        assert time.monotonic() - started < 10
        got = bytearray()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            chunk = lazy.recv(1 << 20)
            if not chunk:
                break
            got += chunk
            if (got.count(b"HTTP/1.1 200 OK\r\n") == count
                    and got.endswith(pattern(f"/size/{size}", size)[-64:])):
                break
        responses = got.split(b"HTTP/1.1 200 OK\r\n")[1:]
        assert len(responses) == count
        for resp in responses:
            assert resp.split(b"\r\n\r\n", 1)[1] == pattern(f"/size/{size}", size)
    finally:
        lazy.close()


def test_request_then_half_close_gets_the_whole_response(sized):
    data, closed = raw_request(sized.port, build_request("GET", "/size/5000", {"Connection": "close"}),
                               shutdown_write=True)
    r = parse_response(data)
    assert r.status == 200 and r.body == pattern("/size/5000", 5000)


def test_keep_alive_request_then_half_close(sized):
    # No Connection: close, then the client shuts its side: the answer still comes.
    data, closed = raw_request(sized.port, build_request("GET", "/size/64"), shutdown_write=True)
    r = parse_response(data)
    assert r.status == 200 and r.body == pattern("/size/64", 64)
    assert closed


def test_next_request_sent_while_the_first_is_in_the_app(sized):
    with Conn(sized.port) as c:
        c.send(build_request("GET", "/sleep/0.4/100"))
        time.sleep(0.15)
        c.send(build_request("GET", "/size/7"))
        r1, r2 = c.response(), c.response()
        assert r1.body == pattern("/sleep/0.4/100", 100)
        assert r2.body == pattern("/size/7", 7)


def test_client_half_closes_while_its_request_is_in_the_app(sized):
    s = connect(sized.port, timeout=10)
    try:
        s.sendall(build_request("GET", "/sleep/0.4/300"))
        time.sleep(0.15)
        s.shutdown(socket.SHUT_WR)
        data = read_until_close(s)
    finally:
        s.close()
    r = parse_response(data)
    assert r.status == 200 and r.body == pattern("/sleep/0.4/300", 300)
