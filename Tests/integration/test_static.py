"""--static-map over real sockets: files answered by the worker's loop (headers, 304, Range,
precompressed variants, HEAD, pipelining with app requests, a large body to a slow reader),
what falls through to the app (no file, directories, other methods, traversal and symlinks
that lead outside), the uwsgi protocol, and nginx's uwsgi_pass in front."""
import gzip
import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from conftest import free_port, run_apus
from helpers import Conn, build_request, parse_response, parse_responses, raw_request, wait_until

SECRET = b"SECRET-OUTSIDE-THE-STATIC-DIRECTORY"
BIG = 50 * 1024 * 1024


def make_tree(root):
    static = root / "static"
    (static / "css").mkdir(parents=True)
    (static / "sub").mkdir()
    (static / "index.txt").write_bytes(b"hello static\n")
    (static / "css" / "site.css").write_bytes(b"body { color: red }\n" * 10)
    (static / "data.bin").write_bytes(bytes(range(256)) * 4)
    (static / "100%.txt").write_bytes(b"percent\n")
    js = b"console.log('plain');\n" * 50
    (static / "app.js").write_bytes(js)
    (static / "app.js.gz").write_bytes(gzip.compress(js))
    (static / "app.js.br").write_bytes(b"BROTLI-STAND-IN")  # content is not decoded by the tests
    medium = os.urandom(300 * 1024)
    (static / "medium.bin").write_bytes(medium)
    with open(static / "big.bin", "wb") as f:
        block = hashlib.sha256(b"x").digest() * 4096
        for _ in range(BIG // len(block)):
            f.write(block)
    (root / "secret.txt").write_bytes(SECRET)
    os.symlink(root / "secret.txt", static / "out-abs")
    os.symlink("../secret.txt", static / "out-rel")
    os.symlink("index.txt", static / "in-rel")
    os.symlink(str(static / "index.txt"), static / "in-abs")
    os.mkfifo(static / "fifo")
    return static


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("static"))


@pytest.fixture(scope="module")
def server(apus_module, tree):
    uport = free_port()
    srv = apus_module("static_app", "--static-map", f"/static={tree}", "--socket", f"127.0.0.1:{uport}")
    srv.uport = uport
    return srv


def calls(srv):
    r = srv.get("/__calls")
    assert r.status == 200
    return int(r.body)


def get(srv, path, headers=None, method="GET"):
    data, _ = raw_request(srv.port, build_request(method, path, {"Host": "t", "Connection": "close", **(headers or {})}))
    return parse_response(data, method)


def test_file_content_and_headers(server, tree):
    r = get(server, "/static/css/site.css")
    assert r.status == 200
    assert r.body == (tree / "css" / "site.css").read_bytes()
    assert r.header("content-type") == "text/css; charset=utf-8"
    assert r.header("content-length") == str(len(r.body))
    assert r.header("etag").startswith('"') and r.header("etag").endswith('"')
    st = os.stat(tree / "css" / "site.css")
    assert r.header("last-modified") == time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(st.st_mtime))
    assert r.header("vary") == "Accept-Encoding"
    assert r.header("accept-ranges") == "bytes"
    assert get(server, "/static/data.bin").header("content-type") == "application/octet-stream"
    # Percent-decoded once: %25 is a literal %.
    assert get(server, "/static/100%25.txt").body == b"percent\n"


def test_static_hits_never_call_the_app(server):
    before = calls(server)
    for path in ["/static/index.txt", "/static/css/site.css", "/static/medium.bin", "/static/app.js"]:
        assert get(server, path).status == 200
    assert get(server, "/static/index.txt", {"If-None-Match": "*"}).status == 304
    assert calls(server) == before + 1  # only the /__calls request itself


