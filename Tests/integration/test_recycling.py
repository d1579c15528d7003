"""Recycling workers: --max-requests (with --max-requests-jitter), --max-worker-lifetime,
--reload-on-rss and --evil-reload-on-rss, over real sockets.

A recycled worker's replacement is ready before it stops taking connections, so a load
running meanwhile (keep-alive and connection-per-request clients, `loadgen.py`) sees no failed
request. Only --evil-reload-on-rss costs something: the requests the killed worker had in
flight. The waits are generous and nothing is timed tightly (the machine may be small and
shared).
"""
import re
import threading
import time

import pytest

from helpers import fifo_send, get, wait_log, wait_until
from loadgen import LoadGen, format_summary

MAX_REQ_RE = re.compile(r"master: worker \d+ \(pid (\d+)\) served its --max-requests", re.M)
BUDGET_RE = re.compile(r"served (\d+) requests \(--max-requests (\d+)(?: \+ (\d+) of --max-requests-jitter (\d+))?\)")
RSS_RE = re.compile(r"master: worker \d+ \(pid (\d+)\) uses (\d+) MiB, above --reload-on-rss", re.M)
EVIL_RE = re.compile(r"master: worker \d+ \(pid (\d+)\) uses (\d+) MiB, above --evil-reload-on-rss (\d+) MiB: killing it \(SIGKILL\)", re.M)
LIFETIME_RE = re.compile(r"master: worker \d+ \(pid (\d+)\) reached --max-worker-lifetime", re.M)


def load(srv, path="/", keepalive=3, per_request=3):
    return LoadGen(srv.port, path, keepalive=keepalive, per_request=per_request, interval=0.002,
                   max_duration=300, timeout=30.0).start()


def recycle_under_load(srv, pattern, count, timeout, what, **load_kw):
    """Runs a load until `pattern` has matched `count` times in the log; returns the
    stopped load and the matches, after checking no worker was matched twice."""
    lg = load(srv, **load_kw)
    try:
        wait_until(lambda: len(pattern.findall(srv.log())) >= count, timeout, interval=0.2, what=what)
    finally:
        lg.stop()
    found = pattern.findall(srv.log())
    assert len(set(found)) == len(found), f"a worker was recycled twice: {found}"
    return lg, found


def assert_no_failures(lg, at_least=50):
    s = lg.summary()
    bad = [r for r in lg.records if r.error][:10]
    assert s["failed"] == 0, format_summary(s) + "\n" + "\n".join(repr(r) for r in bad)
    assert s["ok"] >= at_least, f"too few requests to mean anything: {format_summary(s)}"


def test_fifty_max_requests_recycles_under_load_fail_nothing(apus):
    srv = apus("pidapp:application", "--processes", 2, "--max-requests", 20,
               "--max-requests-jitter", 5, "--no-access-log")
    lg, _ = recycle_under_load(srv, MAX_REQ_RE, 50, 240, "50 --max-requests recycles")
    log = srv.log()
    assert_no_failures(lg, at_least=1000)
    # The answers came from many workers, each serving about its budget.
    pids = {r.pid for r in lg.records if r.ok}
    assert len(pids) >= 50, f"only {len(pids)} distinct workers answered"
    # Each worker asked once, at its own limit between 20 and 25.
    for served, base, extra, jitter in BUDGET_RE.findall(log):
        assert int(base) == 20 and int(jitter) == 5 and 0 <= int(extra) <= 5 and int(served) == 20 + int(extra)
    assert srv.proc.poll() is None


def test_jitter_gives_each_worker_its_own_limit(apus):
    srv = apus("pidapp:application", "--processes", 1, "--max-requests", 20,
               "--max-requests-jitter", 5, "--no-access-log")
    served_by = {}
    deadline = time.monotonic() + 120
    while len(BUDGET_RE.findall(srv.log())) < 8 and time.monotonic() < deadline:
        pid = get(srv.port, "/").json()["pid"]
        served_by[pid] = served_by.get(pid, 0) + 1
    budgets = [int(m[0]) for m in BUDGET_RE.findall(srv.log())]
    assert len(budgets) >= 8, srv.describe()
    assert all(20 <= b <= 25 for b in budgets), budgets
    # 8 draws of 0..5 all alike: about 1 chance in 50,000.
    assert len(set(budgets)) > 1, f"every worker drew the same limit: {budgets}"


def test_max_requests_without_jitter_is_exact(apus):
    srv = apus("pidapp:application", "--processes", 1, "--max-requests", 7, "--no-access-log")
    wait_until(lambda: [get(srv.port, "/") for _ in range(3)] and len(BUDGET_RE.findall(srv.log())) >= 3, 60,
               what="3 recycles")
    assert {m[0] for m in BUDGET_RE.findall(srv.log())} == {"7"}
    assert "--max-requests-jitter" not in "".join(l for l in srv.log().splitlines() if "served 7" in l)


def test_threaded_workers_ask_once_at_their_exact_budget(apus):
    """With --threads, requests finish on several threads: the count is kept with the GIL
    held, so each worker reaches its limit once, exactly, and is recycled once."""
    srv = apus("pidapp:application", "--processes", 2, "--threads", 4, "--max-requests", 30,
               "--no-access-log")
    lg, _ = recycle_under_load(srv, MAX_REQ_RE, 20, 180, "20 recycles", keepalive=4, per_request=4)
    log = srv.log()
    asked = re.findall(r"\[(\d+)\] \[INFO\] worker \d+: served (\d+) requests", log)
    assert len({pid for pid, _ in asked}) == len(asked), "a worker asked twice"
    assert {n for _, n in asked} == {"30"}
    assert_no_failures(lg)


