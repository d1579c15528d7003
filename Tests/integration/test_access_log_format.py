"""--log-format (presets common, combined and json, custom formats), --log-x-forwarded-for and
request ids, over HTTP and the uwsgi protocol, with the built binary. Lines are read from
--access-logfile, which holds access lines only."""
import json
import os
import re
import signal
import socket
import struct
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import free_port, run_apus
from helpers import get, raw_request, wait_until

COMMON = re.compile(r'^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\] '
                    r'"(?P<req>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)$')
JSON_KEYS = ["time", "addr", "method", "uri", "proto", "status", "size", "usecs", "referer", "uagent",
             "request_id", "worker", "generation", "pid"]
TRACE_BYTES = b'q"b\\s\x85n\xe2\x80\xa8e'
TRACE_TEXT = r'q\x22b\x5cs\x85n\xe2\x80\xa8e'


def packet(vars_, body=b""):
    block = b""
    for k, v in vars_:
        k = k.encode("latin-1") if isinstance(k, str) else k
        v = v.encode("latin-1") if isinstance(v, str) else v
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    return struct.pack("<BHB", 0, len(block), 0) + block + body


def uwsgi_get(port, uri, extra=()):
    path, _, query = uri.partition("?")
    vars_ = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", uri), ("PATH_INFO", path), ("QUERY_STRING", query),
             ("SERVER_PROTOCOL", "HTTP/1.1"), ("REMOTE_ADDR", "198.51.100.9"), ("REMOTE_PORT", "50000"),
             ("SERVER_NAME", "example.org"), ("SERVER_PORT", "80"), *extra]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(packet(vars_))
        s.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := s.recv(65536):
            got += chunk
    assert got.startswith(b"HTTP/1.1 200"), got[:200]
    return got


def start(apus, tmp_path, fmt=None, *args, uwsgi=False):
    log = tmp_path / f"access-{uuid.uuid4().hex[:8]}.log"
    extra = ["--access-logfile", log]
    if fmt is not None:
        extra += ["--log-format", fmt]
    if uwsgi:
        uport = free_port()
        extra += ["--socket", f"127.0.0.1:{uport}"]
    srv = apus("logformat_app", *extra, *args)
    srv.access = log
    srv.uport = uport if uwsgi else None
    return srv


def lines(srv, tag):
    """Access lines (as text) that mention tag. splitlines() splits at every line break
    Python knows, U+0085, U+2028 and U+2029 included."""
    if not srv.access.exists():
        return []
    return [l for l in srv.access.read_bytes().decode("utf-8").splitlines() if tag in l]


def wait_lines(srv, tag, n):
    wait_until(lambda: len(lines(srv, tag)) >= n, 10, what=f"{n} access lines with {tag}")
    got = lines(srv, tag)
    assert len(got) == n, got
    return got


# MARK: presets over HTTP


def test_common_is_the_default_and_the_preset(apus, tmp_path):
    for fmt in (None, "common"):
        srv = start(apus, tmp_path, fmt)
        tag = uuid.uuid4().hex
        assert get(srv.port, f"/c-{tag}?q=1").status == 200
        assert get(srv.port, f"/c-{tag}-404?status=404").status == 404
        got = wait_lines(srv, tag, 2)
        m = COMMON.match(got[0])
        assert m and m["req"] == f"GET /c-{tag}?q=1 HTTP/1.1" and m["status"] == "200" and m["size"] == "2", got[0]
        m = COMMON.match(got[1])
        assert m and m["status"] == "404", got[1]


def test_combined_adds_referer_and_user_agent(apus, tmp_path):
    srv = start(apus, tmp_path, "combined")
    tag = uuid.uuid4().hex
    get(srv.port, f"/{tag}", headers={"Referer": "http://example.org/from", "User-Agent": "probe/1.0 (x)"})
    get(srv.port, f"/{tag}-bare")
    a, b = wait_lines(srv, tag, 2)
    assert a.endswith(f'"GET /{tag} HTTP/1.1" 200 2 "http://example.org/from" "probe/1.0 (x)"'), a
    assert COMMON.match(a.rsplit(' "', 2)[0]), a
    assert b.endswith(f'"GET /{tag}-bare HTTP/1.1" 200 2 "-" "-"'), b


