#!/usr/bin/env python3
"""Apus benchmark: Apus and other Python WSGI servers side by side, one run.

Run it with the bench venv's python (bench/setup.sh makes it):

    bench/.venv/bin/python bench/run.py                       # full default run
    bench/.venv/bin/python bench/run.py --duration 1 --warmup 1 --repeats 1 \
        --shapes 2x1 --apps hello                             # smoke run

Stdlib only. See bench/README.md for the method and how to read the output.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = 1024 * 1024  # MiB


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- apps


@dataclass
class App:
    name: str
    chdir: str            # relative to the repo root; put on sys.path by each server
    module: str           # module:callable
    path: str             # request path wrk hammers
    expect: bytes         # must occur in the body of the readiness response


APPS = {
    "hello": App("hello", "examples", "hello:application", "/", b"Hello, World!"),
    "django": App("django", "examples/djecho", "djecho.wsgi:application",
                  "/debug/?a=1&b=two", b"/debug/"),
}


# ---------------------------------------------------------------- servers


@dataclass
class Ctx:
    venv: str
    apus: str
    port: int
    workers: int
    threads: int
    app: App
    tmp: str
    upstream: str = ""    # fronted servers: where the server listens for the front
                          # (a unix socket path, or HOST:PORT)
    subscription: str = ""  # front "router": the router's subscription server (UDP HOST:PORT)

    @property
    def appdir(self) -> str:
        return os.path.join(REPO, self.app.chdir)

    def bin(self, name: str) -> str:
        return os.path.join(self.venv, "bin", name)


@dataclass
class Server:
    name: str
    build: object                  # Ctx -> argv list
    threads_ok: bool = True        # False: shapes with threads > 1 are skipped
    stop_signal: int = signal.SIGTERM
    note: str = ""
    available: object = None       # Ctx -> None, or a reason to skip
    default: bool = True           # in the default --servers list
    front: str | None = None       # "uwsgi" / "http": nginx in front (listens on the
                                   # cell's port), passing to the server at ctx.upstream;
                                   # "router": apus router in front, the server subscribed


def _apus_argv(c: Ctx, binds: list) -> list:
    return [c.apus, *binds, "--processes", str(c.workers),
            "--threads", str(c.threads), "--venv", c.venv, "--chdir", c.appdir,
            c.app.module, "--no-access-log"]


def _apus(c: Ctx):
    return _apus_argv(c, ["--http", f"{HOST}:{c.port}"])


def _apus_preload(c: Ctx):
    # Imports the app once and forks the workers from it, as uWSGI does without --lazy-apps.
    return _apus(c) + ["--preload"]


# --apus-b: a second apus binary, run as the server "apus-b" in the same cells as "apus", to
# compare two builds side by side (build flags, a change to the worker).
APUS_B = ""


def _apus_b(c: Ctx):
    argv = _apus(c)
    argv[0] = APUS_B
    return argv


def _apus_b_available(c: Ctx):
    if not (APUS_B and os.path.isfile(APUS_B) and os.access(APUS_B, os.X_OK)):
        return "no second apus binary: pass --apus-b PATH"
    return None


def _apus_logging(fmt: str):
    """apus with its access log on, in --log-format fmt, to a file in the cell's directory."""
    def build(c: Ctx):
        argv = [a for a in _apus(c) if a != "--no-access-log"]
        return argv + ["--access-logfile", os.path.join(c.tmp, "access.log"), "--log-format", fmt]
    return build


def _apus_no_titles(c: Ctx):
    """apus with --no-process-titles: against apus (titles on, the default), their cost."""
    return _apus(c) + ["--no-process-titles"]


def _apus_available(c: Ctx):
    if not (os.path.isfile(c.apus) and os.access(c.apus, os.X_OK)):
        return (f"no apus binary at {c.apus}: build it with `swift build -c release` "
                "or pass --apus PATH")
    return None


def _bjoern(c: Ctx):
    return [c.bin("python"), os.path.join(BENCH, "servers", "bjoern_workers.py"),
            "--bind", f"{HOST}:{c.port}", "--workers", str(c.workers),
            "--chdir", c.appdir, c.app.module]


def _granian(c: Ctx):
    return [c.bin("granian"), "--interface", "wsgi", "--host", HOST, "--port", str(c.port),
            "--workers", str(c.workers), "--blocking-threads", str(c.threads),
            "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning",
            "--working-dir", c.appdir, c.app.module]


def _uwsgi_argv(c: Ctx, http_opts: list) -> list:
    module, _, call = c.app.module.partition(":")
    argv = [c.bin("uwsgi")] + http_opts + [
        "--master", "--processes", str(c.workers), "--threads", str(c.threads),
        "--chdir", c.appdir, "--module", module, "--callable", call or "application",
        "--need-app", "--disable-logging", "--die-on-term", "--strict",
        "--auto-procname"]  # names the HTTP router, so it is not counted as a worker
    if c.threads > 1:
        argv.append("--enable-threads")
    return argv


def _uwsgi_lazy(c: Ctx):
    # Each worker imports the app itself, as apus does without --preload.
    return _uwsgi(c) + ["--lazy-apps"]


