"""The master's controls other than reloads: the FIFO's +, -, s, q, Q and unknown commands,
SIGTTIN/SIGTTOU, --pidfile, SIGUSR1 (and --log-file reopening on it)."""
import os
import re
import signal
import socket
import time

import pytest

import conftest
from helpers import (alive, build_request, fifo_send, get, read_until_close, session_members, wait_log,
                     wait_until)

pytestmark = pytest.mark.skipif("--master-fifo" not in conftest.run_apus(["--help"]).stdout,
                                reason="this apus binary has no --master-fifo")


@pytest.fixture
def fifo_apus(apus, tmp_path):
    def start(*args, processes=2, **kw):
        fifo = tmp_path / "master.fifo"
        srv = apus("pidapp", "--master-fifo", fifo, "--processes", processes, "--no-access-log",
                   *args, **kw)
        srv.fifo = fifo
        wait_until(lambda: len(srv.workers()) == processes, 20, what=f"{processes} workers")
        return srv
    return start


def _count(srv, n, what):
    return wait_until(lambda: len(srv.workers()) == n, 30, what=f"{n} workers ({what})")


def test_fifo_plus_minus(fifo_apus):
    srv = fifo_apus(processes=2)
    fifo_send(srv.fifo, "+")
    _count(srv, 3, "after +")
    fifo_send(srv.fifo, "+")
    _count(srv, 4, "after + +")
    fifo_send(srv.fifo, "-")
    _count(srv, 3, "after -")
    fifo_send(srv.fifo, "-")
    _count(srv, 2, "after - -")
    # and they all serve
    pids = {get(srv.port).json()["pid"] for _ in range(20)}
    assert pids <= set(srv.workers())
    time.sleep(1.0)
    assert len(srv.workers()) == 2, "the worker count did not stay where it was put"


def test_ttin_ttou(fifo_apus):
    srv = fifo_apus(processes=2)
    srv.signal(signal.SIGTTIN)
    _count(srv, 3, "after SIGTTIN")
    srv.signal(signal.SIGTTOU)
    _count(srv, 2, "after SIGTTOU")
    srv.signal(signal.SIGTTOU)
    _count(srv, 1, "after SIGTTOU twice")
    assert get(srv.port).status == 200


def test_minus_keeps_at_least_one_worker(fifo_apus):
    srv = fifo_apus(processes=1)
    fifo_send(srv.fifo, "-")
    time.sleep(1.5)
    assert len(srv.workers()) == 1
    assert get(srv.port).status == 200


def test_stats_to_log(fifo_apus):
    srv = fifo_apus(processes=2)
    offset = len(srv.log())
    fifo_send(srv.fifo, "s")
    wait_log(srv.log, r"(?i)stats", 10, start=offset, what="stats in the log")
    time.sleep(0.3)
    new = srv.log()[offset:]
    for pid in srv.workers():  # every worker is in the stats
        assert str(pid) in new, new


def test_unknown_fifo_command_logged_and_ignored(fifo_apus):
    srv = fifo_apus(processes=2)
    workers = srv.workers()
    offset = len(srv.log())
    fifo_send(srv.fifo, "x")
    m = wait_log(srv.log, r"^.*\bx\b.*$", 10, start=offset, what="the unknown command in the log")
    assert re.search(r"(?i)unknown|ignor", m.group(0)), m.group(0)
    time.sleep(1.0)
    assert srv.proc.poll() is None
    assert srv.workers() == workers
    assert get(srv.port).status == 200


def _slow_request(port, seconds):
    s = socket.create_connection(("127.0.0.1", port), timeout=60)
    s.sendall(build_request("GET", f"/sleep?s={seconds}", {"Connection": "close"}))
    return s


def _read_all(s):
    data = read_until_close(s)
    s.close()
    return data


def test_fifo_q_graceful_stop(fifo_apus, tmp_path):
    started = tmp_path / "started.log"
    srv = fifo_apus(processes=2, env={"STARTED_LOG": str(started)})
    s = _slow_request(srv.port, 2)
    wait_until(lambda: started.exists(), 10, what="the request inside the app")
    fifo_send(srv.fifo, "q")
    data = _read_all(s)
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert srv.wait_exit(30) == 0


def test_fifo_Q_immediate_stop(fifo_apus, tmp_path):
    started = tmp_path / "started.log"
    srv = fifo_apus(processes=2, env={"STARTED_LOG": str(started)})
    members = session_members(srv.pid)
    s = _slow_request(srv.port, 30)
    wait_until(lambda: started.exists(), 10, what="the request inside the app")
    t = time.monotonic()
    fifo_send(srv.fifo, "Q")
    rc = srv.wait_exit(10)
    assert rc is not None, "Q did not stop the server within 10 s (a 30 s request was running)"
    s.settimeout(10)
    data = _read_all(s)
    assert not data.startswith(b"HTTP/1.1 200")
    assert time.monotonic() - t < 15
    wait_until(lambda: not any(alive(p) for p in members if p != srv.pid), 10,
               what="every worker to be gone")


def test_pidfile(apus, tmp_path):
    pidfile = tmp_path / "run" / "apus.pid"
    pidfile.parent.mkdir()
    srv = apus("pidapp", "--pidfile", pidfile, "--processes", "1")
    wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), 10, what="the pidfile")
    assert int(pidfile.read_text().strip()) == srv.pid
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert not pidfile.exists()


def test_sigusr1_does_not_stop_and_reopens_the_log_file(apus, tmp_path):
    logfile = tmp_path / "apus.log"
    srv = apus("pidapp", "--log-file", logfile, "--processes", "2")
    # The first answer comes from one worker; the other may still be starting.
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 workers")
    workers = srv.workers()
    wait_until(lambda: logfile.exists() and logfile.stat().st_size > 0, 10, what="the log file")
    rotated = tmp_path / "apus.log.1"
    os.rename(logfile, rotated)
    srv.signal(signal.SIGUSR1)
    time.sleep(1.0)
    assert srv.proc.poll() is None, "SIGUSR1 stopped the server"
    assert get(srv.port).status == 200
    assert srv.workers() == workers
    # the log goes to a new file at the old path: make the master write something
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(20) == 0
    assert logfile.exists(), "no new log file after SIGUSR1"
    assert logfile.stat().st_size > 0
