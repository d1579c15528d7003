"""HTTP/1.1 message handling (RFC 9112) over raw sockets: persistence, pipelining,
chunked bodies both ways, HEAD, 100-continue, Date/Server, Content-Length mismatches."""
import email.utils
import time
from datetime import datetime, timezone

import pytest

from helpers import Conn, build_request, chunked, parse_response, raw_request


@pytest.fixture(scope="module")
def echo(apus_module):
    return apus_module("echo_env", "--threads", "2")


@pytest.fixture(scope="module")
def nolen(apus_module):
    return apus_module("nolength")


@pytest.fixture(scope="module")
def badlen(apus_module):
    return apus_module("badlength", ready_path="/ok")


@pytest.fixture(scope="module")
def inp(apus_module):
    return apus_module("input_app", ready_path="/read")


# what apps/nolength.py sends at "/", in several pieces
NOLENGTH_BODY = b"first,second,third," + b"x" * 10000 + b",last"


def env_of(resp):
    assert resp.status == 200, resp
    return resp.json()["environ"]


# -- persistence ----------------------------------------------------------------------------

def test_http11_keep_alive_by_default(echo):
    with Conn(echo.port) as c:
        for i in range(3):
            r = c.request("GET", f"/ka/{i}")
            assert r.status == 200 and r.framing == "length" and r.complete
            assert env_of(r)["PATH_INFO"]["value"] == f"/ka/{i}"
            assert r.version == "HTTP/1.1"


def test_http11_connection_close_is_honoured(echo):
    with Conn(echo.port) as c:
        r = c.request("GET", "/bye", headers={"Connection": "close"})
        assert r.status == 200 and r.complete
        assert c.wait_closed(10), "server kept the connection open after Connection: close"
        assert c.extra == b""


def test_http10_closes_by_default(echo):
    with Conn(echo.port) as c:
        r = c.request("GET", "/old", version="HTTP/1.0")
        assert r.status == 200 and r.complete
        assert env_of(r)["SERVER_PROTOCOL"]["value"] == "HTTP/1.0"
        assert c.wait_closed(10), "HTTP/1.0 without keep-alive must be closed by the server"


def test_http10_keep_alive_on_request(echo):
    with Conn(echo.port) as c:
        for i in range(2):
            r = c.request("GET", f"/old-ka/{i}", headers={"Connection": "keep-alive"},
                          version="HTTP/1.0")
            assert r.status == 200 and r.framing == "length" and r.complete
            assert "keep-alive" in (r.header("connection") or "").lower(), r.headers
            assert env_of(r)["PATH_INFO"]["value"] == f"/old-ka/{i}"


def test_pipelining_three_requests_in_one_send(echo):
    data = (build_request("GET", "/p1") +
            build_request("POST", "/p2", {"Content-Type": "text/plain"}, b"pipelined body") +
            build_request("GET", "/p3?x=1"))
    with Conn(echo.port) as c:
        c.send(data)
        rs = [c.response() for _ in range(3)]
    envs = [r.json() for r in rs]
    assert [e["environ"]["PATH_INFO"]["value"] for e in envs] == ["/p1", "/p2", "/p3"]
    assert [e["environ"]["REQUEST_METHOD"]["value"] for e in envs] == ["GET", "POST", "GET"]
    assert envs[1]["body_latin1"] == "pipelined body"
    assert envs[0]["body_length"] == 0 and envs[2]["body_length"] == 0
    assert envs[2]["environ"]["QUERY_STRING"]["value"] == "x=1"


# -- chunked request bodies ----------------------------------------------------------------

