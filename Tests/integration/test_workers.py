"""Processes and threads: real parallelism, crash recovery, balance under keep-alive,
--preload, and a slow client that must not block anyone."""
import collections
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

import helpers
from helpers import Conn, build_request, get, parse_response, wait_until


def test_processes_and_threads_serve_in_parallel(apus, tmp_path):
    """8 requests that each wait (up to 15 s) until all 8 are inside the app at once:
    this only succeeds if 2 processes x 4 threads really run them together."""
    srv = apus("pidapp", "--processes", "2", "--threads", "4", env={"BARRIER_DIR": str(tmp_path)})
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 worker processes")
    key = uuid.uuid4().hex

    def one(_):
        r = get(srv.port, f"/barrier?key={key}&n=8&timeout=15", timeout=30)
        assert r.status == 200
        return r.json()

    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(one, range(8)))
    assert all(r["reached"] for r in results), results
    assert len({(r["pid"], r["tid"]) for r in results}) == 8
    assert len({r["pid"] for r in results}) == 2


def test_threads_only_serve_in_parallel(apus, tmp_path):
    srv = apus("pidapp", "--processes", "1", "--threads", "4", env={"BARRIER_DIR": str(tmp_path)})
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: get(srv.port, f"/barrier?key={key}&n=4&timeout=15",
                                            timeout=30).json(), range(4)))
    assert all(r["reached"] for r in results), results
    assert len({r["pid"] for r in results}) == 1


@pytest.mark.parametrize("path", ["/sleep?s=6", "/spin?s=6"], ids=["waiting", "cpu-bound"])
def test_a_long_request_does_not_hold_the_other_threads_back(apus, path):
    """One thread's request runs for 6 s, waiting (GIL released) or computing (GIL held):
    the worker's other thread takes the loop over and serves new connections and a
    keep-alive one meanwhile (CPython hands the GIL over every few milliseconds)."""
    srv = apus("pidapp", "--processes", "1", "--threads", "2")
    get(srv.port, "/", timeout=10)
    with ThreadPoolExecutor(1) as ex:
        long = ex.submit(get, srv.port, path, timeout=30)
        time.sleep(0.5)
        assert not long.done()
        c = Conn(srv.port, timeout=10)
        tids = set()
        for _ in range(20):
            tids.add(get(srv.port, "/", timeout=10).json()["tid"])
            c.send(build_request("GET", "/"))
            tids.add(c.response().json()["tid"])
        c.close()
        assert not long.done(), "the quick requests were served only after the long one"
        r = long.result(timeout=30)
    assert r.status == 200
    assert r.json()["tid"] not in tids, "the long request's thread was busy: another served them"


@pytest.mark.parametrize("how", ["/exit", "/segv", "/segv-real"])
def test_crashed_worker_is_respawned(apus, how):
    srv = apus("crash", "--processes", "2")
    before = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and w, 20,
                        what="2 worker processes")
    try:
        r = get(srv.port, how, timeout=10)
    except Exception:
        r = None  # the crashing worker drops the connection
    assert r is None or r.status >= 500, \
        f"the worker survived {how} and answered {r.status}: {r.body[:100]!r}"
    # the server keeps answering while the dead worker is replaced
    for _ in range(20):
        r = get(srv.port, "/", timeout=10)
        assert r.status == 200
    after = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and set(w) != set(before) and w,
                       20, what="a replacement worker")
    assert len(set(before) & set(after)) == 1, (before, after)
    new_pid = (set(after) - set(before)).pop()
    # the new worker serves too
    seen = set()
    deadline = time.monotonic() + 20
    while new_pid not in seen and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as ex:
            seen |= set(ex.map(lambda _: int(get(srv.port, "/", timeout=10).body), range(8)))
    assert new_pid in seen, f"the respawned worker {new_pid} never answered (saw {seen})"
    assert srv.proc.poll() is None, "the master died"


