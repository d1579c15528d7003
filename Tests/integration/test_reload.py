"""Reloads under load: every reload method, with keep-alive and connection-per-request
clients running the whole time, must lose no request, and once the reload is complete only
the new code answers.

The app (apps/reloadapp) takes STARTUP_SECONDS to import and answers {"pid", "import_pid",
"code", "env", "warmed"}; `code` comes from reload_version.py in a per-test directory on
--pythonpath, rewritten before each reload (versionfile.write_version).

A reload is *complete* when the log says "generation N serving" and every process of the
old generation (workers, and with --preload its preloading process) has exited. Requests
started after that must all carry the new code. "Failed" is what loadgen counts as failed:
refused, reset, timeout, truncated, non-2xx (a keep-alive connection the server closes
between requests is retried once on a new connection, as HTTP clients do, and is not a
failure).
"""
import os
import re
import signal
import socket
import sys
import threading
import time
from collections import Counter

import pytest

import conftest
from helpers import (APPS, alive, fifo_send, get, session_members, touch, wait_log, wait_until)
from loadgen import LoadGen, format_summary

sys.path.insert(0, str(APPS))
from reloadapp.versionfile import write_version  # noqa: E402

# "generation N serving" when a reload completes; the periodic stats line says the same
# ("stats: generation N serving, ...") and is not a reload completing.
GEN_RE = re.compile(r"^(?!.*\bstats:).*\bgeneration (\d+) serving", re.M)
FAILED_RE = re.compile(r"reload failed", re.M)
LOAD_TIMEOUT = 45.0  # generous: the machine is small and shared


def _supports(option):
    out = conftest.run_apus(["--help"]).stdout
    return option in out


pytestmark = pytest.mark.skipif(not _supports("--master-fifo"),
                                reason="this apus binary has no --master-fifo (reloads not built in)")


class Reloadable:
    """An apus serving reloadapp, with its version directory, FIFO and a load generator."""

    def __init__(self, srv, vdir, fifo, ready_dir, slow_dir):
        self.srv = srv
        self.vdir = vdir
        self.fifo = fifo
        self.ready_dir = ready_dir
        self.slow_dir = slow_dir
        self.lg = None

    def __getattr__(self, name):
        return getattr(self.srv, name)

    def send(self, cmd):
        fifo_send(self.fifo, cmd)

    def others(self):
        """Every process of the server's session but the master: workers, zygotes."""
        return set(session_members(self.srv.pid)) - {self.srv.pid}

    def log_len(self):
        return len(self.srv.log())

    def wait_serving(self, start, timeout=LOAD_TIMEOUT):
        m = wait_log(self.srv.log, GEN_RE, timeout, start=start, what="generation N serving")
        return int(m.group(1))

    def generations(self, start=0):
        return [int(g) for g in GEN_RE.findall(self.srv.log()[start:])]

    def import_spans(self, pids):
        """{pid: (import started, import ended)} from the app's ready markers."""
        out = {}
        for pid in pids:
            code, start, end = (self.ready_dir / f"import-{pid}").read_text().split()
            out[pid] = (float(start), float(end))
        return out

    def load(self, port=None, keepalive=2, per_request=2):
        self.lg = LoadGen(port or self.srv.port, "/", keepalive=keepalive,
                          per_request=per_request, interval=0.005, max_duration=150,
                          timeout=30.0).start()
        return self.lg


