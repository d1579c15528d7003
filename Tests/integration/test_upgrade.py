"""Upgrade in place: SIGUSR2 and FIFO `f` replace the binary, the Python and the options of
a running master, which keeps its PID and its listening sockets, under load and as PID 1 of
a PID namespace (as in a container), with zero failed requests; `apus --check` is the step
that runs first, and a check that fails changes nothing.

The master runs as `unshare --pid --fork --mount-proc apus ...`: PID 1 in its namespace,
where a signal it has no handler for is ignored and every orphan is its child.
"""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import APUS_BIN, REPO, clean_env, free_port, run_apus
from helpers import APPS, alive, children_of, fifo_send, get, wait_until
from loadgen import LoadGen, format_summary
from test_pythons import find_python, pyenv_root

# A second build of the project, for the binary upgrade: the debug build that `swift test`
# leaves next to the release one (scripts/test.sh builds it), or APUS_OTHER_BIN.
OTHER_BIN = os.environ.get("APUS_OTHER_BIN") or str(REPO / ".build" / "debug" / "apus")


class Pid1Server:
    """apus as PID 1 of a new PID namespace, logging to a file."""

    def __init__(self, tmp_path, exe, args, port, env=None):
        self.port = port
        self.log_path = tmp_path / f"apus-{port}.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "--mount-proc", str(exe), *map(str, args)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=clean_env({"PYTHONDONTWRITEBYTECODE": "1", **(env or {})}), start_new_session=True)
        # the forked child of unshare is the master, PID 1 inside
        self.master = wait_until(lambda: (c := children_of(self.proc.pid)) and c[0], 10,
                                 what="the master under unshare")
        try:
            wait_until(lambda: self._answers(), 60, what=f"apus on port {port}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.text()}") from None

    def _answers(self):
        try:
            return get(self.port, timeout=2).status == 200
        except OSError:
            return False

    def text(self):
        return self.log_path.read_text(errors="replace")

    def wait_workers_ready(self, n):
        """Until the log says `n` workers were ready: each has imported the app."""
        wait_until(lambda: self.text().count(" ready (pid ") >= n, 30, what=f"{n} workers ready")

    def answer(self):
        return get(self.port).json()

    def workers(self):
        return [p for p in children_of(self.master) if alive(p)]

    def namespace_pid(self, pid=None):
        """NSpid of `pid` (default: the master): its pid here, then in its namespace."""
        for line in Path(f"/proc/{pid or self.master}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
        return []

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.master, signal.SIGTERM)
                self.proc.wait(timeout=30)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()


@pytest.fixture
def pid1(tmp_path):
    made = []

    def start(exe, args, port, env=None):
        s = Pid1Server(tmp_path, exe, args, port, env)
        made.append(s)
        return s

    yield start
    for s in made:
        s.stop()


def write_ini(path, python, port, fifo):
    path.write_text(f"""[apus]
module = upgradeapp
pythonpath = {APPS}
python = {python}
http = 127.0.0.1:{port}
processes = 2
master-fifo = {fifo}
access-log = false
""")


def upgrade_under_load(srv, trigger, done_count=1):
    """Load, trigger, wait until the upgrade is done and the old workers are gone, load a
    little more. Returns (load generator, time the upgrade was done on the load clock)."""
    before = set(srv.workers())
    lg = LoadGen(srv.port, keepalive=2, per_request=2, max_duration=120)
    lg.start()
    try:
        time.sleep(1.0)
        lg.mark("trigger")
        trigger()
        try:
            wait_until(lambda: srv.text().count("upgrade in place done") >= done_count, 60,
                       what="the upgrade to be done")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{srv.text()}") from None
        wait_until(lambda: not (set(srv.workers()) & before), 30, what="the old workers to exit")
        done = lg.now()
        time.sleep(1.0)
    finally:
        lg.stop()
    return lg, done


def assert_no_failures(lg):
    failed = lg.failures()
    assert not failed, f"{len(failed)} failed requests: {failed[:10]}\n{format_summary(lg.summary())}"


