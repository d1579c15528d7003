"""Bad and oversized input: every error gets an answer with the right status and then the
connection is closed, so nothing sent after the bad request is ever processed. Also the
read timeouts for a request head and for an idle keep-alive connection."""
import socket
import time

import pytest

from helpers import Conn, build_request, chunked, parse_response, raw_request

BODY_LIMIT = 1000
# Sent right after each bad request: it must never be answered.
FOLLOW_UP = b"GET /smuggled-follow-up HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def srv(apus_module):
    return apus_module("echo_env", "--limit-request-body", str(BODY_LIMIT))


def expect_error(srv, data, status, follow_up=True):
    """Send `data` (+ a valid request), expect exactly one response with `status`, then EOF."""
    raw, closed = raw_request(srv.port, data + (FOLLOW_UP if follow_up else b""), timeout=10)
    assert closed, f"connection not closed after the error; got {raw[:200]!r}"
    r = parse_response(raw)
    assert r.status == status, f"expected {status}, got {r.status}: {raw[:300]!r}"
    assert b"smuggled-follow-up" not in raw
    if r.framing == "length":
        assert r.complete
        assert len(raw) == len(r.raw_head) + len(r.body), f"more than one response: {raw!r}"
    return r


def test_ok_baseline(srv):
    r = srv.get("/baseline")
    assert r.status == 200


# -- sizes --------------------------------------------------------------------------------

def test_request_line_too_long_414(srv):
    expect_error(srv, build_request("GET", "/" + "a" * 9000), 414)


def test_request_line_under_limit_ok(srv):
    path = "/" + "a" * 8000
    r = parse_response(raw_request(srv.port, build_request("GET", path, {"Connection": "close"}))[0])
    assert r.status == 200
    assert r.json()["environ"]["PATH_INFO"]["value"] == path


def test_header_section_too_large_431(srv):
    headers = [(f"X-Big-{i}", "v" * 1000) for i in range(70)]  # ~72 KB > 65536
    expect_error(srv, build_request("GET", "/", headers), 431)


def test_single_huge_header_431(srv):
    expect_error(srv, build_request("GET", "/", {"X-Huge": "h" * 70000}), 431)


def test_too_many_headers_431(srv):
    headers = [(f"X-N-{i}", "1") for i in range(150)]
    expect_error(srv, build_request("GET", "/", headers), 431)


def test_many_headers_under_limits_ok(srv):
    headers = [(f"X-N-{i}", "v" * 100) for i in range(60)] + [("Connection", "close")]
    r = parse_response(raw_request(srv.port, build_request("GET", "/", headers))[0])
    assert r.status == 200
    env = r.json()["environ"]
    assert env["HTTP_X_N_59"]["value"] == "v" * 100


def test_body_over_limit_413(srv):
    expect_error(srv, build_request("POST", "/", body=b"x" * (BODY_LIMIT + 1)), 413,
                 follow_up=False)


def test_body_over_limit_announced_only_413(srv):
    """A Content-Length over the limit is refused before the body is sent."""
    with Conn(srv.port) as c:
        c.send(build_request("POST", "/", {"Content-Length": str(10 * BODY_LIMIT)}))
        r = c.response(timeout=10)
        assert r.status == 413
        assert c.wait_closed(10)


def test_chunked_body_over_limit_413(srv):
    data = build_request("POST", "/", {"Transfer-Encoding": "chunked"}) + \
        chunked([b"y" * 600, b"y" * 600])
    expect_error(srv, data, 413, follow_up=False)


def test_body_at_limit_ok(srv):
    body = b"z" * BODY_LIMIT
    r = parse_response(raw_request(srv.port, build_request("POST", "/", {"Connection": "close"},
                                                           body))[0])
    assert r.status == 200 and r.json()["body_length"] == BODY_LIMIT


# -- malformed requests → 400 ---------------------------------------------------------------

MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "no-version": b"GET /\r\nHost: x\r\n\r\n",
    "bad-version": b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
    "extra-token": b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "space-in-target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "ctl-in-target": b"GET /a\x01b HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-method-char": b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "space-in-header-name": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n",
    "space-before-colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "empty-header-name": b"GET / HTTP/1.1\r\nHost: x\r\n: novalue\r\n\r\n",
    "no-colon": b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
    "nul-in-value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "cl-not-a-number": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "cl-negative": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    "cl-plus-sign": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    "bad-chunk-size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
    "chunk-without-crlf": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_400(srv, name):
    expect_error(srv, MALFORMED[name], 400)


