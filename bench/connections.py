#!/usr/bin/env python3
"""Ten thousand keep-alive connections: memory per idle connection, and every request answered.

For each server (2 workers x 1 thread, the hello app), one after the other:

1. start it, warm it up on a few connections, and read its RSS with no connection open;
2. open N keep-alive connections (default 10,000); each sends one GET and reads the answer,
   so it has been accepted and served, then stays open and idle;
3. read the RSS again: (RSS with N idle - RSS with none) / N is the memory per idle connection;
4. mixed phase: while all N stay open, --active of them send GETs one after the other
   (a random pause of 0..2 x --think between an answer and the next request) for
   --duration seconds, every latency recorded;
5. wave: then every one of the N connections sends one more GET (spread over --wave-spread
   seconds), which shows that the idle connections are still served.

Every request that is not answered with a 200 (timeout, reset, closed, bad answer) is an
error; so is a connection that is not accepted and served within --timeout. A connection the
server closed while it was idle is counted apart ("closed idle"): its next request goes on a
new connection, as a browser would send it.

Run it with the bench venv's python (bench/setup.sh):

    bench/.venv/bin/python bench/connections.py                     # 10,000, all servers
    bench/.venv/bin/python bench/connections.py -n 2000 --duration 5 --servers apus

Stdlib only; the server start/stop and memory helpers are bench/run.py's.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import multiprocessing as mp
import os
import random
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: servers, process tree, memory, lifecycle)

HOST = run.HOST
APP = run.APPS["hello"]
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---------------------------------------------------------------- servers


def _apus(c: run.Ctx):
    # An idle keep-alive connection is closed after --keep-alive seconds (default 5): here it
    # must outlive the run, as it does in bjoern (no idle timeout) and Granian.
    return run._apus(c) + ["--keep-alive", str(KEEP_ALIVE)]


def _granian_limits(c: run.Ctx):
    # Granian's --backpressure (default backlog/workers = 512) caps the connections a worker
    # serves at once; the others wait in the listen queue, which overflows.
    return run._granian(c) + ["--backlog", str(BACKLOG), "--backpressure", str(N_CONNS)]


KEEP_ALIVE = 300
BACKLOG = 4096
N_CONNS = 10000

SERVERS = {
    "apus": run.Server("apus", _apus, available=run._apus_available,
                       note="--keep-alive raised past the run's length (default 5 s)"),
    "bjoern": run.Server("bjoern", run._bjoern, threads_ok=False,
                         note="bench/servers/bjoern_workers.py, listen backlog 1024"),
    "granian": run.Server("granian", run._granian, note="defaults (--backlog 1024, "
                          "--backpressure backlog/workers)"),
    "granian-limits": run.Server("granian-limits", _granian_limits,
                                 note="--backlog somaxconn --backpressure N"),
}


# ---------------------------------------------------------------- client (one process)


class Client(asyncio.Protocol):
    """One keep-alive connection: one request at a time, answers framed by Content-Length."""

    def __init__(self):
        self.transport = None
        self.buf = b""
        self.waiter: asyncio.Future | None = None
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buf += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4:end + 4 + length]
        self.buf = self.buf[end + 4 + length:]
        status = head.split(" ", 2)[1] if " " in head else "?"
        self.waiter.set_result((status, body))

    def connection_lost(self, exc):
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionResetError("closed by the server"
                                                           + (f": {exc}" if exc else "")))

    async def get(self, timeout: float) -> str | None:
        """None when answered 200 with the hello body, else the kind of error."""
        if self.closed:
            return "closed"
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(REQUEST)
        try:
            status, body = await asyncio.wait_for(self.waiter, timeout)
        except asyncio.TimeoutError:
            return "timeout"
        except ConnectionError:
            return "reset/closed"
        finally:
            self.waiter = None
        if status != "200" or APP.expect not in body:
            return f"HTTP {status}"
        return None


class Book:
    """Latencies and errors of one phase."""

    def __init__(self):
        self.lat: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0
        self.closed_idle = 0

    def error(self, kind: str):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def dump(self) -> dict:
        return {"sent": self.sent, "answered": len(self.lat), "errors": self.errors,
                "closed_idle": self.closed_idle, "lat": self.lat}


async def _connect(port: int) -> Client:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Client, HOST, port)
    return proto


async def open_phase(st: dict, port: int, n: int, concurrency: int, timeout: float,
                     deadline: float) -> dict:
    """Opens n connections, at most `concurrency` not yet served at a time; each is served
    one GET within `timeout` seconds of its connect, or is an error. The phase ends after
    `deadline` seconds: connections whose turn has not come by then are errors too (a server
    that stops accepting would otherwise keep the run for n / concurrency x timeout)."""
    book = Book()
    sem = asyncio.Semaphore(concurrency)
    conns: list[Client | None] = [None] * n
    t0 = time.monotonic()
    end = t0 + deadline

    async def one(i):
        async with sem:
            if time.monotonic() >= end:
                book.error("not tried: open phase deadline passed")
                return
            book.sent += 1
            t = time.perf_counter()
            timeout_i = min(timeout, end - time.monotonic())
            try:
                c = await asyncio.wait_for(_connect(port), timeout_i)
            except asyncio.TimeoutError:
                book.error("connect timeout")
                return
            except OSError as e:
                book.error(f"connect {type(e).__name__}")
                return
            err = await c.get(max(0.1, timeout_i - (time.perf_counter() - t)))
            if err:
                book.error(f"first request {err}")
                if c.transport:
                    c.transport.close()
                return
            book.lat.append(time.perf_counter() - t)
            conns[i] = c

    await asyncio.gather(*(one(i) for i in range(n)))
    st["conns"] = [c for c in conns if c is not None]
    r = book.dump()
    r["seconds"] = time.monotonic() - t0
    return r


async def request(st: dict, i: int, port: int, timeout: float, book: Book) -> bool:
    """One GET on connection i, timed. A connection the server closed while it was idle is
    counted apart and the request goes on a new connection, as a browser would send it."""
    c = st["conns"][i]
    book.sent += 1
    t = time.perf_counter()
    if c.closed:
        book.closed_idle += 1
        try:
            c = await asyncio.wait_for(_connect(port), timeout)
            st["conns"][i] = c
        except (OSError, asyncio.TimeoutError) as e:
            book.error(f"reconnect {type(e).__name__}")
            return False
    err = await c.get(max(0.1, timeout - (time.perf_counter() - t)))
    if err:
        book.error(err)
        return False
    book.lat.append(time.perf_counter() - t)
    return True


async def mixed_phase(st: dict, port: int, active: int, duration: float, think: float,
                      timeout: float) -> dict:
    book = Book()
    end = time.monotonic() + duration

    async def loop_one(i: int):
        await asyncio.sleep(random.uniform(0, 2 * think))
        while time.monotonic() < end:
            if not await request(st, i, port, timeout, book):
                return  # this connection failed: it asks no more
            await asyncio.sleep(random.uniform(0, 2 * think))

    await asyncio.gather(*(loop_one(i) for i in range(min(active, len(st["conns"])))))
    return book.dump()


async def wave_phase(st: dict, port: int, spread: float, timeout: float) -> dict:
    book = Book()

    async def one(i):
        await asyncio.sleep(random.uniform(0, spread))
        await request(st, i, port, timeout, book)

    await asyncio.gather(*(one(i) for i in range(len(st["conns"]))))
    return book.dump()


def client_main(pipe, seed: int):
    """A client process: runs each command it is sent on its own event loop, and keeps its
    connections open between commands."""
    raise_open_files()
    random.seed(seed)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    st: dict = {"conns": []}
    while True:
        cmd, kw = pipe.recv()
        if cmd == "open":
            res = loop.run_until_complete(open_phase(st, **kw))
        elif cmd == "mixed":
            res = loop.run_until_complete(mixed_phase(st, **kw))
        elif cmd == "wave":
            res = loop.run_until_complete(wave_phase(st, **kw))
        elif cmd == "status":
            res = {"open": sum(1 for c in st["conns"] if not c.closed)}
        else:  # close
            for c in st["conns"]:
                if c.transport:
                    c.transport.close()
            loop.run_until_complete(asyncio.sleep(0.2))
            pipe.send({})
            return
        pipe.send(res)


class Clients:
    def __init__(self, n: int):
        ctx = mp.get_context("fork")
        self.pipes, self.procs = [], []
        for i in range(n):
            a, b = ctx.Pipe()
            p = ctx.Process(target=client_main, args=(b, 1000 + i), daemon=True)
            p.start()
            self.pipes.append(a)
            self.procs.append(p)

    def ask(self, cmd: str, kws: list[dict], timeout: float) -> list[dict]:
        for pipe, kw in zip(self.pipes, kws):
            pipe.send((cmd, kw))
        out = []
        deadline = time.monotonic() + timeout
        for pipe in self.pipes:
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"client process gave no answer to {cmd!r} in {timeout:.0f}s")
            out.append(pipe.recv())
        return out

    def close(self):
        try:
            self.ask("close", [{}] * len(self.pipes), 30)
        except Exception:
            pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()


def merge(parts: list[dict]) -> dict:
    out = {"sent": 0, "answered": 0, "errors": {}, "lat": []}
    for p in parts:
        out["sent"] += p["sent"]
        out["answered"] += p["answered"]
        out["lat"] += p["lat"]
        for k, v in p["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
        for k in ("closed_idle",):
            if k in p:
                out[k] = out.get(k, 0) + p[k]
        if "seconds" in p:
            out["seconds"] = max(out.get("seconds", 0), p["seconds"])
    lat = sorted(out.pop("lat"))
    out["n_errors"] = sum(out["errors"].values())

    def pct(q):
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else None
    out.update({"p50_ms": pct(0.50), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
                "max_ms": round(lat[-1] * 1000, 2) if lat else None})
    return out


# ---------------------------------------------------------------- one server


def tree_rss(root: int) -> dict:
    mem = run.memory(root)
    procs = [{"pid": p["pid"], "comm": p["comm"], "leader": p["leader"], "rss_kib": p["rss_kib"],
              "sockets": count_sockets(p["pid"])} for p in mem["procs"]]
    workers = [p for p, q in zip(procs, mem["procs"]) if not q["leader"] and not q["helper"]]
    return {"procs": procs,
            "total_rss_kib": sum(p["rss_kib"] or 0 for p in procs),
            "workers_rss_kib": sum(p["rss_kib"] or 0 for p in workers),
            "sockets": sum(p["sockets"] for p in procs)}


def count_sockets(pid: int) -> int:
    n = 0
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    n += 1
            except OSError:
                pass
    except OSError:
        pass
    return n


def listen_counters() -> dict:
    """The kernel's listen-queue counters (this network namespace): ListenOverflows counts
    handshakes completed while an accept queue was full, ListenDrops those and other drops."""
    lines = (run._read("/proc/net/netstat") or "").splitlines()
    for k, v in zip(lines[::2], lines[1::2]):
        if k.startswith("TcpExt:"):
            d = dict(zip(k.split()[1:], v.split()[1:]))
            return {x: int(d[x]) for x in ("ListenOverflows", "ListenDrops") if x in d}
    return {}


def warm_up(port: int):
    socks = []
    for _ in range(20):
        s = socket.create_connection((HOST, port), timeout=5)
        socks.append(s)
        for _ in range(5):
            s.sendall(REQUEST)
            data = b""
            while APP.expect not in data:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("warm-up connection closed by the server")
                data += chunk
    for s in socks:
        s.close()


def split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def run_server(args, server: run.Server) -> dict:
    tmp = tempfile.mkdtemp(prefix="apus-conns-")
    ctx = run.Ctx(args.venv, args.apus, run.free_port(), args.workers, 1, APP, tmp)
    rec = {"server": server.name, "port": ctx.port, "note": server.note,
           "loadavg_before": " ".join(f"{x:.2f}" for x in os.getloadavg())}
    srv = clients = None
    try:
        srv = run.Running(server, ctx, run.server_env(args.venv))
        rec["argv"] = srv.argv
        why = srv.wait_ready(args.ready_timeout)
        if why:
            rec["error"] = why
            return rec
        warm_up(ctx.port)
        time.sleep(1.0)
        srv.remember_tree()
        rec["rss_none"] = tree_rss(srv.proc.pid)
        clients = Clients(args.clients)
        per = split(args.connections, args.clients)
        conc = split(args.connect_concurrency, args.clients)
        run.log(f"{server.name}: opening {args.connections} connections")
        before = listen_counters()
        rec["open"] = merge(clients.ask("open", [
            {"port": ctx.port, "n": n, "concurrency": max(1, c), "timeout": args.timeout,
             "deadline": args.open_deadline}
            for n, c in zip(per, conc)], args.open_deadline + args.timeout + 60))
        after = listen_counters()
        rec["listen_counters_during_open"] = {k: after[k] - before.get(k, 0) for k in after}
        run.log(f"{server.name}: open: {summary(rec['open'])}")
        time.sleep(args.settle)
        rec["rss_idle"] = tree_rss(srv.proc.pid)
        rec["open_before_mixed"] = sum(r["open"] for r in clients.ask("status", [{}] * args.clients, 30))
        run.log(f"{server.name}: mixed phase, {args.active} active for {args.duration:g}s")
        rec["mixed"] = merge(clients.ask("mixed", [
            {"port": ctx.port, "active": a, "duration": args.duration, "think": args.think,
             "timeout": args.timeout} for a in split(args.active, args.clients)],
            args.duration + args.timeout + 60))
        run.log(f"{server.name}: mixed: {summary(rec['mixed'])}")
        rec["rss_mixed"] = tree_rss(srv.proc.pid)
        rec["wave"] = merge(clients.ask("wave", [
            {"port": ctx.port, "spread": args.wave_spread, "timeout": args.timeout}] * args.clients,
            args.wave_spread + args.timeout + 60))
        run.log(f"{server.name}: wave: {summary(rec['wave'])}")
        rec["loadavg_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
        if srv.proc.poll() is not None:
            rec["error"] = f"server exited during the run: {srv.log_tail()}"
        # (RSS with N idle - RSS with none) / N, when the server still holds them: a server
        # that closed them (or never took them) has no such figure.
        held = rec["rss_idle"]["sockets"] - rec["rss_none"]["sockets"]
        rec["held_at_rss"] = held
        rec["bytes_per_idle"] = (round((rec["rss_idle"]["total_rss_kib"] - rec["rss_none"]["total_rss_kib"])
                                       * 1024 / args.connections)
                                 if held >= 0.99 * args.connections else None)
        rec["log_tail"] = srv.log_tail(10)
    except Exception as e:  # one broken server must not end the run
        rec["error"] = f"{type(e).__name__}: {e}"
        if srv:
            rec["error"] += "\n" + srv.log_tail()
    finally:
        if clients:
            clients.close()
        if srv:
            srv.stop(args.stop_timeout)
        shutil.rmtree(tmp, ignore_errors=True)
    return rec


def summary(r: dict) -> str:
    return (f"{r['answered']}/{r['sent']} answered, errors {r['errors'] or 0}, "
            f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")


# ---------------------------------------------------------------- report


def _ms(x):
    return "-" if x is None else f"{x:g}"


def _mib(kib):
    return f"{kib / 1024:.1f}" if kib is not None else "-"


def render_md(meta: dict, recs: list[dict]) -> str:
    a = meta["args"]
    n = a["connections"]
    L = [f"# {n:,} keep-alive connections, {a['workers']} workers x 1 thread, hello app", ""]
    L.append(f"- date: {meta['started']} .. {meta['finished']} (UTC), commit {meta['commit']}")
    mi = meta["machine"]
    L.append(f"- machine: {mi['cpus']} CPUs, {mi['cpu_model']}, {mi['mem_total_mib']} MiB RAM, "
             f"kernel {mi['kernel']}; RLIMIT_NOFILE {meta['nofile']}, somaxconn {meta['somaxconn']}")
    L.append(f"- load average (1/5/15 min) at start: {meta['loadavg_start']}, at end: {meta['loadavg_end']}")
    L.append("- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items() if v))
    L.append(f"- client: {a['clients']} asyncio processes; {n:,} connections opened with at most "
             f"{a['connect_concurrency']:,} not yet served at a time, each served one GET; then "
             f"{a['active']:,} of them send GETs for {a['duration']:g} s (pause 0..{2 * a['think']:g} s "
             f"after each answer) while the others stay idle; then all {n:,} send one GET each "
             f"within {a['wave_spread']:g} s (wave); timeout {a['timeout']:g} s per request, "
             f"{a['open_deadline']:g} s for opening all")
    L.append(f"- reproduce: `{meta['reproduce']}`")
    L.append("")
    L.append("| server | accepted and served | opening s | first GET p99 ms "
             "| requests answered / sent | errors | p50 ms | p99 ms "
             "| max ms | wave answered | wave p99 ms | closed idle | RSS none MiB | RSS N idle MiB "
             "| bytes / idle conn |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in recs:
        if "open" not in r:
            L.append(f"| {r['server']} | FAILED: {r.get('error', '?').splitlines()[0][:100]} "
                     "|||||||||||||")
            continue
        phases = [r[ph] for ph in ("open", "mixed", "wave") if ph in r]
        o, m, w = r["open"], r.get("mixed") or {}, r.get("wave") or {}
        idle = r.get("rss_idle")
        L.append(" | ".join([
            f"| {r['server']}", f"{o['answered']:,} / {n:,}", f"{o.get('seconds', 0):.1f}",
            _ms(o["p99_ms"]),
            f"{sum(p['answered'] for p in phases):,} / {sum(p['sent'] for p in phases):,}",
            f"{sum(p['n_errors'] for p in phases):,}",
            _ms(m.get("p50_ms")), _ms(m.get("p99_ms")), _ms(m.get("max_ms")),
            f"{w['answered']:,} / {w['sent']:,}" if w else "-", _ms(w.get("p99_ms")),
            str(sum(p.get("closed_idle", 0) for p in phases)),
            _mib(r["rss_none"]["total_rss_kib"]), _mib(idle["total_rss_kib"]) if idle else "-",
            f"{r['bytes_per_idle']:,}" if r.get("bytes_per_idle") is not None
            else f"- (holds {r.get('held_at_rss', 0):,})"]) + " |")
    L.append("")
    L.append("opening s: time to open all N and have each served its first GET; first GET p99: "
             "from the connect to that GET's answer. p50/p99/max: the mixed phase's requests. "
             "requests and errors: all phases.")
    L.append("")
    L.append("Errors by kind and phase; RSS per process (KiB, none → N idle), sockets each holds:")
    L.append("")
    for r in recs:
        if "open" not in r:
            continue
        errs = "; ".join(f"{ph}: {r[ph]['errors']}" for ph in ("open", "mixed", "wave")
                         if ph in r and r[ph]["errors"]) or "none"
        procs = ", ".join(
            f"{p['comm']}{' (leader)' if p['leader'] else ''} {p['rss_kib']} → "
            f"{next((q['rss_kib'] for q in r['rss_idle']['procs'] if q['pid'] == p['pid']), '?')} "
            f"({next((q['sockets'] for q in r['rss_idle']['procs'] if q['pid'] == p['pid']), '?')} sockets)"
            for p in r["rss_none"]["procs"])
        lc = r.get("listen_counters_during_open") or {}
        L.append(f"- {r['server']}: errors {errs}; opening took {r['open'].get('seconds', 0):.1f} s "
                 f"(listen queue overflows {lc.get('ListenOverflows', '?')}); "
                 f"{procs}; load {r['loadavg_before']} → {r.get('loadavg_after', '?')}")
        if r.get("error"):
            L.append(f"  - error: {r['error'].splitlines()[0][:200]}")
    notes = [f"- {s}: {SERVERS[s].note}" for s in a["servers"] if SERVERS[s].note]
    if notes:
        L += ["", "Server notes:", ""] + notes
    L.append("")
    return "\n".join(L)


def main(argv=None):
    global KEEP_ALIVE, BACKLOG, N_CONNS
    default_venv = sys.prefix if sys.prefix != sys.base_prefix else os.path.join(run.BENCH, ".venv")
    p = argparse.ArgumentParser(description="N keep-alive connections per server: memory per "
                                "idle connection, latency with idle and active mixed.")
    p.add_argument("-n", "--connections", type=int, default=10000, help="connections held (10000)")
    p.add_argument("--active", type=int, default=1000, help="of them sending in the mixed phase (1000)")
    p.add_argument("--duration", type=float, default=10, help="seconds of the mixed phase (10)")
    p.add_argument("--think", type=float, default=0.1,
                   help="mean pause after an answer before an active connection's next GET (0.1 s)")
    p.add_argument("--wave-spread", type=float, default=2,
                   help="seconds over which all N send their wave GET (2)")
    p.add_argument("--timeout", type=float, default=30,
                   help="seconds for a connection to be served its first GET, or a request answered (30)")
    p.add_argument("--open-deadline", type=float, default=90,
                   help="seconds the opening of the N connections may take in all (90)")
    p.add_argument("--connect-concurrency", type=int, default=1000,
                   help="connections opened and not yet served, at most, at a time (1000)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes, 1 thread each (2)")
    p.add_argument("--clients", type=int, default=2, help="client processes (2)")
    p.add_argument("--settle", type=float, default=2, help="seconds before reading RSS with N idle (2)")
    p.add_argument("--servers", default="apus,bjoern,granian,granian-limits",
                   help="subset of: " + ",".join(SERVERS))
    p.add_argument("--apus", default=os.path.join(run.REPO, ".build", "release", "apus"))
    p.add_argument("--apus-keep-alive", type=int, default=KEEP_ALIVE,
                   help=f"apus --keep-alive: must outlast the run ({KEEP_ALIVE})")
    p.add_argument("--granian-backlog", type=int, default=BACKLOG,
                   help=f"granian-limits --backlog ({BACKLOG}); its --backpressure is N")
    p.add_argument("--venv", default=default_venv)
    p.add_argument("--ready-timeout", type=float, default=30)
    p.add_argument("--stop-timeout", type=float, default=10)
    p.add_argument("--out", default=None, help="also write PREFIX.md and PREFIX.json")
    args = p.parse_args(argv)
    args.venv = os.path.abspath(args.venv)
    args.apus = os.path.abspath(args.apus)
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for s in args.servers:
        if s not in SERVERS:
            p.error(f"unknown server {s!r} (have {', '.join(SERVERS)})")
    if args.active > args.connections:
        p.error("--active must not exceed --connections")
    KEEP_ALIVE, BACKLOG, N_CONNS = args.apus_keep_alive, args.granian_backlog, args.connections
    # The servers inherit it (apus raises its own as well); the client needs N descriptors.
    nofile = raise_open_files()
    if nofile < args.connections // args.clients + 100:
        p.error(f"open files limit {nofile} is too low for {args.connections} connections")

    class _V:  # what run.versions() reads
        venv, apus, wrk = args.venv, args.apus, "wrk"
    meta = {
        "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "machine": run.machine_info(),
        "versions": {k: v for k, v in run.versions(_V).items()
                     if k in ("python", "granian", "bjoern", "venv_python", "apus")},
        "commit": run.versions(_V).get("repo_commit") + (
            "+changes" if subprocess.run(["git", "-C", run.REPO, "status", "--porcelain",
                                          "--untracked-files=no"],
                                         capture_output=True, text=True).stdout.strip() else ""),
        "nofile": nofile,
        "somaxconn": (run._read("/proc/sys/net/core/somaxconn") or "?").strip(),
        "args": {k: getattr(args, k) for k in ("connections", "active", "duration", "think",
                                               "wave_spread", "timeout", "open_deadline", "connect_concurrency",
                                               "clients", "workers", "servers", "apus_keep_alive",
                                               "granian_backlog")},
        "reproduce": "cd " + shlex.quote(run.REPO) + " && " + shlex.join(
            [os.path.relpath(os.path.join(args.venv, "bin", "python"), run.REPO)
             if args.venv.startswith(run.REPO) else os.path.join(args.venv, "bin", "python"),
             "bench/connections.py"] + (argv if argv is not None else sys.argv[1:])),
    }
    run.log(f"connections: {args.connections} per server, servers {', '.join(args.servers)}; "
            f"load average {meta['loadavg_start']}")
    recs = []
    for name in args.servers:
        s = SERVERS[name]
        why = s.available(run.Ctx(args.venv, args.apus, 0, 2, 1, APP, "")) if s.available else None
        if why:
            recs.append({"server": name, "error": why})
            continue
        recs.append(run_server(args, s))
    meta["finished"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    md = render_md(meta, recs)
    print(md)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out + ".md", "w") as f:
            f.write(md)
        with open(args.out + ".json", "w") as f:
            json.dump({"meta": meta, "servers": recs}, f, indent=1)
        run.log(f"connections: wrote {args.out}.md and {args.out}.json")
    return 1 if any("error" in r for r in recs) else 0


if __name__ == "__main__":
    sys.exit(main())
