"""What the server writes to stderr: banner, access lines, wsgi.errors."""
import datetime
import re
import uuid

import pytest

from helpers import Conn, get, wait_until


@pytest.fixture(scope="module")
def srv(apus_module):
    return apus_module("echo_env", "--processes", "2", "--threads", "3")


def test_banner_names_app_workers_threads(srv):
    log = srv.log()
    assert "echo_env" in log, log[:2000]
    assert re.search(r"(?i)(\b2\b\D{0,20}(worker|process))|((worker|process)\D{0,20}\b2\b)", log), log[:2000]
    assert re.search(r"(?i)(\b3\b\D{0,20}thread)|(thread\D{0,20}\b3\b)", log), log[:2000]
    assert str(srv.port) in log, "the banner should say where it listens"


ACCESS = re.compile(r'(?P<host>\S+) \S+ \S+ \[(?P<time>[^\]]+)\] "(?P<req>[^"]*)" (?P<status>\d{3}) (?P<size>\d+|-)')


def test_one_access_line_per_request(srv):
    tag = uuid.uuid4().hex
    paths = [f"/access-{tag}-{i}?q={i}" for i in range(3)]
    sizes = {}
    with Conn(srv.port) as c:
        for p in paths:
            r = c.request("GET", p)
            sizes[p] = len(r.body)
    r = get(srv.port, f"/access-{tag}-404?status=404")
    assert r.status == 404

    def lines():
        return [l for l in srv.log().splitlines() if f"/access-{tag}-" in l]

    wait_until(lambda: len(lines()) >= 4, 10, what="4 access lines")
    got = lines()
    assert len(got) == 4, got
    for p in paths:
        mine = [l for l in got if f"{p} HTTP/1.1" in l]
        assert len(mine) == 1, (p, got)
        m = ACCESS.search(mine[0])
        assert m, f"not in common log format: {mine[0]!r}"
        assert m["host"] == "127.0.0.1"
        assert m["req"] == f"GET {p} HTTP/1.1"
        assert m["status"] == "200"
        assert m["size"] == str(sizes[p])
        assert re.match(r"\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}$", m["time"]), m["time"]
        logged = datetime.datetime.strptime(m["time"], "%d/%b/%Y:%H:%M:%S %z")
        now = datetime.datetime.now(datetime.timezone.utc)
        assert abs((now - logged).total_seconds()) < 60, (m["time"], now)
    m404 = ACCESS.search([l for l in got if "-404" in l][0])
    assert m404 and m404["status"] == "404"


def test_no_access_log(apus):
    s = apus("echo_env", "--no-access-log")
    tag = uuid.uuid4().hex
    assert get(s.port, f"/quiet-{tag}").status == 200
    marker = uuid.uuid4().hex
    get(s.port, f"/?log={marker}")
    wait_until(lambda: marker in s.log(), 10, what="the wsgi.errors line")
    assert f"/quiet-{tag}" not in s.log()


def test_wsgi_errors_reach_the_log(srv):
    marker = f"apus-errors-{uuid.uuid4().hex}"
    assert get(srv.port, f"/?log={marker}").status == 200
    wait_until(lambda: marker in srv.log(), 10, what="wsgi.errors output in the log")
