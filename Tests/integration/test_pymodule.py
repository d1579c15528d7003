"""The `apus` module (and its `uwsgi` alias) as apps use it, and --py-autoreload / --reload.

A Django project (apps/uwsgiproj) reads worker_id(), numproc, masterpid() and opt in a
view, and calls uwsgi.reload() / uwsgi.chain_reload() from a view while load generators
run: the workers are replaced and no request fails. The autoreload tests edit a module of a
running app in place and by rename, break it and fix it."""
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from helpers import APPS, wait_log, wait_until
from loadgen import LoadGen, format_summary

DJANGO = APPS / "uwsgiproj"
SERVING_RE = re.compile(r"^(?!.*\bstats:).*\bgeneration (\d+) serving", re.M)


def info(srv):
    r = requests.get(srv.url("/info"), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def infos_from_every_worker(srv, count):
    """/info from `count` different workers: connections held open at once are spread
    over the workers (each accepts while it holds fewer)."""
    seen = {}
    conns = []
    try:
        deadline = time.monotonic() + 30
        while len(seen) < count and time.monotonic() < deadline:
            c = srv.conn()
            conns.append(c)
            j = c.request("GET", "/info").json()
            seen[j["pid"]] = j
    finally:
        for c in conns:
            c.close()
    assert len(seen) == count, f"answers from {len(seen)} workers\n{srv.describe()}"
    return list(seen.values())


def worker_pids(srv):
    return set(srv.workers())


def test_module_values_in_each_worker(apus):
    started = int(time.time())
    srv = apus("uwsgiproj.wsgi", "--processes", "3", "--env", "A=1", "--env", "B=2", "--no-access-log",
               chdir=DJANGO, ready_path="/info")
    seen = infos_from_every_worker(srv, 3)
    assert sorted(j["worker_id"] for j in seen) == [1, 2, 3]
    for j in seen:
        assert j["numproc"] == 3
        assert j["masterpid"] == srv.pid == j["ppid"]
        assert j["import_worker_id"] == j["worker_id"]  # imported after the fork: already known
        assert j["same_module"] is True
        # uWSGI's types on Python 3: str keys, bytes values, True for flags; the last of a
        # repeated option.
        assert j["opt_types"] == ["bool", "bytes"]
        assert j["opt"]["processes"] == "3"
        assert j["opt"]["env"] == "B=2"
        assert j["opt"]["no-access-log"] is True
        assert j["opt"]["http"] == f"127.0.0.1:{srv.port}"
        assert j["opt"]["module"] == "uwsgiproj.wsgi"
        assert j["opt"]["master"] is True and j["opt"]["enable-threads"] is True
        assert j["version_type"] == "bytes"
        assert started - 1 <= j["started_on"] <= started + 30  # the master's start, Unix time


def test_worker_id_with_preload_is_zero_at_import_and_right_after_the_fork(apus):
    srv = apus("uwsgiproj.wsgi", "--processes", "2", "--preload", chdir=DJANGO, ready_path="/info")
    seen = infos_from_every_worker(srv, 2)
    assert sorted(j["worker_id"] for j in seen) == [1, 2]
    for j in seen:
        assert j["import_worker_id"] == 0          # imported in the preloader
        assert j["import_pid"] != j["pid"]


@pytest.mark.parametrize("view,call,kind", [("/chain", "chain_reload", "chain reload"),
                                           ("/workers", "workers_reload", "worker reload"),
                                           ("/reload", "reload", "graceful reload")])
def test_reload_from_a_view_replaces_every_worker_without_a_failed_request(apus, view, call, kind):
    srv = apus("uwsgiproj.wsgi", "--processes", "2", "--threads", "2", "--no-access-log",
               chdir=DJANGO, ready_path="/info")
    before = worker_pids(srv)
    assert len(before) == 2
    lg = LoadGen(srv.port, "/info", keepalive=2, per_request=2, max_duration=60)
    lg.start()
    try:
        time.sleep(0.5)
        start = len(srv.log())
        r = requests.get(srv.url(view), timeout=10)
        # The request that asked for the reload is answered by the worker being replaced.
        assert r.status_code == 200 and r.json()["result"] is True and r.json()["pid"] in before
        wait_log(srv.log, rf"apus\.{call}\(\) in worker \d+ \(pid {r.json()['pid']}\): {kind}", 10, start=start)
        wait_log(srv.log, SERVING_RE, 60, start=start, what="the new generation serving")
        wait_until(lambda: not (worker_pids(srv) & before), 30, what="the old workers gone")
        time.sleep(0.5)
    finally:
        lg.stop()
    s = lg.summary()
    assert s["failed"] == 0, format_summary(s) + "\n" + srv.describe()
    after = worker_pids(srv)
    assert len(after) == 2 and not (after & before)


def test_no_uwsgi_module_leaves_only_apus(apus):
    srv = apus("uwsgiproj.wsgi", "--no-uwsgi-module", chdir=DJANGO, ready_path="/imports")
    j = requests.get(srv.url("/imports"), timeout=10).json()
    assert j["apus"] == "ok"
    assert j["uwsgi"].startswith("ImportError")
    # uwsgidecorators imports uwsgi: it fails the same way.
    assert j["uwsgidecorators"].startswith("ModuleNotFoundError")


def test_uwsgi_alias_and_what_is_not_provided(apus):
    srv = apus("uwsgiproj.wsgi", chdir=DJANGO, ready_path="/imports")
    j = requests.get(srv.url("/imports"), timeout=10).json()
    assert j["apus"] == "ok" and j["uwsgi"] == "ok"
    assert j["cache_get"].startswith("AttributeError: module 'apus' has no attribute 'cache_get': Apus provides")
    # Its decorators need uWSGI's signals, spooler and mules: it fails to import as it does
    # outside uWSGI, so `try: from uwsgidecorators import timer / except ImportError` holds.
    assert j["uwsgidecorators"].startswith("ModuleNotFoundError: import of uwsgidecorators halted")


def test_a_real_uwsgi_module_is_not_shadowed(apus, tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "uwsgi.py").write_text("REAL = True\n")
    (lib / "probe.py").write_text(
        "import uwsgi, apus\n"
        "def application(env, sr):\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [repr((getattr(uwsgi, 'REAL', False), uwsgi is apus)).encode()]\n")
    srv = apus("probe", "--pythonpath", str(lib))
    assert srv.get("/").body == b"(True, False)"


def test_apus_module_exists_only_under_apus():
    r = subprocess.run([sys.executable, "-c", "import apus"], capture_output=True, text=True)
    assert r.returncode == 1 and "ModuleNotFoundError: No module named 'apus'" in r.stderr


# -- autoreload -----------------------------------------------------------------------------

APP = """import mod
def application(env, sr):
    sr("200 OK", [("Content-Type", "text/plain")])
    return [mod.VERSION.encode()]
"""


def answer(srv):
    r = srv.get("/")
    assert r.status == 200, r
    return r.body.decode()


def write_by_rename(path, text):
    """What vim and sed -i do: a new file renamed over the old one."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.rename(tmp, path)


@pytest.mark.parametrize("flag", [("--py-autoreload", "2"), ("--reload",), ("--reload", "--preload")])
def test_autoreload_follows_edits_and_survives_a_broken_one(apus, tmp_path, flag):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(APP)
    mod = proj / "mod.py"
    mod.write_text('VERSION = "one"\n')
    srv = apus("app", *flag, "--processes", "2", "--no-access-log", chdir=proj)
    assert answer(srv) == "one"
    wait_log(srv.log, r"autoreload: watching \d+ files", 20)
    lg = LoadGen(srv.port, "/", keepalive=2, per_request=1, max_duration=90)
    lg.start()
    try:
        # 1. Saved in place.
        start = len(srv.log())
        mod.write_text('VERSION = "two"\n')
        wait_log(srv.log, SERVING_RE, 60, start=start, what="the chain reload after an edit")
        wait_until(lambda: answer(srv) == "two", 20, what="the new code answering")
        reloads = len(re.findall(r"autoreload \(a source file changed", srv.log()[start:]))
        assert reloads == 1, srv.describe()  # one change, one reload
        # 2. A syntax error: the new worker cannot import; the old ones keep serving.
        start = len(srv.log())
        write_by_rename(mod, 'VERSION = "three\n')
        wait_log(srv.log, r"SyntaxError", 60, start=start, what="the import error")
        wait_log(srv.log, r"reload failed: .* keeps serving", 60, start=start,
                 what="the new generation given up")
        assert answer(srv) == "two"
        # 3. Fixed (by rename, as vim saves): reloaded again.
        start = len(srv.log())
        write_by_rename(mod, 'VERSION = "four"\n')
        wait_log(srv.log, SERVING_RE, 60, start=start, what="the chain reload after the fix")
        wait_until(lambda: answer(srv) == "four", 20, what="the fixed code answering")
        time.sleep(0.5)
    finally:
        lg.stop()
    s = lg.summary()
    assert s["failed"] == 0, format_summary(s) + "\n" + srv.describe()


def test_autoreload_sees_modules_imported_later(apus, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(
        "def application(env, sr):\n"
        "    import late\n"
        "    sr('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [late.VERSION.encode()]\n")
    late = proj / "late.py"
    late.write_text('VERSION = "a"\n')
    srv = apus("app", "--py-autoreload", "1", "--processes", "1", chdir=proj)
    assert answer(srv) == "a"   # worker 1 imports late.py now
    time.sleep(2.5)             # the next look at sys.modules adds it
    start = len(srv.log())
    late.write_text('VERSION = "b"\n')
    wait_log(srv.log, SERVING_RE, 60, start=start, what="the chain reload")
    wait_until(lambda: answer(srv) == "b", 20, what="the new code answering")


def test_no_autoreload_by_default(apus, tmp_path):
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "app.py").write_text(APP)
    mod = proj / "mod.py"
    mod.write_text('VERSION = "one"\n')
    srv = apus("app", chdir=proj)
    mod.write_text('VERSION = "two"\n')
    time.sleep(2)
    assert answer(srv) == "one"
    assert "autoreload" not in srv.log()


def test_check_imports_an_app_that_imports_the_module():
    import conftest
    r = conftest.run_apus(["--venv", sys.prefix, "--chdir", str(DJANGO), "--check", "uwsgiproj.wsgi"])
    assert r.returncode == 0, r.stderr
    assert "check passed" in r.stderr
