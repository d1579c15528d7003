"""Signals: SIGTERM/SIGINT drain everything accepted or queued, then exit 0; SIGQUIT stops
at once; workers never outlive a SIGKILLed master."""
import os
import signal
import socket
import threading
import time

import pytest

from helpers import alive, session_members, build_request, parse_response, read_until_close, wait_until


_read_all = read_until_close


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_stop_answers_everything(apus, tmp_path, sig):
    started = tmp_path / "started.log"
    srv = apus("pidapp", "--processes", "2", "--threads", "2", "--shutdown-timeout", "20",
               env={"STARTED_LOG": str(started)})
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 worker processes")
    socks = []
    # 4 slow requests in flight (2 workers x 2 threads) ...
    for _ in range(4):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(build_request("GET", "/sleep?s=2", {"Connection": "close"}))
        socks.append(s)
    wait_until(lambda: started.exists() and len(started.read_text().splitlines()) >= 4, 15,
               what="4 requests inside the app")
    # ... and 4 more connected with their request sent, waiting behind them
    for i in range(4):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
        s.sendall(build_request("GET", f"/?queued={i}", {"Connection": "close"}))
        socks.append(s)
    srv.signal(sig)
    results = [None] * len(socks)

    def collect(i):
        results[i] = _read_all(socks[i])

    threads = [threading.Thread(target=collect, args=(i,)) for i in range(len(socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    for s in socks:
        s.close()
    statuses = [parse_response(r).status if r else None for r in results]
    assert statuses == [200] * 8, statuses
    rc = srv.wait_exit(25)
    assert rc == 0, f"exit status {rc}"


def test_new_connections_refused_after_drain(apus):
    srv = apus("pidapp", "--processes", "1")
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(25) == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_sigquit_stops_immediately(apus):
    srv = apus("pidapp", "--processes", "2", "--shutdown-timeout", "60")
    workers = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and w, 20,
                         what="2 worker processes")
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(build_request("GET", "/sleep?s=30", {"Connection": "close"}))
    time.sleep(0.5)
    t0 = time.monotonic()
    srv.signal(signal.SIGQUIT)
    rc = srv.wait_exit(10)
    assert rc is not None, "SIGQUIT did not stop the server within 10 s (a 30 s request was running)"
    s.settimeout(10)
    data = _read_all(s)  # the in-flight request is abandoned: EOF or reset, not a 30 s wait
    s.close()
    assert not data.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - t0 < 15
    wait_until(lambda: not any(alive(p) for p in workers), 10, what="workers to be gone")


@pytest.mark.parametrize("preload", [False, True], ids=["fork", "preload"])
def test_workers_die_with_master(apus, preload):
    srv = apus("pidapp", "--processes", "2", *(["--preload"] if preload else []))
    # every process apus started (workers, and with --preload the process that imported
    # the app); apus runs in its own session, so they are the session's members
    members = wait_until(lambda: (m := session_members(srv.pid)) and len(m) >= 3 and m, 20,
                         what="the master and 2 workers")
    os.kill(srv.pid, signal.SIGKILL)
    srv.wait_exit(10)
    others = [p for p in members if p != srv.pid]
    wait_until(lambda: not any(alive(p) for p in others), 10,
               what=f"processes {others} to exit after the master was killed")
