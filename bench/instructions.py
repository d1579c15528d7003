#!/usr/bin/env python3
"""User-space instructions per request of one Apus worker, counted by callgrind.

A figure that does not depend on what else the machine runs: the worker serves a fixed
number of keep-alive requests under `valgrind --tool=callgrind`, once with `--warmup`
requests and once with `--warmup + --requests`; the difference of the worker's instruction
counts over `--requests` is the cost of one request, start-up and warm-up cancelled out.

    bench/.venv/bin/python bench/instructions.py --apus .build/release/apus
    bench/.venv/bin/python bench/instructions.py --apus A --apus B --app django --threads 3

valgrind 3.19 cannot read the DWARF 5 of Swift 6 binaries: each binary is run from a copy made
with `strip --strip-debug`. Stdlib only; run it with the bench venv's python, whose venv the
workers use (`--venv`).
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

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
APPS = {
    "hello": ("examples", "hello:application", "/"),
    "django": ("examples/djecho", "djecho.wsgi:application", "/debug/?a=1&b=two"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_response(sock: socket.socket, pending: bytearray) -> None:
    """Reads one response (Content-Length or chunked) from a keep-alive connection."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    del pending[:]
    pending += rest
    lower = head.lower()
    m = re.search(rb"\r\ncontent-length: *(\d+)", lower)
    if m:
        need = int(m.group(1))
        while len(pending) < need:
            pending += sock.recv(65536)
        del pending[:need]
        return
    if b"transfer-encoding: chunked" not in lower:
        raise RuntimeError(f"a response without a length: {head[:200]!r}")
    while True:
        while b"\r\n" not in pending:
            pending += sock.recv(65536)
        line, _, _ = bytes(pending).partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        need = len(line) + 2 + size + 2
        while len(pending) < need:
            pending += sock.recv(65536)
        del pending[:need]
        if size == 0:
            return


def workers(master: int) -> list[int]:
    """The pids of the processes named "worker N" in the master's session."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if int(fields[3]) == master and comm.startswith("worker"):
            found.append(int(entry))
    return sorted(found)


def worker_pid(master: int) -> int | None:
    """The pid of the one worker (`--processes 1`)."""
    found = workers(master)
    return found[0] if found else None


def total_instructions(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def uwsgi_packet(path: str, port: int) -> bytes:
    """A uwsgi packet with the vars nginx's uwsgi_params sends for a GET of `path`."""
    target, _, query = path.partition("?")
    pairs = [("QUERY_STRING", query), ("REQUEST_METHOD", "GET"), ("CONTENT_TYPE", ""),
             ("CONTENT_LENGTH", ""), ("REQUEST_URI", path), ("PATH_INFO", target),
             ("DOCUMENT_ROOT", "/usr/share/nginx/html"), ("SERVER_PROTOCOL", "HTTP/1.1"),
             ("REQUEST_SCHEME", "http"), ("REMOTE_ADDR", "127.0.0.1"), ("REMOTE_PORT", "40000"),
             ("SERVER_PORT", str(port)), ("SERVER_NAME", "bench"), ("HTTP_HOST", "bench"),
             ("HTTP_USER_AGENT", "instructions.py")]
    body = b"".join(len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
                    for k, v in pairs)
    return b"\x00" + len(body).to_bytes(2, "little") + b"\x00" + body


def read_to_end(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def run_once(binary: str, app: str, threads: int, count: int, workdir: str, uwsgi: bool = False,
             log_format: str = "none", extra: tuple[str, ...] = ()) -> int:
    """Starts apus under callgrind, sends `count` keep-alive requests on one connection
    after one readiness request (with `uwsgi`: `count` uwsgi packets, each on a connection
    of its own, as nginx sends them), stops it, and returns the worker's instruction count.
    `log_format`: "none" (no access log), "on" (the access log in its default format) or a
    --log-format; the lines go to a file."""
    appdir, module, path = APPS[app]
    port = free_port()
    out = os.path.join(workdir, f"cg-{count}-%p")
    cmd = ["valgrind", "--tool=callgrind", "--trace-children=yes", f"--callgrind-out-file={out}",
           binary, "--socket" if uwsgi else "--http", f"127.0.0.1:{port}", "--processes", "1", "--threads", str(threads),
           "--venv", os.path.join(BENCH, ".venv"), "--chdir", os.path.join(REPO, appdir),
           *(["--no-access-log"] if log_format == "none" else
             ["--access-logfile", os.path.join(workdir, "access.log")]
             + ([] if log_format == "on" else ["--log-format", log_format])), *extra, module]
    log = open(os.path.join(workdir, f"apus-{count}.log"), "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"apus exited ({proc.returncode}); see {log.name}")
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=240)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("apus did not listen within 300 s")
                time.sleep(0.5)
        if uwsgi:
            packet = uwsgi_packet(path, port)
            for i in range(count + 1):  # the first one waits for the worker to be ready
                if i > 0:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=240)
                sock.sendall(packet)
                if not read_to_end(sock).startswith(b"HTTP/1.1 200"):
                    raise RuntimeError("a uwsgi request was not answered 200")
                sock.close()
        else:
            request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
            pending = bytearray()
            for _ in range(count + 1):  # the first one waits for the worker to be ready
                sock.sendall(request)
                read_response(sock, pending)
            sock.close()
        pid = worker_pid(proc.pid)
        if pid is None:
            raise RuntimeError("no worker process found")
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=240)
        return total_instructions(os.path.join(workdir, f"cg-{count}-{pid}"))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--apus", action="append", required=True, help="binary (repeatable)")
    ap.add_argument("--app", choices=sorted(APPS), default="hello")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--uwsgi", action="store_true",
                    help="uwsgi packets on --socket, a connection per request (as behind nginx)")
    ap.add_argument("--log-format", action="append", default=None,
                    help="none (the default: no access log), on (the default format) or a --log-format, "
                         "lines to a file; repeatable: each is counted")
    ap.add_argument("--apus-arg", action="append", default=[],
                    help="an extra apus argument, e.g. --apus-arg=--no-process-titles (repeatable)")
    args = ap.parse_args()
    if not shutil.which("valgrind"):
        print("instructions: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    for binary, log_format in [(b, f) for b in args.apus for f in args.log_format or ["none"]]:
        with tempfile.TemporaryDirectory(prefix="apus-cg-") as workdir:
            stripped = os.path.join(workdir, "apus")
            subprocess.run(["strip", "--strip-debug", binary, "-o", stripped], check=True)
            short = run_once(stripped, args.app, args.threads, args.warmup, workdir, args.uwsgi, log_format,
                             tuple(args.apus_arg))
            long = run_once(stripped, args.app, args.threads, args.warmup + args.requests, workdir, args.uwsgi,
                            log_format, tuple(args.apus_arg))
        per_request = (long - short) / args.requests
        over = " over uwsgi" if args.uwsgi else ""
        logged = ("" if log_format == "none" else f" --log-format {log_format}") + "".join(f" {a}" for a in args.apus_arg)
        print(f"{binary}{logged}: {args.app}{over} 1x{args.threads}: {per_request:,.0f} instructions per request "
              f"(worker: {short:,} after {args.warmup} requests, {long:,} after {args.warmup + args.requests})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