def test_paths_without_a_file_go_to_the_app(server):
    for path, expect in [("/static/nope.txt", b"app:GET /static/nope.txt"), ("/static/sub", b"app:GET /static/sub"),
                         ("/static/sub/", b"app:GET /static/sub/"), ("/static", b"app:GET /static"),
                         ("/staticindex.txt", b"app:GET /staticindex.txt")]:
        r = get(server, path)
        assert (r.status, r.body) == (200, expect), path
    # Methods other than GET and HEAD go to the app, as in uWSGI.
    r = get(server, "/static/index.txt", method="POST")
    assert r.body == b"app:POST /static/index.txt"
    r = get(server, "/static/index.txt", method="DELETE")
    assert r.body == b"app:DELETE /static/index.txt"


def test_not_modified_both_ways(server):
    r = get(server, "/static/index.txt")
    etag, modified = r.header("etag"), r.header("last-modified")
    r = get(server, "/static/index.txt", {"If-None-Match": etag})
    assert (r.status, r.body) == (304, b"")
    assert r.header("etag") == etag and r.header("content-length") is None
    assert get(server, "/static/index.txt", {"If-None-Match": f'"nope", W/{etag}'}).status == 304
    assert get(server, "/static/index.txt", {"If-None-Match": '"nope"'}).status == 200
    assert get(server, "/static/index.txt", {"If-Modified-Since": modified}).status == 304
    assert get(server, "/static/index.txt", {"If-Modified-Since": "Thu, 01 Jan 1970 00:00:00 GMT"}).status == 200
    # If-None-Match decides alone when both are there.
    assert get(server, "/static/index.txt", {"If-None-Match": '"nope"', "If-Modified-Since": modified}).status == 200


def test_ranges(server, tree):
    data = (tree / "data.bin").read_bytes()
    size = len(data)
    r = get(server, "/static/data.bin", {"Range": "bytes=10-19"})
    assert (r.status, r.body) == (206, data[10:20])
    assert r.header("content-range") == f"bytes 10-19/{size}"
    r = get(server, "/static/data.bin", {"Range": "bytes=-100"})
    assert (r.status, r.body) == (206, data[-100:])
    r = get(server, "/static/data.bin", {"Range": "bytes=1000-"})
    assert (r.status, r.body) == (206, data[1000:])
    r = get(server, "/static/data.bin", {"Range": f"bytes={size}-"})
    assert r.status == 416 and r.header("content-range") == f"bytes */{size}" and r.body == b""
    r = get(server, "/static/data.bin", {"Range": "bytes=0-1,5-6"})
    assert (r.status, r.body) == (200, data)  # several ranges: the whole file
    etag = r.header("etag")
    r = get(server, "/static/data.bin", {"Range": "bytes=0-3", "If-Range": etag})
    assert (r.status, r.body) == (206, data[:4])
    r = get(server, "/static/data.bin", {"Range": "bytes=0-3", "If-Range": '"stale"'})
    assert (r.status, r.body) == (200, data)
    # A range of a file sent with sendfile.
    medium = (tree / "medium.bin").read_bytes()
    r = get(server, "/static/medium.bin", {"Range": "bytes=100000-250000"})
    assert (r.status, r.body) == (206, medium[100000:250001])


def test_precompressed_variants(server, tree):
    plain = get(server, "/static/app.js")
    assert plain.header("content-encoding") is None and plain.header("vary") == "Accept-Encoding"
    assert plain.body == (tree / "app.js").read_bytes()
    br = get(server, "/static/app.js", {"Accept-Encoding": "gzip, deflate, br"})
    assert br.header("content-encoding") == "br" and br.body == b"BROTLI-STAND-IN"
    assert br.header("content-type") == "text/javascript; charset=utf-8" and br.header("vary") == "Accept-Encoding"
    gz = get(server, "/static/app.js", {"Accept-Encoding": "br;q=0, gzip"})
    assert gz.header("content-encoding") == "gzip"
    assert gzip.decompress(gz.body) == plain.body
    assert get(server, "/static/app.js", {"Accept-Encoding": "br;q=0.2, gzip;q=0.8"}).header("content-encoding") == "gzip"
    assert get(server, "/static/app.js", {"Accept-Encoding": "gzip;q=0, br;q=0"}).header("content-encoding") is None
    assert get(server, "/static/app.js", {"Accept-Encoding": "identity"}).header("content-encoding") is None
    assert len({plain.header("etag"), br.header("etag"), gz.header("etag")}) == 3
    # A file without variants is sent as is to a client that accepts gzip.
    css = get(server, "/static/css/site.css", {"Accept-Encoding": "gzip"})
    assert css.header("content-encoding") is None and css.body == (tree / "css" / "site.css").read_bytes()
    # The variant's own validator gives 304.
    assert get(server, "/static/app.js", {"Accept-Encoding": "gzip", "If-None-Match": gz.header("etag")}).status == 304


