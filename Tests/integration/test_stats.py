"""What the stats server (--stats, --stats-http) says: uWSGI's stats format with Apus's extras
(docs/observability.md), over TCP, unix sockets and HTTP, read by json.loads and by the real
uwsgitop. How the observer endpoints stand hostile clients is in test_observe_server.py."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import helpers
from conftest import free_port
from helpers import fifo_send, wait_until

UWSGITOP = os.path.join(os.path.dirname(sys.executable), "uwsgitop")

WORKER_KEYS = {  # what uwsgitop and `apus top` read, with the type each must have
    "id": int, "pid": int, "accepting": int, "requests": int, "delta_requests": int,
    "exceptions": int, "harakiri_count": int, "signals": int, "signal_queue": int, "status": str,
    "rss": int, "vsz": int, "running_time": int, "last_spawn": int, "respawn_count": int,
    "tx": int, "avg_rt": int, "apps": list, "cores": list, "generation": int, "state": str,
    "last_rt": int, "connections": int, "in_progress": list,
}
CORE_KEYS = {"id": int, "requests": int, "static_requests": int, "routed_requests": int,
             "offloaded_requests": int, "write_errors": int, "read_errors": int,
             "in_request": int, "vars": list, "req_info": dict}
TOP_KEYS = {"version": str, "listen_queue": int, "listen_queue_errors": int, "signal_queue": int,
            "load": int, "pid": int, "uid": int, "gid": int, "cwd": str, "locks": list,
            "sockets": list, "workers": list, "apus": dict}


def read_raw(addr, timeout=10.0):
    """Connect to a plain stats socket (TCP port or unix path), read until it closes."""
    if isinstance(addr, int):
        s = socket.create_connection(("127.0.0.1", addr), timeout=timeout)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
    with s:
        return helpers.read_until_close(s)


def stats(addr):
    return json.loads(read_raw(addr))


def http(port, path):
    """GET over the HTTP stats port: (status, content type, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = helpers.read_until_close(s)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    ctype = next((l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("content-type:")), None)
    return int(lines[0].split()[1]), ctype, body


def check_shape(doc):
    for key, typ in TOP_KEYS.items():
        assert isinstance(doc[key], typ), (key, doc[key])
    assert doc["version"].startswith("apus ")
    for sock in doc["sockets"]:
        for key in ("name", "proto", "queue", "max_queue", "shared", "can_offload"):
            assert key in sock, (key, sock)
    for w in doc["workers"]:
        for key, typ in WORKER_KEYS.items():
            assert isinstance(w[key], typ) and not isinstance(w[key], bool), (key, w)
        for core in w["cores"]:
            for key, typ in CORE_KEYS.items():
                assert isinstance(core[key], typ), (key, core)
    apus = doc["apus"]
    for key, typ in {"generation": int, "reloads": int, "ready": bool, "stopping": bool,
                     "workers_wanted": int, "requests": int, "started_on": int}.items():
        assert isinstance(apus[key], typ), (key, apus)
    assert "incoming" in apus and "reload" in apus


def by_pid(doc):
    return {w["pid"]: w for w in doc["workers"]}


@pytest.fixture
def statsapus(apus):
    def start(*args, processes=2, threads=2):
        sport = free_port()
        srv = apus("statsapp", "--processes", str(processes), "--threads", str(threads),
                   "--stats", f"127.0.0.1:{sport}", *args)
        srv.sport = sport
        wait_until(lambda: len(stats(sport)["workers"]) == processes
                   and all(w["state"] == "ready" for w in stats(sport)["workers"]), 15,
                   what=f"{processes} ready workers in the stats")
        return srv
    return start


def test_plain_tcp_document_has_uwsgis_fields_and_the_workers(statsapus):
    srv = statsapus()
    raw = read_raw(srv.sport)
    doc = json.loads(raw)
    check_shape(doc)
    assert doc["pid"] == srv.pid
    assert sorted(w["pid"] for w in doc["workers"]) == sorted(srv.workers())
    assert [w["id"] for w in doc["workers"]] == [1, 2]
    for w in doc["workers"]:
        assert w["accepting"] == 1 and w["status"] == "idle" and w["generation"] == 1
        assert w["rss"] > 1 << 20 and w["vsz"] >= w["rss"]
        assert abs(w["last_spawn"] - time.time()) < 120
        assert len(w["cores"]) == 2 and [c["id"] for c in w["cores"]] == [0, 1]
        assert w["in_progress"] == []
    assert doc["sockets"][0]["name"] == f"127.0.0.1:{srv.port}" and doc["sockets"][0]["proto"] == "http"
    assert doc["sockets"][0]["max_queue"] > 0
    apus = doc["apus"]
    assert apus["generation"] == 1 and apus["incoming"] is None and apus["reload"] is None
    assert apus["ready"] is True and apus["stopping"] is False and apus["workers_wanted"] == 2
    assert abs(apus["started_on"] - time.time()) < 120


def test_listen_queue_counts_connections_nobody_accepts(statsapus):
    srv = statsapus("--listen", "77")
    doc = stats(srv.sport)
    assert doc["listen_queue"] == 0 and doc["sockets"][0]["max_queue"] == 77
    workers = srv.workers()
    for pid in workers:
        os.kill(pid, signal.SIGSTOP)
    waiting = []
    try:
        waiting = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(5)]
        doc = wait_until(lambda: (d := stats(srv.sport))["listen_queue"] >= 5 and d, 5,
                         what="5 connections in the accept queue")
        assert doc["listen_queue"] == 5 and doc["sockets"][0]["queue"] == 5
    finally:
        for pid in workers:
            os.kill(pid, signal.SIGCONT)
        for s in waiting:
            s.close()
    wait_until(lambda: stats(srv.sport)["listen_queue"] == 0, 10, what="the queue drained")
    assert srv.get("/").status == 200


