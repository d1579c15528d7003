"""PEP 3333 conformance seen from inside the app: environ, wsgi.input, write(), exc_info,
close(), wsgi.file_wrapper, header validation, errors."""
import os
import socket
import struct
import time

import pytest

from helpers import (Conn, build_request, chunked, get, parse_response, raw_request,
                     wait_until)


@pytest.fixture(scope="module")
def echo(apus_module):
    return apus_module("echo_env", "--processes", "1", "--threads", "1")


def environ(srv, path="/", **kw):
    r = get(srv.port, path, **kw)
    assert r.status == 200, r
    return r.json()


# -- environ -------------------------------------------------------------------------------

REQUIRED_STR = ["REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME",
                "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR"]


def test_required_keys_and_types(echo):
    # Host carries the real port, as every client sends it: SERVER_NAME/SERVER_PORT then
    # agree whether the server takes them from the socket or from Host.
    env = environ(echo, "/keys?a=1", headers={"Host": f"127.0.0.1:{echo.port}"})["environ"]
    for key in REQUIRED_STR:
        assert env[key]["type"] == "str", (key, env.get(key))
    assert env["wsgi.version"] == {"value": [1, 0], "type": "tuple"}
    assert env["wsgi.url_scheme"] == {"value": "http", "type": "str"}
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert env[key]["type"] == "bool", key
    assert env["wsgi.run_once"]["value"] is False
    assert "wsgi.input" in env and "wsgi.errors" in env
    assert env["SERVER_PORT"]["value"] == str(echo.port)
    assert env["SERVER_PROTOCOL"]["value"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"]["value"] == "127.0.0.1"
    assert env["REQUEST_METHOD"]["value"] == "GET"
    assert env["SCRIPT_NAME"]["value"] == ""
    assert env["SERVER_NAME"]["value"]
    # every CGI-style key is a native str
    for k, v in env.items():
        if k.isupper():
            assert v["type"] == "str", (k, v)


def test_input_and_errors_have_their_methods(echo):
    out = environ(echo)
    assert all(out["input_has"].values()), out["input_has"]
    assert all(out["errors_has"].values()), out["errors_has"]


def test_single_thread_single_process_flags(echo):
    env = environ(echo)["environ"]
    assert env["wsgi.multithread"]["value"] is False
    assert env["wsgi.multiprocess"]["value"] is False


def test_multi_flags(apus):
    srv = apus("echo_env", "--processes", "2", "--threads", "3")
    env = environ(srv)["environ"]
    assert env["wsgi.multithread"]["value"] is True
    assert env["wsgi.multiprocess"]["value"] is True


def test_http_headers_become_http_keys(echo):
    req = build_request("POST", "/h", [("X-Custom-Header", "v1"), ("X-Multi", "first"),
                                       ("X-Multi", "second"), ("Content-Type", "text/x-test"),
                                       ("X-Latin", "caf\xe9"), ("Connection", "close")],
                        body=b"abc")
    out = parse_response(raw_request(echo.port, req)[0]).json()
    env = out["environ"]
    assert env["HTTP_X_CUSTOM_HEADER"]["value"] == "v1"
    multi = env["HTTP_X_MULTI"]["value"]
    assert "first" in multi and "second" in multi and multi.index("first") < multi.index("second")
    assert env["CONTENT_TYPE"]["value"] == "text/x-test"
    assert env["CONTENT_LENGTH"]["value"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["HTTP_X_LATIN"]["value"] == "caf\xe9"  # latin-1 decoded byte E9
    assert env["HTTP_HOST"]["value"] == "localhost"
    assert out["body_latin1"] == "abc"


def test_no_body_no_content_type(echo):
    env = environ(echo)["environ"]
    assert env.get("CONTENT_LENGTH", {"value": ""})["value"] in ("", "0")
    assert env.get("CONTENT_TYPE", {"value": ""})["value"] == ""


@pytest.mark.parametrize("target,path_info", [
    ("/plain/path", "/plain/path"),
    ("/a%20b", "/a b"),
    ("/a%2Fb/c", "/a/b/c"),
    ("/caf%E9", "/caf\xe9"),            # one byte E9 → U+00E9
    ("/%C3%A9", "/\xc3\xa9"),           # UTF-8 bytes stay two latin-1 code points
    ("/x%25y", "/x%y"),
    ("/", "/"),
])
def test_path_info_percent_decoded_latin1(echo, target, path_info):
    out = environ(echo, target)
    assert out["environ"]["PATH_INFO"]["value"] == path_info
    assert out["path_info_repr"] == repr(path_info)
    assert out["path_info_latin1_hex"] == path_info.encode("latin-1").hex()


@pytest.mark.parametrize("target,query", [
    ("/q?a=%20b&c=d+e", "a=%20b&c=d+e"),
    ("/q?x=%E9&y=%2F", "x=%E9&y=%2F"),
    ("/q", ""),
    ("/q?", ""),
    ("/q?only", "only"),
])
def test_query_string_raw(echo, target, query):
    env = environ(echo, target)["environ"]
    assert env["QUERY_STRING"]["value"] == query
    assert env["PATH_INFO"]["value"] == "/q"


def test_absolute_form_target(echo):
    req = b"GET http://example.test/abs/path?q=1 HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"
    env = parse_response(raw_request(echo.port, req)[0]).json()["environ"]
    assert env["PATH_INFO"]["value"] == "/abs/path"
    assert env["QUERY_STRING"]["value"] == "q=1"


def test_script_name_from_mount(apus):
    srv = apus("echo_env", "--mount", "/prefix", ready_path="/prefix/")
    env = environ(srv, "/prefix/foo/bar?z=1")["environ"]
    assert env["SCRIPT_NAME"]["value"] == "/prefix"
    assert env["PATH_INFO"]["value"] == "/foo/bar"
    assert env["QUERY_STRING"]["value"] == "z=1"
    env = environ(srv, "/prefix")["environ"]
    assert env["SCRIPT_NAME"]["value"] == "/prefix"
    assert env["PATH_INFO"]["value"] == ""


# -- wsgi.input ------------------------------------------------------------------------------

BODY = b"line one\nsecond, longer line\n\nlast line without newline"
LINES = [b"line one\n", b"second, longer line\n", b"\n", b"last line without newline"]


@pytest.fixture(scope="module")
def inp(apus_module):
    return apus_module("input_app", ready_path="/read")


def post(srv, path, body=BODY, use_chunked=False):
    if use_chunked:
        req = build_request("POST", path, {"Transfer-Encoding": "chunked", "Connection": "close"}) + \
            chunked([body[:7], body[7:30], body[30:]])
    else:
        req = build_request("POST", path, {"Connection": "close"}, body)
    r = parse_response(raw_request(srv.port, req)[0])
    assert r.status == 200, r
    out = r.json()
    assert out["end"] == "b''", out
    assert out["types"] == ["bytes"], out
    return [p.encode("latin-1") for p in out["pieces"]]


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_input_read(inp, use_chunked):
    assert post(inp, "/read", use_chunked=use_chunked) == [BODY]
    assert post(inp, "/read-big", use_chunked=use_chunked) == [BODY]


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_input_read_n(inp, use_chunked):
    pieces = post(inp, "/read-n?n=5", use_chunked=use_chunked)
    assert b"".join(pieces) == BODY
    assert all(0 < len(p) <= 5 for p in pieces)


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_input_readline(inp, use_chunked):
    assert post(inp, "/readline", use_chunked=use_chunked) == LINES
    assert post(inp, "/readlines", use_chunked=use_chunked) == LINES
    assert post(inp, "/iter", use_chunked=use_chunked) == LINES


@pytest.mark.parametrize("use_chunked", [False, True], ids=["length", "chunked"])
def test_input_readline_n(inp, use_chunked):
    pieces = post(inp, "/readline-n?n=6", use_chunked=use_chunked)
    assert b"".join(pieces) == BODY
    assert all(0 < len(p) <= 6 for p in pieces)
    # a piece never runs across a newline
    assert all(b"\n" not in p[:-1] for p in pieces)


def test_input_empty_body(inp):
    r = get(inp.port, "/read")
    out = r.json()
    assert out["pieces"] == [""] and out["end"] == "b''"


def test_input_never_reads_past_body(inp):
    """The body of the first request is followed at once by a second request on the same
    connection: read(1 MiB) must stop at the body's end."""
    data = build_request("POST", "/read-big", body=b"first-body") + \
        build_request("POST", "/read", body=b"second-body")
    with Conn(inp.port) as c:
        c.send(data)
        a, b = c.response().json(), c.response().json()
    assert a["pieces"] == ["first-body"]
    assert b["pieces"] == ["second-body"]


def test_unread_body_is_discarded_before_next_request(inp):
    data = build_request("POST", "/none", body=b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n") + \
        build_request("POST", "/read", body=b"next")
    with Conn(inp.port) as c:
        c.send(data)
        first = c.response()
        assert first.status == 200
        try:
            second = c.response(timeout=5)
        except Exception:
            return  # closing the connection instead is fine too
        assert second.status == 200 and second.json()["pieces"] == ["next"]


# -- write(), exc_info ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def writer(apus_module):
    return apus_module("writeapp")


def test_write_callable(writer):
    with Conn(writer.port) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"one;two;three;four" and r.complete
        r = c.request("GET", "/length")
        assert r.status == 200 and r.body == b"one;two;three;four"
        assert r.framing == "length" and r.header("content-length") == "18"


@pytest.fixture(scope="module")
def excinfo(apus_module):
    return apus_module("excinfo", ready_path="/none")


def test_exc_info_before_headers_sent_replaces_them(excinfo):
    r = get(excinfo.port, "/before")
    assert r.status == 500
    assert r.header("x-error-page") == "yes"
    assert r.header("x-first") is None
    assert r.body == b"custom error page"


def test_exc_info_after_headers_sent_aborts_response(excinfo):
    raw, closed = raw_request(excinfo.port, build_request("GET", "/after"), timeout=15)
    assert closed, "a response broken after its head must end with a closed connection"
    r = parse_response(raw)
    assert r.status == 200
    assert b"must never be sent" not in raw
    assert not r.complete, "the broken response looks complete to the client"
    assert r.body.startswith(b"first part;")
    wait_until(lambda: "apus-test-marker-after-headers" in excinfo.log(), 10,
               what="the traceback in the log")


def test_second_start_response_without_exc_info_raises(excinfo):
    r = get(excinfo.port, "/twice")
    assert r.status == 200 and r.body.endswith(b"raised: yes")


def test_start_response_called_while_the_headers_are_read(excinfo):
    # The head being validated is the one the server took: the server holds its own
    # references to it, whatever the app's code does meanwhile.
    for _ in range(3):
        r = get(excinfo.port, "/reenter")
        assert r.status == 200 and r.header("x-first") == "yes" and r.body == b"body"
    assert get(excinfo.port, "/twice").status == 200


# -- close() -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def closelog(tmp_path_factory):
    return tmp_path_factory.mktemp("close") / "close.log"


@pytest.fixture(scope="module")
def closer(apus_module, closelog):
    return apus_module("closetrack", "--threads", "2", env={"CLOSE_LOG": str(closelog)},
                       ready_path="/normal?tag=ready")


def closed_lines(path, tag):
    try:
        return [l.split() for l in path.read_text().splitlines() if l.split()[1] == tag]
    except FileNotFoundError:
        return []


def test_close_called_normal(closer, closelog):
    r = get(closer.port, "/normal?tag=n1")
    assert r.body == b"hello"
    wait_until(lambda: closed_lines(closelog, "n1"), 10, what="close() after a normal response")
    assert len(closed_lines(closelog, "n1")) == 1


def test_close_called_when_iteration_raises(closer, closelog):
    raw, _ = raw_request(closer.port, build_request("GET", "/raise?tag=r1"), timeout=10)
    wait_until(lambda: closed_lines(closelog, "r1"), 10, what="close() after a failing iterable")


def test_close_called_with_write_callable(closer, closelog):
    r = get(closer.port, "/writecb?tag=w1")
    assert r.body == b"written;iterated"
    wait_until(lambda: closed_lines(closelog, "w1"), 10, what="close() with write()")


def test_close_called_when_client_goes_away(closer, closelog):
    s = socket.create_connection(("127.0.0.1", closer.port), timeout=10)
    s.sendall(build_request("GET", "/slow?tag=gone&n=400"))
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536)
    assert got.startswith(b"HTTP/1.1 200")
    # reset the connection instead of a polite FIN
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
    lines = wait_until(lambda: closed_lines(closelog, "gone"), 15,
                       what="close() after the client disconnected")
    assert int(lines[0][2]) < 400, "the whole body was generated for a client that had left"
    assert get(closer.port, "/normal?tag=after-gone").status == 200


# -- wsgi.file_wrapper ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(apus_module):
    return apus_module("filewrap", ready_path="/bytesio")


def test_file_wrapper_serves_file(files, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    fn = tmp_path / "blob.bin"
    fn.write_bytes(data)
    with Conn(files.port, timeout=30) as c:
        r = c.request("GET", f"/file?path={fn}")
        assert r.status == 200 and r.framing == "length"
        assert r.body == data
        # a shorter Content-Length than the file: exactly that many bytes, connection in sync
        r = c.request("GET", f"/range?path={fn}&len=1000")
        assert r.body == data[:1000]
        r = c.request("HEAD", f"/file?path={fn}")
        assert r.status == 200 and r.header("content-length") == str(len(data))
        r = c.request("GET", "/bytesio")
        assert r.body == b"in-memory " * 1000


# -- header validation and errors ------------------------------------------------------------

@pytest.fixture(scope="module")
def badhdr(apus_module):
    return apus_module("badheader", ready_path="/ok")


@pytest.mark.parametrize("path", ["/cr", "/lf", "/crlf", "/nul", "/name", "/unicode", "/status"])
def test_bad_response_header_gives_500(badhdr, path):
    raw, _ = raw_request(badhdr.port, build_request("GET", path, {"Connection": "close"}))
    r = parse_response(raw)
    assert r.status == 500, raw[:300]
    assert b"X-Injected" not in raw and b"\x00" not in raw
    assert get(badhdr.port, "/ok").status == 200


def test_latin1_header_value_sent_as_latin1(badhdr):
    raw, _ = raw_request(badhdr.port, build_request("GET", "/latin1", {"Connection": "close"}))
    assert b"\r\nX-Latin: caf\xe9\r\n" in raw


@pytest.fixture(scope="module")
def crash(apus_module):
    return apus_module("crash")


@pytest.mark.parametrize("path,marker", [("/raise", "apus-test-marker-raised-in-app"),
                                         ("/raise-late", "apus-test-marker-raised-in-iterable")])
def test_exception_gives_500_and_traceback(crash, path, marker):
    r = get(crash.port, path)
    assert r.status == 500
    assert marker.encode() not in r.body, "the traceback must not be shown to the client"
    wait_until(lambda: marker in crash.log(), 10, what="the traceback in the log")
    log = crash.log()
    assert "Traceback (most recent call last)" in log
    assert "MarkerError" in log
    assert get(crash.port, "/").status == 200


# -- wsgiref.validate ------------------------------------------------------------------------

def test_validator_wrapped_app(apus):
    srv = apus("validated")
    with Conn(srv.port) as c:
        r = c.request("GET", "/v?x=1")
        assert r.status == 200 and r.body == b"validated:"
        r = c.request("POST", "/v", {"Content-Type": "text/plain"}, b"payload")
        assert r.status == 200 and r.body == b"validated:payload"
        c.send(build_request("POST", "/v", {"Transfer-Encoding": "chunked"}) + chunked([b"ch", b"unk"]))
        r = c.response()
        assert r.status == 200 and r.body == b"validated:chunk"
    wait_until(lambda: "validated app saw 7 body bytes" in srv.log(), 10, what="wsgi.errors output")
    time.sleep(0.5)  # let any late warning (iterator not closed) reach the log
    log = srv.log()
    assert "AssertionError" not in log, log[-3000:]
    assert "WSGIWarning" not in log, log[-3000:]
