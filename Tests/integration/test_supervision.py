"""Supervision over real sockets: a crashing worker costs only what it had in flight and the
master says what that was; a worker that keeps failing to start is logged once; --cheaper
adds workers under load and retires them when the load is gone."""
import os
import re
import time
import uuid
from pathlib import Path

import pytest

import helpers
from helpers import get, wait_until
from loadgen import LoadGen

MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory")


def _crash(srv, path):
    try:
        return get(srv.port, path, timeout=30)
    except Exception:
        return None  # the dying worker drops the connection


def _in_memory_cgroup(pid, limit_mb):
    """Moves `pid` into a new cgroup (v1 memory controller) limited to `limit_mb` MiB, so
    that the kernel's OOM killer, not the allocator, ends a process that goes past it."""
    group = MEMORY_CGROUPS / f"apus-test-{uuid.uuid4().hex[:8]}"
    group.mkdir()
    (group / "memory.limit_in_bytes").write_text(str(limit_mb << 20))
    swap = group / "memory.memsw.limit_in_bytes"
    if swap.exists():
        swap.write_text(str(limit_mb << 20))
    (group / "cgroup.procs").write_text(str(pid))
    return group


def _oom_possible():
    return os.geteuid() == 0 and (MEMORY_CGROUPS / "memory.limit_in_bytes").exists() and os.access(MEMORY_CGROUPS, os.W_OK)


@pytest.mark.parametrize("how", ["segv", "exit", "oom"])
def test_a_crash_costs_only_the_requests_in_flight(apus, how):
    """A worker that dies in the middle of a request (a segfault in a C call through ctypes,
    os._exit, the kernel's OOM killer) fails that request; clients that keep sending to the
    server meanwhile are answered by the other worker and the replacement, and the master
    logs how the worker died and which request it had in flight."""
    if how == "oom" and not _oom_possible():
        pytest.skip("needs root and a writable cgroup v1 memory controller")
    srv = apus("crash", "--processes", "2")
    workers = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and w, 20, what="2 workers")
    group = None
    if how == "oom":
        # Each worker in a cgroup of its own: whichever takes the request is the one killed.
        group = [_in_memory_cgroup(pid, 120) for pid in workers]
    # Clients that open a new connection per request: none of them is held by a worker
    # while it is in the crashing call, so every one of their requests must succeed.
    lg = LoadGen(srv.port, "/", keepalive=0, per_request=3, interval=0.02, timeout=10, max_duration=60)
    lg.start()
    try:
        time.sleep(1)
        path = {"segv": "/segv-real", "exit": "/exit", "oom": "/hog?mb=400"}[how]
        r = _crash(srv, path)
        assert r is None or r.status >= 500, f"the worker survived {path}: {r.status}"
        wait_until(lambda: (w := srv.workers()) and len(w) == 2 and set(w) != set(workers), 30,
                   what="a replacement worker")
        time.sleep(1)
    finally:
        lg.stop()
        for g in group or []:
            for _ in range(50):
                try:
                    g.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
    s = lg.summary()
    log = srv.log()
    expected = {"segv": r"killed by signal 11 \(SIGSEGV", "exit": r"exit status 1\)",
                "oom": r"killed by signal 9 \(SIGKILL\).*OOM killer"}[how]
    assert re.search(r"worker \d \(pid \d+\) died \(" + expected, log), log[-3000:]
    line = {"segv": "GET /segv-real", "exit": "GET /exit", "oom": "GET /hog?mb=400"}[how]
    assert re.search(r"had in flight: " + re.escape(line) + r" \(for ", log), log[-3000:]
    assert s["failed"] == 0, (s, log[-3000:])
    assert s["ok"] > 20, s


def test_a_worker_that_keeps_failing_to_start_is_logged_once(apus, tmp_path):
    flag = tmp_path / "fail"
    srv = apus("bootfail", "--processes", "1", env={"BOOTFAIL_FLAG": str(flag)})
    first = wait_until(lambda: (w := srv.workers()) and len(w) == 1 and w[0], 20, what="the worker")
    flag.write_text("x")
    os.kill(first, 9)
    # 0.5 + 1 + 2 s of back-off: at least three failed starts.
    wait_until(lambda: srv.log().count("apus-test-bootfail") >= 3, 30, what="three failed starts")
    log = srv.log()
    assert log.count("died while starting") == 1, log[-4000:]
    assert "retrying in 0.5 s, then with a back-off" in log
    flag.unlink()
    wait_until(lambda: re.search(r"worker 0 ready \(pid \d+, generation 1\) after \d+ failed starts", srv.log()), 60,
               what="the worker back, with the count of failures")
    assert get(srv.port, "/").status == 200


def test_cheaper_adds_workers_under_load_and_retires_them_after(apus):
    """--cheaper 1 --processes 3: one worker at rest; requests that each spend 0.1 s in the
    app from 6 clients keep every worker busy, so workers are added up to 3; when the load
    stops, they are retired one at a time after --cheaper-idle, down to 1. No request fails."""
    srv = apus("pidapp", "--processes", "3", "--cheaper", "1", "--cheaper-idle", "2")
    time.sleep(1)
    assert len(srv.workers()) == 1, srv.log()
    lg = LoadGen(srv.port, "/sleep?s=0.1", keepalive=3, per_request=3, timeout=20, max_duration=90)
    lg.start()
    try:
        wait_until(lambda: srv.log().count("cheaper: all workers busy") >= 2, 40, what="two workers added")
        wait_until(lambda: len(srv.workers()) == 3, 20, what="3 workers")
        time.sleep(2)
    finally:
        lg.stop()
    s = lg.summary()
    pids = {r.pid for r in lg.records if r.pid}
    assert len(pids) == 3, (pids, srv.log()[-3000:])
    assert s["failed"] == 0, s
    wait_until(lambda: srv.log().count("cheaper: the load fitted in fewer workers") >= 2, 30,
               what="two workers retired")
    wait_until(lambda: len(srv.workers()) == 1, 30, what="one worker left")
    assert "(1 wanted, at least 1)" in srv.log()
    assert get(srv.port, "/").status == 200
