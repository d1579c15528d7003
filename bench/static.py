#!/usr/bin/env python3
"""Static files: Apus's --static-map next to nginx and uWSGI's --static-map, in one run.

Each server gets one worker process and serves the same two files from the same directory
(a 1 KiB file and a 1 MiB file); wrk loads each in turn over keep-alive connections, the
servers interleaved and repeated, so they see the same machine conditions. The table gives
the median of the repeats (and the spread of req/s): requests per second, p50/p99 latency
and MB/s of body. wrk's errors column counts socket errors and non-2xx answers.

    bench/.venv/bin/python bench/static.py --apus .build/release/apus
    bench/.venv/bin/python bench/static.py --apus A --apus B --repeats 5 --duration 5

Several --apus binaries are measured as separate rows (`apus`, `apus#2`, ...): how a build
with another small-file threshold compares, for instance. Stdlib only; needs wrk and nginx
(/usr/sbin/nginx); uWSGI from the venv this python runs in (skipped when absent).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
HOST = "127.0.0.1"
FILES = {"1k": 1024, "1m": 1024 * 1024}

APP = """def application(environ, start_response):
    start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "4")])
    return [b"app\\n"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_port(port: int, path: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"no 200 for {path} on port {port}")


def nginx_conf(tmp: str, port: int, root: str) -> str:
    user = ""
    if os.geteuid() == 0:
        # as root nginx would run its worker as nobody, who cannot enter the private temp dir
        import pwd
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};"
    return f"""daemon off;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
worker_processes 1;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/ngx-body;
    proxy_temp_path {tmp}/ngx-proxy;
    uwsgi_temp_path {tmp}/ngx-uwsgi;
    fastcgi_temp_path {tmp}/ngx-fastcgi;
    scgi_temp_path {tmp}/ngx-scgi;
    types {{ application/octet-stream bin; }}
    server {{
        listen {HOST}:{port};
        location /static/ {{ alias {root}/; etag on; }}
    }}
}}
"""


def start(name: str, cmd: list[str], port: int, tmp: str, env: dict) -> subprocess.Popen:
    log = open(os.path.join(tmp, f"{name}.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        wait_port(port, "/static/1k.bin", proc)
    except RuntimeError:
        stop(proc)
        log.close()
        with open(os.path.join(tmp, f"{name}.log"), "rb") as f:
            sys.stderr.write(f"--- {name}: {' '.join(cmd)}\n" + f.read()[-3000:].decode("utf-8", "replace"))
        raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGINT, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_wrk(wrk: str, port: int, path: str, seconds: float, connections: int) -> dict:
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s",
           os.path.join(BENCH, "wrk_done.lua"), f"http://{HOST}:{port}{path}"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((l for l in p.stdout.splitlines() if l.startswith("BENCHJSON ")), None)
    if p.returncode != 0 or not line:
        raise RuntimeError(f"wrk failed: {p.stderr[:300]} {p.stdout[-300:]}")
    return json.loads(line[len("BENCHJSON "):])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apus", action="append", help="apus binary (repeatable; default .build/release/apus)")
    p.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    p.add_argument("--uwsgi", default=os.path.join(os.path.dirname(sys.executable), "uwsgi"))
    p.add_argument("--wrk", default=shutil.which("wrk") or "wrk")
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    apus_bins = args.apus or [os.path.join(REPO, ".build/release/apus")]

    tmp = tempfile.mkdtemp(prefix="apus-static-bench-")
    root = os.path.join(tmp, "files")
    os.mkdir(root)
    for name, size in FILES.items():
        with open(os.path.join(root, f"{name}.bin"), "wb") as f:
            f.write(os.urandom(size))
    with open(os.path.join(tmp, "app.py"), "w") as f:
        f.write(APP)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APUS_", "UWSGI_", "PYTHON"))}
    venv = os.path.dirname(os.path.dirname(sys.executable))

    servers: list[tuple[str, list[str], int]] = []
    for i, binary in enumerate(apus_bins):
        port = free_port()
        servers.append((f"apus#{i + 1}" if len(apus_bins) > 1 else "apus",
                        [binary, "--http", f"{HOST}:{port}", "--processes", "1", "--venv", venv,
                         "--disable-logging", "--static-map", f"/static={root}",
                         "--wsgi-file", os.path.join(tmp, "app.py")], port))
    port = free_port()
    with open(os.path.join(tmp, "nginx.conf"), "w") as f:
        f.write(nginx_conf(tmp, port, root))
    servers.append(("nginx", [args.nginx, "-p", tmp, "-e", f"{tmp}/nginx-error.log", "-c", f"{tmp}/nginx.conf"], port))
    if os.access(args.uwsgi, os.X_OK):
        port = free_port()
        servers.append(("uwsgi", [args.uwsgi, "--http-socket", f"{HOST}:{port}", "--processes", "1",
                                  "--master", "--disable-logging", "--static-map", f"/static={root}",
                                  "--wsgi-file", os.path.join(tmp, "app.py"), "--home", venv], port))

    results: dict[tuple[str, str], list[dict]] = {}
    procs = {}
    try:
        for name, cmd, port in servers:
            procs[name] = start(name, cmd, port, tmp, env)
        for r in range(args.repeats):
            for file in FILES:
                for name, _, port in servers:
                    res = run_wrk(args.wrk, port, f"/static/{file}.bin", args.duration, args.connections)
                    errors = sum(res["errors"].values())
                    results.setdefault((name, file), []).append(res)
                    print(f"repeat {r + 1} {file} {name}: {res['requests'] / (res['duration_us'] / 1e6):,.0f} req/s"
                          f" errors {errors}", file=sys.stderr, flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"wrk -t1 -c{args.connections} -d{args.duration:g}s, keep-alive, median of {args.repeats} interleaved runs;"
          " one worker process each\n")
    print("| file | server | req/s | req/s min-max | p50 ms | p99 ms | MB/s | errors |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for file in FILES:
        for name, _, _ in servers:
            runs = results[(name, file)]
            each = [x["requests"] / (x["duration_us"] / 1e6) for x in runs]
            rps = statistics.median(each)
            p50 = statistics.median(x["latency_us"]["p50"] for x in runs) / 1000
            p99 = statistics.median(x["latency_us"]["p99"] for x in runs) / 1000
            mbs = statistics.median(x["bytes"] / (x["duration_us"] / 1e6) for x in runs) / 1e6
            errors = sum(sum(x["errors"].values()) for x in runs)
            print(f"| {file} | {name} | {rps:,.0f} | {min(each):,.0f}-{max(each):,.0f} | {p50:.2f} | {p99:.2f} | {mbs:,.0f} | {errors} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