def test_head_then_more_requests_on_the_connection(server, tree):
    with Conn(server.port) as c:
        r = c.request("HEAD", "/static/medium.bin", {"Host": "t"})
        assert r.status == 200 and r.body == b""
        assert r.header("content-length") == str(os.path.getsize(tree / "medium.bin"))
        r = c.request("GET", "/static/index.txt", {"Host": "t"})
        assert r.body == b"hello static\n"


def test_pipelined_static_and_app_requests_keep_their_order(server, tree):
    paths = ["/static/index.txt", "/app/one", "/static/medium.bin", "/app/two", "/static/css/site.css",
             "/static/missing", "/static/medium.bin", "/app/three"]
    data = b"".join(build_request("GET", p, {"Host": "t"}) for p in paths)
    data += build_request("GET", "/static/index.txt", {"Host": "t", "Connection": "close"})
    raw, _ = raw_request(server.port, data, timeout=20)
    responses, leftover = parse_responses(raw, ["GET"] * (len(paths) + 1))
    assert leftover == b""
    medium = (tree / "medium.bin").read_bytes()
    expect = [b"hello static\n", b"app:GET /app/one", medium, b"app:GET /app/two",
              (tree / "css" / "site.css").read_bytes(), b"app:GET /static/missing", medium,
              b"app:GET /app/three", b"hello static\n"]
    assert [r.body for r in responses] == expect


def test_a_body_on_a_static_request_is_skipped_not_read_as_a_request(server):
    """A GET with a body for a static file: with Content-Length the loop answers and skips
    the body; a chunked body streams, so the app answers. Either way the body is consumed,
    and bytes in it that look like a request are never answered as one."""
    smuggled = build_request("GET", "/app/smuggled", {"Host": "t"})
    chunk = b"%x\r\n%s\r\n0\r\n\r\n" % (len(smuggled), smuggled)
    data = (build_request("GET", "/static/index.txt", {"Host": "t", "Content-Length": str(len(smuggled))})
            + smuggled
            + build_request("GET", "/static/index.txt", {"Host": "t", "Transfer-Encoding": "chunked"})
            + chunk
            + build_request("GET", "/app/last", {"Host": "t", "Connection": "close"}))
    raw, _ = raw_request(server.port, data, timeout=20)
    responses, leftover = parse_responses(raw, ["GET"] * 3)
    assert leftover == b""
    assert [r.body for r in responses] == [b"hello static\n", b"app:GET /static/index.txt", b"app:GET /app/last"]


def test_large_file_to_a_slow_reader_does_not_hold_up_others(server, tree):
    slow = socket.create_connection(("127.0.0.1", server.port))
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    slow.sendall(build_request("GET", "/static/big.bin", {"Host": "t", "Connection": "close"}))
    first = slow.recv(4096)
    assert first.startswith(b"HTTP/1.1 200 OK")
    # The big response is stalled on the slow reader: the others are served meanwhile.
    for _ in range(20):
        t0 = time.monotonic()
        assert get(server, "/static/index.txt").body == b"hello static\n"
        assert get(server, "/app/x").body == b"app:GET /app/x"
        assert time.monotonic() - t0 < 1.0
    # Then it reads on, and gets every byte.
    h = hashlib.sha256()
    got = first
    head, _, rest = got.partition(b"\r\n\r\n")
    h.update(rest)
    n = len(rest)
    slow.settimeout(30)
    while True:
        chunk = slow.recv(1 << 20)
        if not chunk:
            break
        h.update(chunk)
        n += len(chunk)
    slow.close()
    assert n == BIG
    assert h.hexdigest() == hashlib.sha256((tree / "big.bin").read_bytes()).hexdigest()


