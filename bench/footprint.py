#!/usr/bin/env python3
"""What replacing the whole server costs while it runs: processes and memory.

For each method, start apus on the reload app (Django flavour, 2 s import, --workers),
wait until every worker imported it, then sample every process of the instance (or of
both instances, for the reuse-port handover) every 20 ms from before the trigger until
the old workers are gone, and report the process count and the summed RSS at rest and at
their peak. No load is applied: this is the footprint, not the timeline (bench/reload.py).

    bench/.venv/bin/python bench/footprint.py
    bench/.venv/bin/python bench/footprint.py --methods upgrade,reuseport,workers --workers 4

Methods: `upgrade` (FIFO f: check, re-execute, new set, old set drains), `reuseport` (a second
instance with --reuse-port, then SIGTERM to the first once the second answers), `workers`
(FIFO w, for comparison: a new set inside one master). RSS double-counts pages shared
between processes (copy-on-write after fork), so the sums are upper bounds.
"""
import argparse
import os
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
sys.path.insert(0, str(APPS))
from reloadapp.versionfile import write_version  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_code(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.split(b'"code": "', 1)[1].split(b'"', 1)[0].decode()
    except (OSError, IndexError):
        return None


def tree(root):
    """Every live process under `root` (inclusive), from /proc."""
    parent = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                data = Path(f"/proc/{e}/stat").read_text()
            except OSError:
                continue
            rest = data[data.rindex(")") + 2:].split()
            if rest[0] != "Z":
                parent[int(e)] = int(rest[1])
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        if p in parent:
            out.append(p)
            todo += [c for c, pp in parent.items() if pp == p]
    return out


def rss_kib(pid):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(roots):
    pids = [p for r in roots for p in tree(r)]
    return len(pids), sum(rss_kib(p) for p in pids)


def start(a, run, port, fifo, extra=()):
    cmd = [a.apus, "--http", f"127.0.0.1:{port}", "--processes", str(a.workers),
           "--venv", a.venv, "--chdir", str(APPS), "--pythonpath", str(APPS),
           "--pythonpath", str(run / "ver"), "--master-fifo", str(fifo), "--no-access-log",
           *extra, "reloadapp.djwsgi:application"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("APUS_")}
    env.update({"STARTUP_SECONDS": str(a.startup), "READY_DIR": str(run / "ready"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    log = open(run / f"apus-{fifo.name}.log", "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def measure(method, a, base):
    run = Path(tempfile.mkdtemp(prefix=f"{method}-", dir=base))
    (run / "ver").mkdir()
    (run / "ready").mkdir()
    write_version(run / "ver", "v1")
    port = free_port()
    extra = ["--reuse-port"] if method == "reuseport" else []
    first = start(a, run, port, run / "a.fifo", extra)
    procs = [first]
    try:
        deadline = time.monotonic() + 60
        while not (get_code(port) == "v1" and len(os.listdir(run / "ready")) >= a.workers):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method}: not ready")
            time.sleep(0.1)
        time.sleep(0.5)
        rest = sample([first.pid])
        write_version(run / "ver", "v2")
        peak = rest
        roots = [first.pid]
        if method == "reuseport":
            second = start(a, run, port, run / "b.fifo", extra)
            procs.append(second)
            roots.append(second.pid)
        else:
            fd = os.open(run / "a.fifo", os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"f" if method == "upgrade" else b"w")
            os.close(fd)
        t0 = time.monotonic()
        stopped = False
        while time.monotonic() - t0 < 60:
            n, kib = sample(roots)
            peak = (max(peak[0], n), max(peak[1], kib))
            code = get_code(port)
            if method == "reuseport" and code == "v2" and not stopped:
                first.send_signal(signal.SIGTERM)
                stopped = True
            done = (first.poll() is not None) if method == "reuseport" else \
                (code == "v2" and n == rest[0] and "serving" in (run / "apus-a.fifo.log").read_text())
            if done:
                break
            time.sleep(0.02)
        took = time.monotonic() - t0
        end = sample([p.pid for p in procs if p.poll() is None])
        return {"method": method, "rest": rest, "peak": peak, "end": end, "seconds": took}
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", default="upgrade,reuseport,workers")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--startup", type=float, default=2.0)
    ap.add_argument("--venv", default=str(HERE / ".venv"))
    ap.add_argument("--apus", default=os.environ.get("APUS_BIN") or str(REPO / ".build" / "release" / "apus"))
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="apus-footprint-"))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.workers} workers, reloadapp (Django), "
          f"import {a.startup:g} s\n")
    print("| method | processes at rest | peak | RSS at rest, MiB | peak, MiB | after, MiB | until done, s |")
    print("|---|---|---|---|---|---|---|")
    for m in a.methods.split(","):
        r = measure(m.strip(), a, base)
        print(f"| {r['method']} | {r['rest'][0]} | {r['peak'][0]} | {r['rest'][1] / 1024:.0f} | "
              f"{r['peak'][1] / 1024:.0f} | {r['end'][1] / 1024:.0f} | {r['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
