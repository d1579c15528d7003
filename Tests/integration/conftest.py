"""Fixtures that run the real `apus` binary against the test apps in ./apps.

APUS_BIN names the binary (default: <repo>/.build/release/apus). Every server is started
with `--venv <sys.prefix>` (the venv running pytest, which has Django and Flask), on a free
port of 127.0.0.1, in its own session (process group); stderr goes to a file that failures
show. Teardown sends SIGTERM, then SIGKILLs the process group if it is still there.
"""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

from helpers import APPS, EXAMPLES, REPO  # noqa: F401  (re-exported)
LIVE = []  # servers started and not yet stopped
APUS_BIN = os.environ.get("APUS_BIN") or str(REPO / ".build" / "release" / "apus")


def pytest_sessionstart(session):
    if session.config.option.collectonly:
        return
    if not os.access(APUS_BIN, os.X_OK):
        pytest.exit(f"APUS_BIN={APUS_BIN} is not an executable; build it first "
                    f"(swift build -c release) or set APUS_BIN", returncode=3)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A port free on 127.0.0.1 and outside the kernel's range of ephemeral ports: a port the
    kernel hands out with bind(0) can be taken as the source port of a client connection
    (the suite makes thousands) before the server binds it."""
    import random
    low, high = _ephemeral_range()
    candidates = [p for p in range(10000, 65536) if not (low <= p <= high)] or list(range(1024, 65536))
    for _ in range(200):
        port = random.choice(candidates)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as apus binds
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra=None):
    """The environment for apus: ours minus anything that would configure it."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APUS_") and k not in ("PORT", "PYTHONHOME", "PYTHONPATH")}
    env.update(extra or {})
    return env


def run_apus(args, env=None, timeout=30):
    """Run apus to completion (for options that must fail or print and exit)."""
    return subprocess.run([APUS_BIN, *args], env=clean_env(env), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                          start_new_session=True)


class ApusServer:
    def __init__(self, app, args=(), *, workdir, env=None, chdir=APPS, venv=True,
                 bind=True, port=None, name="apus", open_files=None):
        self.app = app
        self.open_files = open_files  # RLIMIT_NOFILE (soft and hard) for the server, if set
        self.port = port or free_port()
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"{name}-{self.port}.stderr"
        self.out_path = self.workdir / f"{name}-{self.port}.stdout"
        cmd = [APUS_BIN]
        if venv:
            cmd += ["--venv", sys.prefix]
        if chdir:
            cmd += ["--chdir", str(chdir), "--pythonpath", str(chdir)]
        if bind:
            cmd += ["--http", f"127.0.0.1:{self.port}"]
        cmd += [str(a) for a in args]
        if app:
            cmd.append(app)
        self.cmd = cmd
        self.env = clean_env(env)
        self.proc = None

    # -- life cycle -------------------------------------------------------------------------
    def start(self, wait=True, ready_path="/", timeout=30.0):
        self._err = open(self.log_path, "wb")
        self._out = open(self.out_path, "wb")
        preexec = None
        if self.open_files:
            import resource
            n = self.open_files
            preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))  # noqa: E731
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=self._err,
                                     start_new_session=True, preexec_fn=preexec)
        LIVE.append(self)
        if wait:
            self.wait_ready(ready_path, timeout)
        return self

    def wait_ready(self, path="/", timeout=30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                pytest.fail(f"apus exited with status {rc} before serving\n{self.describe()}")
            try:
                r = helpers.get(self.port, path, timeout=5)
                return r
            except (OSError, helpers.IncompleteResponse, ValueError) as e:
                last = e
            time.sleep(0.1)
        pytest.fail(f"apus did not answer GET {path} within {timeout}s ({last!r})\n{self.describe()}")

    @property
    def pid(self):
        return self.proc.pid

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20.0):
        if self.proc is None:
            return None
        helpers.stop_process_group(self.proc, timeout)
        for f in (self._err, self._out):
            f.close()
        if self in LIVE:
            LIVE.remove(self)
        return self.proc.returncode

    # -- observation ------------------------------------------------------------------------
    def log(self):
        try:
            return self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stdout(self):
        try:
            return self.out_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def describe(self, tail=6000):
        return (f"command: {' '.join(self.cmd)}\n--- stderr (tail) ---\n{self.log()[-tail:]}"
                f"\n--- stdout (tail) ---\n{self.stdout()[-2000:]}")

    def workers(self):
        return helpers.workers_of(self.pid)

    def get(self, path="/", **kw):
        return helpers.get(self.port, path, **kw)

    def url(self, path="/"):
        return f"http://127.0.0.1:{self.port}{path}"

    def conn(self, timeout=10.0):
        return helpers.Conn(self.port, timeout=timeout)


def _factory(workdir_factory):
    started = []

    def start(app, *args, wait=True, ready_path="/", **kw):
        srv = ApusServer(app, args, workdir=workdir_factory(), **kw)
        started.append(srv)
        return srv.start(wait=wait, ready_path=ready_path)

    return start, started


@pytest.fixture
def apus(tmp_path):
    """Start apus for one test: apus(app, *args, env=..., chdir=..., wait=True)."""
    start, started = _factory(lambda: tmp_path)
    yield start
    for srv in started:
        srv.stop()


@pytest.fixture(scope="module")
def apus_module(tmp_path_factory):
    """Like `apus`, but the servers live for the whole test module."""
    d = tmp_path_factory.mktemp("apus")
    start, started = _factory(lambda: d)
    yield start
    for srv in started:
        srv.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the stderr of every server still running to a failed test's report."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for srv in LIVE:
            rep.sections.append((f"apus stderr (port {srv.port}, {srv.app})", srv.log()[-6000:]))
