"""Ini files written like real deployments, read by the built binary: `apus FILE.ini` and
`--ini FILE:SECTION`, magic variables, %(placeholders), $(ENV), includes and if blocks, served
over real sockets; `--print-config`; and the same file read by the real uWSGI, compared."""
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ApusServer, LIVE, clean_env, free_port, run_apus
from helpers import EXAMPLES, get, wait_until

UWSGI = Path(sys.prefix) / "bin" / "uwsgi"


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def serve(tmp_path, args, env):
    srv = ApusServer(None, args, workdir=tmp_path, env=env, chdir=None, venv=False, bind=False,
                     port=int(env["APP_PORT"]))
    srv.start()
    return srv


@pytest.fixture
def stop_all():
    started = []
    yield started
    for srv in started:
        srv.stop()


@pytest.fixture
def django_site(tmp_path):
    """examples/djecho copied to srv/djecho, with an ini beside it and a shared base file."""
    project = tmp_path / "srv" / "djecho"
    shutil.copytree(EXAMPLES / "djecho", project)
    write(tmp_path / "srv" / "common.ini", """
        ; shared by every site on this host
        [base]
        master = true
        vacuum = true
        die-on-term
        enable-threads
        processes = 2
        threads = 2
        harakiri = 30
        """)
    ini = write(project / "djecho.ini", """
        [uwsgi]
        ini = %d../common.ini:base
        project = %n
        base = %d
        chdir = %(base)
        module = %(project).wsgi:application
        env = DJANGO_SETTINGS_MODULE=%(project).settings
        home = $(APP_VENV)
        http-socket = 127.0.0.1:%(port)
        port = $(APP_PORT)

        if-env = APP_ONE_WORKER
        processes = 1
        endif
        """)
    return ini


def test_django_site_from_apus_file_ini(tmp_path, django_site, stop_all):
    port = free_port()
    env = {"APP_VENV": sys.prefix, "APP_PORT": str(port)}
    srv = serve(tmp_path, [str(django_site)], env)
    stop_all.append(srv)
    r = srv.get("/hello?x=1")
    assert r.status == 200, srv.describe()
    body = r.json()
    assert body["path"] == "/hello" and body["query"] == {"x": ["1"]}
    assert body["server_port"] == str(port)
    # processes = 2 from the shared [base] section.
    assert wait_until(lambda: len(srv.workers()) == 2, timeout=10), srv.describe()
    # The uWSGI keys Apus has no use for are warnings naming their line, not errors.
    assert 'common.ini:3: master: has no effect in Apus: ' in srv.log()


def test_if_env_block_over_the_binary(tmp_path, django_site, stop_all):
    port = free_port()
    env = {"APP_VENV": sys.prefix, "APP_PORT": str(port), "APP_ONE_WORKER": "1"}
    srv = serve(tmp_path, ["--ini", str(django_site)], env)
    stop_all.append(srv)
    assert srv.get("/").status == 200
    assert wait_until(lambda: len(srv.workers()) == 1, timeout=10), srv.describe()


@pytest.fixture
def flask_site(tmp_path):
    site = tmp_path / "flasksite"
    write(site / "hello.py", """
        import os
        from flask import Flask, jsonify

        app = Flask(__name__)

        @app.route("/")
        def index():
            return jsonify(greeting=os.environ.get("GREETING"), mode=os.environ.get("MODE"),
                           debug=os.environ.get("DEBUG_VALUE"), cwd=os.getcwd())
        """)
    ini = write(site / "hello.ini", """
        # one file, one section per environment
        [common]
        pythonpath = %d
        chdir = %d
        module = %n:app
        home = $(APP_VENV)
        http = 127.0.0.1:$(APP_PORT)
        env = GREETING=$(GREETING:-hello from %n)

        [prod]
        ini = :common
        env = MODE=prod-%x
        processes = 2
        lazy-apps = true

        [dev]
        ini = :common
        env = MODE=dev
        if-env = DEBUG
        env = DEBUG_VALUE=%(_)
        else
        env = DEBUG_VALUE=none
        endif
        """)
    return ini


def test_flask_sections(tmp_path, flask_site, stop_all):
    port = free_port()
    env = {"APP_VENV": sys.prefix, "APP_PORT": str(port)}
    srv = serve(tmp_path, ["--ini", f"{flask_site}:prod"], env)
    stop_all.append(srv)
    body = srv.get("/").json()
    assert body == {"greeting": "hello from hello", "mode": "prod-prod", "debug": None,
                    "cwd": str(flask_site.parent)}
    srv.stop()
    stop_all.remove(srv)

    port = free_port()
    env = {"APP_VENV": sys.prefix, "APP_PORT": str(port), "DEBUG": "verbose", "GREETING": "hi"}
    srv = serve(tmp_path, [f"{flask_site}:dev"], env)
    stop_all.append(srv)
    body = srv.get("/").json()
    assert body["greeting"] == "hi" and body["mode"] == "dev" and body["debug"] == "verbose"


def test_apus_ini_environment_variable_takes_a_section(tmp_path, flask_site, stop_all):
    port = free_port()
    env = {"APP_VENV": sys.prefix, "APP_PORT": str(port), "APUS_INI": f"{flask_site}:dev"}
    srv = serve(tmp_path, [], env)
    stop_all.append(srv)
    assert srv.get("/").json()["debug"] == "none"