def _uwsgi(c: Ctx):
    # --http + --http-keepalive: uWSGI's HTTP router process holds the client
    # connections (keep-alive) and passes each request to a worker over the
    # uwsgi protocol. This is the uWSGI mode that keeps client connections
    # alive without tying a worker to each one. No --lazy-apps: the app is
    # imported in the master and the workers are forked from it.
    return _uwsgi_argv(c, ["--http", f"{HOST}:{c.port}", "--http-keepalive",
                           "--http-auto-chunked"])


def _uwsgi_http11(c: Ctx):
    # The worker itself speaks HTTP/1.1 and keeps the connection: a worker
    # thread then stays on one client connection until it closes, so with more
    # connections than workers x threads most connections are never served.
    return _uwsgi_argv(c, ["--http11-socket", f"{HOST}:{c.port}"])


def _gunicorn(c: Ctx):
    return [c.bin("gunicorn"), "--bind", f"{HOST}:{c.port}", "--workers", str(c.workers),
            "--threads", str(c.threads),
            "--worker-class", "gthread" if c.threads > 1 else "sync",
            "--chdir", c.appdir, "--log-level", "warning", c.app.module]


# -- behind nginx: nginx listens on the cell's port, the server on ctx.upstream


def _nginx_apus_uwsgi(c: Ctx):
    return _apus_argv(c, ["--socket", c.upstream])


def _nginx_apus_http(c: Ctx):
    return _apus_argv(c, ["--http", c.upstream])


def _nginx_uwsgi(c: Ctx):
    return _uwsgi_argv(c, ["--socket", c.upstream])


def _nginx_gunicorn(c: Ctx):
    argv = _gunicorn(c)
    argv[argv.index("--bind") + 1] = c.upstream
    return argv


def _router_apus_uwsgi(c: Ctx):
    # the key is the Host wrk sends: HOST:PORT of the router
    return _apus_argv(c, ["--socket", c.upstream, "--subscribe-to", f"{c.subscription}:{HOST}:{c.port}"])


def nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _nginx_available(c: Ctx):
    return None if nginx_binary() else "nginx is not installed (bench/setup.sh installs it)"


def _nginx_apus_available(c: Ctx):
    return _nginx_available(c) or _apus_available(c)


SERVERS = [
    Server("apus", _apus, available=_apus_available),
    Server("apus-b", _apus_b, available=_apus_b_available, default=False,
           note="the binary given with --apus-b, to compare two builds side by side"),
    Server("apus-log-common", _apus_logging("common"), available=_apus_available, default=False,
           note="the access log on (common format) to a file: against apus, the cost of logging"),
    Server("apus-log-json", _apus_logging("json"), available=_apus_available, default=False,
           note="the access log on (json format) to a file"),
    Server("apus-no-titles", _apus_no_titles, available=_apus_available, default=False,
           note="--no-process-titles: against apus, the cost of the process titles"),
    Server("apus-preload", _apus_preload, available=_apus_available, default=False,
           note="--preload: the app imported once, workers forked from it (uWSGI's default)"),
    Server("bjoern", _bjoern, threads_ok=False,
           note="no threads; N forked processes on one socket (bench/servers/bjoern_workers.py)"),
    Server("granian", _granian, note="--interface wsgi --http 1"),
    Server("uwsgi", _uwsgi, stop_signal=signal.SIGINT,
           note="--http --http-keepalive (HTTP router process + workers), --master, no --lazy-apps"),
    Server("uwsgi-lazy", _uwsgi_lazy, stop_signal=signal.SIGINT, default=False,
           note="as uwsgi, plus --lazy-apps: each worker imports the app (apus's default)"),
    Server("uwsgi-http11", _uwsgi_http11, stop_signal=signal.SIGINT, default=False,
           note="--http11-socket: keeps alive but ties a worker thread to each connection "
                "(STARVES with more connections than workers x threads); not in the default set"),
    Server("gunicorn", _gunicorn,
           note="sync worker at 1 thread (closes every connection), gthread above"),
    Server("nginx+apus-uwsgi", _nginx_apus_uwsgi, front="uwsgi", available=_nginx_apus_available,
           default=False,
           note="nginx (2 workers) uwsgi_pass -> apus --socket on a unix socket"),
    Server("nginx+apus-http", _nginx_apus_http, front="http", available=_nginx_apus_available,
           default=False,
           note="nginx (2 workers) proxy_pass, HTTP/1.1 upstream keep-alive -> apus --http"),
    Server("router+apus-uwsgi", _router_apus_uwsgi, front="router", available=_apus_available,
           default=False,
           note="apus router (one process) -> apus --socket on a unix socket, subscribed to it"),
    Server("nginx+uwsgi", _nginx_uwsgi, front="uwsgi", stop_signal=signal.SIGINT,
           available=_nginx_available, default=False,
           note="nginx (2 workers) uwsgi_pass -> uwsgi --socket on a unix socket, --master"),
    Server("nginx+gunicorn", _nginx_gunicorn, front="http", available=_nginx_available,
           default=False,
           note="nginx (2 workers) proxy_pass, HTTP/1.1 upstream keep-alive -> gunicorn "
                "(sync worker at 1 thread closes each upstream connection, gthread above)"),
]


# ---------------------------------------------------------------- /proc


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("ascii", "replace")
    except OSError:
        return None