@pytest.fixture
def reloadapp(apus, tmp_path):
    """reloadapp(*args, processes=2, startup=1.0, code="v1", env=None, fifo=True, **kw)"""
    made = []

    def start(*args, processes=2, startup=1.0, code="v1", env=None, fifo=True, **kw):
        n = len(made)
        vdir = tmp_path / f"ver{n}"
        ready = tmp_path / f"ready{n}"
        slow = tmp_path / f"slow{n}"
        for d in (vdir, ready, slow):
            d.mkdir()
        write_version(vdir, code)
        e = {"STARTUP_SECONDS": str(startup), "READY_DIR": str(ready), "SLOW_DIR": str(slow),
             "PYTHONDONTWRITEBYTECODE": "1"}
        e.update(env or {})
        fifo_path = tmp_path / f"master{n}.fifo"
        extra = ["--pythonpath", vdir, "--no-access-log"]
        if fifo:
            extra += ["--master-fifo", fifo_path]
        if processes is not None:
            extra += ["--processes", processes]
        srv = apus("reloadapp.wsgi:application", *extra, *args, env=e, **kw)
        r = Reloadable(srv, vdir, fifo_path, ready, slow)
        made.append(r)
        if "--preload" not in args:
            # GET / answered once one worker was ready; every worker must have imported v1
            # before a test rewrites the version (or a late one would import the new code)
            def all_imported():
                w = srv.workers()
                done = {n.split("-", 1)[1] for n in os.listdir(ready) if n.startswith("import-")}
                return w and (processes is None or len(w) == processes) \
                    and all(str(p) in done for p in w)
            wait_until(all_imported, 30, what="every worker to have imported the app")
        return r

    yield start
    for r in made:
        if r.lg is not None:
            r.lg.stop()


def describe_failures(lg, limit=15):
    bad = [r for r in lg.records if r.error]
    return (format_summary(lg.summary()) + f"\nmarks: {lg.marks}\n"
            + "\n".join(repr(r) for r in bad[:limit]))


def assert_no_failures(lg):
    s = lg.summary()
    assert s["failed"] == 0, describe_failures(lg)
    assert s["ok"] > 20, f"too few requests to mean anything: {format_summary(s)}"


def assert_only_code_after(lg, t, code, env=None):
    after = [r for r in lg.records if r.start >= t]
    assert len(after) >= 10, f"only {len(after)} requests after t={t:.2f}: {format_summary(lg.summary())}"
    codes = Counter(r.code for r in after)
    wrong = [r for r in after if r.code != code]
    assert set(codes) == {code}, (f"codes of requests started after the reload completed "
                                  f"(t={t:.3f}): {codes}; marks {lg.marks}; first others: "
                                  + "; ".join(f"{r!r} retried={r.retried}" for r in wrong[:8]))
    if env is not None:
        envs = Counter(r.env for r in after)
        assert set(envs) == {env}, f"APP_ENV_VERSION after the reload completed: {envs}"


def reload_under_load(app, trigger, new_code, *, pre=0.8, post=1.2, keepalive=2, per_request=2,
                      timeout=LOAD_TIMEOUT, import_sleep=0.0):
    """Load, write `new_code`, trigger(), wait until the reload is complete (generation line,
    old processes gone), keep loading `post` seconds. Returns (loadgen, new generation)."""
    old = app.others()
    assert old, "no worker processes before the reload"
    offset = app.log_len()
    write_version(app.vdir, new_code, import_sleep)
    lg = app.load(keepalive=keepalive, per_request=per_request)
    time.sleep(pre)
    lg.mark("trigger")
    trigger()
    gen = app.wait_serving(offset, timeout)
    lg.mark("serving")
    wait_until(lambda: not any(alive(p) for p in old), timeout,
               what=f"the old generation's processes {sorted(old)} to exit")
    lg.mark("complete")
    time.sleep(post)
    lg.stop()
    return lg, gen


def assert_sequential(spans):
    """Each import (start, end) began after the previous one had ended."""
    spans = sorted(spans)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s1 >= e0, f"a chain reload started a worker before the previous one was ready: {spans}"


def fifo_trigger(cmd):
    return lambda app: app.send(cmd)


def signal_trigger(sig):
    return lambda app: app.signal(sig)


# -- every reload method, 2 workers, under load ------------------------------------------------

TOUCH = {"touch-reload": "--touch-reload", "touch-workers-reload": "--touch-workers-reload",
         "touch-chain-reload": "--touch-chain-reload"}


def reloads_under_load_losing_nothing(app, trigger):
    """Two workers reloaded by `trigger` under load: no request fails, only the new code
    answers once the reload completed, and none of the old workers is left. Returns the
    new workers."""
    wait_until(lambda: len(app.workers()) == 2, 20, what="2 workers")
    before = set(app.workers())
    lg, gen = reload_under_load(app, trigger, "v2")
    assert gen >= 2
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    after = wait_until(lambda: (w := app.workers()) and len(w) == 2 and w, 20,
                       what="2 workers after the reload")
    assert not set(after) & before, f"old workers {before} still there: {after}"
    return after