def test_json_preset_over_http(apus, tmp_path):
    srv = start(apus, tmp_path, "json")
    tag = uuid.uuid4().hex
    get(srv.port, f"/j/{tag}?a=1", headers={"User-Agent": "probe/2", "X-Request-ID": f"given-{tag}"})
    (line,) = wait_lines(srv, tag, 1)
    obj = json.loads(line)
    assert list(obj) == JSON_KEYS
    assert obj["method"] == "GET" and obj["uri"] == f"/j/{tag}?a=1" and obj["proto"] == "HTTP/1.1"
    assert obj["status"] == 200 and obj["size"] == 2 and isinstance(obj["usecs"], int)
    assert obj["addr"] == "127.0.0.1" and obj["uagent"] == "probe/2" and obj["referer"] == ""
    assert obj["request_id"] == f"given-{tag}"
    assert obj["worker"] == 1 and obj["generation"] == 1 and obj["pid"] in srv.workers()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", obj["time"])


# MARK: presets over the uwsgi protocol


@pytest.mark.parametrize("fmt", ["common", "combined", "json"])
def test_presets_over_uwsgi(apus, tmp_path, fmt):
    srv = start(apus, tmp_path, fmt, uwsgi=True)
    tag = uuid.uuid4().hex
    uwsgi_get(srv.uport, f"/u/{tag}?x=2", [("HTTP_USER_AGENT", "nginx-probe"), ("HTTP_REFERER", "http://r/")])
    (line,) = wait_lines(srv, tag, 1)
    if fmt == "json":
        obj = json.loads(line)
        assert list(obj) == JSON_KEYS
        assert obj["uri"] == f"/u/{tag}?x=2" and obj["status"] == 200 and obj["size"] == 2
        assert obj["uagent"] == "nginx-probe" and obj["referer"] == "http://r/" and obj["proto"] == "HTTP/1.0"
    else:
        common = line if fmt == "common" else line.rsplit(' "', 2)[0]
        m = COMMON.match(common)
        assert m and m["req"] == f"GET /u/{tag}?x=2 HTTP/1.0" and m["size"] == "2", line
        if fmt == "combined":
            assert line.endswith('"http://r/" "nginx-probe"'), line


# MARK: custom formats


CUSTOM = ("%(method) %(path) %(query) %(status) %(size) %(wid) [%(var.HTTP_X_FOO)] [%(req:x-foo)] "
          "[%(resp:Content-Type)] [%(resp:X-Trace)] [%(resp:X-None)] [%(host)] 100%%")


def test_custom_format_with_headers_both_ways_over_http(apus, tmp_path):
    srv = start(apus, tmp_path, CUSTOM)
    tag = uuid.uuid4().hex
    get(srv.port, f"/h/{tag}?k=v", headers={"X-Foo": 'a "b" \\c', "Host": "example.org"})
    (line,) = wait_lines(srv, tag, 1)
    assert line == (f"GET /h/{tag} k=v 200 2 1 [a \\x22b\\x22 \\x5cc] [a \\x22b\\x22 \\x5cc] "
                    f"[text/plain; charset=utf-8] [{TRACE_TEXT}] [-] [example.org] 100%"), line


def test_custom_format_with_headers_both_ways_over_uwsgi(apus, tmp_path):
    srv = start(apus, tmp_path, CUSTOM, uwsgi=True)
    tag = uuid.uuid4().hex
    uwsgi_get(srv.uport, f"/h/{tag}?k=v", [("HTTP_X_FOO", "from-nginx"), ("HTTP_HOST", "example.org")])
    (line,) = wait_lines(srv, tag, 1)
    assert line == (f"GET /h/{tag} k=v 200 2 1 [from-nginx] [from-nginx] "
                    f"[text/plain; charset=utf-8] [{TRACE_TEXT}] [-] [example.org] 100%"), line


# MARK: hostile values


HOSTILE = b'\x85 \xe2\x80\xa8 \xe2\x80\xa9 " \\ \xff\xfe \xc0\xaf end'
FORGE = b'x", "status": 999, "forged": "'