def test_check_reports_what_a_start_would(tmp_path):
    ok = run_apus(["--check", "--chdir", APPS, "upgradeapp"])
    assert ok.returncode == 0, ok.stderr
    assert "check passed: upgradeapp imports with Python" in ok.stderr
    assert not list(tmp_path.iterdir())  # nothing was started or written

    bad = run_apus(["--check", "--chdir", APPS, "badimport"])
    assert bad.returncode == 4, bad.stderr
    assert "Traceback" in bad.stderr

    wrong = run_apus(["--check", "--processes", "0", "upgradeapp"])
    assert wrong.returncode == 2
    assert "--processes" in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1


def test_python_upgrade_as_pid1_under_load(pid1, tmp_path):
    """3.11 to 3.13 by editing the ini file and sending SIGUSR2 to PID 1 of a namespace."""
    py311, py313 = find_python(11), find_python(13)
    if not (py311 and py313):
        pytest.skip(f"CPython 3.11 and 3.13 are not both installed under {pyenv_root()}/versions")
    port = free_port()
    ini = tmp_path / "apus.ini"
    write_ini(ini, py311, port, tmp_path / "fifo")
    srv = pid1(APUS_BIN, ["--ini", ini], port)
    assert srv.namespace_pid()[-1] == 1
    assert srv.answer()["code"] == "3.11"
    master = srv.master

    write_ini(ini, py313, port, tmp_path / "fifo")
    lg, done = upgrade_under_load(srv, lambda: os.kill(master, signal.SIGUSR2))

    assert_no_failures(lg)
    codes_after = {r.code for r in lg.records if r.ok and r.start > done}
    assert codes_after == {"3.13"}, codes_after
    assert {r.code for r in lg.records if r.ok} >= {"3.11", "3.13"}
    assert srv.master == master and alive(master) and srv.namespace_pid()[-1] == 1
    assert "check passed: upgradeapp imports with Python 3.13" in srv.text()


def test_binary_upgrade_as_pid1_under_load(pid1, tmp_path):
    """One build of the project replaced on disk by another, then FIFO f: the master and
    its new workers run the new file, the PID stays."""
    if not os.access(OTHER_BIN, os.X_OK):
        pytest.skip(f"no second build at {OTHER_BIN} (scripts/test.sh builds it)")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "apus"
    shutil.copy2(APUS_BIN, exe)
    port = free_port()
    fifo = tmp_path / "fifo"
    srv = pid1(exe, ["--chdir", APPS, "upgradeapp", "--http", f"127.0.0.1:{port}", "--processes", "2",
                     "--master-fifo", fifo, "--no-access-log"], port)
    old_inode = str(os.stat(exe).st_ino)
    assert srv.answer()["env"] == old_inode
    master = srv.master

    def replace_and_upgrade():
        shutil.copy2(OTHER_BIN, bindir / "apus.new")
        os.rename(bindir / "apus.new", exe)
        fifo_send(fifo, "f")

    lg, done = upgrade_under_load(srv, replace_and_upgrade)

    assert_no_failures(lg)
    new_inode = str(os.stat(exe).st_ino)
    assert new_inode != old_inode
    binaries_after = {r.env for r in lg.records if r.ok and r.start > done}
    assert binaries_after == {new_inode}, binaries_after
    assert str(os.stat(f"/proc/{master}/exe").st_ino) == new_inode
    assert srv.master == master and alive(master) and srv.namespace_pid()[-1] == 1

    # and again, back to the first build: the upgraded image upgrades too
    shutil.copy2(APUS_BIN, bindir / "apus.new")
    os.rename(bindir / "apus.new", exe)
    lg, done = upgrade_under_load(srv, lambda: os.kill(master, signal.SIGUSR2), done_count=2)
    assert_no_failures(lg)
    assert {r.env for r in lg.records if r.ok and r.start > done} == {str(os.stat(exe).st_ino)}