def test_http11_without_host_400(srv):
    expect_error(srv, b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n", 400)


def test_http11_with_two_hosts_400(srv):
    expect_error(srv, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


# -- request smuggling ---------------------------------------------------------------------

SMUGGLED = b"GET /smuggled-inner HTTP/1.1\r\nHost: x\r\n\r\n"

SMUGGLING = {
    "cl-and-te": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (5 + len(SMUGGLED))) + SMUGGLED,
    "te-and-cl": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                  b"Content-Length: 4\r\n\r\n0\r\n\r\n") + SMUGGLED,
    "differing-cls": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
                     % len(SMUGGLED) + SMUGGLED,
    "cl-list-differing": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, %d\r\n\r\n"
                         % len(SMUGGLED) + SMUGGLED,
    "te-unknown": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + SMUGGLED,
    "te-gzip-chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
                       + SMUGGLED,
    "te-chunked-not-last": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
                           b"0\r\n\r\n" + SMUGGLED,
    "te-obfuscated": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"
                     + SMUGGLED,
}


# Well-formed codings Apus does not implement get 501; everything else here is malformed.
SMUGGLING_STATUS = {"te-unknown": 501, "te-gzip-chunked": 501, "te-obfuscated": 501}


@pytest.mark.parametrize("name", sorted(SMUGGLING))
def test_smuggling_refused(srv, name):
    raw, closed = raw_request(srv.port, SMUGGLING[name], timeout=10)
    assert closed
    assert b"smuggled-inner" not in raw, "the smuggled request was answered"
    r = parse_response(raw)
    assert r.status == SMUGGLING_STATUS.get(name, 400), raw[:300]
    if r.framing == "length":
        assert len(raw) == len(r.raw_head) + len(r.body), f"more than one response: {raw!r}"


def test_identical_duplicate_content_lengths_400(srv):
    """As Gunicorn: a second Content-Length field is refused even when it agrees."""
    expect_error(srv, b"POST /dup HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n"
                      b"\r\nhello", 400)


def test_http2_version_505(srv):
    expect_error(srv, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505)


# -- timeouts ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def short(apus_module):
    return apus_module("echo_env", "--header-timeout", "1", "--keep-alive", "1")


def test_incomplete_head_times_out(short):
    with Conn(short.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        assert c.wait_closed(15), "server kept waiting for a head that never completes"
        if c.extra:
            assert parse_response(c.extra).status == 408


def test_head_sent_byte_by_byte_is_cut_off(short):
    """The head timeout covers the whole head, not each byte (slowloris)."""
    data = build_request("GET", "/slowloris", {f"X-Pad-{i}": "p" for i in range(20)})
    s = socket.create_connection(("127.0.0.1", short.port), timeout=10)
    closed = False
    deadline = time.monotonic() + 20
    try:
        for b in data:
            if time.monotonic() > deadline:
                break
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            s.settimeout(0.2)
            try:
                got = s.recv(65536)
                if got == b"" or got.startswith(b"HTTP/1.1 408") or got.startswith(b"HTTP/1.0 408"):
                    closed = True
                    break
                if got:
                    pytest.fail(f"unexpected answer to an incomplete head: {got[:200]!r}")
            except socket.timeout:
                pass
            except OSError:
                closed = True
                break
    finally:
        s.close()
    assert closed, "a head trickling in byte by byte was never cut off"


def test_idle_keep_alive_connection_is_closed(short):
    with Conn(short.port) as c:
        r = c.request("GET", "/idle")
        assert r.status == 200
        assert c.wait_closed(15), "idle keep-alive connection never closed"
        assert c.extra == b""


def test_silent_connection_is_closed(short):
    with Conn(short.port) as c:
        assert c.wait_closed(15), "a connection that never sends anything was never closed"


def test_active_keep_alive_connection_is_not_closed(short):
    """Requests 0.3 s apart on a 1 s keep-alive timeout: each one resets the timer."""
    with Conn(short.port) as c:
        for i in range(8):
            r = c.request("GET", f"/active/{i}")
            assert r.status == 200
            time.sleep(0.3)