def test_hostile_headers_cannot_forge_a_json_field_or_split_a_line(apus, tmp_path):
    fmt = 'json:{"ua":"%(uagent)","foo":"%(req:X-Foo)","trace":"%(resp:X-Trace)","uri":"%(uri)","status":%(status)}'
    srv = start(apus, tmp_path, fmt, uwsgi=True)
    tag = uuid.uuid4().hex
    # Over HTTP: header values can carry obs-text (0x80-0xff) and quotes, not CR or LF.
    req = (f"GET /x/{tag} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n").encode() + \
        b"User-Agent: " + HOSTILE + b"\r\nX-Foo: " + FORGE + b"\r\n\r\n"
    data, _ = raw_request(srv.port, req)
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    # Over uwsgi: a var can hold any byte, line breaks included.
    uwsgi_get(srv.uport, f"/y/{tag}", [("HTTP_USER_AGENT", HOSTILE + b'\n{"forged":1}\r\n' + bytes(range(32))),
                                      ("HTTP_X_FOO", FORGE + b"\x00\x7f")])
    got = wait_lines(srv, tag, 2)
    raw = srv.access.read_bytes()
    # No line splits anywhere but at its own newline (the readiness GET / has a line too).
    assert raw.decode("utf-8").splitlines() == raw.decode("utf-8").split("\n")[:-1]
    assert len([l for l in raw.split(b"\n") if tag.encode() in l]) == 2
    for line in got:
        obj = json.loads(line)
        assert list(obj) == ["ua", "foo", "trace", "uri", "status"] and obj["status"] == 200
        # A lone 0x85 is read as latin-1; e2 80 a8 is well-formed UTF-8, U+2028.
        assert obj["trace"] == 'q"b\\s\x85n\u2028e'
        assert obj["foo"].startswith(FORGE.decode())
    http, uw = (json.loads(l) for l in got)
    # Well-formed UTF-8 (U+2028, U+2029) comes back as itself; other bytes as latin-1.
    assert http["ua"] == '\x85 \u2028 \u2029 " \\ \xff\xfe \xc0\xaf end'
    assert uw["ua"].startswith(http["ua"] + '\n{"forged":1}\r\n\x00\x01')


def test_hostile_values_in_a_text_format_stay_on_their_line(apus, tmp_path):
    srv = start(apus, tmp_path, "combined", uwsgi=True)
    tag = uuid.uuid4().hex
    uwsgi_get(srv.uport, f"/z/{tag}", [("HTTP_USER_AGENT", HOSTILE + b'\n127.0.0.1 - - [forged]\r')])
    (line,) = wait_lines(srv, tag, 1)
    raw = srv.access.read_bytes()
    assert raw.decode("utf-8").splitlines() == raw.decode("utf-8").split("\n")[:-1]
    assert all(0x20 <= b < 0x7f for b in raw.replace(b"\n", b""))
    assert line.endswith(r'"-" "\x85 \xe2\x80\xa8 \xe2\x80\xa9 \x22 \x5c \xff\xfe \xc0\xaf end\x0a127.0.0.1 - - [forged]\x0d"')


# MARK: addresses and request ids


def test_log_x_forwarded_for(apus, tmp_path):
    on = start(apus, tmp_path, "%(addr) %(uri)", "--log-x-forwarded-for", uwsgi=True)
    off = start(apus, tmp_path, "%(addr) %(uri)")
    tag = uuid.uuid4().hex
    xff = {"X-Forwarded-For": " 203.0.113.5 , 10.0.0.1"}
    for srv in (on, off):
        get(srv.port, f"/xff-{tag}", headers=xff)
        get(srv.port, f"/plain-{tag}")
    uwsgi_get(on.uport, f"/uwsgi-{tag}", [("HTTP_X_FORWARDED_FOR", "192.0.2.7")])
    assert wait_lines(on, tag, 3) == [f"203.0.113.5 /xff-{tag}", f"127.0.0.1 /plain-{tag}", f"192.0.2.7 /uwsgi-{tag}"]
    assert wait_lines(off, tag, 2) == [f"127.0.0.1 /xff-{tag}", f"127.0.0.1 /plain-{tag}"]