def _stat(pid: int):
    """(ppid, pgid, cpu ticks incl. reaped children, comm) or None."""
    s = _read(f"/proc/{pid}/stat")
    if not s:
        return None
    rp = s.rfind(")")
    comm = s[s.find("(") + 1:rp]
    f = s[rp + 2:].split()
    # after "pid (comm) ": state ppid pgrp session ... utime=f[11] stime cutime cstime
    ticks = int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return int(f[1]), int(f[2]), ticks, comm


def process_tree(root: int) -> dict:
    """pid -> (ppid, pgid, ticks, comm) for root, its descendants and its process group."""
    table = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = _stat(int(d))
            if st:
                table[int(d)] = st
    keep = {p for p, st in table.items() if st[1] == root}
    if root in table:
        keep.add(root)
    grew = True
    while grew:
        grew = False
        for p, st in table.items():
            if p not in keep and st[0] in keep:
                keep.add(p)
                grew = True
    return {p: table[p] for p in keep}


def tree_cpu_ticks(root: int) -> tuple[int, int]:
    tree = process_tree(root)
    return sum(st[2] for st in tree.values()), len(tree)


def _kib(text: str | None, key: str) -> int | None:
    if not text:
        return None
    m = re.search(rf"^{key}:\s+(\d+) kB", text, re.M)
    return int(m.group(1)) if m else None


def mapped_libpython(pid: int) -> str | None:
    """The libpython file a process has mapped, if any."""
    for line in (_read(f"/proc/{pid}/maps") or "").splitlines():
        path = line.split(None, 5)[-1] if line.count(" ") >= 5 else ""
        if "/libpython" in path:
            return path.strip()
    return None


def is_helper(comm: str, cmdline: str) -> bool:
    """Processes that serve no request themselves: uWSGI's HTTP router (named by
    --auto-procname) and apus's zygote (named "preloader" with --preload), which forks the
    workers. They are not averaged into RSS per worker."""
    return comm in ("zygote", "preloader") or cmdline.startswith("uWSGI http")


def memory(root: int) -> dict:
    """RSS/PSS of the leader and of each other process in the tree (the workers)."""
    procs = []
    for pid, st in sorted(process_tree(root).items()):
        rss = _kib(_read(f"/proc/{pid}/status"), "VmRSS")
        pss = _kib(_read(f"/proc/{pid}/smaps_rollup"), "Pss")
        cmdline = (_read(f"/proc/{pid}/cmdline") or "").replace("\0", " ").strip()
        procs.append({"pid": pid, "comm": st[3], "leader": pid == root,
                      "helper": is_helper(st[3], cmdline),
                      "rss_kib": rss, "pss_kib": pss, "libpython": mapped_libpython(pid)})
    workers = [p for p in procs if not p["leader"] and not p["helper"] and p["rss_kib"]]
    leader = [p for p in procs if p["leader"]]

    def mean(key, ps):
        vals = [p[key] for p in ps if p[key] is not None]
        return round(sum(vals) / len(vals) / 1024, 2) if vals else None

    return {
        "procs": procs,
        "n_procs": len(procs),
        "n_workers": len(workers),
        "worker_rss_mib": mean("rss_kib", workers),
        "worker_pss_mib": mean("pss_kib", workers),
        "leader_rss_mib": mean("rss_kib", leader),
        "leader_pss_mib": mean("pss_kib", leader),
        "total_pss_mib": round(sum(p["pss_kib"] or 0 for p in procs) / 1024, 2),
    }