def leak_steadily(srv, stop, failures, mb=5, pause=0.1):
    """One client asking /leak?mb=… back to back (each answer keeps `mb` more MiB)."""
    while not stop.is_set():
        try:
            r = get(srv.port, f"/leak?mb={mb}", timeout=30)
            if r.status != 200:
                failures.append(r.status)
        except Exception as e:  # noqa: BLE001 - any failure counts
            failures.append(repr(e))
        time.sleep(pause)


def test_reload_on_rss_recycles_a_leaking_worker(apus):
    srv = apus("leaky:application", "--processes", 2, "--reload-on-rss", 80, "--no-access-log")
    first = set(srv.workers())
    lg = load(srv, keepalive=2, per_request=2)
    stop, failures = threading.Event(), []
    leaker = threading.Thread(target=leak_steadily, args=(srv, stop, failures), daemon=True)
    leaker.start()
    try:
        wait_until(lambda: len(RSS_RE.findall(srv.log())) >= 3, 120, interval=0.2,
                   what="3 --reload-on-rss recycles")
    finally:
        stop.set()
        leaker.join(60)
        lg.stop()
    found = RSS_RE.findall(srv.log())
    assert all(int(mib) > 80 for _, mib in found), found
    assert len({pid for pid, _ in found}) == len(found), f"a worker was recycled twice: {found}"
    assert failures == []
    assert_no_failures(lg)
    # The recycled workers leave, and new ones serve.
    recycled = {int(pid) for pid, _ in found}
    wait_until(lambda: not (recycled & set(srv.workers())), 60, what="the recycled workers to exit")
    assert set(srv.workers()) - first
    assert get(srv.port, "/").status == 200


def test_evil_reload_on_rss_kills_a_worker_at_once(apus):
    srv = apus("leaky:application", "--processes", 2, "--evil-reload-on-rss", 150,
               "--reload-mercy", 60, "--no-access-log")
    # 300 MiB at once, then the request stays in the app: killed in flight. It goes in first,
    # alone: with one thread, a worker in the app takes no other connection, so the load that
    # follows only meets the other worker and the replacement (a connection taken in the same
    # epoll batch as the hog would die with it, which is not what this test is about).
    def hog():
        try:
            get(srv.port, "/hog?mb=300&hold=30", timeout=60)
        except Exception:  # noqa: BLE001 - its connection dies with the worker
            pass
    hogger = threading.Thread(target=hog, daemon=True)
    hogger.start()
    time.sleep(0.5)
    lg = load(srv, keepalive=1, per_request=1)
    try:
        m = wait_log(srv.log, EVIL_RE, 60, what="the SIGKILL line")
        pid = m.group(1)
        assert int(m.group(2)) > 150 and m.group(3) == "150"
        wait_log(srv.log, rf"worker \d+ \(pid {pid}\) died \(killed by signal 9 \(SIGKILL\)\); respawning", 30)
        wait_log(srv.log, rf"worker \d+ \(pid {pid}\) had in flight: GET /hog\?mb=300&hold=30", 30)
        wait_until(lambda: len(srv.workers()) == 2 and int(pid) not in srv.workers(), 60,
                   what="a new worker in place of the killed one")
        time.sleep(1)
    finally:
        lg.stop()
    # Only the killed worker's own request was lost: the load went on.
    assert_no_failures(lg, at_least=20)
    assert get(srv.port, "/").status == 200
    assert len(EVIL_RE.findall(srv.log())) == 1


def test_max_worker_lifetime_recycles_under_load_failing_nothing(apus):
    srv = apus("pidapp:application", "--processes", 2, "--max-worker-lifetime", 2, "--no-access-log")
    lg = load(srv, keepalive=2, per_request=2)
    try:
        wait_until(lambda: len(LIFETIME_RE.findall(srv.log())) >= 6, 120, interval=0.2,
                   what="6 --max-worker-lifetime recycles")
    finally:
        lg.stop()
    found = LIFETIME_RE.findall(srv.log())
    assert len(set(found)) == len(found), f"a worker was recycled twice: {found}"
    assert_no_failures(lg)
    assert len({r.pid for r in lg.records if r.ok}) >= 6


@pytest.mark.parametrize("command", ["c", "w", "r"])
def test_max_requests_recycling_goes_on_through_reloads(apus, tmp_path, command):
    fifo = tmp_path / "master.fifo"
    srv = apus("pidapp:application", "--processes", 2, "--max-requests", 15,
               "--max-requests-jitter", 5, "--master-fifo", fifo, "--no-access-log")
    lg = load(srv, keepalive=2, per_request=2)
    try:
        wait_until(lambda: len(MAX_REQ_RE.findall(srv.log())) >= 4, 120, interval=0.1, what="4 recycles")
        for _ in range(3):
            start = len(srv.log())
            fifo_send(fifo, command)
            wait_log(srv.log, r"done: generation \d+ serving", 90, start=start, what="the reload to finish")
        after = len(MAX_REQ_RE.findall(srv.log()))
        wait_until(lambda: len(MAX_REQ_RE.findall(srv.log())) >= after + 6, 120, interval=0.1,
                   what="6 recycles after the reloads")
    finally:
        lg.stop()
    log = srv.log()
    recycled = MAX_REQ_RE.findall(log)
    assert len(set(recycled)) == len(recycled), f"a worker was recycled twice: {recycled}"
    assert "reload failed" not in log
    assert_no_failures(lg)
    # Back at strength: two workers serve, none left over.
    wait_until(lambda: len(srv.workers()) == 2, 60, what="two workers")
