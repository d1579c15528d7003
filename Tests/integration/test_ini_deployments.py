"""uwsgi.ini files written the way Django and Flask deployments write them (the keys of the
survey in docs/options.md, in the usual combinations), each started with `apus FILE.ini` and
checked over real sockets: the app answers on the socket the file names (uwsgi protocol on a
unix or TCP socket for nginx, or HTTP), the static files, pidfile, log file, worker count and
the no-effect keys' notes are what the file asks for, and SIGTERM stops it cleanly."""
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import APUS_BIN, LIVE, clean_env, free_port
from helpers import (EXAMPLES, get, parse_response, raw_request, read_until_close, stop_process_group, touch,
                     wait_until, workers_of)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def uwsgi_get(address, path):
    """One request as nginx's uwsgi_pass sends it; `address` is a port or unix:PATH."""
    path_info, _, query = path.partition("?")
    pairs = [("REQUEST_METHOD", "GET"), ("REQUEST_URI", path), ("PATH_INFO", path_info),
             ("QUERY_STRING", query), ("SERVER_PROTOCOL", "HTTP/1.1"), ("SERVER_NAME", "example.org"),
             ("SERVER_PORT", "80"), ("REMOTE_ADDR", "10.0.0.7"), ("HTTP_HOST", "example.org")]
    block = b""
    for k, v in pairs:
        k, v = k.encode(), v.encode()
        block += struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
    raw, _ = raw_request(address, struct.pack("<BHB", 0, len(block), 0) + block)
    return parse_response(raw)


