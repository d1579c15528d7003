#!/usr/bin/env python3
"""Reload timeline benchmark: what clients see while a WSGI server reloads under load.

For each scenario (a server and a reload method): start the server on the reload app
(Tests/integration/apps/reloadapp, Django flavour by default: 2 s to import), load it with
Tests/integration/loadgen.py (closed loop, keep-alive and connection-per-request clients),
after --pre seconds rewrite the app's version module (v1 -> v2) and fire the reload, keep
the load on until only the new code has answered for --post seconds, then stop the server.

Reported per scenario: requests, failed requests (by kind), longest gap without a
successful response, max latency, throughput dip (the smallest 100 ms bucket from the
trigger until the last old-code response, over the median bucket of the steady load before
the trigger), seconds until the new code first answers and until the old code last answers.

Stdlib only; run it with the bench venv's python (its uwsgi and gunicorn are used):

    bench/.venv/bin/python bench/reload.py --out bench/out/reload
    bench/.venv/bin/python bench/reload.py --scenarios apus-w,uwsgi-w --workers 4 --repeats 3
"""
import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APPS = REPO / "Tests" / "integration" / "apps"
sys.path.insert(0, str(REPO / "Tests" / "integration"))
sys.path.insert(0, str(APPS))
from loadgen import LoadGen, format_summary  # noqa: E402
from reloadapp.versionfile import write_version  # noqa: E402