def test_print_config_shows_origins_and_binds_nothing(tmp_path, django_site):
    port = free_port()
    proc = run_apus([str(django_site), "--print-config", "--threads", "4"],
                    env={"APP_VENV": sys.prefix, "APP_PORT": str(port), "APUS_KEEP_ALIVE": "9"})
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        value, _, origin = line.partition("#")
        rows.setdefault(value.strip(), origin.strip())
    assert rows["module = djecho.wsgi:application"] == f"{django_site}:6: module"
    assert rows[f"http = 127.0.0.1:{port}"] == f"{django_site}:9: http-socket"
    assert rows["processes = 2"] == f"{django_site.parent}/../common.ini:7: processes"
    assert rows["threads = 4"] == "--threads"
    assert rows["keep-alive = 9"] == "APUS_KEEP_ALIVE"
    assert rows["shutdown-timeout = 30"] == "default"
    assert rows["pidfile"] == "not set"
    assert rows[f"ini = {django_site}"] == "the ini file argument"
    # Nothing listens, nothing was left running.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))


def test_print_config_reports_a_bad_value_as_at_start(tmp_path):
    ini = write(tmp_path / "bad.ini", """
        [uwsgi]
        module = app
        workers = %(count)
        count = none
        """)
    proc = run_apus([str(ini), "--print-config"])
    assert proc.returncode == 2
    assert proc.stderr.strip() == f'apus: {ini}:3: workers: expected a positive integer, got "none"'


@pytest.mark.parametrize("text,error", [
    ("[uwsgi]\nmodule = app\nprojcet = x\n", '{P}:3: unknown key "projcet"'),
    ("[uwsgi]\nmodule = %(project).wsgi\n", "{P}:2: %(project) refers to no key of the ini files"),
    ("[uwsgi]\nmodule = app\nchdir = $(APUS_TEST_SURELY_UNSET)\n",
     "{P}:3: $(APUS_TEST_SURELY_UNSET): the environment variable is not set (write $(APUS_TEST_SURELY_UNSET:-DEFAULT) for a default)"),
    ("[uwsgi]\nmodule = app\nini = :other\n[other]\nini = :uwsgi\n",
     '{P}:3: ini: ini file ":other" includes itself: {P} -> {P}:other -> {P}:uwsgi -> {P}:other'),
    ("[uwsgi]\nmodule = app\nif-env = HOME\nif-env = PATH\nendif\n",
     "{P}:4: if-env inside the if-env block opened at {P}:3: if blocks do not nest (close it with endif first)"),
])
def test_ini_errors_are_one_line_with_file_and_line(tmp_path, text, error):
    ini = tmp_path / "site.ini"
    ini.write_text(text)
    proc = run_apus(["--ini", str(ini)])
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == ["apus: " + error.replace("{P}", str(ini))]


def uwsgi_show_config(ini, env):
    """The options uWSGI's --show-config lists for `ini` (it then exits: no socket)."""
    proc = subprocess.run([str(UWSGI), "--show-config", "--ini", str(ini)], env=clean_env(env),
                          capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    out = proc.stdout + proc.stderr
    body = out.split("[uwsgi]\n", 1)[1].split(";end of configuration", 1)[0]
    return [tuple(part.strip() for part in line.split("=", 1)) for line in body.splitlines()]


@pytest.mark.skipif(not UWSGI.exists(), reason="uwsgi is not installed in the test venv")
def test_values_match_what_uwsgi_reads(tmp_path):
    """The same file through uWSGI's --show-config and Apus's --print-config: the option values
    (after magic variables, $(ENV), %(refs), includes and if blocks) are the same."""
    write(tmp_path / "conf" / "base.ini", """
        [uwsgi]
        processes = 3
        [extra]
        pidfile = %d%n.pid
        """)
    ini = write(tmp_path / "conf" / "site.ini", """
        [uwsgi]
        project = mysite
        ini = %dbase.ini
        ini = %dbase.ini:extra
        chdir = %d
        module = %(project).wsgi
        touch-reload = %p
        log-file = /tmp/%c-%s-%e-%k.log
        env = HOME_IS=$(HOME)
        env = PCT=100%%
        if-env = SITE_MODE=prod
        env = MODE=%(_)
        endif
        if-not-env = SITE_MODE
        env = MODE=unset
        endif
        """)
    env = {"HOME": "/home/someone", "SITE_MODE": "prod"}
    theirs = uwsgi_show_config(ini, env)
    keys = ["processes", "pidfile", "chdir", "module", "touch-reload", "log-file", "env"]
    expected = [(k, v) for k, v in theirs if k in keys]
    proc = run_apus(["--ini", str(ini), "--print-config"], env=env)
    assert proc.returncode == 0, proc.stderr
    ours = []
    for line in proc.stdout.splitlines():
        value, _, origin = line.partition("#")
        key, _, v = value.strip().partition(" = ")
        if key in keys and origin.strip() not in ("default", "not set"):
            ours.append((key, v))
    assert sorted(ours) == sorted(expected)
    assert ("env", "MODE=prod") in ours and ("pidfile", f"{ini.parent}/base.pid") in ours