def test_request_ids_are_unique_across_workers(apus, tmp_path):
    srv = start(apus, tmp_path, "%(wid) %(request_id) %(uri)", "--processes", "2")
    wait_until(lambda: len(srv.workers()) == 2, 10, what="2 workers")
    tag = uuid.uuid4().hex
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: get(srv.port, f"/id-{tag}-{i}"), range(300)))
    get(srv.port, f"/given-{tag}", headers={"X-Request-ID": "3f2c0a9e-1b7d-4e6f-9a2b-abc:1"})
    get(srv.port, f"/long-{tag}", headers={"X-Request-ID": "a" * 129})
    get(srv.port, f"/bad-{tag}", headers={"X-Request-ID": 'a"b'})
    got = wait_lines(srv, tag, 303)
    ids = {}
    workers = set()
    for line in got:
        wid, rid, uri = line.split(" ")
        workers.add(wid)
        ids[uri] = rid
    assert workers == {"1", "2"}
    assert ids[f"/given-{tag}"] == "3f2c0a9e-1b7d-4e6f-9a2b-abc:1"
    generated = [v for k, v in ids.items() if not k.startswith(f"/given-{tag}")]
    assert len(set(generated)) == len(generated) == 302
    assert all(re.fullmatch(r"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+", r) for r in generated), generated[:5]


# MARK: errors and reopening


def test_bad_format_is_one_line_and_exit_2(tmp_path):
    for fmt, culprit in [("%(nope)", "unknown variable %(nope)"), ("%(status", "unterminated %("),
                         ("%(resp:)", "bad header name in %(resp:)")]:
        r = run_apus(["--http", f"127.0.0.1:{free_port()}", "--log-format", fmt, "logformat_app"])
        assert r.returncode == 2, r
        assert r.stderr.count("\n") == 1 and "--log-format" in r.stderr and culprit in r.stderr, r.stderr
        assert r.stdout == ""


def test_json_log_reopens_on_usr1_after_a_move(apus, tmp_path):
    srv = start(apus, tmp_path, "json", "--processes", "2")
    wait_until(lambda: len(srv.workers()) == 2, 10, what="2 workers")
    tag = uuid.uuid4().hex
    for i in range(4):
        get(srv.port, f"/before-{tag}-{i}")
    wait_lines(srv, f"before-{tag}", 4)
    rotated = tmp_path / "rotated.log"
    os.rename(srv.access, rotated)
    srv.signal(signal.SIGUSR1)
    wait_until(lambda: srv.access.exists(), 10, what="the access log made again")
    n = 0

    def landed():
        nonlocal n
        get(srv.port, f"/after-{tag}-{n}")
        n += 1
        return lines(srv, f"after-{tag}")

    wait_until(landed, 10, what="a line in the new file")
    for i in range(20):
        get(srv.port, f"/later-{tag}-{i}")
    later = wait_lines(srv, f"later-{tag}", 20)
    assert all(json.loads(l)["status"] == 200 for l in later)
    old = rotated.read_bytes().decode("utf-8").splitlines()
    assert f"later-{tag}" not in "".join(old)
    assert len([l for l in old if f"before-{tag}" in l]) == 4 and all(json.loads(l) for l in old)


def test_buffered_lines_reach_the_file_within_the_flush_delay(apus, tmp_path):
    """Lines are buffered across turns of the loop and written once the first is 0.2 s
    old (docs/observability.md, "Buffering"): an idle worker writes a lone line soon."""
    srv = start(apus, tmp_path, "%(uri)")
    tag = uuid.uuid4().hex
    get(srv.port, f"/alone-{tag}")
    sent = time.monotonic()
    wait_lines(srv, tag, 1)
    assert time.monotonic() - sent < 2.0


def test_lines_buffered_at_usr1_go_to_the_old_file(apus, tmp_path):
    """SIGUSR1 (logrotate moved the file): the lines buffered for the old file are written
    to it before the file is opened again by its name."""
    srv = start(apus, tmp_path, "%(uri)")
    tag = uuid.uuid4().hex
    for i in range(5):
        get(srv.port, f"/before-{tag}-{i}")
    rotated = tmp_path / "rotated.log"
    os.rename(srv.access, rotated)  # the worker made it at start
    srv.signal(signal.SIGUSR1)
    wait_until(lambda: srv.access.exists(), 10, what="the access log made again")
    get(srv.port, f"/after-{tag}")
    wait_lines(srv, f"after-{tag}", 1)
    assert [l for l in lines(srv, tag) if "before" in l] == []
    old = [l for l in rotated.read_bytes().decode().splitlines() if tag in l]
    assert old == [f"/before-{tag}-{i}" for i in range(5)]