@pytest.mark.parametrize("method", ["fifo-r", "fifo-w", "fifo-c", "SIGHUP", *TOUCH])
def test_reload_under_load_loses_nothing(reloadapp, tmp_path, method):
    args = []
    if method in TOUCH:
        tfile = tmp_path / f"{method}.touch"
        tfile.write_text("")
        past = time.time_ns() - 10 * 10**9
        os.utime(tfile, ns=(past, past))
        args = [TOUCH[method], tfile]
        trigger = lambda app: touch(tfile)  # noqa: E731
    elif method == "SIGHUP":
        trigger = signal_trigger(signal.SIGHUP)
    else:
        trigger = fifo_trigger(method[-1])
    app = reloadapp(*args, processes=2)
    after = reloads_under_load_losing_nothing(app, lambda: trigger(app))
    assert app.proc.poll() is None
    # how the new workers came up: a chain imports one worker after the other, the other
    # methods start the whole new set at once
    spans = sorted(app.import_spans(after).values())
    if method in ("fifo-c", "touch-chain-reload"):
        assert_sequential(spans)
    else:
        assert max(s for s, _ in spans) < min(e for _, e in spans), \
            f"the new workers were not started together: {spans}"


@pytest.mark.parametrize("method", ["fifo-r", "fifo-w", "fifo-c"])
def test_threaded_workers_reload_under_load_loses_nothing(reloadapp, method):
    """The talk's shape, workers with three threads each: a thread that runs the loop hands
    it over while its app call waits, and a retiring worker drains every thread's request."""
    app = reloadapp("--threads", "3", processes=2)
    reloads_under_load_losing_nothing(app, lambda: fifo_trigger(method[-1])(app))


def test_two_second_import(reloadapp):
    """The brief's app: 2 s to import. Old workers serve all through the new ones' import."""
    app = reloadapp(processes=2, startup=2.0)
    lg, _ = reload_under_load(app, lambda: app.send("w"), "v2", post=1.5)
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    # sanity: the new code cannot answer before its 2 s import is over
    first_new = min(r.end for r in lg.records if r.code == "v2")
    assert first_new - lg.marks["trigger"] > 1.0, lg.marks


def test_chain_reload_three_workers(reloadapp):
    app = reloadapp(processes=3)
    wait_until(lambda: len(app.workers()) == 3, 20, what="3 workers")
    lg, _ = reload_under_load(app, lambda: app.send("c"), "v2", keepalive=3, per_request=2)
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    after = wait_until(lambda: (w := app.workers()) and len(w) == 3 and w, 20,
                       what="3 workers after the chain reload")
    assert_sequential(app.import_spans(after).values())


@pytest.mark.parametrize("cmd,preload", [("c", False), ("c", True), ("w", True)],
                         ids=["chain-lazy", "chain-preload", "workers-preload"])
def test_reload_with_and_without_preload(reloadapp, cmd, preload):
    app = reloadapp(*(["--preload"] if preload else []), processes=2)
    old_import = get(app.port).json()["import_pid"]
    lg, _ = reload_under_load(app, lambda: app.send(cmd), "v2")
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    after = [r for r in lg.records if r.start >= lg.marks["complete"]]
    imports = {r.import_pid for r in after}
    pids = {r.pid for r in after}
    assert old_import not in imports
    if preload:
        # imported once, by a new preloading process, not by the workers themselves
        assert len(imports) == 1, imports
        assert not imports & pids, (imports, pids)
    else:
        assert imports == pids, (imports, pids)