def test_clients_that_never_read_are_closed_with_their_files(server, tree):
    """Clients that ask for the 50 MB file and read nothing: each holds its socket and the
    file's descriptor only until the send timeout (30 s without progress), while the others
    are served; then both are closed."""
    big = str(tree / "big.bin")

    def targets():
        found = []
        for pid in server.workers():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except FileNotFoundError:
                continue
            for fd in fds:
                try:
                    found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
                except OSError:
                    pass
        return found

    def open_files():
        return targets().count(big)

    def sockets():
        return sum(t.startswith("socket:") for t in targets())

    idle_sockets = sockets()

    stalled = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(build_request("GET", "/static/big.bin", {"Host": "t"}))
        stalled.append(s)
    try:
        wait_until(lambda: open_files() == len(stalled), 10, what="every stalled client's file open")
        assert sockets() == idle_sockets + len(stalled)
        assert get(server, "/static/index.txt").body == b"hello static\n"
        assert get(server, "/app/x").body == b"app:GET /app/x"
        wait_until(lambda: open_files() == 0, 45, interval=0.2, what="the stalled clients' files closed")
        wait_until(lambda: sockets() == idle_sockets, 10, what="the stalled clients' sockets closed")
    finally:
        for s in stalled:
            s.close()
    assert get(server, "/static/index.txt").body == b"hello static\n"


@pytest.mark.parametrize("path", [
    "/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E%2Fsecret.txt", "/static/..%2fsecret.txt",
    "/static/css/../../secret.txt", "/static/%252e%252e/secret.txt", "/static/out-abs", "/static/out-rel",
    "/static/in-abs", "/static/index.txt%00.png", "/static//../secret.txt", "/static/./../secret.txt",
    "/static/%2fsecret.txt", "/static/.%2e/secret.txt", "/static/fifo", "/static/sub/..",
])
def test_nothing_outside_the_directory_and_no_special_files(server, path):
    r = get(server, path)
    assert SECRET not in r.body, path
    # The app answered (no file served), and quickly: a FIFO is never read.
    assert r.status in (200, 400) and (r.status == 400 or r.body.startswith(b"app:")), (path, r)


def test_symlink_inside_the_directory_is_followed(server):
    r = get(server, "/static/in-rel")
    assert (r.status, r.body) == (200, b"hello static\n")


def test_access_log_has_static_lines(server):
    get(server, "/static/index.txt?logged=1")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and '"GET /static/index.txt?logged=1 HTTP/1.1" 200 13' not in server.log():
        time.sleep(0.05)
    assert '"GET /static/index.txt?logged=1 HTTP/1.1" 200 13' in server.log()


def uwsgi_packet(vars_):
    block = b""
    for k, v in vars_:
        k, v = k.encode("latin-1"), v.encode("latin-1")
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", 0, len(block), 0) + block


def uwsgi_get(port, path_info, extra=()):
    data = uwsgi_packet([("REQUEST_METHOD", "GET"), ("REQUEST_URI", path_info), ("PATH_INFO", path_info),
                         ("QUERY_STRING", ""), ("SERVER_PROTOCOL", "HTTP/1.1"), ("SERVER_NAME", "t"),
                         ("SERVER_PORT", "80"), ("REMOTE_ADDR", "127.0.0.1"), *extra])
    raw, _ = raw_request(port, data)
    return parse_response(raw)