def test_buffered_lines_are_written_when_the_server_stops(apus, tmp_path):
    srv = start(apus, tmp_path, "%(uri)", "--processes", "2")
    tag = uuid.uuid4().hex
    for i in range(20):
        get(srv.port, f"/last-{tag}-{i}")
    srv.stop()
    assert sorted(lines(srv, tag)) == sorted(f"/last-{tag}-{i}" for i in range(20))


def test_the_default_format_writes_what_the_general_format_writes(apus, tmp_path):
    """The common format has a path of its own (the default, written without the general
    loop over a format's ops); a format that differs from it by one trailing byte takes the
    general loop. Both must write the same bytes for the same requests, hostile ones included,
    over HTTP and the uwsgi protocol."""
    fast = start(apus, tmp_path, None, uwsgi=True)
    general = start(apus, tmp_path, '%(addr) - - [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size_clf)|',
                    uwsgi=True)
    targets = [b"/same?tag=plain", b"/same?tag=" + TRACE_BYTES + b"&x=%22", b"/same/%ff%00?tag=\xff\xfe"]
    for srv in (fast, general):
        for t in targets:
            got, _ = raw_request(srv.port, b"GET " + t + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 "), got[:200]
        got, _ = raw_request(srv.port, b"HEAD /same?tag=head HTTP/1.0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 "), got[:200]
        uwsgi_get(srv.uport, "/same?tag=uwsgi")
    stamp = re.compile(r"\[[^\]]*\]")
    a = [stamp.sub("[T]", l) for l in wait_lines(fast, "/same", 5)]
    b = [stamp.sub("[T]", l).removesuffix("|") for l in wait_lines(general, "/same", 5)]
    assert a == b
    assert any(TRACE_TEXT in l for l in a)


JSON_PRESET = ('{"time":"%(iso8601)","addr":"%(addr)","method":"%(method)","uri":"%(uri)","proto":"%(proto)",'
               '"status":%(status),"size":%(size),"usecs":%(usecs),"referer":"%(referer)","uagent":"%(uagent)",'
               '"request_id":"%(request_id)","worker":%(worker),"generation":%(generation),"pid":%(pid)}')


def test_the_json_preset_writes_what_the_general_format_writes(apus, tmp_path):
    """The json preset has a path of its own too; `json:` with the same text and one more
    byte takes the general loop. Same requests, same bytes (time, usecs, generated ids and
    pids aside), over HTTP and the uwsgi protocol."""
    fast = start(apus, tmp_path, "json", uwsgi=True)
    general = start(apus, tmp_path, "json:" + JSON_PRESET + " ", uwsgi=True)
    hostile = b"Referer: http://x/" + TRACE_BYTES + b"\r\nUser-Agent: a\"b\\c\xc3\xa9\xff\r\n"
    for srv in (fast, general):
        for t, extra in [(b"/same?tag=plain", b""), (b"/same?tag=" + TRACE_BYTES, hostile),
                         (b"/same?tag=given-id", b"X-Request-ID: abc-123_x\r\n"),
                         (b"/same?tag=bad-id", b"X-Request-ID: no spaces allowed\r\n")]:
            got, _ = raw_request(srv.port, b"GET " + t + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
            assert got.startswith(b"HTTP/1.1 "), got[:200]
        got, _ = raw_request(srv.port, b"HEAD /same?tag=head HTTP/1.0\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 "), got[:200]
        uwsgi_get(srv.uport, "/same?tag=uwsgi", extra=[("HTTP_USER_AGENT", "curl/8"), ("HTTP_REFERER", "r")])
    a_lines = wait_lines(fast, "/same", 6)
    b_lines = [l.removesuffix(" ") for l in wait_lines(general, "/same", 6)]
    a = [json.loads(l) for l in a_lines]
    b = [json.loads(l) for l in b_lines]
    for x in a + b:
        for k in ("time", "usecs", "pid"):
            x.pop(k)
        if x["request_id"] != "abc-123_x":
            x["request_id"] = "generated"
    assert a == b
    # The raw bytes agree too once the varying fields are masked.
    mask = re.compile(r'"(time|request_id)":"[^"]*"|"(usecs|pid)":\d+')
    assert [mask.sub("M", l) for l in a_lines] == [mask.sub("M", l) for l in b_lines]
    assert any(x["uagent"] == "curl/8" for x in a)
    assert any(x["uagent"] == 'a"b\\c\u00e9\u00ff' for x in a), a