def test_request_in_flight_outlives_the_reload(reloadapp):
    app = reloadapp("--reload-mercy", "30", processes=2)
    result = {}

    def slow():
        t = time.monotonic()
        try:
            result["resp"] = get(app.port, "/slow?s=6", timeout=40)
        except Exception as e:  # noqa: BLE001
            result["error"] = e
        result["done"] = time.monotonic() - t

    old = app.others()
    offset = app.log_len()
    write_version(app.vdir, "v2")
    lg = app.load()
    th = threading.Thread(target=slow)
    th.start()
    marker = wait_until(lambda: os.listdir(app.slow_dir), 10, what="the slow request inside the app")
    slow_pid = int(marker[0].split("-")[1])
    lg.mark("trigger")
    app.send("w")
    app.wait_serving(offset)
    t_serving = lg.mark("serving")
    wait_until(lambda: not any(alive(p) for p in old - {slow_pid}), LOAD_TIMEOUT,
               what="the idle old worker to exit")
    lg.mark("complete")
    assert "done" not in result, "the slow request finished before the reload completed"
    th.join(40)
    t_slow_done = lg.mark("slow_done")
    time.sleep(1.0)
    lg.stop()
    assert "error" not in result, result
    resp = result["resp"]
    assert resp.status == 200, resp
    assert resp.json()["code"] == "v1" and resp.json()["slept"] == 6
    assert t_slow_done > t_serving
    assert_no_failures(lg)
    # the reload is complete once the other old worker is gone (the one busy with /slow
    # takes no new request): everything started after that is v2
    assert_only_code_after(lg, lg.marks["complete"], "v2")


def test_reload_mercy_cuts_and_names_a_too_long_request(reloadapp):
    app = reloadapp("--reload-mercy", "2", processes=2)
    result = {}

    def slow():
        try:
            result["resp"] = get(app.port, "/slow?s=30", timeout=40)
        except Exception as e:  # noqa: BLE001
            result["error"] = e

    offset = app.log_len()
    write_version(app.vdir, "v2")
    th = threading.Thread(target=slow)
    th.start()
    wait_until(lambda: os.listdir(app.slow_dir), 10, what="the slow request inside the app")
    lg = app.load()
    time.sleep(0.5)
    app.send("w")
    app.wait_serving(offset)
    th.join(30)
    assert not th.is_alive(), "the 30 s request was not cut after the 2 s mercy"
    time.sleep(0.5)
    lg.stop()
    # the cut request is the only casualty, and the log names it
    assert "resp" not in result or result["resp"].status != 200 or not result["resp"].complete, result
    log = app.log()[offset:]
    assert [ln for ln in log.splitlines() if "/slow?s=30" in ln], \
        f"no log line names the cut request /slow?s=30\n{log[-3000:]}"
    assert re.search(r"(?i)^.*warn.*\b(cut|kill)", log, re.M), log[-3000:]
    assert_no_failures(lg)


# -- a new version that fails: rollback ----------------------------------------------------------

@pytest.mark.parametrize("broken", ["BROKEN", "CRASH", "hang"])
def test_failed_new_version_rolls_back(reloadapp, broken):
    app = reloadapp("--reload-timeout", "4", processes=2)
    workers = set(app.workers())
    offset = app.log_len()
    if broken == "hang":
        write_version(app.vdir, "v2-hangs", import_sleep=120)
    else:
        write_version(app.vdir, broken)
    lg = app.load()
    time.sleep(0.5)
    app.send("w")
    wait_log(app.log, FAILED_RE, LOAD_TIMEOUT, start=offset, what="reload failed")
    lg.mark("failed")
    time.sleep(1.0)
    log = app.log()[offset:]
    assert not GEN_RE.search(log), log[-3000:]
    if broken == "BROKEN":
        assert "Traceback" in log and "reload_version holds BROKEN" in log, log[-3000:]
    # the old generation kept serving and still does
    assert {r.code for r in lg.records if r.ok} == {"v1"}
    assert set(app.workers()) == workers
    assert_no_failures(lg)
    # a later reload with a good version works
    offset = app.log_len()
    write_version(app.vdir, "v3")
    lg.mark("trigger")
    app.send("w")
    app.wait_serving(offset)
    wait_until(lambda: not any(alive(p) for p in workers), LOAD_TIMEOUT,
               what="the old workers to exit")
    t = lg.mark("complete")
    time.sleep(1.0)
    lg.stop()
    assert_no_failures(lg)
    assert_only_code_after(lg, t, "v3")
    # two workers and the zygote that forked them
    wait_until(lambda: len(app.others()) == 3 and len(app.workers()) == 2, 20,
               what="2 worker processes and a zygote, none left over from the failed generation")


