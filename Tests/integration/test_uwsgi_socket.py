"""The uwsgi protocol straight from a test client (no nginx): packets built byte by byte,
valid and malformed, against `apus --socket`. A malformed packet closes its connection and
leaves a log line; it never reaches the app and never stops the worker."""
import json
import socket
import struct

import pytest

from conftest import free_port


def packet(vars_, body=b"", modifier1=0):
    block = b""
    for k, v in vars_:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", modifier1, len(block), 0) + block + body


def exchange(port, data, timeout=10.0):
    """Sends raw bytes, returns everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            got += chunk
        return got


def nginx_like(method="GET", uri="/path/x?a=1", body=b"", extra=()):
    path, _, query = uri.partition("?")
    return [("QUERY_STRING", query), ("REQUEST_METHOD", method), ("CONTENT_TYPE", ""),
            ("CONTENT_LENGTH", str(len(body)) if body else ""), ("REQUEST_URI", uri),
            ("PATH_INFO", path), ("DOCUMENT_ROOT", "/srv"), ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REQUEST_SCHEME", "http"), ("REMOTE_ADDR", "198.51.100.9"), ("REMOTE_PORT", "50000"),
            ("SERVER_PORT", "443"), ("SERVER_NAME", "example.org"), ("HTTP_HOST", "example.org"),
            *extra]


@pytest.fixture(scope="module")
def server(apus_module, tmp_path_factory):
    calls = tmp_path_factory.mktemp("uwsgi") / "calls"
    calls.write_text("")
    uport = free_port()
    srv = apus_module("uwsgi_probe", "--socket", f"127.0.0.1:{uport}", env={"CALLS_FILE": str(calls)})
    srv.uport = uport
    srv.calls = lambda: calls.read_text().count("call")
    return srv


def parse(raw):
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, body


def test_a_packet_as_nginx_sends_it_is_answered_and_closed(server):
    status, headers, body = parse(exchange(server.uport, packet(nginx_like())))
    assert status.startswith("HTTP/1.1 200"), status
    assert int(headers["content-length"]) == len(body)
    env = json.loads(body)
    assert env["PATH_INFO"] == "/path/x" and env["QUERY_STRING"] == "a=1"
    assert env["REMOTE_ADDR"] == "198.51.100.9"      # nginx speaks for the client
    assert env["SERVER_NAME"] == "example.org" and env["SERVER_PORT"] == "443"
    assert env["wsgi.url_scheme"] == "http"


def test_https_var_gives_the_https_scheme(server):
    env = json.loads(parse(exchange(server.uport, packet(nginx_like(extra=[("HTTPS", "on")]))))[2])
    assert env["wsgi.url_scheme"] == "https"


def test_scheme_vars_are_read_without_case(server):
    # as the uwsgi parser reads them: HTTPS on or 1, a scheme var https, in any case
    for extra in ([("HTTPS", "On")], [("HTTPS", "1")], [("UWSGI_SCHEME", "HTTPS")]):
        env = json.loads(parse(exchange(server.uport, packet(nginx_like(extra=extra))))[2])
        assert env["wsgi.url_scheme"] == "https", extra
    env = json.loads(parse(exchange(server.uport, packet(nginx_like(extra=[("HTTPS", "off")]))))[2])
    assert env["wsgi.url_scheme"] == "http"


def test_body_by_content_length(server):
    body = bytes(range(256)) * 40
    env = json.loads(parse(exchange(server.uport, packet(nginx_like("POST", "/up", body), body)))[2])
    assert env["CONTENT_LENGTH"] == str(len(body))
    assert env["body"].encode("latin-1") == body


def test_body_arriving_in_pieces(server):
    body = b"x" * 200_000
    data = packet(nginx_like("PUT", "/big", body), body)
    with socket.create_connection(("127.0.0.1", server.uport), timeout=10) as s:
        for i in range(0, len(data), 7000):
            s.sendall(data[i:i + 7000])
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    env = json.loads(parse(got)[2])
    assert len(env["body"]) == len(body)


def test_latin1_var_values_are_kept(server):
    env = json.loads(parse(exchange(server.uport, packet(nginx_like(extra=[("HTTP_X_CUSTOM", b"caf\xe9")]))))[2])
    assert env["HTTP_X_CUSTOM"] == "caf\xe9"


MALFORMED = {
    "bad modifier1": lambda: packet(nginx_like(), modifier1=5),
    "var length past the block": lambda: struct.pack("<BHB", 0, 6, 0) + struct.pack("<H", 200) + b"ABCD",
    "value length past the block": lambda: struct.pack("<BHB", 0, 8, 0) + struct.pack("<H", 2) + b"AB" + struct.pack("<H", 90) + b"CD",
    "empty key": lambda: packet([("", "x")]),
    "bad CONTENT_LENGTH": lambda: packet(nginx_like(extra=[])[:3] + [("CONTENT_LENGTH", "12x")]),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_packets_close_the_connection_without_calling_the_app(server, name):
    before = server.calls()
    got = exchange(server.uport, MALFORMED[name]())
    assert not got.startswith(b"HTTP/1.1 2"), got[:200]
    assert server.calls() == before, "the app was called for a malformed packet"
    # and the worker is fine: the next packet is served
    status, _, _ = parse(exchange(server.uport, packet(nginx_like())))
    assert status.startswith("HTTP/1.1 200")
    assert "bad uwsgi packet" in server.log()


def test_a_truncated_packet_is_dropped_when_the_peer_leaves(server):
    before = server.calls()
    got = exchange(server.uport, packet(nginx_like())[:9])
    assert got == b""
    assert server.calls() == before


def test_http_and_uwsgi_listeners_together(server):
    assert server.get("/over-http").status == 200
    status, _, _ = parse(exchange(server.uport, packet(nginx_like())))
    assert status.startswith("HTTP/1.1 200")


def test_a_body_trickling_in_over_uwsgi_is_cut_at_the_body_timeout(apus, tmp_path):
    """The uwsgi path reads bodies with the same loop and deadline as HTTP: a front end that
    sends its body a byte at a time is closed at --body-timeout, without calling the app."""
    import time
    calls = tmp_path / "calls"
    calls.write_text("")
    uport = free_port()
    apus("uwsgi_probe", "--socket", f"127.0.0.1:{uport}", "--body-timeout", "2",
         "--header-timeout", "30", env={"CALLS_FILE": str(calls)})
    body = b"x" * 100
    data = packet(nginx_like("POST", "/slow", body), body)
    head = data[:-len(body)]
    calls_before = calls.read_text().count("call")  # the fixture's readiness GET
    started = time.monotonic()
    closed_at = None
    with socket.create_connection(("127.0.0.1", uport), timeout=10) as s:
        s.sendall(head)
        s.settimeout(0.5)
        for i in range(len(body)):
            try:
                s.sendall(body[i:i + 1])
                if s.recv(65536) == b"":
                    closed_at = time.monotonic() - started
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_at = time.monotonic() - started
                break
    assert closed_at is not None and 1.5 <= closed_at <= 6, closed_at
    assert calls.read_text().count("call") == calls_before
