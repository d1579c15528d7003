#!/usr/bin/env python3
"""Context switches and system calls per request of Apus's workers under wrk load.

What a request costs the kernel, which callgrind (bench/instructions.py) does not see: the
workers' voluntary and involuntary context switches (every thread's, from /proc) over a wrk
run, divided by the requests wrk counted; with `--strace`, a second run under
`strace -c -f` attached to every worker gives the system calls per request by name (strace
slows the worker down several times, so the throughput of that run means nothing).

    bench/.venv/bin/python bench/switches.py --apus .build/release/apus --shape 2x1 --shape 3x3
    bench/.venv/bin/python bench/switches.py --apus A --apus B --app django --strace

Stdlib only; needs `wrk` (and `strace` for `--strace`). Run it with the bench venv's python,
whose venv the workers use.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from instructions import APPS, BENCH, REPO, free_port, workers


def switches(pids: list[int]) -> tuple[int, int]:
    """Voluntary and involuntary context switches of every thread of `pids`."""
    vol = invol = 0
    for pid in pids:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    text = f.read()
            except OSError:
                continue
            vol += int(re.search(r"^voluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
            invol += int(re.search(r"^nonvoluntary_ctxt_switches:\s+(\d+)", text, re.M).group(1))
    return vol, invol


def wrk(port: int, path: str, seconds: float, connections: int) -> int:
    """Runs wrk and returns the requests it completed (non-2xx answers are an error)."""
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{round(seconds)}s", f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    return int(re.search(r"(\d+) requests in", out).group(1))


def strace_counts(path: str) -> dict[str, int]:
    counts = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] not in ("total",):
                counts[parts[-1]] = int(parts[3])
    return counts


def measure(binary: str, app: str, processes: int, threads: int, seconds: float, connections: int,
            use_strace: bool, workdir: str) -> str:
    appdir, module, path = APPS[app]
    port = free_port()
    cmd = [binary, "--http", f"127.0.0.1:{port}", "--processes", str(processes), "--threads", str(threads),
           "--venv", os.path.join(BENCH, ".venv"), "--chdir", os.path.join(REPO, appdir), "--no-access-log", module]
    log = open(os.path.join(workdir, "apus.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
                    if s.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"apus did not answer; see {log.name}")
            time.sleep(0.2)
        pids = workers(proc.pid)
        wrk(port, path, 2, connections)  # warm-up
        v0, i0 = switches(pids)
        requests = wrk(port, path, seconds, connections)
        v1, i1 = switches(pids)
        line = (f"{app} {processes}x{threads}: {requests / seconds:,.0f} req/s, per request "
                f"{(v1 - v0) / requests:.3f} voluntary + {(i1 - i0) / requests:.3f} involuntary context switches")
        if use_strace:
            files = []
            tracers = []
            for pid in pids:
                out = os.path.join(workdir, f"strace-{pid}")
                files.append(out)
                tracers.append(subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(1)
            traced = wrk(port, path, seconds, connections)
            for t in tracers:
                t.send_signal(signal.SIGINT)
                t.wait(timeout=30)
            total: dict[str, int] = {}
            for out in files:
                for name, n in strace_counts(out).items():
                    total[name] = total.get(name, 0) + n
            calls = sum(total.values())
            top = ", ".join(f"{name} {n / traced:.2f}" for name, n in sorted(total.items(), key=lambda kv: -kv[1])[:8])
            line += f"; {calls / traced:.2f} system calls per request ({top})"
        return line
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apus", action="append", required=True, help="binary (repeatable)")
    ap.add_argument("--app", choices=sorted(APPS), default="hello")
    ap.add_argument("--shape", action="append", help="WORKERSxTHREADS (repeatable; default 2x1 and 3x3)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--strace", action="store_true", help="also count system calls (needs strace)")
    args = ap.parse_args()
    if not shutil.which("wrk") or (args.strace and not shutil.which("strace")):
        print("switches: needs wrk (and strace with --strace)", file=sys.stderr)
        return 2
    for binary in args.apus:
        for shape in args.shape or ["2x1", "3x3"]:
            processes, threads = (int(x) for x in shape.split("x"))
            with tempfile.TemporaryDirectory(prefix="apus-sw-") as workdir:
                print(f"{binary}: " + measure(binary, args.app, processes, threads, args.seconds,
                                               args.connections, args.strace, workdir), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