@pytest.mark.parametrize("preload", [False, True], ids=["lazy", "preload"])
def test_killed_zygote_is_replaced(apus, preload):
    """The zygote forks every worker: when it dies the workers keep serving, a new one
    starts, and a worker that dies afterwards is replaced from it."""
    srv = apus("pidapp", "--processes", "2", *(["--preload"] if preload else []))
    workers = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and w, 20, what="2 workers")

    def zygotes():
        return [p for p in helpers.children_of(srv.pid) if p not in srv.workers()]

    [zygote] = wait_until(lambda: (z := zygotes()) and len(z) == 1 and z, 20, what="the zygote")
    os.kill(zygote, signal.SIGKILL)
    [second] = wait_until(lambda: (z := zygotes()) and z != [zygote] and len(z) == 1 and z, 20,
                          what="a new zygote")
    assert sorted(srv.workers()) == sorted(workers), "the workers did not outlive their zygote"
    for _ in range(4):
        assert get(srv.port, "/").status == 200
    os.kill(workers[0], signal.SIGKILL)
    after = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and workers[0] not in w and w, 20,
                       what="a replacement worker")
    [new] = set(after) - set(workers)
    seen = set()
    deadline = time.monotonic() + 20
    while new not in seen and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as ex:
            seen |= {j["pid"] for j in ex.map(lambda _: get(srv.port, "/sleep?s=0.05").json(), range(8))}
    assert new in seen, f"the new worker {new} never answered (saw {seen})"
    assert srv.proc.poll() is None, "the master died"


@pytest.mark.parametrize("threads", ["1", "2"])
def test_connections_opened_one_after_another_are_all_served(apus, threads):
    """New connections one at a time, each kept open: the workers take turns (connection
    tally), and a worker that is woken for a connection it does not want must not have been
    in the listeners' wait queue, or that connection is left in the backlog with no worker
    told of it."""
    srv = apus("pidapp", "--processes", "2", "--threads", threads, "--keep-alive", "60")
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 worker processes")
    conns = []
    try:
        pids = collections.Counter()
        for i in range(24):
            c = Conn(srv.port, timeout=5)
            conns.append(c)
            r = c.request("GET", f"/?i={i}")
            assert r.status == 200, i
            pids[r.json()["pid"]] += 1
        for c in conns:
            assert c.request("GET", "/").status == 200
        assert len(pids) == 2 and min(pids.values()) >= 8, pids
    finally:
        for c in conns:
            c.close()


def test_balance_under_keep_alive(apus):
    """32 keep-alive connections against 2 workers: each worker serves 35-65%."""
    srv = apus("pidapp", "--processes", "2")
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 worker processes")
    counts = collections.Counter()
    lock = threading.Lock()
    start = threading.Barrier(32)

    def client(_):
        with Conn(srv.port, timeout=30) as c:
            start.wait(30)
            local = collections.Counter()
            for i in range(25):
                r = c.request("GET", f"/?i={i}")
                assert r.status == 200
                local[r.json()["pid"]] += 1
        with lock:
            counts.update(local)

    with ThreadPoolExecutor(32) as ex:
        list(ex.map(client, range(32)))
    total = sum(counts.values())
    assert total == 32 * 25
    assert len(counts) == 2, f"only one worker served: {counts}"
    for pid, n in counts.items():
        assert 0.35 <= n / total <= 0.65, f"unbalanced: {dict(counts)}"


def test_preload_imports_once_before_fork(apus):
    """--preload: the app is imported once, by a process that is not a worker (the workers
    are forked from it; they need not be direct children of the master)."""
    srv = apus("pidapp", "--processes", "2", "--preload")
    seen = {}
    deadline = time.monotonic() + 20
    while len(seen) < 2 and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as ex:
            for j in ex.map(lambda _: get(srv.port, "/sleep?s=0.2").json(), range(8)):
                seen[j["pid"]] = j["import_pid"]
    assert len(seen) == 2, f"responses came from {sorted(seen)} only"
    members = helpers.session_members(srv.pid)
    assert set(seen) <= set(members), (seen, members)
    import_pids = set(seen.values())
    assert len(import_pids) == 1, f"imported more than once: {seen}"
    assert import_pids.pop() not in seen, "with --preload the app must be imported before the fork"


def test_without_preload_each_worker_imports(apus):
    srv = apus("pidapp", "--processes", "1")
    j = get(srv.port, "/").json()
    assert j["import_pid"] == j["pid"]


def test_slow_client_does_not_block_others(apus):
    """One worker, one thread: a client trickling its head must not hold up the others."""
    srv = apus("pidapp", "--processes", "1", "--threads", "1")
    data = build_request("GET", "/slow-client", {"Connection": "close"})
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=20)
    stop = threading.Event()

    def trickle():
        for b in data[:-1]:
            if stop.is_set():
                return
            s.sendall(bytes([b]))
            time.sleep(0.05)

    t = threading.Thread(target=trickle)
    t.start()
    try:
        time.sleep(0.2)
        for i in range(10):
            assert t.is_alive(), "the slow head was sent before the fast requests finished"
            r = get(srv.port, f"/?fast={i}", timeout=3)
            assert r.status == 200
    except BaseException:
        stop.set()
        raise
    finally:
        t.join()
    s.sendall(data[-1:])
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    assert parse_response(got).status == 200