SCENARIOS = {
    # name: (server, reload method, what it means)
    "apus-r": ("apus", "r", "master FIFO r: graceful reload (configuration re-read)"),
    "apus-w": ("apus", "w", "master FIFO w: all workers at once, new set ready first"),
    "apus-c": ("apus", "c", "master FIFO c: chain reload, one worker at a time"),
    "uwsgi-r": ("uwsgi", "r", "master FIFO r: graceful reload"),
    "uwsgi-w": ("uwsgi", "w", "master FIFO w: graceful reload of the workers"),
    "uwsgi-c": ("uwsgi", "c", "master FIFO c: chain reload (needs --lazy-apps)"),
    "gunicorn-hup": ("gunicorn", "HUP", "SIGHUP: new workers, old ones stopped gracefully"),
    # not in the default set
    "apus-w-preload": ("apus", "w", "--preload, master FIFO w: a new preloader imports once, forks the set"),
    "apus-c-preload": ("apus", "c", "--preload, master FIFO c: a new preloader, workers chained"),
    "apus-hup": ("apus", "HUP", "SIGHUP: graceful reload"),
    # upgrades of the whole master (binary, Python, options), next to the anchors' dances
    "apus-f": ("apus", "f", "master FIFO f: upgrade in place (check, re-execute the master, same pid, new workers ready first)"),
    "apus-usr2": ("apus", "USR2", "SIGUSR2: upgrade in place"),
    "uwsgi-fork": ("uwsgi", "fork", "master FIFO f: master fork; the dance: the ini gives the copy its own FIFO "
                   "first, then FIFO q to the old master once the new code answers"),
    "gunicorn-usr2": ("gunicorn", "USR2", "SIGUSR2: new master; the dance: once the new code answers, "
                      "WINCH (ignored unless daemonized) and TERM to the old master"),
    "apus-reuseport": ("apus", "swap", "--reuse-port handover: a second instance on the same address, "
                       "SIGTERM to the first once the second answers"),
    "uwsgi-reuseport": ("uwsgi", "swap", "--reuse-port handover: a second instance on the same address, "
                        "FIFO q (graceful shutdown) to the first once the second answers"),
    # behind a subscription router (see the "subscription router scenarios" block below)
    "apus-router": ("apus", "router", "swap behind apus router: a second instance subscribed (--subscribe-to) "
                    "on its own uwsgi socket, SIGTERM to the first (it unsubscribes, then drains) once the second answers"),
    "uwsgi-router": ("uwsgi", "router", "swap behind uWSGI's --http-subscription-server: a second instance "
                     "subscribed on its own uwsgi socket, FIFO q to the first (it unsubscribes, then drains) once the second answers"),
}
# zerg mode: a zerg server owns the socket; the swap is a second instance, then the first stopped
SCENARIOS.update({
    "apus-zerg": ("apus", "zerg", "zerg mode: apus --zerg-server owns the socket; a second instance "
                  "(apus --zerg), SIGTERM to the first once the second answers"),
    "uwsgi-zerg": ("uwsgi", "zerg", "zerg mode: uwsgi --zerg-pool owns the socket; a second instance "
                   "(uwsgi --zerg --protocol http), FIFO q to the first once the second answers"),
})
DEFAULT = ["apus-r", "apus-w", "apus-c", "uwsgi-r", "uwsgi-w", "uwsgi-c", "gunicorn-hup"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path="/", timeout=2.0):
    """(status, json body or None) of one GET with Connection: close; raises OSError."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        # the Host loadgen sends (a subscription router matches it with the instances' key)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0], 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        body = out
    try:
        return status, json.loads(body)
    except ValueError:
        return status, None


class Server:
    def __init__(self, kind, method, args, run_dir, port, fifo):
        self.kind, self.method, self.args = kind, method, args
        self.run_dir, self.port, self.fifo = run_dir, port, fifo
        self.proc = None
        self.preload = False
        self.extra_pids = []
        self.log_name = "server.log"
        self.first_proc = None

    def command(self, a):
        if self.method == "router":
            return router_node_command(self, self.server_command(a))
        return self.server_command(a)

    def server_command(self, a):
        vdir = self.run_dir / "ver"
        app = f"reloadapp.{'djwsgi' if a.app == 'django' else 'wsgi'}:application"
        venv = Path(a.venv)
        if self.kind == "apus":
            return [a.apus, "--http", f"127.0.0.1:{self.port}", "--processes", str(a.workers),
                    "--threads", str(a.threads), "--venv", str(venv), "--chdir", str(APPS),
                    "--pythonpath", str(APPS), "--pythonpath", str(vdir),
                    "--master-fifo", str(self.fifo), "--no-access-log",
                    "--reload-mercy", "30", *(["--preload"] if self.preload else []),
                    *(["--reuse-port"] if self.method == "swap" else []), app]
        if self.kind == "uwsgi" and self.method == "fork":
            # the re-forked master re-reads its ini: the FIFO is set there so the copy can be
            # given its own before `f` (else it takes over the old master's path)
            self.ini = self.run_dir / "uwsgi.ini"
            self.ini.write_text(f"[uwsgi]\nmaster-fifo = {self.fifo}\n")
            return [str(venv / "bin" / "uwsgi"), "--ini", str(self.ini),
                    *[x for x in self.uwsgi_args(a, venv, vdir, app)[1:]
                      if x not in ("--master-fifo", str(self.fifo))]]
        if self.kind == "uwsgi":
            return self.uwsgi_args(a, venv, vdir, app)
        if self.kind == "gunicorn":
            worker = "gthread" if a.threads > 1 else "sync"
            return [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{self.port}",
                    "-w", str(a.workers), "--threads", str(a.threads), "-k", worker,
                    "--chdir", str(APPS), "--pythonpath", f"{APPS},{vdir}",
                    "--graceful-timeout", "30", "--timeout", "60", "--log-level", "info", app]
        raise ValueError(self.kind)

    def uwsgi_args(self, a, venv, vdir, app):
        """uWSGI's command line for the reload scenarios (HTTP socket, lazy apps)."""
        cmd = [str(venv / "bin" / "uwsgi"), "--http-socket", f"127.0.0.1:{self.port}",
               "--master", "--processes", str(a.workers), "--threads", str(a.threads),
               "--virtualenv", str(venv), "--chdir", str(APPS), "--pythonpath", str(APPS),
               "--pythonpath", str(vdir), "--module", app, "--master-fifo", str(self.fifo),
               "--disable-logging", "--die-on-term", "--worker-reload-mercy", "30",
               "--reload-mercy", "30", "--need-app", "--lazy-apps"]
        if self.method == "swap":
            cmd.append("--reuse-port")
        if a.threads > 1:
            cmd.append("--enable-threads")
        return cmd

    def start(self, a):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("APUS_", "UWSGI_", "GUNICORN_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
        env.update({"STARTUP_SECONDS": str(a.startup), "PYTHONDONTWRITEBYTECODE": "1",
                    "APP_ENV_VERSION": "1", "READY_DIR": str(self.run_dir / "ready")})
        if self.method == "router":
            start_router(self, a, env)
        self.cmd = self.command(a)
        self.log = open(self.run_dir / self.log_name, "wb")
        self.proc = subprocess.Popen(self.cmd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(self.run_dir))

    def wait_ready(self, a, timeout):
        """Until GET / answers v1 and every worker has imported the app (ready markers)."""
        deadline = time.monotonic() + timeout
        ready_dir = self.run_dir / "ready"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with {self.proc.returncode}: {self.tail()}")
            try:
                st, body = http_get(self.port)
                if st == 200 and body and body.get("code") == "v1" \
                        and len(os.listdir(ready_dir)) >= (1 if self.preload else a.workers):
                    return
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} not ready within {timeout}s: {self.tail()}")

    def swap(self, a, lg):
        """The reuse-port handover: a second instance with the same arguments on the same
        port (it imports the version already rewritten to v2); once a GET is answered by
        it, the first is stopped gracefully and waited for; the second carries on as this
        server."""
        first = self.proc, self.fifo, self.log
        self.first_proc = self.proc  # stopped with this server if the handover fails midway
        self.fifo = self.run_dir / "master-b.fifo"
        self.log_name = "server-b.log"
        self.start(a)
        deadline = time.monotonic() + a.max_wait
        while time.monotonic() < deadline:
            try:
                st, body = http_get(self.port, timeout=5.0)
                if st == 200 and body and body.get("code") == "v2":
                    break
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.05)
        lg.mark("second answered")
        proc, fifo, log = first
        if self.kind == "uwsgi":
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, b"q")
            finally:
                os.close(fd)
        else:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        lg.mark("first exited")
        log.close()

    def reload(self, new_code_seen):
        """Fire the reload; for the anchors' upgrade dances, also the steps after it, which
        wait (in a thread) until `new_code_seen()` says the new code answers."""
        if self.method == "HUP":
            os.kill(self.proc.pid, signal.SIGHUP)
        elif self.method == "USR2" and self.kind == "apus":
            os.kill(self.proc.pid, signal.SIGUSR2)
        elif self.method == "USR2":  # gunicorn
            os.kill(self.proc.pid, signal.SIGUSR2)
            threading.Thread(target=self._gunicorn_dance, args=(new_code_seen,), daemon=True).start()
        elif self.method == "fork":  # uWSGI
            self.ini.write_text(f"[uwsgi]\nmaster-fifo = {self.fifo}.2\n")
            self._fifo_write(self.fifo, b"f")
            threading.Thread(target=self._uwsgi_dance, args=(new_code_seen,), daemon=True).start()
        else:
            fd = os.open(self.fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, self.method.encode())
            finally:
                os.close(fd)

    def _fifo_write(self, path, data):
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def _wait(self, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return False

    def _gunicorn_dance(self, new_code_seen):
        if self._wait(new_code_seen, 40):
            time.sleep(0.5)  # let every new worker come up
            os.kill(self.proc.pid, signal.SIGWINCH)
            os.kill(self.proc.pid, signal.SIGTERM)

    def _uwsgi_dance(self, new_code_seen):
        # the copy re-execs in a session of its own: its pid is only in the log
        def copy_pid():
            for ln in self.tail(1 << 20).splitlines():
                if "new master copy spawned with pid" in ln:
                    self.extra_pids.append(int(ln.rsplit(" ", 1)[1]))
                    return True
            return False
        self._wait(copy_pid, 10)
        if self._wait(new_code_seen, 40):
            time.sleep(0.5)
            self._fifo_write(self.fifo, b"q")  # graceful stop of the old master

    def stop(self, timeout=15.0):
        for pid in getattr(self, "extra_pids", []):
            try:
                os.killpg(os.getpgid(pid), signal.SIGINT)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc is None:
            return
        if self.first_proc is not None and self.first_proc.poll() is None:
            try:
                os.killpg(self.first_proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.first_proc.wait(5)
        try:
            os.killpg(self.proc.pid, signal.SIGINT if self.kind == "uwsgi" else signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # only the group this run started
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()
        stop_router(self)

    def tail(self, n=1500):
        try:
            return "".join((self.run_dir / f).read_text(errors="replace")[-n:]
                           for f in ("server.log", "server-b.log", "router.log") if (self.run_dir / f).exists())
        except OSError:
            return ""


class ZergBench(Server):
    """The zerg dance: a zerg server (`apus --zerg-server`, or uWSGI's zerg pool) owns the
    HTTP socket for the whole run; the instances attach to it instead of binding, and the
    swap (`Server.swap`) starts the second one and stops the first once it answers."""

    def command(self, a):
        cmd = super().command(a)
        path = str(self.run_dir / "zerg.sock")
        bind = "--http" if self.kind == "apus" else "--http-socket"
        i = cmd.index(bind)
        return cmd[:i] + ["--zerg", path] + (["--protocol", "http"] if self.kind == "uwsgi" else []) + cmd[i + 2:]

    def start(self, a):
        if getattr(self, "zerg", None) is None:
            path = self.run_dir / "zerg.sock"
            if self.kind == "apus":
                cmd = [a.apus, "--zerg-server", str(path), "--http", f"127.0.0.1:{self.port}"]
            else:
                cmd = [str(Path(a.venv) / "bin" / "uwsgi"), "--master", "--zerg-pool", f"{path}:127.0.0.1:{self.port}"]
            self.zerg_log = open(self.run_dir / "zerg.log", "wb")
            self.zerg = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.zerg_log, stderr=subprocess.STDOUT,
                                         start_new_session=True, cwd=str(self.run_dir))
            self._wait(lambda: path.exists() or self.zerg.poll() is not None, 20)
            if self.zerg.poll() is not None:
                raise RuntimeError(f"the zerg server exited: {(self.run_dir / 'zerg.log').read_text()[-1500:]}")
        super().start(a)

    def stop(self, timeout=15.0):
        super().stop(timeout)
        if getattr(self, "zerg", None) is not None:
            for sig, wait in ((signal.SIGINT, timeout), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.zerg.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.zerg.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    pass
            self.zerg_log.close()


def run_one(name, a, rep, base):
    kind, method, _ = SCENARIOS[name]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-r{rep}-", dir=base))
    (run_dir / "ver").mkdir()
    (run_dir / "ready").mkdir()
    write_version(run_dir / "ver", "v1")
    srv = (ZergBench if method == "zerg" else Server)(kind, method, a, run_dir, free_port(), run_dir / "master.fifo")
    srv.preload = name.endswith("-preload")
    result = {"scenario": name, "rep": rep, "server": kind, "method": method}
    try:
        srv.start(a)
        result["argv"] = srv.cmd
        srv.wait_ready(a, a.ready_timeout)
        lg = LoadGen(srv.port, "/", keepalive=a.keepalive, per_request=a.per_request,
                     interval=1.0 / a.rate if a.rate else 0.0, timeout=a.client_timeout,
                     max_duration=a.pre + a.max_wait + a.post + 30)
        lg.start()
        time.sleep(a.pre)
        write_version(run_dir / "ver", "v2")
        t_trigger = lg.mark("trigger")
        if method in ("swap", "zerg", "router"):
            srv.swap(a, lg)
        else:
            srv.reload(lambda: any(r.code == "v2" for r in list(lg.records)))
        # until only the new code has answered for --post seconds (or --max-wait passes)
        deadline = time.monotonic() + a.max_wait
        seen = 0
        t_new = t_old = None
        while time.monotonic() < deadline:
            recs = list(lg.records)
            for r in recs[seen:]:
                if r.code == "v2" and (t_new is None or r.end < t_new):
                    t_new = r.end
                elif r.code == "v1" and r.end >= t_trigger and (t_old is None or r.end > t_old):
                    t_old = r.end
            seen = len(recs)
            now = lg.now()
            if t_new is not None and now - t_new >= a.post and now - (t_old or 0) >= a.post:
                break
            time.sleep(0.05)
        lg.stop()
        s = lg.summary()
        recs = lg.records
        olds = [r.end for r in recs if r.code == "v1" and r.end >= t_trigger]
        t_last_old = max(olds) if olds else t_trigger
        b = s["bucket"]
        steady = s["buckets"][int(0.5 / b):int(t_trigger / b)]
        steady_med = statistics.median(steady) if steady else 0
        lo = int(t_trigger / b)
        hi = max(lo + 1, int((max(t_last_old, t_new or 0)) / b) + 1)
        window = s["buckets"][lo:hi] or [0]
        at_end = [r for r in recs if r.start >= lg.t_end - 1.0]
        result.update({
            "requests": s["total"], "failed": s["failed"], "failed_by_kind": s["failed_by_kind"],
            "stale_retries": s["stale_retries"],
            "longest_gap_s": round(s["longest_gap"], 3),
            "longest_gap_at_s": round(s["longest_gap_at"] - t_trigger, 3),
            "max_latency_ms": round(s["max_latency"] * 1000, 1) if s["max_latency"] else None,
            "steady_per_s": round(steady_med / b, 1),
            "dip": round(min(window) / steady_med, 2) if steady_med else None,
            "new_code_after_s": round(t_new - t_trigger, 2) if t_new is not None else None,
            "last_old_after_s": round(t_last_old - t_trigger, 2) if olds else None,
            "new_code_share_last_s": round(sum(r.code == "v2" for r in at_end) / len(at_end), 3)
            if at_end else None,
            "summary": format_summary(s),
            "marks": {k: round(v - t_trigger, 3) for k, v in lg.marks.items()},
        })
        if a.keep_records:
            result["records"] = [(r.kind, round(r.start, 4), round(r.end, 4), r.status, r.error,
                                  r.code, r.pid) for r in recs]
    except Exception as e:  # noqa: BLE001  (one broken scenario does not end the run)
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        srv.stop()
        result["server_log_tail"] = srv.tail(3000)
    return result


# -- subscription router scenarios (apus-router, uwsgi-router) ---------------------------------
# The server's port is the router's HTTP port; each instance gets a uwsgi socket of its own
# and subscribes to the router (UDP) with the Host loadgen sends (127.0.0.1:PORT) as its key.
# swap() then starts the second instance and stops the first, as for the reuse-port handover.


def start_router(srv, a, env):
    if getattr(srv, "router_proc", None) is not None:
        return
    srv.udp_port = free_port()
    if srv.kind == "apus":
        cmd = [a.apus, "router", "--http", f"127.0.0.1:{srv.port}",
               "--subscription-server", f"127.0.0.1:{srv.udp_port}"]
    else:
        cmd = [str(Path(a.venv) / "bin" / "uwsgi"), "--master", "--http", f"127.0.0.1:{srv.port}",
               "--http-subscription-server", f"127.0.0.1:{srv.udp_port}"]
    srv.router_cmd = cmd
    srv.router_log = open(srv.run_dir / "router.log", "wb")
    srv.router_proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=srv.router_log,
                                       stderr=subprocess.STDOUT, start_new_session=True, cwd=str(srv.run_dir))


def router_node_command(srv, cmd):
    """The server's command with its HTTP bind replaced by a uwsgi socket of its own and a
    subscription to the router."""
    srv.node_port = free_port()
    bind = "--http" if srv.kind == "apus" else "--http-socket"
    i = cmd.index(bind)
    return (cmd[:i] + ["--socket", f"127.0.0.1:{srv.node_port}",
                       "--subscribe-to", f"127.0.0.1:{srv.udp_port}:127.0.0.1:{srv.port}",
                       "--subscribe-freq", "1"] + cmd[i + 2:])


def stop_router(srv):
    proc = getattr(srv, "router_proc", None)
    if proc is None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT if srv.kind == "uwsgi" else signal.SIGTERM)
        proc.wait(10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
    srv.router_log.close()
    srv.router_proc = None


def fmt(v, unit=""):
    return "-" if v is None else f"{v}{unit}"


def table(results):
    rows = ["| scenario | requests | failed (by kind) | longest gap, s | max latency, ms | dip (min 100 ms / steady) | steady req/s | new code after, s | last old code after, s | new-code share, last 1 s |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['scenario']} #{r['rep']} | error: {r['error'][:120]} |" + " |" * 8)
            continue
        kinds = ", ".join(f"{k}:{v}" for k, v in sorted(r["failed_by_kind"].items()))
        label = r["scenario"] + ("" if r["rep"] == 0 else f" #{r['rep']}")
        rows.append(
            f"| {label} | {r['requests']} | "
            f"{r['failed']}{f' ({kinds})' if kinds else ''} | {r['longest_gap_s']:.2f} | "
            f"{fmt(r['max_latency_ms'])} | {fmt(r['dip'])} | {r['steady_per_s']:.0f} | "
            f"{fmt(r['new_code_after_s'])} | {fmt(r['last_old_after_s'])} | "
            f"{fmt(r['new_code_share_last_s'])} |")
    return "\n".join(rows)


def aggregate(results):
    """One row per scenario over its runs: failures summed, medians (min-max) of the rest."""
    rows = ["| scenario | runs | failed (sum) | longest gap, s | max latency, ms | dip | new code after, s | last old code after, s |",
            "|---|---|---|---|---|---|---|---|"]
    order = []
    for r in results:
        if r["scenario"] not in order:
            order.append(r["scenario"])

    def cell(vals, f="{:.2f}"):
        vals = [v for v in vals if v is not None]
        if not vals:
            return "-"
        med = f.format(statistics.median(vals))
        lo, hi = f.format(min(vals)), f.format(max(vals))
        return med if lo == hi or len(vals) == 1 else f"{med} ({lo}-{hi})"

    for n in order:
        runs = [r for r in results if r["scenario"] == n and "error" not in r]
        errs = sum(1 for r in results if r["scenario"] == n and "error" in r)
        if not runs:
            rows.append(f"| {n} | 0 ({errs} errors) |" + " - |" * 6)
            continue
        kinds = {}
        for r in runs:
            for k, v in r["failed_by_kind"].items():
                kinds[k] = kinds.get(k, 0) + v
        failed = sum(kinds.values())
        kinds_txt = ", ".join(f"{k}:{v}" for k, v in sorted(kinds.items()))
        rows.append(
            f"| {n} | {len(runs)}{f' ({errs} errors)' if errs else ''} | "
            f"{failed}{f' ({kinds_txt})' if kinds_txt else ''} | "
            f"{cell([r['longest_gap_s'] for r in runs])} | "
            f"{cell([r['max_latency_ms'] for r in runs], '{:.0f}')} | "
            f"{cell([r['dip'] for r in runs])} | {cell([r['new_code_after_s'] for r in runs])} | "
            f"{cell([r['last_old_after_s'] for r in runs])} |")
    return "\n".join(rows)


def versions(a):
    out = {}
    venv = Path(a.venv)
    for name, cmd in (("uwsgi", [str(venv / "bin" / "uwsgi"), "--version"]),
                      ("gunicorn", [str(venv / "bin" / "gunicorn"), "--version"]),
                      ("apus", [a.apus, "--version"]),
                      ("django", [str(venv / "bin" / "python"), "-c",
                                  "import django; print(django.__version__)"])):
        try:
            out[name] = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()
        except OSError as e:
            out[name] = f"unavailable ({e})"
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", default=",".join(DEFAULT),
                    help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--app", choices=["django", "plain"], default="django")
    ap.add_argument("--startup", type=float, default=2.0, help="seconds the app takes to import")
    ap.add_argument("--pre", type=float, default=4.0, help="seconds of steady load before the reload")
    ap.add_argument("--post", type=float, default=3.0,
                    help="seconds of load once only the new code answers")
    ap.add_argument("--max-wait", type=float, default=40.0,
                    help="seconds to wait for the new code before giving up")
    ap.add_argument("--keepalive", type=int, default=4, help="keep-alive client connections")
    ap.add_argument("--per-request", type=int, default=4, help="connection-per-request clients")
    ap.add_argument("--rate", type=float, default=50.0,
                    help="requests/s per client, at most (0: back to back)")
    ap.add_argument("--client-timeout", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--venv", default=str(HERE / ".venv"))
    ap.add_argument("--apus", default=os.environ.get("APUS_BIN") or str(REPO / ".build" / "release" / "apus"))
    ap.add_argument("--ready-timeout", type=float, default=60.0)
    ap.add_argument("--keep-records", action="store_true", help="every request in the JSON")
    ap.add_argument("--out", help="write PREFIX.md and PREFIX.json")
    a = ap.parse_args()
    names = [n.strip() for n in a.scenarios.split(",") if n.strip()]
    for n in names:
        if n not in SCENARIOS:
            ap.error(f"unknown scenario {n!r}")
    if not os.access(a.apus, os.X_OK):
        print(f"note: {a.apus} is not executable; apus scenarios skipped", file=sys.stderr)
        names = [n for n in names if SCENARIOS[n][0] != "apus"]
    base = Path(tempfile.mkdtemp(prefix="apus-reload-bench-"))
    results = []
    for rep in range(a.repeats):
        for n in names:
            r = run_one(n, a, rep, base)
            print(f"{n} #{rep}: {r.get('error') or r['summary']}", file=sys.stderr, flush=True)
            results.append(r)
    vers = versions(a)
    load = (f"{a.keepalive} keep-alive + {a.per_request} connection-per-request clients, at most "
            f"{a.rate:g} req/s each (closed loop), client timeout {a.client_timeout:g} s; "
            f"{a.pre:g} s steady, reload, then until only the new code has answered for {a.post:g} s")
    header = (f"# Reload under load\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
              f"{platform.node()}, {os.cpu_count()} CPUs, load average "
              f"{os.getloadavg()[0]:.1f}. App: reloadapp ({a.app}), import takes {a.startup:g} s; "
              f"{a.workers} workers x {a.threads} threads.\nLoad: {load}.\nVersions: "
              + ", ".join(f"{k} `{v.splitlines()[0] if v else '?'}`" for k, v in vers.items()) + "\n\n"
              + "\n".join(f"- `{n}`: {SCENARIOS[n][2]}" for n in names) + "\n")
    md = header + "\n" + table(results) + "\n"
    if a.repeats > 1:
        md += "\nOver the runs (median, min-max):\n\n" + aggregate(results) + "\n"
    print(md)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out}.md").write_text(md)
        Path(f"{out}.json").write_text(json.dumps(
            {"args": vars(a), "versions": vers, "results": results}, indent=1))


if __name__ == "__main__":
    main()