def test_uwsgi_protocol(server, tree):
    r = uwsgi_get(server.uport, "/static/css/site.css")
    assert r.status == 200 and r.body == (tree / "css" / "site.css").read_bytes()
    r = uwsgi_get(server.uport, "/static/app.js", [("HTTP_ACCEPT_ENCODING", "gzip")])
    assert r.header("content-encoding") == "gzip"
    r = uwsgi_get(server.uport, "/static/data.bin", [("HTTP_RANGE", "bytes=4-7")])
    assert (r.status, r.body) == (206, bytes([4, 5, 6, 7]))
    r = uwsgi_get(server.uport, "/static/index.txt", [("HTTP_IF_NONE_MATCH", "*")])
    assert r.status == 304
    # PATH_INFO comes decoded from nginx: it is not decoded again.
    assert uwsgi_get(server.uport, "/static/100%.txt").body == b"percent\n"
    assert uwsgi_get(server.uport, "/static/../secret.txt").body.startswith(b"app:")
    assert uwsgi_get(server.uport, "/static/medium.bin").body == (tree / "medium.bin").read_bytes()


def test_behind_nginx_uwsgi_pass(server, tree, tmp_path):
    from nginx_helpers import Nginx
    nginx = Nginx("uwsgi-tcp.conf", tmp_path / "nginx", {"UPSTREAM": f"127.0.0.1:{server.uport}",
                                                          "SERVER_NAME": "nginx.test"}).start()
    try:
        def via(path, headers=None):
            data, _ = raw_request(nginx.port, build_request("GET", path, {"Host": "nginx.test", "Connection": "close",
                                                                          **(headers or {})}), timeout=30)
            return parse_response(data)
        assert via("/static/css/site.css").body == (tree / "css" / "site.css").read_bytes()
        assert via("/static/medium.bin").body == (tree / "medium.bin").read_bytes()
        assert via("/static/100%25.txt").body == b"percent\n"
        assert via("/static/%2e%2e/secret.txt").body != SECRET
        r = via("/static/data.bin", {"Range": "bytes=0-3"})
        assert r.status == 206 and r.body == bytes([0, 1, 2, 3])
        assert via("/static/nope").body == b"app:GET /static/nope"
    finally:
        nginx.stop()


def test_bad_static_map_is_one_line(tmp_path):
    r = run_apus(["--static-map", f"/static={tmp_path}/missing", "app"])
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [f'apus: --static-map: not a directory: "{tmp_path}/missing"']


def test_app_threads_and_processes(apus, tree):
    """With app threads the loop passes between threads: static and app answers still come
    in order on each connection, from several connections at once."""
    srv = apus("static_app", "--static-map", f"/static={tree}", "--processes", "2", "--threads", "3")
    medium = (tree / "medium.bin").read_bytes()
    paths = ["/static/medium.bin", "/a", "/static/index.txt", "/b", "/static/app.js"]
    expect = [medium, b"app:GET /a", b"hello static\n", b"app:GET /b", (tree / "app.js").read_bytes()]
    failures = []

    def client():
        try:
            for _ in range(5):
                data = b"".join(build_request("GET", p, {"Host": "t"}) for p in paths)
                data += build_request("GET", "/last", {"Host": "t", "Connection": "close"})
                raw, _ = raw_request(srv.port, data, timeout=20)
                responses, _ = parse_responses(raw, ["GET"] * (len(paths) + 1))
                if [r.body for r in responses[:-1]] != expect:
                    failures.append([r.body[:40] for r in responses])
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []


def test_static_answers_do_not_count_for_max_requests(apus, tree):
    srv = apus("static_app", "--static-map", f"/static={tree}", "--max-requests", "5")
    for _ in range(30):
        assert get(srv, "/static/index.txt").status == 200
    time.sleep(0.3)
    assert "asking for a replacement" not in srv.log()
    for _ in range(5):
        assert get(srv, "/app").status == 200
    deadline = time.monotonic() + 10
    while "asking for a replacement" not in srv.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "asking for a replacement" in srv.log()