@pytest.mark.parametrize("pieces,extra", [
    ([b"hello ", b"chunked ", b"world"], b""),
    ([b"a" * 70000, b"b" * 3, b"c" * 20000], b""),
    ([b"with-ext"], b"ext"),
    ([b"with-trailer"], b"trailer"),
])
def test_chunked_request_body_is_dechunked(echo, pieces, extra):
    body = b"".join(pieces)
    if extra == b"ext":
        payload = b"%x;name=value\r\n" % len(body) + body + b"\r\n0;last\r\n\r\n"
    elif extra == b"trailer":
        payload = chunked(pieces, trailers=b"X-Trailer: yes\r\n")
    else:
        payload = chunked(pieces)
    req = build_request("POST", "/chunked", {"Transfer-Encoding": "chunked",
                                             "Content-Type": "application/octet-stream"})
    with Conn(echo.port) as c:
        c.send(req + payload)
        r = c.response()
        out = r.json()
        assert out["body_length"] == len(body)
        assert out["body_latin1"].encode("latin-1") == body
        env = out["environ"]
        assert env["CONTENT_LENGTH"]["value"] == str(len(body))
        assert env["wsgi.input_terminated"] == {"value": True, "type": "bool"}
        # the connection stays usable after a chunked body
        r2 = c.request("GET", "/after-chunked")
        assert env_of(r2)["PATH_INFO"]["value"] == "/after-chunked"


def test_chunked_request_body_sent_slowly(echo):
    """Chunks that arrive in separate packets, split inside size lines and data."""
    body = b"0123456789" * 50
    payload = chunked([body[:200], body[200:]])
    req = build_request("POST", "/slowchunks", {"Transfer-Encoding": "chunked"})
    with Conn(echo.port) as c:
        c.send(req)
        for i in range(0, len(payload), 97):
            c.send(payload[i:i + 97])
            time.sleep(0.01)
        out = c.response().json()
    assert out["body_latin1"].encode() == body
    assert out["environ"]["CONTENT_LENGTH"]["value"] == str(len(body))


# -- response framing -----------------------------------------------------------------------

def test_no_length_response_is_chunked_on_http11(nolen):
    with Conn(nolen.port) as c:
        r = c.request("GET", "/")
        assert r.status == 200
        assert r.framing == "chunked" and r.complete, r
        assert r.body == NOLENGTH_BODY
        assert r.header("content-length") is None
        assert 0 not in r.chunk_sizes
        r = c.request("GET", "/gen")
        assert r.framing == "chunked" and r.body == b"".join(b"gen%d;" % i for i in range(5))
        r = c.request("GET", "/empty")
        assert r.status == 200 and r.body == b"" and r.complete
        assert r.framing in ("chunked", "length")


def test_no_length_response_is_close_delimited_on_http10(nolen):
    data, closed = raw_request(nolen.port, build_request("GET", "/", version="HTTP/1.0"))
    assert closed
    r = parse_response(data)
    assert r.status == 200
    assert r.header("transfer-encoding") is None, "HTTP/1.0 clients do not know chunked"
    assert r.framing in ("close", "length")
    assert r.body == NOLENGTH_BODY


def test_head_has_headers_but_no_body(badlen, nolen):
    for srv, path in ((badlen, "/ok"), (nolen, "/")):
        with Conn(srv.port) as c:
            g = c.request("GET", path)
            h = c.request("HEAD", path)
            assert h.status == g.status == 200
            assert h.header("content-type") == g.header("content-type")
            if g.framing == "length":
                assert h.header("content-length") == g.header("content-length")
            # No body bytes after the HEAD response: the next response parses cleanly.
            g2 = c.request("GET", path)
            assert g2.status == 200 and g2.body == g.body


def test_head_raw_bytes_end_after_head(badlen):
    data, closed = raw_request(badlen.port, build_request("HEAD", "/ok", {"Connection": "close"}))
    assert closed
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep and rest == b"", data


