"""Proxy information straight to Apus (no nginx): X-Forwarded-For/-Proto/-Host/-Port and
RFC 7239 Forwarded, trusted only from --forwarded-allow-ips (default 127.0.0.1,::1), and
the PROXY protocol (v1 text, v2 binary) on a --proxy-protocol listener.

The test client connects from 127.0.0.1, so with the default it is a trusted proxy; with
`--forwarded-allow-ips 10.0.0.1` it is not. apps/echo_env.py reports the environ.
"""
import socket
import struct
import time

import pytest

from helpers import Conn, build_request, connect, parse_response, raw_request

CLIENT = "203.0.113.7"  # what a trusted proxy says the client is


@pytest.fixture(scope="module")
def trusting(apus_module):
    return apus_module("echo_env")  # default --forwarded-allow-ips: 127.0.0.1,::1


@pytest.fixture(scope="module")
def untrusting(apus_module):
    return apus_module("echo_env", "--forwarded-allow-ips", "10.0.0.1")


@pytest.fixture(scope="module")
def cidr(apus_module):
    return apus_module("echo_env", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8")


def environ(port, path="/", headers=None, host=None):
    extra = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    h = [("Host", host or (f"127.0.0.1:{port}" if isinstance(port, int) else "localhost")),
         ("Connection", "close")] + extra
    data, _ = raw_request(port, build_request("GET", path, h), timeout=10)
    r = parse_response(data)
    assert r.status == 200, r
    return {k: v.get("value") for k, v in r.json()["environ"].items()}


# -- X-Forwarded-* from a trusted peer ---------------------------------------------------

def test_x_forwarded_headers_applied_from_trusted_peer(trusting):
    env = environ(trusting.port, "/xf", {"X-Forwarded-For": CLIENT,
                                         "X-Forwarded-Proto": "https",
                                         "X-Forwarded-Host": "example.org",
                                         "X-Forwarded-Port": "8443"})
    assert env["REMOTE_ADDR"] == CLIENT
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.org"
    assert env["SERVER_PORT"] == "8443"


def test_without_forwarding_headers_the_peer_is_used(trusting):
    env = environ(trusting.port, "/plain")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["SERVER_PORT"] == str(trusting.port)


def test_right_most_untrusted_hop_is_the_client(trusting):
    # 127.0.0.1 (trusted) is skipped; 203.0.113.5 is the first hop we cannot vouch for,
    # so what it claims (198.51.100.1) is not believed
    env = environ(trusting.port, "/chain",
                  {"X-Forwarded-For": "198.51.100.1, 203.0.113.5, 127.0.0.1"})
    assert env["REMOTE_ADDR"] == "203.0.113.5"


def test_trusted_cidr_hops_are_skipped(cidr):
    env = environ(cidr.port, "/cidr",
                  {"X-Forwarded-For": "198.51.100.1, 203.0.113.5, 10.1.2.3, 10.200.0.9"})
    assert env["REMOTE_ADDR"] == "203.0.113.5"


def test_repeated_x_forwarded_for_lines_are_one_list(trusting):
    env = environ(trusting.port, "/twice", [("X-Forwarded-For", "198.51.100.1"),
                                            ("X-Forwarded-For", "203.0.113.5")])
    assert env["REMOTE_ADDR"] == "203.0.113.5"


# -- RFC 7239 Forwarded ------------------------------------------------------------------

def test_forwarded_header_applied(trusting):
    env = environ(trusting.port, "/fwd",
                  {"Forwarded": "for=198.51.100.17;proto=https;host=example.com"})
    assert env["REMOTE_ADDR"] == "198.51.100.17"
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_HOST"] == "example.com"


def test_forwarded_ipv6_with_port(trusting):
    env = environ(trusting.port, "/v6", {"Forwarded": 'for="[2001:db8::1]:4711";proto=https'})
    assert env["REMOTE_ADDR"] == "2001:db8::1"
    assert env["wsgi.url_scheme"] == "https"


def test_forwarded_several_elements_right_most_untrusted(trusting):
    env = environ(trusting.port, "/fwd-chain",
                  {"Forwarded": 'for=198.51.100.1, for="203.0.113.5", for=127.0.0.1'})
    assert env["REMOTE_ADDR"] == "203.0.113.5"


@pytest.mark.parametrize("ident", ["_hidden", "_SEVKISEK", "unknown"])
def test_forwarded_obfuscated_identifier(trusting, ident):
    # RFC 7239 section 6: an obfuscated or "unknown" node is a hop that cannot be
    # vouched for. The walk stops there: the address claimed before it is never used,
    # and the request is served normally.
    env = environ(trusting.port, "/obf", {"Forwarded": f"for=198.51.100.1, for={ident}"})
    assert env["REMOTE_ADDR"] != "198.51.100.1"
    assert env["REMOTE_ADDR"] in (ident, "127.0.0.1")
    assert env["PATH_INFO"] == "/obf"


# -- untrusted peer ----------------------------------------------------------------------

def test_headers_ignored_from_untrusted_peer(untrusting):
    port = untrusting.port
    env = environ(port, "/untrusted", {"X-Forwarded-For": CLIENT,
                                       "X-Forwarded-Proto": "https",
                                       "X-Forwarded-Host": "example.org",
                                       "X-Forwarded-Port": "8443",
                                       "Forwarded": "for=198.51.100.17;proto=https"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_HOST"] == f"127.0.0.1:{port}"
    assert env["SERVER_PORT"] == str(port)
    # still visible to the application as plain headers
    assert env["HTTP_X_FORWARDED_FOR"] == CLIENT
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_FORWARDED"] == "for=198.51.100.17;proto=https"


def test_unix_socket_peers_trusted_only_with_unix(apus, tmp_path):
    plain = tmp_path / "plain.sock"
    trusted = tmp_path / "trusted.sock"
    apus("echo_env", "--http", f"unix:{plain}")
    apus("echo_env", "--http", f"unix:{trusted}", "--forwarded-allow-ips", "127.0.0.1,unix")
    env = environ(f"unix:{plain}", "/u", {"X-Forwarded-For": CLIENT})
    assert env["REMOTE_ADDR"] != CLIENT
    env = environ(f"unix:{trusted}", "/u", {"X-Forwarded-For": CLIENT,
                                           "X-Forwarded-Proto": "https"})
    assert env["REMOTE_ADDR"] == CLIENT
    assert env["wsgi.url_scheme"] == "https"


# -- header names with underscores -------------------------------------------------------

def test_underscore_header_cannot_pose_as_x_forwarded_for(trusting):
    env = environ(trusting.port, "/us", {"X_Forwarded_For": "6.6.6.6"})
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert "HTTP_X_FORWARDED_FOR" not in env
    assert all(v != "6.6.6.6" for v in env.values())


def test_underscore_header_dropped_next_to_the_real_one(trusting):
    env = environ(trusting.port, "/us2", [("X-Forwarded-For", "203.0.113.5"),
                                          ("X_Forwarded_For", "6.6.6.6"),
                                          ("X_Forwarded_Proto", "https")])
    assert env["REMOTE_ADDR"] == "203.0.113.5"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.5"
    assert env["wsgi.url_scheme"] == "http"
    assert "HTTP_X_FORWARDED_PROTO" not in env


# -- PROXY protocol ----------------------------------------------------------------------

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def proxy_v1(src, dst, sport, dport):
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def proxy_v2(src=None, dst=None, sport=0, dport=0, command=0x1, tlvs=b""):
    """command 0x1 = PROXY, 0x0 = LOCAL (then no addresses)."""
    if command == 0x0:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    if ":" in src:
        fam = 0x21  # AF_INET6, STREAM
        addrs = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    else:
        fam = 0x11  # AF_INET, STREAM
        addrs = socket.inet_aton(src) + socket.inet_aton(dst)
    payload = addrs + struct.pack("!HH", sport, dport) + tlvs
    return V2_SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(payload)) + payload


def get_after(port, prefix, path="/", timeout=10):
    """GET sent after `prefix` on a fresh connection; (Response, our local port)."""
    s = connect(port, timeout=timeout)
    try:
        local_port = s.getsockname()[1]
        s.sendall(prefix + build_request("GET", path, {"Host": f"127.0.0.1:{port}",
                                                       "Connection": "close"}))
        data = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    return parse_response(bytes(data)), local_port


def env_after(port, prefix, path="/"):
    r, local_port = get_after(port, prefix, path)
    assert r.status == 200, r
    return {k: v.get("value") for k, v in r.json()["environ"].items()}, local_port


@pytest.fixture(scope="module")
def pp(apus_module):
    srv = apus_module("echo_env", "--proxy-protocol", wait=False)
    deadline = time.monotonic() + 30
    last = None
    while time.monotonic() < deadline:
        if srv.proc.poll() is not None:
            pytest.fail(f"apus exited with {srv.proc.returncode}\n{srv.describe()}")
        try:
            r, _ = get_after(srv.port, proxy_v1("192.0.2.1", "192.0.2.2", 1, 2), "/ready")
            if r.status == 200:
                return srv
            last = r
        except (OSError, ValueError) as e:
            last = e
        time.sleep(0.1)
    pytest.fail(f"apus --proxy-protocol never answered ({last!r})\n{srv.describe()}")


def test_proxy_v1_tcp4(pp):
    env, _ = env_after(pp.port, proxy_v1("192.0.2.10", "192.0.2.20", 56324, 443), "/v1")
    assert env["REMOTE_ADDR"] == "192.0.2.10"
    assert env["REMOTE_PORT"] == "56324"
    assert env["PATH_INFO"] == "/v1"


def test_proxy_v1_tcp6(pp):
    env, _ = env_after(pp.port, proxy_v1("2001:db8::7", "2001:db8::1", 40000, 443), "/v1-6")
    assert env["REMOTE_ADDR"] == "2001:db8::7"
    assert env["REMOTE_PORT"] == "40000"


def test_proxy_v1_unknown_keeps_the_real_peer(pp):
    # the spec's "PROXY UNKNOWN": accept the connection, use the real endpoints
    env, local_port = env_after(pp.port, b"PROXY UNKNOWN\r\n", "/v1-unknown")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)


def test_proxy_v2_tcp4(pp):
    env, _ = env_after(pp.port, proxy_v2("198.51.100.22", "198.51.100.1", 51000, 443), "/v2")
    assert env["REMOTE_ADDR"] == "198.51.100.22"
    assert env["REMOTE_PORT"] == "51000"
    assert env["PATH_INFO"] == "/v2"


def test_proxy_v2_tcp6_with_tlvs(pp):
    # TLVs (here PP2_TYPE_AUTHORITY and PP2_TYPE_NOOP) are part of the header: skipped
    tlvs = b"\x02" + struct.pack("!H", 11) + b"example.com" + b"\x04" + struct.pack("!H", 3) + b"\0\0\0"
    env, _ = env_after(pp.port, proxy_v2("2001:db8::22", "2001:db8::1", 52000, 443, tlvs=tlvs),
                       "/v2-6")
    assert env["REMOTE_ADDR"] == "2001:db8::22"
    assert env["REMOTE_PORT"] == "52000"


def test_proxy_v2_local_keeps_the_real_peer(pp):
    # LOCAL: the proxy's own connection (health checks); the real endpoints are used
    env, local_port = env_after(pp.port, proxy_v2(command=0x0), "/v2-local")
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["REMOTE_PORT"] == str(local_port)


def test_proxy_header_holds_for_every_request_of_the_connection(pp):
    with Conn(pp.port) as c:
        c.send(proxy_v1("192.0.2.99", "192.0.2.20", 33333, 443))
        for i in range(3):
            r = c.request("GET", f"/ka/{i}", {"Host": f"127.0.0.1:{pp.port}"})
            assert r.status == 200, r
            env = r.json()["environ"]
            assert env["REMOTE_ADDR"]["value"] == "192.0.2.99"
            assert env["REMOTE_PORT"]["value"] == "33333"
            assert env["PATH_INFO"]["value"] == f"/ka/{i}"


@pytest.mark.parametrize("prefix", [
    b"",                                                   # plain HTTP, no PROXY header
    b"PROXY TCP4 999.0.0.1 192.0.2.20 1 2\r\n",           # bad address
    b"PROXY TCP4 192.0.2.10 192.0.2.20 56324\r\n",        # a field missing
    V2_SIG + b"\x21\x11\x00\x0c" + b"\x00" * 5,           # v2 length says 12, 5 follow
], ids=["plain", "v1-bad-address", "v1-short", "v2-short-addresses"])
def test_connection_without_valid_proxy_header_is_refused(pp, prefix):
    data, closed = raw_request(pp.port, prefix + build_request(
        "GET", "/nope", {"Host": f"127.0.0.1:{pp.port}"}), timeout=10)
    assert closed, "server kept a connection without a valid PROXY header open"
    assert not data.startswith(b"HTTP/1.1 2") and not data.startswith(b"HTTP/1.0 2"), data[:200]
