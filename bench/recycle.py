#!/usr/bin/env python3
"""Recycling benchmark: what clients see while workers are recycled by --max-requests.

Each server (Apus, uWSGI, Gunicorn) serves the reload app (Tests/integration/apps/reloadapp,
plain flavour: the import takes --startup seconds, like a real app's) with the same number of
workers, each recycled after --max-requests requests (plus a jitter where the server has
one), under the same closed-loop load (Tests/integration/loadgen.py: keep-alive and
connection-per-request clients) for --duration seconds.

Reported per server: requests, failed requests (by kind), workers that answered (about one
per recycle), longest gap without a successful response, max latency, and throughput. By
default each client sends --rate requests a second, so every server recycles as often;
--rate 0 sends back to back (then Apus, whose workers serve until their replacement is
ready, serves more requests per recycle than the others).

    bench/.venv/bin/python bench/recycle.py
    bench/.venv/bin/python bench/recycle.py --servers apus,uwsgi --max-requests 100 --duration 30
"""
import argparse
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
APPS = REPO / "Tests" / "integration" / "apps"
sys.path.insert(0, str(REPO / "Tests" / "integration"))
sys.path.insert(0, str(APPS))
from loadgen import LoadGen, format_summary  # noqa: E402
from reloadapp.versionfile import write_version  # noqa: E402

APP = "reloadapp.wsgi:application"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(server, a, port, vdir):
    venv = Path(a.venv)
    if server == "apus":
        return [a.apus, "--http", f"127.0.0.1:{port}", "--processes", str(a.workers), "--venv", str(venv),
                "--chdir", str(APPS), "--pythonpath", str(APPS), "--pythonpath", str(vdir), "--no-access-log",
                "--max-requests", str(a.max_requests), "--max-requests-jitter", str(a.jitter), APP]
    if server == "uwsgi":
        # --max-requests-delta adds worker_id * delta (not random); --min-worker-lifetime
        # (10 s by default) would hold recycles back, so it is set to the least allowed.
        return [str(venv / "bin" / "uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--master",
                "--processes", str(a.workers), "--virtualenv", str(venv), "--chdir", str(APPS),
                "--pythonpath", str(APPS), "--pythonpath", str(vdir), "--module", APP, "--disable-logging",
                "--die-on-term", "--need-app", "--lazy-apps", "--max-requests", str(a.max_requests),
                "--max-requests-delta", str(max(1, a.jitter // max(1, a.workers))), "--min-worker-lifetime", "1"]
    if server == "gunicorn":
        return [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", str(a.workers), "-k", "sync",
                "--chdir", str(APPS), "--pythonpath", f"{APPS},{vdir}", "--max-requests", str(a.max_requests),
                "--max-requests-jitter", str(a.jitter), "--log-level", "warning", APP]
    raise ValueError(server)


def wait_ready(proc, port, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready within {timeout} s")


def run(server, a, tmp):
    run_dir = Path(tempfile.mkdtemp(prefix=f"{server}-", dir=tmp))
    vdir = run_dir / "ver"
    vdir.mkdir()
    write_version(vdir, "v1")
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APUS_", "UWSGI_", "GUNICORN_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update({"STARTUP_SECONDS": str(a.startup), "PYTHONDONTWRITEBYTECODE": "1"})
    cmd = command(server, a, port, vdir)
    with open(run_dir / "server.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=str(run_dir))
        try:
            wait_ready(proc, port, 60)
            time.sleep(a.startup + 1)  # every worker imported
            lg = LoadGen(port, "/", keepalive=a.keepalive, per_request=a.per_request, timeout=30.0,
                         interval=1.0 / a.rate if a.rate > 0 else 0.0, max_duration=a.duration + 40).start()
            time.sleep(a.duration)
            lg.stop()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    s = lg.summary()
    s["workers_answered"] = len({r.pid for r in lg.records if r.ok and r.pid})
    s["rps"] = s["ok"] / a.duration
    s["cmd"] = " ".join(cmd)
    s["log"] = str(run_dir / "server.log")
    return s


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="apus,uwsgi,gunicorn")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-requests", type=int, default=200)
    ap.add_argument("--jitter", type=int, default=20)
    ap.add_argument("--startup", type=float, default=1.0, help="seconds the app takes to import")
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--keepalive", type=int, default=4)
    ap.add_argument("--per-request", type=int, default=4)
    ap.add_argument("--rate", type=float, default=15.0,
                    help="requests per second per client (0: back to back); the same rate for every "
                         "server makes the recycles as frequent for each")
    ap.add_argument("--venv", default=str(HERE / ".venv"))
    ap.add_argument("--apus", default=os.environ.get("APUS_BIN") or str(REPO / ".build" / "release" / "apus"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="apus-recycle-") as tmp:
        for server in a.servers.split(","):
            s = run(server, a, tmp)
            print(f"{server}: {format_summary(s)}\n  {s['cmd']}", file=sys.stderr)
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(s["failed_by_kind"].items())) or "-"
            rows.append(f"| {server} | {s['total']} | {s['failed']} | {kinds} | {s['workers_answered']} | "
                        f"{s['longest_gap'] * 1000:.0f} | {(s['max_latency'] or 0) * 1000:.0f} | {s['rps']:.0f} |")
    print(f"{a.workers} workers, --max-requests {a.max_requests} (jitter {a.jitter}), app import {a.startup:g} s, "
          f"{a.keepalive} keep-alive + {a.per_request} connection-per-request clients "
          f"({f'{a.rate:g} requests/s each' if a.rate > 0 else 'back to back'}), {a.duration:g} s each; "
          f"{platform.node()}, {os.cpu_count()} CPUs\n")
    print("| server | requests | failed | failures by kind | workers that answered | longest gap (ms) | max latency (ms) | req/s |")
    print("|---|---:|---:|---|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
