"""Apus behind nginx, as uWSGI users deploy it: nginx's own configs from examples/nginx/,
unchanged, in front of Apus running the Django echo project (apps/fronted.py).

Three fronts, every test runs through each (unless it is about one front only):
  uwsgi-unix       uwsgi_pass to `apus --socket /path/apus.sock --chmod-socket 666`
  uwsgi-tcp        uwsgi_pass to `apus --socket 127.0.0.1:PORT`
  proxy-keepalive  proxy_pass (HTTP/1.1, upstream keepalive 16) to `apus --http 127.0.0.1:PORT`
The client always talks HTTP to nginx (our own instance, see nginx_helpers.py) on
127.0.0.1 and sends Host: nginx.test:<nginx port>.

With NGINX_TEST_UWSGI=/path/to/uwsgi, uWSGI runs instead of Apus (same binds, same app):
that checks the configs and these tests against the server Apus replaces.
"""
import stat

import pytest

from helpers import Conn, build_request, chunked, parse_response, raw_request
from nginx_helpers import DJECHO, UWSGI_STANDIN, Nginx, UwsgiBackend, free_port, require_nginx

FRONTS = ["uwsgi-unix", "uwsgi-tcp", "proxy-keepalive"]
SERVER_NAME = "nginx.test"
PATTERN = b"0123456789abcdef"  # what apps/fronted.py sends at /_big, cycled


def forwarding_applies(front):
    """False only for uWSGI standing in behind proxy_pass: uWSGI's HTTP modes ignore
    X-Forwarded-* (SERVER_PORT stays its own, SERVER_NAME is the hostname) and its
    --http11-socket reports REMOTE_ADDR 0.0.0.0. Apus applies them from 127.0.0.1."""
    return not (UWSGI_STANDIN and front.kind == "proxy-keepalive")