class Deployment:
    """`apus FILE.ini` in its own session, stderr kept; stopped with SIGTERM like systemd or
    Docker stop it."""

    def __init__(self, ini, workdir, env=None):
        self.ini = ini
        self.port = self.app = ini.name  # for conftest's failure report
        self.err = open(workdir / f"{ini.stem}.stderr", "wb")
        self.proc = subprocess.Popen([APUS_BIN, str(ini)], cwd=workdir, env=clean_env(env),
                                     stdin=subprocess.DEVNULL, stdout=self.err, stderr=self.err,
                                     start_new_session=True)
        LIVE.append(self)

    def stderr(self):
        with open(self.err.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    log = stderr

    def wait_serving(self, ask, timeout=30):
        last = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"apus {self.ini.name} exited with {self.proc.returncode}\n{self.stderr()}")
            try:
                r = ask()
                if r.status == 200:
                    return r
                last = r.status
            except (OSError, ValueError) as e:
                last = e
            time.sleep(0.1)
        pytest.fail(f"apus {self.ini.name} did not serve within {timeout}s ({last!r})\n{self.stderr()}")

    def workers(self):
        return workers_of(self.proc.pid)

    def terminate(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop()

    def stop(self, timeout=20.0):
        if self.proc.poll() is None:
            stop_process_group(self.proc, timeout)
        self.err.close()
        if self in LIVE:
            LIVE.remove(self)
        return self.proc.returncode


@pytest.fixture
def deployments():
    started = []
    yield started
    for d in started:
        d.stop()


def notes(log):
    """The keys whose no-effect note was logged."""
    return set(re.findall(r"\.ini:\d+: ([a-z0-9-]+): has no effect in Apus: ", log))


@pytest.fixture
def django_project(tmp_path):
    """/srv/mysite: the Django echo project, a collected static tree, and a venv (the test's)."""
    site = tmp_path / "srv" / "mysite"
    shutil.copytree(EXAMPLES / "djecho", site)
    write(site / "staticfiles" / "admin" / "css" / "base.css", "body { margin: 0 }\n")
    return site


def test_django_behind_nginx_on_a_unix_socket(tmp_path, django_project, deployments):
    """The classic file: master, processes, a unix socket with chmod-socket and vacuum,
    chdir/module/home, env, harakiri, max-requests, buffer-size, post-buffering, pidfile,
    logto, static-map, touch-reload, and the keys Apus has no use for."""
    run = tmp_path / "run"
    run.mkdir()
    ini = write(django_project / "uwsgi.ini", f"""
        [uwsgi]
        # Django's wsgi.py file
        project = djecho
        base = %d
        chdir = %(base)
        module = %(project).wsgi:application
        home = {sys.prefix}
        env = DJANGO_SETTINGS_MODULE=%(project).settings

        master = true
        processes = 2
        enable-threads = true
        single-interpreter = true
        thunder-lock = true

        socket = {run}/%(project).sock
        chmod-socket = 660
        vacuum = true
        die-on-term = true

        harakiri = 60
        max-requests = 5000
        buffer-size = 32768
        post-buffering = 8192
        memory-report = true

        pidfile = {run}/%(project).pid
        logto = {tmp_path}/log/%(project).log
        static-map = /static=%(base)staticfiles
        touch-reload = %(base)reload.trigger
        """)
    (tmp_path / "log").mkdir()
    (django_project / "reload.trigger").write_text("")
    sock = f"unix:{run}/djecho.sock"
    d = Deployment(ini, tmp_path)
    deployments.append(d)
    r = d.wait_serving(lambda: uwsgi_get(sock, "/polls/?via=nginx"))
    body = r.json()
    assert body["path"] == "/polls/" and body["server_name"] == "example.org"
    assert body["remote_addr"] == "10.0.0.7"

    # static-map answers from the directory, not from Django (whose echo would be JSON)
    r = uwsgi_get(sock, "/static/admin/css/base.css")
    assert r.status == 200 and r.body == b"body { margin: 0 }\n"
    assert r.header("content-type").startswith("text/css")

    assert wait_until(lambda: len(d.workers()) == 2, 20), d.stderr()
    assert oct(os.stat(f"{run}/djecho.sock").st_mode & 0o777) == "0o660"
    assert int((run / "djecho.pid").read_text()) == d.proc.pid
    # Access lines are written in batches, at the latest 0.2 s after the first of a batch.
    logfile = tmp_path / "log" / "djecho.log"
    assert wait_until(lambda: "GET /polls/?via=nginx" in logfile.read_text(), 5), logfile.read_text()
    log = logfile.read_text()
    assert {"master", "enable-threads", "single-interpreter", "thunder-lock", "vacuum",
            "die-on-term", "memory-report"} <= notes(d.stderr() + log)

    # touch-reload: a graceful reload, new workers, the socket served throughout
    before = set(d.workers())
    touch(django_project / "reload.trigger")
    assert wait_until(lambda: (w := set(d.workers())) and len(w) == 2 and not (w & before), 60), \
        (tmp_path / "log" / "djecho.log").read_text()[-3000:]
    assert uwsgi_get(sock, "/after").status == 200

    # SIGTERM: a clean stop that removes the socket and the pidfile
    assert d.terminate() == 0
    assert not os.path.exists(f"{run}/djecho.sock")
    assert not (run / "djecho.pid").exists()


def test_django_in_a_container_on_http(tmp_path, django_project, deployments):
    """The Docker file: http-socket on $(PORT), processes from %k, threads, lazy-apps,
    need-app, strict, the SIGTERM hook, disable-logging with log-5xx/log-4xx, recycling."""
    port = free_port()
    ini = write(django_project / "docker" / "uwsgi.ini", f"""
        [uwsgi]
        strict = true
        need-app = true
        master = true
        http-socket = 0.0.0.0:$(PORT)
        chdir = %d..
        wsgi-file = %d../djecho/wsgi.py
        virtualenv = {sys.prefix}
        env = DJANGO_SETTINGS_MODULE=djecho.settings
        processes = %k
        threads = 2
        lazy-apps = true
        hook-master-start = unix_signal:15 gracefully_kill_them_all
        die-on-term = true
        disable-logging = true
        log-4xx = true
        log-5xx = true
        ignore-sigpipe = true
        ignore-write-errors = true
        disable-write-exception = true
        max-requests = 1000
        reload-on-rss = 512
        worker-reload-mercy = 20
        auto-procname = true
        static-map = /static=%d../staticfiles
        """)
    d = Deployment(ini, tmp_path, env={"PORT": str(port)})
    deployments.append(d)
    r = d.wait_serving(lambda: get(port, "/health"))
    assert r.json()["path"] == "/health"
    assert get(port, "/static/admin/css/base.css").body == b"body { margin: 0 }\n"
    # %k: as many workers as the machine has cores
    assert wait_until(lambda: len(d.workers()) == os.cpu_count(), 20), d.stderr()
    # disable-logging: no line for a 200, from the app or a static file (log-4xx/5xx: 200s stay out)
    assert get(port, "/static/missing.css").status == 200  # falls through to Django's echo
    time.sleep(0.3)
    assert "GET /health" not in d.stderr() and "base.css" not in d.stderr(), d.stderr()
    assert {"master", "strict", "need-app", "die-on-term", "ignore-sigpipe", "ignore-write-errors",
            "disable-write-exception"} <= notes(d.stderr())
    assert "auto-procname" not in notes(d.stderr())  # it is --process-titles
    assert "hook-master-start" in notes(d.stderr())  # the SIGTERM hook, already Apus's way
    assert d.terminate() == 0


@pytest.fixture
def flask_project(tmp_path):
    app = tmp_path / "srv" / "flaskr"
    write(app / "flaskr" / "__init__.py", """
        import os
        from flask import Flask, abort, jsonify


        def create_app():
            app = Flask(__name__)

            @app.route("/")
            def index():
                return jsonify(pid=os.getpid(), config=os.environ.get("FLASKR_CONFIG"))

            @app.route("/boom")
            def boom():
                abort(503)

            return app
        """)
    write(app / "wsgi.py", """
        from flaskr import create_app

        app = create_app()
        """)
    write(app / "flaskr" / "static" / "style.css", "h1 { color: #377ba8 }\n")
    return app


def test_flask_on_a_tcp_uwsgi_socket(tmp_path, flask_project, deployments):
    """A Flask factory app for nginx over TCP: module = wsgi:app, callable, pythonpath,
    threads, listen, log-date/log-master, stats (served by the master), logto."""
    port = free_port()
    stats_port = free_port()
    ini = write(flask_project / "flaskr.ini", f"""
        [uwsgi]
        module = wsgi
        callable = app
        chdir = %d
        pythonpath = %d
        home = {sys.prefix}
        env = FLASKR_CONFIG=production

        master = 1
        workers = 2
        threads = 4
        enable-threads = yes
        socket = 127.0.0.1:{port}
        listen = 256
        vacuum = on
        die-on-term = on
        logto = %d%n.log
        log-date = true
        log-master = true
        stats = 127.0.0.1:{stats_port}
        """)
    d = Deployment(ini, tmp_path)
    deployments.append(d)
    body = d.wait_serving(lambda: uwsgi_get(port, "/")).json()
    assert body["config"] == "production"
    assert wait_until(lambda: len(d.workers()) == 2, 20)
    pids = {uwsgi_get(port, "/").json()["pid"] for _ in range(20)}
    assert pids <= set(d.workers())
    log = (flask_project / "flaskr.log").read_text()
    assert {"master", "enable-threads", "vacuum", "die-on-term", "log-date", "log-master"} <= notes(d.stderr() + log)
    # The stats socket as uwsgitop reads it: one JSON document, then the server closes.
    with socket.create_connection(("127.0.0.1", stats_port), timeout=10) as s:
        stats = json.loads(read_until_close(s))
    assert {w["pid"] for w in stats["workers"]} == set(d.workers())
    assert sum(w["requests"] for w in stats["workers"]) >= 21
    assert d.terminate() == 0


def test_flask_on_http_with_static_files_and_a_daemon(tmp_path, flask_project, deployments):
    """A small Flask site served directly: http, wsgi-file + callable, static-map, offload-threads
    (noted), log-5xx with logging off, attach-daemon for a side process, pidfile."""
    port = free_port()
    beat = tmp_path / "beat.txt"
    ini = write(flask_project / "uwsgi.ini", f"""
        [uwsgi]
        http = 127.0.0.1:{port}
        wsgi-file = %dwsgi.py
        callable = app
        chdir = %d
        virtualenv = {sys.prefix}
        processes = 2
        threads = 2
        offload-threads = 2
        static-map = /static=%dflaskr/static
        disable-logging = true
        log-5xx = true
        pidfile = %d%n.pid
        attach-daemon = echo $$ >> {beat}; exec sleep 300
        """)
    d = Deployment(ini, tmp_path)
    deployments.append(d)
    d.wait_serving(lambda: get(port, "/"))
    r = get(port, "/static/style.css")
    assert r.status == 200 and r.body == b"h1 { color: #377ba8 }\n"
    assert get(port, "/boom").status == 503
    assert wait_until(lambda: "/boom" in d.stderr(), 10), d.stderr()
    assert int((flask_project / "uwsgi.pid").read_text()) == d.proc.pid
    # the attached daemon runs beside the workers
    assert wait_until(lambda: beat.exists() and beat.read_text().strip(), 10), d.stderr()
    daemon_pid = int(beat.read_text().split()[0])
    os.kill(daemon_pid, 0)
    assert "offload-threads" in notes(d.stderr())
    assert d.terminate() == 0
    assert wait_until(lambda: not _alive(daemon_pid), 10)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(") ")[1][0] != "Z"