def test_failed_check_changes_nothing(pid1, tmp_path):
    """The app on disk no longer imports: the check fails, the master stays the same image
    and the same workers keep serving."""
    appdir = tmp_path / "app"
    appdir.mkdir()
    shutil.copy(APPS / "upgradeapp.py", appdir / "upgradeapp.py")
    port = free_port()
    srv = pid1(APUS_BIN, ["--chdir", appdir, "upgradeapp", "--http", f"127.0.0.1:{port}",
                          "--processes", "2", "--no-access-log"], port)
    srv.wait_workers_ready(2)  # both imported the app before it breaks on disk
    workers = set(wait_until(lambda: len(w := srv.workers()) >= 3 and w, 20, what="zygote and workers"))
    (appdir / "upgradeapp.py").write_text("raise ImportError('broken on disk')\n")
    os.kill(srv.master, signal.SIGUSR2)
    wait_until(lambda: "the check of the new setup failed" in srv.text(), 60,
               what=f"the failed check\n{srv.text()}")
    assert "broken on disk" in srv.text()
    for _ in range(20):
        assert srv.answer()["code"]
    assert set(srv.workers()) == workers
    assert "executing" not in srv.text()


def test_new_generation_that_fails_leaves_the_old_one_serving(pid1, tmp_path):
    """The check passes but the new workers cannot start: the upgraded master abandons the
    new generation and the old workers, adopted across the exec, keep serving, under load."""
    marker = tmp_path / "fail"
    port = free_port()
    srv = pid1(APUS_BIN, ["--chdir", APPS, "upgradeapp", "--http", f"127.0.0.1:{port}",
                          "--processes", "2", "--no-access-log", "--reload-timeout", "20"],
               port, env={"FAIL_IN_WORKERS": str(marker)})
    srv.wait_workers_ready(2)  # both imported the app before the marker makes an import fail
    procs = wait_until(lambda: len(w := srv.workers()) == 3 and w, 20, what="zygote and 2 workers")
    before = {srv.namespace_pid(p)[-1] for p in procs}  # as the app sees its pid
    marker.write_text("")
    lg = LoadGen(srv.port, keepalive=2, per_request=2, max_duration=120)
    lg.start()
    try:
        time.sleep(0.5)
        os.kill(srv.master, signal.SIGUSR2)
        try:
            wait_until(lambda: "reload failed" in srv.text(), 60, what="the new generation to be abandoned")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{srv.text()}") from None
        time.sleep(1.0)
    finally:
        lg.stop()
    assert_no_failures(lg)
    text = srv.text()
    assert "executing" in text and "adopted 2 workers of generation 1" in text
    assert "this worker cannot start" in text
    # every answer came from a worker that ran before the upgrade: the adopted ones
    served = {r.pid for r in lg.records if r.ok} | {srv.answer()["pid"] for _ in range(20)}
    assert served <= before, f"answered by {served - before}, not by {before}\n{text}"


def test_upgrade_asked_during_a_reload_waits_for_it(pid1, tmp_path):
    """FIFO `w` then `f` at once: the upgrade is queued behind the worker reload, then runs;
    SIGTERM right after an upgrade still stops the upgraded master gracefully."""
    port = free_port()
    fifo = tmp_path / "fifo"
    srv = pid1(APUS_BIN, ["--chdir", APPS, "upgradeapp", "--http", f"127.0.0.1:{port}",
                          "--processes", "2", "--master-fifo", fifo, "--no-access-log"], port)
    fifo_send(fifo, "wf")
    try:
        wait_until(lambda: "upgrade in place done" in srv.text(), 60, what="the upgrade")
    except AssertionError as e:
        raise AssertionError(f"{e}\n{srv.text()}") from None
    text = srv.text()
    assert text.index("worker reload: starting generation 2") \
        < text.index("upgrade in place queued behind the reload in progress") \
        < text.index("worker reload done: generation 2 serving") \
        < text.index("upgrade in place: starting generation 3")
    assert srv.answer()["code"]
    os.kill(srv.master, signal.SIGTERM)
    assert srv.proc.wait(timeout=30) == 0
    assert "stopped" in srv.text()