# -- ready means ready: --warmup ------------------------------------------------------------------

def test_warmup_before_serving(reloadapp):
    app = reloadapp("--warmup", "/warmup", processes=2, env={"WARMUP_SECONDS": "1"})
    lg, _ = reload_under_load(app, lambda: app.send("w"), "v2")
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    # no worker, old or new, answered a request before its warm-up request had completed
    cold = Counter((r.pid, r.code) for r in lg.records if not (r.data or {}).get("warmed"))
    assert not cold, cold
    new_pids = {r.pid for r in lg.records if r.code == "v2"}
    warmed = {int(n.split("-")[1]) for n in os.listdir(app.ready_dir) if n.startswith("warm-")}
    assert new_pids <= warmed, (new_pids, warmed)


# -- graceful reload re-reads the configuration -------------------------------------------------

def _ini(path, *lines):
    path.write_text("[apus]\n" + "\n".join(lines) + "\n")


def test_graceful_reload_reads_ini_changes(reloadapp, tmp_path):
    ini = tmp_path / "apus.ini"
    _ini(ini, "processes = 2", "env = APP_ENV_VERSION=1")
    app = reloadapp("--ini", ini, processes=None)
    wait_until(lambda: len(app.workers()) == 2, 20, what="2 workers")
    assert get(app.port).json()["env"] == "1"
    _ini(ini, "processes = 3", "env = APP_ENV_VERSION=2")
    # a worker reload does not re-read the configuration ...
    lg, _ = reload_under_load(app, lambda: app.send("w"), "v2", post=0.5)
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2", env="1")
    assert len(app.workers()) == 2
    # ... a graceful one does
    lg, _ = reload_under_load(app, lambda: app.send("r"), "v3")
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v3", env="2")
    wait_until(lambda: len(app.workers()) == 3, 20, what="3 workers after the graceful reload")


@pytest.mark.parametrize("preload", [False, True], ids=["lazy", "preload"])
def test_graceful_reload_changes_binds(reloadapp, tmp_path, preload):
    p1, p2 = conftest.free_port(), conftest.free_port()
    ini = tmp_path / "binds.ini"
    _ini(ini, f"http = 127.0.0.1:{p1}")
    app = reloadapp("--ini", ini, *(["--preload"] if preload else []), bind=False, port=p1)
    with pytest.raises(OSError):
        get(p2, timeout=2)
    # add a second listener; load on the first one all along
    _ini(ini, f"http = 127.0.0.1:{p1}", f"http = 127.0.0.1:{p2}")
    lg, _ = reload_under_load(app, lambda: app.send("r"), "v2")
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    assert get(p2).json()["code"] == "v2"
    assert get(p1).json()["code"] == "v2"
    # drop the first one; load on the second one all along
    _ini(ini, f"http = 127.0.0.1:{p2}")
    offset = app.log_len()
    write_version(app.vdir, "v3")
    lg = app.load(port=p2)
    time.sleep(0.5)
    app.send("r")
    app.wait_serving(offset)
    t = lg.mark("serving")
    wait_until(lambda: _refused(p1), LOAD_TIMEOUT, what=f"port {p1} to be closed")
    time.sleep(1.0)
    lg.stop()
    assert_no_failures(lg)
    assert get(p2).json()["code"] == "v3"
    assert t > 0


def _refused(port):
    try:
        get(port, timeout=2)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


# -- one reload at a time ---------------------------------------------------------------------