# ---------------------------------------------------------------- server lifecycle


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def kill_group(proc: subprocess.Popen, pgid: int) -> None:
    """SIGKILL to what is left of a process group, then reap its leader."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


class Running:
    def __init__(self, server: Server, ctx: Ctx, env: dict):
        self.server, self.ctx = server, ctx
        self.argv = server.build(ctx)
        self.logpath = os.path.join(ctx.tmp, "server.log")
        self.logf = open(self.logpath, "wb")
        self.proc = subprocess.Popen(self.argv, cwd=ctx.appdir, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.pgid = self.proc.pid  # new session: the leader's pid is the group id
        self.seen: set[int] = set()
        self.front = None
        if server.front:
            try:
                self.front = (RouterFront(ctx) if server.front == "router" else NginxFront(ctx, server.front))
            except Exception:
                os.killpg(self.pgid, signal.SIGKILL)
                self.proc.wait(5)
                self.logf.close()
                raise

    def log_tail(self, n: int = 15) -> str:
        try:
            with open(self.logpath, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def remember_tree(self):
        self.seen |= set(process_tree(self.proc.pid))

    def wait_ready(self, timeout: float) -> str | None:
        """None when GET app.path answers 200 with the expected body, else why not."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"server exited with {self.proc.returncode}: {self.log_tail()}"
            if self.front and self.front.proc.poll() is not None:
                return f"the front exited with {self.front.proc.returncode}: {self.front.log_tail()}"
            try:
                conn = http.client.HTTPConnection(HOST, self.ctx.port, timeout=5)
                conn.request("GET", self.ctx.app.path)
                r = conn.getresponse()
                body = r.read()
                conn.close()
                if r.status == 200 and self.ctx.app.expect in body:
                    self.remember_tree()
                    return None
                last = f"HTTP {r.status} {body[:200]!r}"
            except (OSError, http.client.HTTPException) as e:
                last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
        return f"not ready after {timeout:.0f}s ({last}): {self.log_tail()}"

    def stop(self, grace: float = 10.0):
        if self.front:
            self.front.stop(grace)
        self.remember_tree()
        try:
            os.killpg(self.pgid, self.server.stop_signal)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"  {self.server.name}: still running {grace:.0f}s after signal, SIGKILL to its group")
        # whatever is left of the group (or of the tree we saw) gets SIGKILL
        for pid in self.seen:
            st = _stat(pid)
            if st and (st[1] == self.pgid or pid == self.proc.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        kill_group(self.proc, self.pgid)
        self.logf.close()


NGINX_UWSGI_PARAMS = os.path.join(REPO, "examples", "nginx", "uwsgi_params")


def nginx_conf(ctx: Ctx, front: str) -> str:
    """nginx.conf for one fronted cell: 2 workers, no access log, everything in ctx.tmp."""
    t = ctx.tmp
    user = ""
    if os.geteuid() == 0:
        # as root nginx would run its workers as nobody, who cannot enter the private
        # temp dir holding the unix socket
        import pwd
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};"
    if front == "uwsgi":
        upstream = f"server unix:{ctx.upstream};"
        location = f"include {NGINX_UWSGI_PARAMS};\n            uwsgi_pass app;"
    else:
        # keepalive_timeout below every server's own idle timeout (gunicorn: 2 s)
        upstream = f"server {ctx.upstream};\n        keepalive 32;\n        keepalive_timeout 1s;"
        location = ("proxy_pass http://app;\n"
                    "            proxy_http_version 1.1;\n"
                    "            proxy_set_header Connection \"\";\n"
                    "            proxy_set_header Host $http_host;\n"
                    "            proxy_set_header X-Forwarded-For $remote_addr;\n"
                    "            proxy_set_header X-Forwarded-Proto $scheme;")
    return f"""daemon off;
pid {t}/nginx.pid;
error_log {t}/nginx-error.log warn;
worker_processes 2;
{user}
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {t}/ngx-body;
    proxy_temp_path {t}/ngx-proxy;
    uwsgi_temp_path {t}/ngx-uwsgi;
    fastcgi_temp_path {t}/ngx-fastcgi;
    scgi_temp_path {t}/ngx-scgi;
    upstream app {{
        {upstream}
    }}
    server {{
        listen {HOST}:{ctx.port};
        location / {{
            {location}
        }}
    }}
}}
"""


