"""The request rules of docs/http.md over a real socket: a #fragment never reaches PATH_INFO
or QUERY_STRING, single-value fields must not repeat, --limit-request-field-size (431),
forbidden trailer fields, Content-Length lists, 501 for transfer codings Apus does not
implement, and the authority of an absolute-form target standing for Host."""
import pytest

from helpers import Conn, build_request, chunked, parse_response, raw_request

# Sent right after each refused request: it must never be answered.
FOLLOW_UP = b"GET /follow-up-never-answered HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def echo(apus_module):
    return apus_module("echo_env")


@pytest.fixture(scope="module")
def small_fields(apus_module):
    return apus_module("echo_env", "--limit-request-field-size", "100")


@pytest.fixture(scope="module")
def unlimited_fields(apus_module):
    return apus_module("echo_env", "--limit-request-field-size", "0")


def environ_of(srv, data):
    """Send one request (which must close the connection) and return its environ."""
    raw, _ = raw_request(srv.port, data)
    r = parse_response(raw)
    assert r.status == 200, raw[:300]
    return {k: v.get("value") for k, v in r.json()["environ"].items()}


def refused(srv, data, status, follow_up=True):
    """Send `data` (+ a request that must stay unanswered): exactly one answer with `status`,
    then the connection closes."""
    raw, closed = raw_request(srv.port, data + (FOLLOW_UP if follow_up else b""), timeout=10)
    assert closed, f"connection not closed after the error; got {raw[:200]!r}"
    r = parse_response(raw)
    assert r.status == status, f"expected {status}, got {r.status}: {raw[:300]!r}"
    assert b"follow-up-never-answered" not in raw
    assert r.framing == "length" and r.complete
    assert len(raw) == len(r.raw_head) + len(r.body), f"more than one response: {raw!r}"
    return r


# -- 1. #fragment -----------------------------------------------------------------------