def test_reloads_during_a_reload_are_coalesced(reloadapp):
    app = reloadapp(processes=2)
    offset = app.log_len()
    write_version(app.vdir, "v2")
    lg = app.load()
    time.sleep(0.5)
    for _ in range(3):
        app.send("w")
        time.sleep(0.15)
    app.wait_serving(offset)
    # wait until the log has been quiet (no reload starting or finishing) for 4 s
    last = [app.log_len(), time.monotonic()]

    def quiet():
        n = app.log_len()
        if n != last[0]:
            last[:] = [n, time.monotonic()]
        return time.monotonic() - last[1] > 4.0

    wait_until(quiet, LOAD_TIMEOUT, interval=0.2, what="the reloads to settle")
    gens = app.generations(offset)
    t = lg.mark("settled")
    time.sleep(0.8)
    lg.stop()
    # the first reload, then at most one for the two asked for while it ran
    assert 1 <= len(gens) <= 2, (gens, app.log()[offset:][-3000:])
    # never interleaved: each generation started is done (serving or failed) before the next
    # one starts (checked on the log lines "starting generation N" when the log has them)
    events = re.findall(r"^(?!.*\bstats:).*?(starting generation|generation (?=\d+ serving)|reload failed)",
                        app.log()[offset:], re.M)
    starts = [e for e in events if e == "starting generation"]
    if starts:
        state = "idle"
        for e in events:
            if e == "starting generation":
                assert state == "idle", f"a reload started while another ran: {events}"
                state = "running"
            else:
                state = "idle"
        assert len(starts) == len(gens), events
    assert_no_failures(lg)
    assert_only_code_after(lg, t, "v2")
    assert len(app.workers()) == 2


# -- stopping in the middle of a reload ----------------------------------------------------------

def test_sigterm_during_reload(reloadapp):
    app = reloadapp(processes=2, startup=1.5)
    everyone = app.others()
    results = []

    def slow():
        try:
            results.append(get(app.port, "/slow?s=3", timeout=40))
        except Exception as e:  # noqa: BLE001
            results.append(e)

    write_version(app.vdir, "v2")
    lg = app.load()
    time.sleep(0.5)
    th = threading.Thread(target=slow)
    th.start()
    wait_until(lambda: os.listdir(app.slow_dir), 10, what="the slow request inside the app")
    app.send("w")
    wait_until(lambda: app.others() - everyone, 10, what="the new generation to start")
    time.sleep(0.3)  # new workers importing (1.5 s)
    t_term = lg.mark("sigterm")
    app.signal(signal.SIGTERM)
    rc = app.wait_exit(40)
    th.join(40)
    lg.stop()
    assert rc == 0, f"exit status {rc}"
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    assert results[0].status == 200 and results[0].json()["slept"] == 3
    # everything asked for before the signal was answered (refusals after it are expected)
    early = [r for r in lg.records if r.start < t_term - 0.2]
    assert len(early) > 20
    bad = [r for r in early if r.error]
    assert not bad, describe_failures(lg)
    wait_until(lambda: not session_members(app.pid), 10, what="every process of the server to exit")


# -- the load generator itself: what it counts as failed, and what it does not -------------------

class _FakeServer:
    """A tiny in-process HTTP server with one misbehaviour, to check loadgen's accounting."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        body = b'{"code": "x", "pid": 1}'
        served = 0
        buf = b""
        with c:
            while True:
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = c.recv(4096)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                buf = buf.split(b"\r\n\r\n", 1)[1]
                if self.mode == "stale" and served == 1:
                    return  # closes a reused connection without answering its request
                if self.mode == "truncated":
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body)
                    return
                status = b"503 Busy" if self.mode == "503" else b"200 OK"
                c.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                served += 1

    def close(self):
        self.stop = True
        self.sock.close()


@pytest.mark.parametrize("mode,keepalive,per_request", [
    ("stale", 2, 0), ("truncated", 1, 1), ("503", 1, 1), ("refused", 1, 1)])
def test_loadgen_accounting(mode, keepalive, per_request):
    if mode == "refused":
        port = conftest.free_port()
        fake = None
    else:
        fake = _FakeServer(mode)
        port = fake.port
    lg = LoadGen(port, keepalive=keepalive, per_request=per_request, interval=0.01, timeout=5)
    lg.start()
    time.sleep(0.5)
    lg.stop()
    if fake:
        fake.close()
    s = lg.summary()
    assert s["total"] > 10, format_summary(s)
    if mode == "stale":
        # a keep-alive connection closed before any byte of the next answer: retried, not failed
        assert s["failed"] == 0 and s["stale_retries"] > 0, format_summary(s)
        assert all(r.code == "x" for r in lg.records)
    else:
        kind = {"truncated": "truncated", "503": "status_503", "refused": "refused"}[mode]
        assert s["failed"] == s["total"] and set(s["failed_by_kind"]) == {kind}, format_summary(s)