def test_unix_socket_stats(apus, tmp_path):
    path = str(tmp_path / "stats.sock")
    srv = apus("statsapp", "--processes", "2", "--stats", path)
    doc = json.loads(read_raw(path))
    check_shape(doc)
    assert doc["pid"] == srv.pid
    wait_until(lambda: len(stats(path)["workers"]) == 2, 15, what="2 workers")


def test_stats_http(apus):
    sport = free_port()
    srv = apus("statsapp", "--processes", "2", "--stats", f"127.0.0.1:{sport}", "--stats-http")
    srv.sport = sport
    # Plain clients get nothing from an HTTP stats port until they send a request.
    with socket.create_connection(("127.0.0.1", sport), timeout=10) as s:
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(1)
    status, ctype, body = http(srv.sport, "/")
    assert status == 200 and ctype == "application/json"
    check_shape(json.loads(body))
    status, ctype, body = http(srv.sport, "/anything?x=1")
    assert status == 200 and json.loads(body)["pid"] == srv.pid
    assert http(srv.sport, "/healthz")[0] == 200
    assert http(srv.sport, "/readyz")[0] == 200


def test_requests_tx_and_times_are_counted_per_worker(statsapus):
    srv = statsapus()
    before = by_pid(stats(srv.sport))
    n = 40
    served = {}
    for _ in range(n):
        r = srv.get("/")
        assert r.status == 200
        pid = int(r.body)
        served[pid] = served.get(pid, 0) + 1
    assert set(served) <= set(before)

    def counted():
        doc = stats(srv.sport)
        now = by_pid(doc)
        return all(now[p]["requests"] - before[p]["requests"] == served.get(p, 0) for p in before) and doc
    doc = wait_until(counted, 5, what=f"the stats to count {served}")
    assert sum(w["requests"] for w in doc["workers"]) == sum(w["requests"] for w in before.values()) + n
    assert doc["apus"]["requests"] == sum(w["requests"] for w in doc["workers"])
    for pid, w in by_pid(doc).items():
        if served.get(pid):
            assert w["tx"] - before[pid]["tx"] == sum(len(str(pid)) for _ in range(served[pid]))
            assert w["running_time"] > 0 and 0 < w["avg_rt"] < 1_000_000 and w["last_rt"] > 0
            assert w["avg_rt"] == w["running_time"] // w["requests"]


