"""Slowloris: a thousand connections that send their head or body a byte at a time, next to
one ordinary keep-alive client. The ordinary client keeps its pace, no worker grows past a
stated bound, and every slow connection is closed at its deadline (--header-timeout for a
head, --body-timeout for a body). Also measures what an idle connection costs a worker; the
figures go to docs/http.md."""
import os
import select
import socket
import threading
import time

from helpers import Conn, EXAMPLES, build_request, connect, wait_until

SLOW = 1000
HEAD_TIMEOUT = 4
BODY_TIMEOUT = 4
# RSS a worker may add while it holds the slow connections (each has an 8 KiB read buffer).
GROWTH_BOUND_KIB = 16 * 1024


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def keep_alive_rate(port, seconds):
    """Requests per second one keep-alive client gets, asking as fast as it is answered."""
    n = 0
    with Conn(port, timeout=10) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            r = c.request("GET", "/")
            assert r.status == 200
            n += 1
    return n / seconds


class Trickler:
    """Opens `count` connections; half send a request head one byte a second, half send a
    complete head and then its body one byte a second. Records when each was closed, from
    when its deadline started (the head's first byte, or the end of the head)."""

    def __init__(self, port, count):
        self.port = port
        head = build_request("GET", "/slow-head", {"X-Padding": "p" * 200})
        self.socks = []
        for i in range(count):
            s = connect(port, timeout=10)
            s.setblocking(False)
            if i % 2 == 0:
                self.socks.append({"sock": s, "rest": head, "kind": "head", "start": None, "closed": None})
            else:
                s.sendall(build_request("POST", "/slow-body", {"Content-Length": "100000"}))
                self.socks.append({"sock": s, "rest": b"x" * 100000, "kind": "body",
                                   "start": time.monotonic(), "closed": None})
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            open_ = [c for c in self.socks if c["closed"] is None]
            if not open_:
                return
            for c in open_:
                try:
                    c["sock"].send(c["rest"][:1])
                    c["rest"] = c["rest"][1:]
                    if c["start"] is None:
                        c["start"] = t
                except OSError:
                    c["closed"] = t
            poller = select.poll()
            by_fd = {}
            for c in open_:
                if c["closed"] is None:
                    poller.register(c["sock"].fileno(), select.POLLIN)
                    by_fd[c["sock"].fileno()] = c
            for fd, _ in poller.poll(0):
                c = by_fd[fd]
                try:
                    data = c["sock"].recv(4096)
                except OSError:
                    data = b""
                if not data:
                    c["closed"] = time.monotonic()
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))

    def close(self):
        self.stop.set()
        self.thread.join(10)
        for c in self.socks:
            c["sock"].close()


def test_slowloris_next_to_a_keep_alive_client(apus):
    srv = apus("hello", "--processes", "2", "--header-timeout", str(HEAD_TIMEOUT),
               "--body-timeout", str(BODY_TIMEOUT), chdir=EXAMPLES)
    workers = wait_until(lambda: srv.workers() if len(srv.workers()) == 2 else None, 20, what="2 workers")
    keep_alive_rate(srv.port, 0.5)  # warm up
    idle_rate = keep_alive_rate(srv.port, 2.0)
    before = {pid: rss_kib(pid) for pid in workers}

    slow = Trickler(srv.port, SLOW)
    slow.thread.start()
    try:
        time.sleep(0.5)
        loaded_rate = keep_alive_rate(srv.port, 2.0)
        peak = {pid: rss_kib(pid) for pid in workers}
        wait_until(lambda: all(c["closed"] is not None for c in slow.socks),
                   max(HEAD_TIMEOUT, BODY_TIMEOUT) + 15, interval=0.2, what="every slow connection closed")
    finally:
        slow.close()
    print(f"\nkeep-alive client: {idle_rate:.0f} req/s idle, {loaded_rate:.0f} req/s next to {SLOW} slow "
          f"connections; worker RSS KiB before {before}, with them {peak}")
    assert loaded_rate >= 0.8 * idle_rate, (idle_rate, loaded_rate)
    for pid in workers:
        assert peak[pid] - before[pid] <= GROWTH_BOUND_KIB, (pid, before[pid], peak[pid])
    for kind, limit in (("head", HEAD_TIMEOUT), ("body", BODY_TIMEOUT)):
        held = sorted(c["closed"] - c["start"] for c in slow.socks if c["kind"] == kind)
        # The deadline is checked once a second: closed within [limit, limit + 2] seconds.
        assert held[0] >= limit - 0.5 and held[-1] <= limit + 2.5, (kind, held[0], held[-1])
    assert sorted(srv.workers()) == sorted(workers)


def test_memory_per_idle_connection(apus):
    """RSS of one worker holding 1,000 idle keep-alive connections, minus with none."""
    srv = apus("hello", "--keep-alive", "60", chdir=EXAMPLES)
    pid = wait_until(lambda: srv.workers()[0] if len(srv.workers()) == 1 else None, 20, what="a worker")
    socks = []
    try:
        with Conn(srv.port) as c:
            for _ in range(200):
                c.request("GET", "/")
        base = rss_kib(pid)
        for _ in range(1000):
            c = Conn(srv.port, timeout=10)
            r = c.request("GET", "/")  # served once, then idle in keep-alive
            assert r.status == 200
            socks.append(c)
        wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= 1000, 10, what="1,000 connections held")
        held = rss_kib(pid)
    finally:
        for c in socks:
            c.close()
    per = (held - base) * 1024 / 1000
    print(f"\nidle keep-alive connection: {per:.0f} bytes of worker RSS each ({base} -> {held} KiB for 1,000)")
    assert per < 16 * 1024, per
