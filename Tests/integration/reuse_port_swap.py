"""Driver for test_reuse_port.py: two Apus instances hand over 127.0.0.1:PORT with --reuse-port.

Run inside a fresh network namespace (`unshare --net python reuse_port_swap.py ...`, as
root), so it can bring `lo` up and set net.ipv4.tcp_migrate_req for itself alone. Prints one
JSON object on stdout: the load's summary, every instance (master pid, worker pids, requests
it answered, exit status) and, for --scenario slow-import, what was answered while the new
instance imported its app.

  --scenario swap         start A; under load, `--swaps` times: start B with the same
                          arguments, wait for B's "worker N ready", SIGTERM A, wait for A to
                          exit; B becomes A.
  --scenario slow-import  A serves the reload app (fast import); under load B starts with a
                          2 s import; records when B's import ended (the app writes it).
"""
import argparse
import fcntl
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "apps"))

import helpers  # noqa: E402
from loadgen import LoadGen  # noqa: E402
from reloadapp.versionfile import write_version  # noqa: E402

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def loopback_up():
    """`ip link set lo up` without iproute2."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))


class Instance:
    count = 0

    def __init__(self, cmd, env, workdir):
        Instance.count += 1
        self.n = Instance.count
        self.log_path = Path(workdir) / f"instance{self.n}.stderr"
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=self._err,
                                     stderr=self._err, start_new_session=True)
        self.workers = set()
        self.ready_at = None
        self.rc = None

    def log(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def wait_ready(self, timeout=30.0):
        """Until the master logs a worker ready; remembers the workers then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(r"worker \d+ ready", self.log()):
                self.ready_at = time.monotonic()
                self.note_workers()
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.01)
        return False

    def note_workers(self):
        self.workers.update(helpers.workers_of(self.proc.pid))

    def stop(self, timeout=30.0):
        self.note_workers()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.rc = self.proc.wait()
        self._err.close()

    def describe(self):
        return {"n": self.n, "pid": self.proc.pid, "workers": sorted(self.workers), "rc": self.rc,
                "log_tail": self.log()[-3000:]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--apus", required=True)
    ap.add_argument("--venv", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--scenario", choices=["swap", "slow-import"], default="swap")
    ap.add_argument("--migrate", choices=["0", "1"], default="0")
    ap.add_argument("--swaps", type=int, default=20)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--port", type=int, default=8000)
    a = ap.parse_args()

    loopback_up()
    with open("/proc/sys/net/ipv4/tcp_migrate_req", "w") as f:
        f.write(a.migrate)

    apps = HERE / "apps"
    base = [a.apus, "--venv", a.venv, "--chdir", str(apps), "--pythonpath", str(apps),
            "--http", f"127.0.0.1:{a.port}", "--reuse-port", "--processes", str(a.processes),
            "--no-access-log"]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APUS_") and k not in ("PORT", "PYTHONHOME", "PYTHONPATH")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if a.scenario == "swap":
        cmd, env_a, env_b = base + ["pidapp"], env, env
    else:
        vdir = Path(a.workdir) / "ver"
        ready = Path(a.workdir) / "ready"
        vdir.mkdir(exist_ok=True)
        ready.mkdir(exist_ok=True)
        write_version(vdir, "v1")
        cmd = base + ["--pythonpath", str(vdir), "reloadapp.wsgi:application"]
        env_a = dict(env, STARTUP_SECONDS="0", READY_DIR=str(ready))
        env_b = dict(env, STARTUP_SECONDS="2", READY_DIR=str(ready))

    instances = []
    out = {"scenario": a.scenario, "migrate": a.migrate}
    current = Instance(cmd, env_a, a.workdir)
    instances.append(current)
    if not current.wait_ready():
        current.stop()
        out["error"] = "the first instance did not get ready"
        out["instances"] = [i.describe() for i in instances]
        print(json.dumps(out))
        return
    lg = LoadGen(a.port, "/", keepalive=2, per_request=2, timeout=10.0, max_duration=120).start()
    time.sleep(0.3)
    swaps = a.swaps if a.scenario == "swap" else 1
    try:
        for i in range(swaps):
            started = lg.mark(f"start {i}")
            new = Instance(cmd, env_b, a.workdir)
            instances.append(new)
            if not new.wait_ready():
                out["error"] = f"instance {new.n} did not get ready"
                break
            lg.mark(f"ready {i}")
            if a.scenario == "slow-import":
                # the import of B's first worker ended at this wall-clock time
                ends = [float(p.read_text().split()[2]) for p in ready.iterdir()
                        if p.name.startswith("import-") and int(p.name.split("-")[1]) in new.workers]
                out["b_started"] = started
                out["b_imported"] = min(ends) - time.time() + lg.now() if ends else None
                time.sleep(0.5)  # B serves alone for a moment
            current.stop()
            lg.mark(f"stopped {i}")
            current = new
        time.sleep(0.3)
    finally:
        lg.stop()
        for inst in instances:
            if inst.rc is None:
                inst.stop()
    s = lg.summary()
    out["summary"] = {k: s[k] for k in ("total", "ok", "failed", "failed_by_kind", "stale_retries",
                                        "longest_gap", "max_latency", "duration")}
    out["failures"] = [repr(r) for r in lg.records if r.error][:20]
    answered = {}
    for r in lg.records:
        if r.error is None and r.pid is not None:
            answered[r.pid] = answered.get(r.pid, 0) + 1
    out["instances"] = []
    for inst in instances:
        d = inst.describe()
        d["answered"] = sum(answered.get(p, 0) for p in inst.workers)
        if inst.rc == 0 and not out.get("error"):
            d.pop("log_tail")
        out["instances"].append(d)
    out["unknown_pids"] = sorted(set(answered) - set().union(*(i.workers for i in instances)))
    if a.scenario == "slow-import":
        out["records"] = [(r.start, r.end, r.pid, r.error) for r in lg.records]
    out["marks"] = lg.marks
    print(json.dumps(out))


if __name__ == "__main__":
    main()