def test_exceptions_are_counted(statsapus):
    srv = statsapus(processes=1)
    assert srv.get("/raise").status == 500
    assert srv.get("/raise").status == 500
    wait_until(lambda: stats(srv.sport)["workers"][0]["exceptions"] == 2, 5, what="2 exceptions")


def slow_request(port, target, seconds):
    """Send a GET that the app holds for `seconds`; returns the thread reading the answer."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds + 10)
    s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = {}

    def read():
        out["data"] = helpers.read_until_close(s)
        s.close()
    t = threading.Thread(target=read)
    t.start()
    t.out = out
    return t


def test_a_running_request_shows_as_busy_with_its_line(statsapus):
    srv = statsapus()
    t = slow_request(srv.port, b"/slow?s=3", 3)

    def busy():
        return [w for w in stats(srv.sport)["workers"] if w["status"] == "busy"]
    [w] = wait_until(busy, 5, what="a busy worker")
    [p] = w["in_progress"]
    assert p["request"] == "GET /slow?s=3" and 0 <= p["seconds"] < 5
    core = w["cores"][p["core"]]
    assert core["in_request"] == 1 and abs(core["req_info"]["request_start"] - time.time()) < 5
    assert stats(srv.sport)["load"] >= 1
    t.join(15)
    assert t.out["data"].startswith(b"HTTP/1.1 200 ")
    doc = wait_until(lambda: not busy() and stats(srv.sport), 5, what="idle again")
    assert all(w["in_progress"] == [] for w in doc["workers"])
    slow = by_pid(doc)[w["pid"]]
    assert slow["last_rt"] >= 2_900_000


def test_a_hostile_request_line_is_escaped(statsapus):
    srv = statsapus(processes=1)
    target = b'/slow/"q\\b\x85\xe2\x80\xa8\xe2\x80\xa9\xff'
    t = slow_request(srv.port, target, 3)

    def in_flight():
        raw = read_raw(srv.sport)
        doc = json.loads(raw)
        return doc["workers"][0]["in_progress"] and (raw, doc)
    raw, doc = wait_until(in_flight, 5, what="the hostile request in flight")
    raw.decode("utf-8")  # strict: valid UTF-8
    assert b"\xe2\x80\xa8" not in raw and b"\xe2\x80\xa9" not in raw
    line = doc["workers"][0]["in_progress"][0]["request"]
    assert line == 'GET /slow/"q\\b\ufffd\u2028\u2029\ufffd'
    t.join(15)


def test_generation_follows_a_chain_reload(statsapus, tmp_path):
    fifo = tmp_path / "fifo"
    srv = statsapus("--master-fifo", str(fifo))
    old = set(by_pid(stats(srv.sport)))
    fifo_send(fifo, "c")

    def reloaded():
        doc = stats(srv.sport)
        return (doc["apus"]["generation"] == 2 and doc["apus"]["reload"] is None
                and len(doc["workers"]) == 2
                and all(w["generation"] == 2 and w["state"] == "ready" for w in doc["workers"]) and doc)
    seen_chain = []

    def watching():
        doc = stats(srv.sport)
        if doc["apus"]["reload"] is not None:
            seen_chain.append((doc["apus"]["reload"], doc["apus"]["incoming"]))
        return reloaded()
    doc = wait_until(watching, 30, interval=0.02, what="generation 2 serving")
    assert not old & set(by_pid(doc))
    assert doc["apus"]["reloads"] == 1 and doc["apus"]["incoming"] is None
    assert seen_chain and all(s == ("chain", 2) for s in seen_chain), seen_chain


def test_respawn_count_after_a_worker_is_killed(statsapus):
    srv = statsapus()
    doc = stats(srv.sport)
    victim = doc["workers"][1]
    assert victim["respawn_count"] == 0
    os.kill(victim["pid"], signal.SIGKILL)

    def respawned():
        ws = {w["id"]: w for w in stats(srv.sport)["workers"]}
        w = ws.get(victim["id"])
        return w and w["pid"] != victim["pid"] and w["state"] == "ready" and w
    w = wait_until(respawned, 20, what="worker 2 respawned")
    assert w["respawn_count"] == 1 and w["requests"] == 0
    assert {x["id"]: x for x in stats(srv.sport)["workers"]}[1]["respawn_count"] == 0


def test_many_clients_and_one_that_never_reads(statsapus):
    srv = statsapus()
    # A client that connects and never reads, with a tiny receive buffer: the others are
    # still answered and the app keeps serving.
    lazy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    lazy.connect(("127.0.0.1", srv.sport))
    try:
        errors = []

        def client():
            try:
                for _ in range(5):
                    check_shape(stats(srv.sport))
            except Exception as e:  # noqa: BLE001 (reported below)
                errors.append(repr(e))
        threads = [threading.Thread(target=client) for _ in range(20)]
        for t in threads:
            t.start()
        for _ in range(10):
            assert srv.get("/").status == 200
        for t in threads:
            t.join(30)
        assert errors == []
    finally:
        lazy.close()
    assert srv.get("/").status == 200


@pytest.mark.parametrize("how", ["tcp", "unix", "http"])
def test_uwsgitop_shows_the_workers(apus, tmp_path, how):
    # scripts/test.sh installs both: a missing one fails the test rather than skipping it.
    assert shutil.which("tmux") is not None and os.path.exists(UWSGITOP), "needs tmux and uwsgitop"
    sport = free_port()
    path = str(tmp_path / "stats.sock")
    args = {"tcp": ["--stats", f"127.0.0.1:{sport}"], "unix": ["--stats", f"unix:{path}"],
            "http": ["--stats", f"127.0.0.1:{sport}", "--stats-http"]}[how]
    srv = apus("statsapp", "--processes", "2", "--threads", "2", *args)
    for _ in range(5):
        srv.get("/")
    wait_until(lambda: len(srv.workers()) == 2 and srv.workers(), 15, what="2 workers")
    pids = srv.workers()
    target = {"tcp": f"127.0.0.1:{sport}", "unix": path, "http": f"http://127.0.0.1:{sport}/"}[how]
    name = f"apus-stats-{srv.port}"
    env = dict(os.environ, TERM="xterm")
    subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "200", "-y", "50",
                    f"{UWSGITOP} {target}; sleep 30"], check=True, env=env)
    try:
        def screen():
            out = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True,
                                 text=True, env=env).stdout
            rows = [l for l in out.splitlines() if any(f" {p} " in l for p in pids)]
            return len(rows) == len(pids) and out
        out = wait_until(screen, 15, interval=0.2, what=f"uwsgitop rows for the workers {pids}")
        assert "uwsgi-apus " in out and "WID" in out and "Traceback" not in out
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], env=env)


def test_sigterm_turns_ready_off_and_stopping_on(statsapus):
    srv = statsapus()
    apus = stats(srv.sport)["apus"]
    assert apus["ready"] is True and apus["stopping"] is False
    # A request in flight keeps the graceful shutdown draining while the stats are read.
    t = slow_request(srv.port, b"/slow?s=3", 3)
    wait_until(lambda: any(w["in_progress"] for w in stats(srv.sport)["workers"]), 5, what="in flight")
    srv.signal(signal.SIGTERM)
    apus = wait_until(lambda: (a := stats(srv.sport)["apus"])["stopping"] and a, 5, what="stopping")
    assert apus["ready"] is False
    t.join(15)
    assert t.out["data"].startswith(b"HTTP/1.1 200 ")
    assert srv.wait_exit(20) == 0


def test_harakiri_count_shows_on_the_worker_being_replaced(statsapus):
    srv = statsapus("--harakiri", "1")
    t = slow_request(srv.port, b"/slow?s=4", 4)
    [w] = wait_until(lambda: [w for w in stats(srv.sport)["workers"] if w["in_progress"]], 5, what="in flight")

    def counted():
        doc = stats(srv.sport)
        return [x for x in doc["workers"] if x["pid"] == w["pid"] and x["harakiri_count"] == 1]
    [x] = wait_until(counted, 10, interval=0.02, what="harakiri_count 1 on the slow request's worker")
    assert x["id"] == w["id"] and x["state"] in ("recycling", "retiring")
    t.join(15)