def big_body(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


class Front:
    """One nginx + one backend. The client side speaks raw HTTP/1.1 to nginx."""

    def __init__(self, kind, nginx, backend, socket_path=None):
        self.kind = kind
        self.nginx = nginx
        self.backend = backend
        self.socket_path = socket_path

    @property
    def port(self):
        return self.nginx.port

    @property
    def host(self):
        return f"{SERVER_NAME}:{self.port}"

    def request(self, method="GET", path="/", headers=None, body=b"", timeout=30.0):
        h = {"Host": self.host, "Connection": "close"}
        h.update(headers or {})
        data, _ = raw_request(self.port, build_request(method, path, h, body), timeout=timeout)
        return parse_response(data, method)

    def echo(self, method="GET", path="/", headers=None, body=b""):
        """The Django echo view's JSON for one request through nginx."""
        r = self.request(method, path, headers, body)
        assert r.status == 200 and r.complete, (r, self.explain())
        return r.json()

    def explain(self):
        return (f"front {self.kind}\n{self.nginx.describe(2000)}\n"
                f"--- backend ---\n{self.backend.describe(2000)}")


def _start_front(kind, apus_module, workdir):
    sock = workdir / "apus.sock"
    shape = ["--processes", "2", "--threads", "2"]
    if kind == "uwsgi-unix":
        apus_args = ["--socket", str(sock), "--chmod-socket", "666"]
        uwsgi_kw = {"socket_bind": str(sock), "chmod": "666"}
    elif kind == "uwsgi-tcp":
        up = free_port()
        apus_args = ["--socket", f"127.0.0.1:{up}"]
        uwsgi_kw = {"socket_bind": f"127.0.0.1:{up}"}
    else:
        apus_args = []
        uwsgi_kw = {"http": "http11"}  # uWSGI's HTTP mode that keeps connections alive

    if UWSGI_STANDIN:
        backend = UwsgiBackend(UWSGI_STANDIN, "fronted", workdir, pythonpath=[DJECHO],
                               **uwsgi_kw).start()
    else:
        # apus also gets its usual --http bind (used for readiness; the upstream of the
        # proxy front).
        backend = apus_module("fronted", "--pythonpath", str(DJECHO), *shape, *apus_args)

    if kind == "uwsgi-unix":
        values = {"SOCKET": sock}
    elif kind == "uwsgi-tcp":
        values = {"UPSTREAM": uwsgi_kw["socket_bind"]}
    else:
        values = {"UPSTREAM": f"127.0.0.1:{backend.port}"}
    values["SERVER_NAME"] = SERVER_NAME
    nginx = Nginx(f"{kind}.conf", workdir / "nginx", values).start()
    return Front(kind, nginx, backend, sock if kind == "uwsgi-unix" else None)


@pytest.fixture(scope="module")
def fronts(apus_module, tmp_path_factory):
    """Starts each front on first use; all of them are stopped at the end of the module."""
    started = {}

    failed = {}

    def get(kind):
        require_nginx()
        if kind in failed:  # do not wait for a broken front once per test
            pytest.fail(f"front {kind} did not start (see its first test):\n{failed[kind]}")
        if kind not in started:
            try:
                started[kind] = _start_front(kind, apus_module, tmp_path_factory.mktemp(kind))
            except BaseException as e:
                failed[kind] = str(e)[:3000]
                raise
        return started[kind]

    yield get
    for f in started.values():
        f.nginx.stop()
        f.backend.stop()


@pytest.fixture(params=FRONTS)
def front(request, fronts):
    return fronts(request.param)


@pytest.fixture
def proxy_front(fronts):
    return fronts("proxy-keepalive")


@pytest.fixture
def unix_front(fronts):
    return fronts("uwsgi-unix")


# -- what the application sees ----------------------------------------------------------

def test_client_address_server_name_and_port(front):
    j = front.echo("GET", "/where")
    if forwarding_applies(front):
        assert j["remote_addr"] == "127.0.0.1"
        assert j["server_name"] == SERVER_NAME
        assert j["server_port"] == str(front.port)  # nginx's port, not the backend's
    assert j["scheme"] == "http"
    assert j["method"] == "GET" and j["path"] == "/where" and j["path_info"] == "/where"
    assert j["script_name"] == ""


def test_emulated_tls_location_gives_https(front):
    # /tls/ passes HTTPS=on (uwsgi) or X-Forwarded-Proto: https (proxy), as a TLS
    # listener would; plain / right before and after stays http.
    assert front.echo("GET", "/before")["scheme"] == "http"
    j = front.echo("GET", "/tls/secure?x=1")
    assert j["scheme"] == "https"
    assert j["path"] == "/tls/secure" and j["query"] == {"x": ["1"]}
    assert front.echo("GET", "/after")["scheme"] == "http"


def test_percent_encoded_path_is_decoded_once(front):
    j = front.echo("GET", "/a%20b/%C3%A9")
    assert j["path_info"] == "/a b/\u00e9"
    assert j["path"] == "/a b/\u00e9"


def test_query_string_passes_verbatim(front):
    j = front.echo("GET", "/q?a=1&b=two%20words&b=3&empty=&sym=%26%3D")
    assert j["query"] == {"a": ["1"], "b": ["two words", "3"], "empty": [""], "sym": ["&="]}


def test_client_x_forwarded_for_does_not_change_remote_addr(front):
    # The client is the edge here: whatever it claims in X-Forwarded-For must not become
    # REMOTE_ADDR (the proxy config overwrites the header; over uwsgi, nginx states
    # REMOTE_ADDR itself).
    j = front.echo("GET", "/spoof", headers={"X-Forwarded-For": "203.0.113.9"})
    assert j["remote_addr"] != "203.0.113.9"
    if forwarding_applies(front):
        assert j["remote_addr"] == "127.0.0.1"


# -- bodies ------------------------------------------------------------------------------

def test_post_body_with_content_length(front):
    body = bytes(range(256)) * 400  # 100 KiB, every byte value
    j = front.echo("POST", "/upload", {"Content-Type": "application/octet-stream"}, body)
    assert j["method"] == "POST"
    assert j["body_length"] == len(body)
    assert j["content_length"] == str(len(body))


def test_post_body_sent_chunked_by_the_client(front):
    pieces = [b"a" * 1000, b"b" * 70000, b"c" * 3, b"d" * 200000]
    total = sum(map(len, pieces))
    j = front.echo("POST", "/chunked",
                   {"Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"},
                   chunked(pieces))
    assert j["body_length"] == total
    # nginx reads the whole chunked body, then passes it on with its length
    assert j["content_length"] == str(total)


def test_small_form_post(front):
    j = front.echo("POST", "/form?via=qs", {"Content-Type": "application/x-www-form-urlencoded"},
                   b"k=v&x=%C3%A9")
    assert j["body_length"] == len(b"k=v&x=%C3%A9")
    assert j["query"] == {"via": ["qs"]}


@pytest.mark.parametrize("stream", [False, True], ids=["content-length", "streamed"])
def test_large_response_arrives_whole(front, stream):
    n = 5 * 1024 * 1024 + 7
    r = front.request("GET", f"/_big?n={n}" + ("&stream=1" if stream else ""), timeout=60)
    assert r.status == 200 and r.complete, (r, front.explain())
    assert len(r.body) == n
    assert r.body == big_body(n)


# -- many requests -----------------------------------------------------------------------

def test_many_requests_in_a_row(front):
    # one keep-alive client connection to nginx; nginx makes (or reuses) upstream ones
    with Conn(front.port, timeout=30) as c:
        for i in range(150):
            if i % 3 == 2:
                body = b"x" * (i * 37)
                r = c.request("POST", f"/many/{i}?i={i}", {"Host": front.host}, body)
            else:
                body = b""
                r = c.request("GET", f"/many/{i}?i={i}", {"Host": front.host})
            assert r.status == 200 and r.complete, (i, r, front.explain())
            j = r.json()
            assert (j["path"], j["query"], j["body_length"]) == (f"/many/{i}", {"i": [str(i)]},
                                                                len(body)), i


def test_many_fresh_client_connections(front):
    for i in range(60):
        r = front.request("GET", f"/fresh/{i}")
        assert r.status == 200 and r.complete, (i, r, front.explain())
        assert r.json()["path"] == f"/fresh/{i}"


# -- one front only ----------------------------------------------------------------------

def test_proxy_front_reuses_upstream_connections(proxy_front):
    # /_conn reports REMOTE_PORT, nginx's end of the upstream connection: with upstream
    # keep-alive, requests one after the other come on the same connection.
    ports = []
    for _ in range(8):
        r = proxy_front.request("GET", "/_conn")  # a new client connection each time
        assert r.status == 200, (r, proxy_front.explain())
        j = r.json()
        if forwarding_applies(proxy_front):
            assert j["remote_addr"] == "127.0.0.1"
        ports.append(j["remote_port"])
    assert len(set(ports)) == 1, f"upstream connection not reused: REMOTE_PORTs {ports}"
    # and over one client keep-alive connection too
    with Conn(proxy_front.port) as c:
        more = [c.request("GET", "/_conn", {"Host": proxy_front.host}).json()["remote_port"]
                for _ in range(5)]
    assert set(more) == set(ports), (ports, more)


def test_chmod_socket_666(unix_front):
    st = unix_front.socket_path.stat()
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)


# -- last: nothing went wrong on nginx's side ----------------------------------------------

def test_nginx_error_log_has_no_errors(front):
    # runs after the tests above: no upstream errors (reset, premature close, timeout,
    # invalid header) for anything they did
    front.echo("GET", "/last")
    assert front.nginx.problems() == [], front.nginx.error_log()[-4000:]