def test_expect_100_continue_sent_before_the_app_runs(echo, tmp_path):
    """The worker answers `100 Continue` as soon as the head is in and reads the body itself;
    the app runs once the whole body is there (as Gunicorn and uWSGI do)."""
    mark = tmp_path / "app-started-reading"
    body = b"expected body"
    head = build_request("POST", f"/expect?mark={mark}",
                         {"Expect": "100-continue", "Content-Length": str(len(body))})
    with Conn(echo.port) as c:
        c.send(head)
        interim = c.response(skip_interim=False, timeout=10)
        assert interim.status == 100, interim
        assert interim.raw_head == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert not mark.exists(), "the app ran before its body was in"
        c.send(body)
        r = c.response()
        assert r.status == 200
        assert r.json()["body_latin1"] == "expected body"
        assert mark.exists()


def test_expect_100_continue_body_an_app_ignores_is_still_read(inp):
    """An app that never reads wsgi.input: its body was read before the app ran, so the
    connection stays in step and serves the next request."""
    head = build_request("POST", "/none", {"Expect": "100-continue", "Content-Length": "10"})
    with Conn(inp.port) as c:
        c.send(head)
        interim = c.response(skip_interim=False, timeout=10)
        assert interim.status == 100, interim
        c.send(b"0123456789")
        first = c.response(timeout=10)
        assert first.status == 200, first
        assert first.keep_alive_hint
        after = c.request("POST", "/read", body=b"next")
        assert after.status == 200 and after.json()["pieces"] == ["next"]


def test_expect_100_continue_on_http10_is_not_answered(echo):
    """Expect means nothing in HTTP/1.0: no interim response; the body is read as usual."""
    with Conn(echo.port) as c:
        c.send(build_request("POST", "/ten", {"Expect": "100-continue", "Content-Length": "3"}, version="HTTP/1.0"))
        assert c.read_some(0.5) == b""
        c.send(b"abc")
        r = c.response(skip_interim=False, timeout=10)
        assert r.status == 200 and r.json()["body_latin1"] == "abc"


def test_expect_100_continue_when_client_sends_body_anyway(echo):
    body = b"eager body"
    req = build_request("POST", "/eager", {"Expect": "100-continue"}, body)
    with Conn(echo.port) as c:
        c.send(req)
        r = c.response()
        assert r.status == 200 and r.json()["body_latin1"] == "eager body"
        r2 = c.request("GET", "/next")
        assert env_of(r2)["PATH_INFO"]["value"] == "/next"


def test_date_and_server_headers(echo):
    r = echo.get("/")
    date = r.header("date")
    assert date, r.headers
    parsed = email.utils.parsedate_to_datetime(date)
    assert date.endswith(" GMT")
    assert abs((parsed - datetime.now(timezone.utc)).total_seconds()) < 120
    server = r.header("server")
    assert server and "apus" in server.lower(), r.headers
    assert len(r.header_all("date")) == 1 and len(r.header_all("server")) == 1


def test_server_software_in_environ(echo):
    env = env_of(echo.get("/"))
    assert "apus" in env["SERVER_SOFTWARE"]["value"].lower()


# -- Content-Length mismatches from the app -------------------------------------------------

def test_app_body_longer_than_content_length_is_cut(badlen):
    data = build_request("GET", "/long") + build_request("GET", "/ok", {"Connection": "close"})
    raw, closed = raw_request(badlen.port, data)
    assert b"SURPLUS" not in raw
    r = parse_response(raw)
    assert r.status == 200 and r.body == b"12345" and r.complete
    # Either the connection was closed after the first response, or the second one follows
    # cleanly (which proves no surplus byte was sent in between).
    rest = raw[len(r.raw_head) + 5:]
    if rest:
        r2 = parse_response(rest)
        assert r2.status == 200 and r2.body == b"ok"


def test_app_body_shorter_than_content_length_closes(badlen):
    raw, closed = raw_request(badlen.port, build_request("GET", "/short"), timeout=15)
    assert closed, "connection left open with a body shorter than its Content-Length"
    r = parse_response(raw)
    assert r.status == 200
    assert r.header("content-length") == "100"
    assert r.body == b"0123456789" and not r.complete