class NginxFront:
    """Our own nginx in front of a fronted server (never the system service)."""

    def __init__(self, ctx: Ctx, front: str):
        self.conf = os.path.join(ctx.tmp, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(nginx_conf(ctx, front))
        self.errlog = os.path.join(ctx.tmp, "nginx-error.log")
        self.argv = [nginx_binary(), "-p", ctx.tmp + "/", "-e", self.errlog, "-c", self.conf]
        self.out = open(os.path.join(ctx.tmp, "nginx.out"), "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 10) -> str:
        text = ""
        for path in (self.out.name, self.errlog):
            try:
                with open(path, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except OSError:
                pass
        return "\n".join(text.splitlines()[-n:])

    def stop(self, grace: float = 10.0):
        for sig in (signal.SIGQUIT, signal.SIGTERM):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        kill_group(self.proc, self.proc.pid)
        self.out.close()


class RouterFront:
    """`apus router` in front of the server, which subscribes to it (--subscribe-to)."""

    def __init__(self, ctx: Ctx):
        self.argv = [ctx.apus, "router", "--http", f"{HOST}:{ctx.port}",
                     "--subscription-server", ctx.subscription]
        self.out = open(os.path.join(ctx.tmp, "router.out"), "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def log_tail(self, n: int = 10) -> str:
        try:
            with open(self.out.name, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(grace)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        kill_group(self.proc, self.proc.pid)
        self.out.close()


def keepalive_check(port: int, path: str, n: int, timeout: float = 2.0) -> str:
    """Open n connections (as wrk will), GET twice on each, all kept open at once.

    'yes': every connection got both answers on the same socket. 'no (...)':
    the server closes after a response (wrk then reconnects). 'STARVES k/n':
    only k of the n open connections were answered within the timeout: the
    server ties a worker to an idle keep-alive connection, so under wrk the
    other connections simply wait and the req/s comes from k connections only.
    """
    conns = [http.client.HTTPConnection(HOST, port, timeout=timeout) for _ in range(n)]
    closes = 0
    try:
        for rnd in range(2):
            for i, c in enumerate(conns):
                before = c.sock
                try:
                    c.request("GET", path)
                    r = c.getresponse()
                    r.read()
                except socket.timeout:
                    return f"STARVES {i}/{n}"
                except (OSError, http.client.HTTPException) as e:
                    return f"no ({type(e).__name__} on conn {i})"
                if r.status != 200:
                    return f"no (HTTP {r.status})"
                if r.will_close or (rnd == 1 and c.sock is not before):
                    closes += 1
                    c.close()
        return "yes" if closes == 0 else "no (server closes)"
    finally:
        for c in conns:
            c.close()


# ---------------------------------------------------------------- wrk


def run_wrk(args, port: int, path: str, seconds: float) -> dict:
    url = f"http://{HOST}:{port}{path}"
    cmd = [args.wrk, f"-t{args.wrk_threads}", f"-c{args.connections}", f"-d{seconds:g}s",
           "--latency", "-s", os.path.join(BENCH, "wrk_done.lua"), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((l for l in p.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if p.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stderr.strip()[:300]} {p.stdout[-300:]}")
    res = json.loads(line[len("BENCHJSON "):])
    res["wrk_cpu_s"] = round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3)
    return res


# ---------------------------------------------------------------- one cell


def parse_shape(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", s)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {s!r}: want WORKERSxTHREADS, e.g. 4x1")
    return int(m.group(1)), int(m.group(2))


def server_env(venv: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO_", "GRANIAN_", "UWSGI_",
                                "GUNICORN_"))}
    env["VIRTUAL_ENV"] = venv
    env["PATH"] = os.path.join(venv, "bin") + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env.setdefault("LANG", "C.UTF-8")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    # A server that links libpython itself (uWSGI) has no rpath: without this the dynamic
    # loader picks the distribution's libpython3.X (Debian's is built with PGO and LTO, and
    # runs pure Python about 25% faster here than pyenv's), not the venv's. Every server
    # must run the same interpreter build; each cell records the file it mapped.
    libdir = venv_libdir(venv)
    if libdir:
        env["LD_LIBRARY_PATH"] = libdir + (os.pathsep + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    return env


def venv_libdir(venv: str) -> str | None:
    try:
        out = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                              "import sysconfig; print(sysconfig.get_config_var('LIBDIR') or '')"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def run_cell(args, server: Server, app: App, workers: int, threads: int, repeat: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="apus-bench-")
    ctx = Ctx(args.venv, args.apus, free_port(), workers, threads, app, tmp)
    if server.front in ("uwsgi", "router"):
        ctx.upstream = os.path.join(tmp, "app.sock")
    if server.front == "router":
        ctx.subscription = f"{HOST}:{free_port()}"
    elif server.front == "http":
        ctx.upstream = f"{HOST}:{free_port()}"
    rec = {"server": server.name, "app": app.name, "shape": f"{workers}x{threads}",
           "workers": workers, "threads": threads, "repeat": repeat, "port": ctx.port,
           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "loadavg_before": os.getloadavg()[0]}
    srv = None
    try:
        srv = Running(server, ctx, server_env(args.venv))
        rec["argv"] = srv.argv
        if srv.front:
            rec["front_argv"] = srv.front.argv
        why = srv.wait_ready(args.ready_timeout)
        if why:
            rec["error"] = why
            return rec
        rec["keepalive"] = keepalive_check(ctx.port, app.path, args.connections)
        if args.warmup > 0:
            run_wrk(args, ctx.port, app.path, args.warmup)
        srv.remember_tree()
        ngx = srv.front.proc.pid if srv.front else None
        t0, n0 = tree_cpu_ticks(srv.proc.pid)
        g0 = tree_cpu_ticks(ngx)[0] if ngx else 0
        res = run_wrk(args, ctx.port, app.path, args.duration)
        t1, n1 = tree_cpu_ticks(srv.proc.pid)
        g1 = tree_cpu_ticks(ngx)[0] if ngx else 0
        mem = memory(srv.proc.pid)
        if ngx:
            rec["front_memory"] = memory(ngx)
        srv.remember_tree()
        if srv.proc.poll() is not None:
            rec["error"] = f"server exited during the run: {srv.log_tail()}"
        reqs = res["requests"]
        secs = res["duration_us"] / 1e6
        cpu_s = (t1 - t0) / CLK_TCK
        rec.update({
            "requests": reqs,
            "rps": round(reqs / secs, 1) if secs else 0.0,
            "p50_ms": res["latency_us"]["p50"] / 1000,
            "p99_ms": res["latency_us"]["p99"] / 1000,
            "non2xx": res["errors"]["status"],
            "sock_errors": {k: res["errors"][k] for k in ("connect", "read", "write", "timeout")},
            "server_cpu_s": round(cpu_s, 3),
            "server_cpu_us_per_req": round(cpu_s * 1e6 / reqs, 2) if reqs else None,
            "server_cpu_share": round(cpu_s / secs, 3) if secs else None,
            # the front's own tree (nginx's master + workers, or apus router), not in server_cpu_*
            "front_cpu_us_per_req": (round((g1 - g0) / CLK_TCK * 1e6 / reqs, 2)
                                     if ngx and reqs else None),
            "front_cpu_share": round((g1 - g0) / CLK_TCK / secs, 3) if ngx and secs else None,
            "wrk_cpu_us_per_req": round(res["wrk_cpu_s"] * 1e6 / reqs, 2) if reqs else None,
            "procs_before_after": [n0, n1],
            "memory": mem,
            "wrk": res,
        })
    except Exception as e:  # one broken cell must not end the run
        rec["error"] = f"{type(e).__name__}: {e}"
        if srv:
            rec["error"] += "\n" + srv.log_tail()
    finally:
        if srv:
            srv.stop(args.stop_timeout)
        shutil.rmtree(tmp, ignore_errors=True)
        rec["loadavg_after"] = os.getloadavg()[0]
    return rec


# ---------------------------------------------------------------- aggregation + report


def _median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def aggregate(runs: list[dict]) -> list[dict]:
    cells: dict[tuple, list[dict]] = {}
    for r in runs:
        cells.setdefault((r["app"], r["server"], r["shape"]), []).append(r)
    out = []
    for (app, server, shape), rs in cells.items():
        ok = [r for r in rs if "rps" in r]
        agg = {"app": app, "server": server, "shape": shape, "repeats": len(rs),
               "ok": len(ok), "errors": [r["error"] for r in rs if "error" in r]}
        if ok:
            rps = [r["rps"] for r in ok]
            sock = {k: sum(r["sock_errors"][k] for r in ok) for k in ("connect", "read", "write", "timeout")}
            agg.update({
                "rps_median": round(_median(rps), 1), "rps_min": min(rps), "rps_max": max(rps),
                "p99_ms_median": _median([r["p99_ms"] for r in ok]),
                "non2xx_total": sum(r["non2xx"] for r in ok),
                "sock_errors_total": sock,
                "cpu_us_per_req_median": _median([r["server_cpu_us_per_req"] for r in ok]),
                "cpu_us_per_req_all": [r["server_cpu_us_per_req"] for r in ok],
                "cpu_share_median": _median([r["server_cpu_share"] for r in ok]),
                "front_cpu_us_per_req_median": _median([r.get("front_cpu_us_per_req") for r in ok]),
                "n_workers": ok[-1]["memory"]["n_workers"],
                "n_procs": ok[-1]["memory"]["n_procs"],
                "worker_rss_mib_median": _median([r["memory"]["worker_rss_mib"] for r in ok]),
                "worker_pss_mib_median": _median([r["memory"]["worker_pss_mib"] for r in ok]),
                "total_pss_mib_median": _median([r["memory"]["total_pss_mib"] for r in ok]),
                "libpython": sorted({p["libpython"] for r in ok for p in r["memory"]["procs"]
                                     if p.get("libpython") and not p["leader"]}),
                "keepalive": ok[-1].get("keepalive"),
            })
        out.append(agg)
    return out


def _f(x, nd=0):
    if x is None:
        return "-"
    return f"{x:.{nd}f}"


def machine_info() -> dict:
    cpuinfo = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    osr = _read("/etc/os-release") or ""
    o = re.search(r'^PRETTY_NAME="?([^"\n]+)', osr, re.M)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": m.group(1).strip() if m else platform.processor(),
        "mem_total_mib": (_kib(_read("/proc/meminfo"), "MemTotal") or 0) // 1024,
        "kernel": platform.release(),
        "os": o.group(1) if o else platform.platform(),
    }


def versions(args) -> dict:
    v = {"python": sys.version.split()[0]}
    py = os.path.join(args.venv, "bin", "python")
    code = ("import importlib.metadata as m,json\n"
            "out={}\n"
            "for d in ('uWSGI','gunicorn','granian','bjoern','Django','Flask'):\n"
            "    try: out[d]=m.version(d)\n"
            "    except Exception: out[d]=None\n"
            "import sys; out['venv_python']=sys.version.split()[0]\n"
            "print(json.dumps(out))")
    try:
        v.update(json.loads(subprocess.run([py, "-c", code], capture_output=True, text=True,
                                           timeout=30).stdout))
    except Exception as e:
        v["venv_error"] = str(e)
    try:
        w = subprocess.run([args.wrk, "-v"], capture_output=True, text=True, timeout=10)
        first = (w.stdout + w.stderr).splitlines()[0].strip()
        v["wrk"] = re.sub(r"^wrk\s+", "", first.split(" Copyright")[0])
    except Exception:
        v["wrk"] = None
    if os.path.isfile(args.apus) and os.access(args.apus, os.X_OK):
        try:
            a = subprocess.run([args.apus, "--version"], capture_output=True, text=True, timeout=10)
            v["apus"] = (a.stdout or a.stderr).strip().splitlines()[0] if (a.stdout or a.stderr) else None
        except Exception:
            v["apus"] = None
    else:
        v["apus"] = None
    try:
        v["repo_commit"] = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                          capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        v["repo_commit"] = None
    return v


def reproduce_cmd(args) -> str:
    rel = os.path.relpath
    parts = [rel(os.path.join(args.venv, "bin", "python"), REPO) if args.venv.startswith(REPO)
             else os.path.join(args.venv, "bin", "python"),
             "bench/run.py",
             "--duration", f"{args.duration:g}", "--warmup", f"{args.warmup:g}",
             "--repeats", str(args.repeats), "--connections", str(args.connections),
             "--wrk-threads", str(args.wrk_threads),
             "--shapes", ",".join(f"{w}x{t}" for w, t in args.shapes),
             "--apps", ",".join(args.apps), "--servers", ",".join(args.servers),
             "--apus", args.apus]
    if args.apus_b:
        parts += ["--apus-b", args.apus_b]
    return "cd " + shlex.quote(REPO) + " && " + shlex.join(parts)


def render_md(meta: dict, aggs: list[dict], skipped: list[str]) -> str:
    a = meta["args"]
    L = []
    L.append("# Apus benchmark")
    L.append("")
    L.append(f"- date: {meta['started']} .. {meta['finished']} (UTC)")
    mi = meta["machine"]
    L.append(f"- machine: {mi['cpus']} CPUs, {mi['cpu_model']}, {mi['mem_total_mib']} MiB RAM, "
             f"kernel {mi['kernel']}, {mi['os']}")
    L.append(f"- load average (1/5/15 min) at start: {meta['loadavg_start']}, at end: {meta['loadavg_end']}")
    vv = meta["versions"]
    L.append("- versions: " + ", ".join(f"{k} {v}" for k, v in vv.items() if v))
    L.append(f"- load: `wrk -t{a['wrk_threads']} -c{a['connections']} -d{a['duration']:g}s --latency` "
             f"(keep-alive) after a {a['warmup']:g}s warm-up on the same server instance; "
             f"{a['repeats']} repeat(s), round-robin over all cells; wrk shares the CPUs with the servers")
    L.append(f"- reproduce: `{meta['reproduce']}`")
    L.append("")
    L.append("Columns: req/s = median (min..max over repeats); p99 = median of the repeats' p99; "
             "errors = non-2xx / socket errors connect+read+write+timeout summed over repeats; "
             "CPU µs/req = server process tree CPU (user+sys, reaped children included) during the "
             "measured run / requests completed, median; CPU% = that CPU per wall second "
             "(100 = one core); front CPU µs/req = the same for the nginx or apus router in front "
             "(nginx+* and router+* rows only, not included in CPU µs/req); RSS/PSS per worker = mean over the processes that serve requests "
             "(not the leader, uWSGI's HTTP router or apus's zygote), "
             "total PSS = whole tree incl. master; KA = keep-alive check before the load: as many "
             "connections as wrk opens, two GETs on each, all held open (yes / no: server closes / "
             "STARVES k/n: only k connections answered, so wrk's figure comes from k connections).")
    for app in a["apps"]:
        rows = [g for g in aggs if g["app"] == app]
        if not rows:
            continue
        L.append("")
        L.append(f"## {app} (`{APPS[app].module}`, GET `{APPS[app].path}`)")
        L.append("")
        L.append("| server | shape | req/s | min..max | p99 ms | non-2xx | sock err | CPU µs/req | CPU% "
                 "| front CPU µs/req | procs | RSS/worker MiB | PSS/worker MiB | total PSS MiB | KA |")
        L.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        order = {s.name: i for i, s in enumerate(SERVERS)}
        shapes = [f"{w}x{t}" for w, t in a["shapes_parsed"]]
        rows.sort(key=lambda g: (shapes.index(g["shape"]), order.get(g["server"], 99)))
        for g in rows:
            if not g["ok"]:
                err = (g["errors"][0] if g["errors"] else "failed").splitlines()[0][:80]
                L.append(f"| {g['server']} | {g['shape']} | FAILED | {err} ||||||||||||")
                continue
            se = g["sock_errors_total"]
            L.append(
                f"| {g['server']} | {g['shape']} | {_f(g['rps_median'])} | "
                f"{_f(g['rps_min'])}..{_f(g['rps_max'])} | {_f(g['p99_ms_median'], 2)} | "
                f"{g['non2xx_total']} | {sum(se.values())} | {_f(g['cpu_us_per_req_median'], 1)} | "
                f"{_f((g['cpu_share_median'] or 0) * 100)} | "
                f"{_f(g.get('front_cpu_us_per_req_median'), 1)} | {g['n_procs']} | "
                f"{_f(g['worker_rss_mib_median'], 1)} | {_f(g['worker_pss_mib_median'], 1)} | "
                f"{_f(g['total_pss_mib_median'], 1)} | {g['keepalive']} |")
            if g["errors"]:
                L.append(f"|  | ↳ {len(g['errors'])} failed repeat(s): "
                         f"{g['errors'][0].splitlines()[0][:80]} ||||||||||||||")
    if skipped:
        L.append("")
        L.append("## Skipped")
        L.append("")
        for s in skipped:
            L.append(f"- {s}")
    libs: dict[str, set] = {}
    for g in aggs:
        libs.setdefault(g["server"], set()).update(g.get("libpython") or [])
    if libs:
        L.append("")
        L.append("## libpython mapped by the workers")
        L.append("")
        for name, paths in libs.items():
            L.append(f"- {name}: {', '.join(sorted(paths)) or '(none seen)'}")
    notes = [f"- {s.name}: {s.note}" for s in SERVERS if s.note and s.name in a["servers"]]
    if notes:
        L.append("")
        L.append("## Server notes")
        L.append("")
        L.extend(notes)
    L.append("")
    return "\n".join(L)


# ---------------------------------------------------------------- main


def main(argv=None):
    default_venv = sys.prefix if sys.prefix != sys.base_prefix else os.path.join(BENCH, ".venv")
    p = argparse.ArgumentParser(description="Apus vs other WSGI servers, side by side, one run.")
    p.add_argument("--duration", type=float, default=5, help="seconds of each measured wrk run (5)")
    p.add_argument("--warmup", type=float, default=2, help="seconds of wrk warm-up before it, discarded (2)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every cell, round-robin (3)")
    p.add_argument("--shapes", default="2x1,4x1,3x3", help="WORKERSxTHREADS list (2x1,4x1,3x3)")
    p.add_argument("--apps", default="hello,django", help="subset of: " + ",".join(APPS))
    p.add_argument("--servers", default=",".join(s.name for s in SERVERS if s.default),
                   help="subset of: " + ",".join(s.name for s in SERVERS))
    p.add_argument("--connections", type=int, default=32, help="wrk -c (32)")
    p.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (2)")
    p.add_argument("--apus", default=os.path.join(REPO, ".build", "release", "apus"),
                   help="apus binary (default: .build/release/apus in the repo)")
    p.add_argument("--apus-b", default="", help="a second apus binary, served as 'apus-b'")
    p.add_argument("--venv", default=default_venv, help="venv with the servers and Django (bench/.venv)")
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--ready-timeout", type=float, default=30)
    p.add_argument("--stop-timeout", type=float, default=10)
    p.add_argument("--out", default=None, help="also write PREFIX.md and PREFIX.json")
    args = p.parse_args(argv)

    args.venv = os.path.abspath(args.venv)
    args.apus = os.path.abspath(args.apus)
    global APUS_B
    APUS_B = os.path.abspath(args.apus_b) if args.apus_b else ""
    args.shapes = [parse_shape(s) for s in args.shapes.split(",") if s.strip()]
    args.apps = [a.strip() for a in args.apps.split(",") if a.strip()]
    args.servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    for a in args.apps:
        if a not in APPS:
            p.error(f"unknown app {a!r} (have {', '.join(APPS)})")
    known = {s.name for s in SERVERS}
    for s in args.servers:
        if s not in known:
            p.error(f"unknown server {s!r} (have {', '.join(known)})")
    if not args.shapes or args.repeats < 1 or args.duration <= 0:
        p.error("need at least one shape, --repeats >= 1 and --duration > 0")
    if not shutil.which(args.wrk):
        p.error("wrk not found: run bench/setup.sh")
    if args.out:
        d = os.path.dirname(os.path.abspath(args.out))
        os.makedirs(d, exist_ok=True)

    servers = [s for s in SERVERS if s.name in args.servers]
    skipped = []
    plan = []  # (server, app, workers, threads)
    for app in args.apps:
        for w, t in args.shapes:
            for s in servers:
                if t > 1 and not s.threads_ok:
                    continue
                plan.append((s, APPS[app], w, t))
    for s in servers:
        if s.threads_ok is False and any(t > 1 for _, t in args.shapes):
            skipped.append(f"{s.name}: shapes with threads > 1 (single-threaded server)")
        if s.available:
            why = s.available(Ctx(args.venv, args.apus, 0, 1, 1, APPS[args.apps[0]], ""))
            if why:
                skipped.append(f"{s.name}: {why}")
                plan = [c for c in plan if c[0] is not s]

    meta = {
        "started": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "machine": machine_info(),
        "versions": versions(args),
        "argv": [sys.executable] + sys.argv,
        "args": {"duration": args.duration, "warmup": args.warmup, "repeats": args.repeats,
                 "connections": args.connections, "wrk_threads": args.wrk_threads,
                 "shapes_parsed": args.shapes, "apps": args.apps, "servers": args.servers,
                 "apus": args.apus, "venv": args.venv},
        "reproduce": reproduce_cmd(args),
        "clk_tck": CLK_TCK,
    }
    per = args.warmup + args.duration + 3
    log(f"bench: {len(plan)} cells x {args.repeats} repeats, about "
        f"{len(plan) * args.repeats * per / 60:.1f} min; load average {meta['loadavg_start']}")
    for s in skipped:
        log(f"bench: skipped {s}")

    def _on_term(signum, _frame):
        raise KeyboardInterrupt  # unwinds through run_cell's cleanup: the server is stopped
    signal.signal(signal.SIGTERM, _on_term)

    runs = []
    interrupted = False
    try:
        for rep in range(args.repeats):
            # rotate the server order each repeat so no server always runs first/last
            k = rep % max(1, len(servers))
            rot = {s.name: (i - k) % len(servers) for i, s in enumerate(servers)}
            cells = sorted(plan, key=lambda c: (args.apps.index(c[1].name),
                                                args.shapes.index((c[2], c[3])), rot[c[0].name]))
            for s, app, w, t in cells:
                r = run_cell(args, s, app, w, t, rep + 1)
                runs.append(r)
                if "error" in r:
                    log(f"[{rep + 1}/{args.repeats}] {app.name:6} {s.name:9} {w}x{t}: ERROR "
                        f"{r['error'].splitlines()[0][:150]}")
                else:
                    log(f"[{rep + 1}/{args.repeats}] {app.name:6} {s.name:9} {w}x{t}: "
                        f"{r['rps']:9.0f} req/s  p99 {r['p99_ms']:7.2f} ms  "
                        f"cpu {r['server_cpu_us_per_req'] or 0:7.1f} us/req  ka={r['keepalive']}")
    except KeyboardInterrupt:
        interrupted = True
        log("bench: interrupted, reporting what ran")

    meta["finished"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["interrupted"] = interrupted
    aggs = aggregate(runs)
    md = render_md(meta, aggs, skipped)
    print(md)
    if args.out:
        with open(args.out + ".md", "w") as f:
            f.write(md)
        with open(args.out + ".json", "w") as f:
            json.dump({"meta": meta, "skipped": skipped, "cells": aggs, "runs": runs}, f, indent=1)
        log(f"bench: wrote {args.out}.md and {args.out}.json")
    failed = sum(1 for r in runs if "error" in r)
    return 1 if interrupted or (runs and failed == len(runs)) else 0


if __name__ == "__main__":
    sys.exit(main())