@pytest.mark.parametrize("target,path,query", [
    ("/p/a?x=1#frag?y=2", "/p/a", "x=1"),
    ("/p#frag", "/p", ""),
    ("/p#f?x=1", "/p", ""),
    ("/a%20b?#", "/a b", ""),
    ("/#/x", "/", ""),
])
def test_fragment_cut_from_path_and_query(echo, target, path, query):
    env = environ_of(echo, f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    assert env["PATH_INFO"] == path
    assert env["QUERY_STRING"] == query
    # the raw target keeps it, as Gunicorn's RAW_URI does
    assert env["RAW_URI"] == target
    assert env["REQUEST_URI"] == target


def test_fragment_in_absolute_form(echo):
    target = "http://a.example/p?q=1#frag"
    env = environ_of(echo, f"GET {target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n".encode())
    assert (env["PATH_INFO"], env["QUERY_STRING"], env["RAW_URI"]) == ("/p", "q=1", target)


# -- 2. single-value fields -------------------------------------------------------------

@pytest.mark.parametrize("name,first,second", [
    ("Content-Type", "text/plain", "application/json"),
    ("Content-Type", "text/plain", "text/plain"),
    ("Authorization", "Basic YTpi", "Basic Yzpk"),
    ("Proxy-Authorization", "Basic YTpi", "Basic YTpi"),
    ("Range", "bytes=0-1", "bytes=2-3"),
    ("If-Range", '"a"', '"b"'),
    ("If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", "Mon, 07 Nov 1994 08:49:37 GMT"),
    ("If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 GMT"),
    ("Content-Range", "bytes 0-1/2", "bytes 0-1/3"),
])
def test_repeated_single_value_field_400(echo, name, first, second):
    data = (f"POST / HTTP/1.1\r\nHost: h\r\n{name}: {first}\r\nX-Between: 1\r\n"
            f"{name.lower()}: {second}\r\nContent-Length: 0\r\n\r\n").encode()
    refused(echo, data, 400)


def test_repeatable_fields_still_joined(echo):
    data = (b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: a\r\nUser-Agent: b\r\nAccept: x\r\nAccept: y\r\n"
            b"Cookie: c=1\r\nCookie: d=2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
    env = environ_of(echo, data)
    assert env["HTTP_USER_AGENT"] == "a, b"
    assert env["HTTP_ACCEPT"] == "x, y"
    assert env["HTTP_COOKIE"] == "c=1; d=2"
    assert env["CONTENT_TYPE"] == "text/plain"


# -- 3. --limit-request-field-size ------------------------------------------------------

def header_line(n):
    """A header line of exactly n bytes, CRLF not counted."""
    return b"X-Pad: " + b"v" * (n - 7)


def test_default_field_size_limit_431(echo):
    # 8190 with the CRLF, where Gunicorn has it
    ok = b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(8188) + b"\r\nConnection: close\r\n\r\n"
    assert environ_of(echo, ok)["HTTP_X_PAD"] == "v" * 8181
    refused(echo, b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(8189) + b"\r\n\r\n", 431)


def test_field_size_option_431(small_fields):
    ok = b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(98) + b"\r\nConnection: close\r\n\r\n"
    assert environ_of(small_fields, ok)["HTTP_X_PAD"] == "v" * 91
    refused(small_fields, b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(99) + b"\r\n\r\n", 431)
    # a long name counts as much as a long value
    refused(small_fields, b"GET / HTTP/1.1\r\nHost: h\r\nX-" + b"n" * 120 + b": v\r\n\r\n", 431)


def test_field_size_checked_before_the_line_ends(small_fields):
    """An overlong line is refused as soon as it is overlong, not when the head completes."""
    with Conn(small_fields.port) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"v" * 200)
        r = c.response(timeout=5)
        assert r.status == 431
        assert c.wait_closed(10)


def test_field_size_zero_means_head_limit_only(unlimited_fields):
    ok = b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(20000) + b"\r\nConnection: close\r\n\r\n"
    assert len(environ_of(unlimited_fields, ok)["HTTP_X_PAD"]) == 20000 - 7
    refused(unlimited_fields, b"GET / HTTP/1.1\r\nHost: h\r\n" + header_line(70000) + b"\r\n\r\n", 431)


# -- 4. trailer fields ------------------------------------------------------------------

FORBIDDEN_TRAILERS = ["Content-Length", "Transfer-Encoding", "Host", "TE", "Content-Type",
                      "Authorization", "Cookie", "Expect", "Trailer", "Range", "Cache-Control",
                      "If-None-Match", "Content-Encoding", "Proxy-Authorization", "Max-Forwards"]


@pytest.mark.parametrize("name", FORBIDDEN_TRAILERS)
def test_forbidden_trailer_400(echo, name):
    data = (build_request("POST", "/", {"Transfer-Encoding": "chunked"})
            + chunked([b"hello"], trailers=f"X-Fine: 1\r\n{name}: 5\r\n".encode()))
    refused(echo, data, 400)


def test_other_trailers_discarded(echo):
    data = (build_request("POST", "/t", {"Transfer-Encoding": "chunked", "Connection": "close"})
            + chunked([b"hel", b"lo"], trailers=b"Server-Timing: db;dur=5\r\nX-Content-Length: 9\r\n"))
    raw, _ = raw_request(echo.port, data)
    r = parse_response(raw)
    assert r.status == 200, raw[:300]
    out = r.json()
    assert out["body_latin1"] == "hello"
    assert "HTTP_SERVER_TIMING" not in out["environ"]
    assert "HTTP_X_CONTENT_LENGTH" not in out["environ"]


@pytest.mark.parametrize("trailer", [b"NoColon\r\n", b"X-A : 1\r\n", b"X-A: 1\r\n folded\r\n"])
def test_malformed_trailer_400(echo, trailer):
    data = build_request("POST", "/", {"Transfer-Encoding": "chunked"}) + chunked([b"x"], trailers=trailer)
    refused(echo, data, 400)


# -- 5. Content-Length ------------------------------------------------------------------

@pytest.mark.parametrize("headers", [
    b"Content-Length: 5, 5\r\n",
    b"Content-Length: 5,5\r\n",
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
])
def test_content_length_list_or_repeat_400(echo, headers):
    refused(echo, b"POST / HTTP/1.1\r\nHost: h\r\n" + headers + b"\r\nhello", 400)


def test_single_content_length_ok(echo):
    env = environ_of(echo, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert env["CONTENT_LENGTH"] == "5"


# -- 6. transfer codings ----------------------------------------------------------------

@pytest.mark.parametrize("value", ["gzip", "deflate", "compress", "identity", "x-custom", "GZIP",
                                   "gzip, chunked", "identity, chunked"])
def test_unimplemented_transfer_coding_501(echo, value):
    data = f"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {value}\r\n\r\n0\r\n\r\n".encode()
    r = refused(echo, data, 501)
    assert r.reason == "Not Implemented"


def test_unimplemented_coding_over_two_lines_501(echo):
    data = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    refused(echo, data, 501)


@pytest.mark.parametrize("lines", [
    b"Transfer-Encoding: chunked,\r\n",
    b"Transfer-Encoding: , chunked\r\n",
    b"Transfer-Encoding: chunked, gzip\r\n",
    b"Transfer-Encoding: chunked, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked, x\r\n",
    b"Transfer-Encoding: chunked;a=b\r\n",
    b"Transfer-Encoding: \"chunked\"\r\n",
    b"Transfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n",
])
def test_malformed_transfer_encoding_400(echo, lines):
    refused(echo, b"POST / HTTP/1.1\r\nHost: h\r\n" + lines + b"\r\n0\r\n\r\n", 400)


def test_gzip_on_http10_400(echo):
    refused(echo, b"POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", 400)


# -- 7. absolute-form target ------------------------------------------------------------

@pytest.mark.parametrize("target,host,name,port", [
    ("http://a.example/x", "a.example", "a.example", "80"),
    ("http://a.example:8081/x?q", "a.example:8081", "a.example", "8081"),
    ("http://user:pw@a.example:9/x", "a.example:9", "a.example", "9"),
    ("http://[::1]:8443/", "[::1]:8443", "[::1]", "8443"),
    ("http://a.example", "a.example", "a.example", "80"),
])
def test_absolute_form_authority_is_the_host(echo, target, host, name, port):
    env = environ_of(echo, f"GET {target} HTTP/1.1\r\nHost: other.example:1234\r\nConnection: close\r\n\r\n".encode())
    assert env["HTTP_HOST"] == host
    assert env["SERVER_NAME"] == name
    assert env["SERVER_PORT"] == port


def test_absolute_form_on_http10_without_host(echo):
    env = environ_of(echo, b"GET http://b.example:81/y HTTP/1.0\r\n\r\n")
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("b.example:81", "b.example", "81")
    assert env["PATH_INFO"] == "/y"


def test_origin_form_keeps_host_header(echo):
    env = environ_of(echo, b"GET /x HTTP/1.1\r\nHost: h.example:82\r\nConnection: close\r\n\r\n")
    assert (env["HTTP_HOST"], env["SERVER_NAME"], env["SERVER_PORT"]) == ("h.example:82", "h.example", "82")


@pytest.mark.parametrize("target", ["http://@/x", "http://:80/x", "http://u@:80/"])
def test_absolute_form_without_host_400(echo, target):
    refused(echo, f"GET {target} HTTP/1.1\r\nHost: h\r\n\r\n".encode(), 400)
