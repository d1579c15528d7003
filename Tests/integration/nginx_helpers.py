"""An nginx instance of our own in front of the server under test, for test_nginx.py.

`Nginx` renders one of the config templates of examples/nginx/ (placeholders @@NAME@@)
into a fresh prefix directory, copies uwsgi_params next to it and runs
`nginx -p PREFIX -e PREFIX/logs/error.log -c PREFIX/conf/NAME -g 'daemon off; pid ...;'`
in its own session, on a free port of 127.0.0.1. It never touches the system's nginx,
/etc/nginx or /var/log/nginx. Teardown sends SIGQUIT (graceful), then SIGTERM, then
SIGKILL to its process group.

`UwsgiBackend` runs uWSGI in place of Apus when NGINX_TEST_UWSGI names a uwsgi binary:
uWSGI speaks the same uwsgi protocol to nginx, so the nginx configs and the tests can be
checked against it (the Apus-only tests of test_nginx.py skip then).
"""
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import helpers

from helpers import APPS, EXAMPLES, IncompleteResponse, get

NGINX_EXAMPLES = EXAMPLES / "nginx"
DJECHO = EXAMPLES / "djecho"
UWSGI_STANDIN = os.environ.get("NGINX_TEST_UWSGI") or None


def nginx_binary():
    """The nginx executable, or None. /usr/sbin is searched too: it is often not on a
    non-root PATH."""
    return (os.environ.get("NGINX_BIN") or shutil.which("nginx")
            or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin:/usr/local/nginx/sbin"))


def require_nginx():
    nginx = nginx_binary()
    if not nginx:
        pytest.skip("nginx is not installed (apt-get install nginx; scripts/test.sh does it)")
    return nginx


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(template, values):
    """The template's text with every @@NAME@@ replaced; unknown or unfilled names fail."""
    text = (NGINX_EXAMPLES / template).read_text()
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", str(value))
    left = sorted(set(re.findall(r"@@([A-Z_]+)@@", text)))
    if left:
        raise ValueError(f"{template}: placeholders not filled in: {left}")
    return text


class Nginx:
    def __init__(self, template, prefix, values, port=None):
        self.binary = require_nginx()
        self.template = template
        self.prefix = Path(prefix)
        self.port = port or free_port()
        self.values = {"LISTEN": self.port, **values}
        self.conf_dir = self.prefix / "conf"
        self.conf = self.conf_dir / template
        self.error_log_path = self.prefix / "logs" / "error.log"
        self.pid_path = self.prefix / "nginx.pid"
        self.proc = None

    def _globals(self):
        g = f"daemon off; pid {self.pid_path};"
        if os.geteuid() == 0:
            # As root, nginx would run its workers as `nobody`, who cannot enter the
            # test's private temp directories (sockets, temp files). Keep our own user.
            g += f" user {pwd.getpwuid(os.geteuid()).pw_name};"
        return g

    @property
    def cmd(self):
        return [self.binary, "-p", f"{self.prefix}/", "-e", str(self.error_log_path),
                "-c", str(self.conf), "-g", self._globals()]

    def start(self, timeout=15.0):
        for d in ("conf", "logs", "tmp"):
            (self.prefix / d).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render(self.template, self.values))
        shutil.copy(NGINX_EXAMPLES / "uwsgi_params", self.conf_dir / "uwsgi_params")
        self._out = open(self.prefix / "logs" / "nginx.stderr", "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._close()
                pytest.fail(f"nginx exited with status {self.proc.returncode} at start\n"
                            f"{self.describe()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"nginx did not listen on {self.port} within {timeout}s\n{self.describe()}")

    def stop(self, timeout=10.0):
        if self.proc is None:
            return
        for sig in (signal.SIGQUIT, signal.SIGTERM):
            if self.proc.poll() is not None:
                break
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            except ProcessLookupError:
                break
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers left behind, if any
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._close()

    def _close(self):
        out = getattr(self, "_out", None)
        if out and not out.closed:
            out.close()

    def error_log(self):
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def problems(self):
        """error.log lines at level error or worse ([error], [crit], [alert], [emerg])."""
        return [l for l in self.error_log().splitlines()
                if re.search(r"\[(error|crit|alert|emerg)\]", l)]

    def describe(self, tail=4000):
        try:
            stderr = (self.prefix / "logs" / "nginx.stderr").read_text(errors="replace")
        except FileNotFoundError:
            stderr = ""
        return (f"nginx command: {' '.join(self.cmd)}\n--- nginx stderr ---\n{stderr[-tail:]}"
                f"\n--- nginx error.log (tail) ---\n{self.error_log()[-tail:]}")


class UwsgiBackend:
    """uWSGI standing in for Apus: the same app, the same binds, the same shape.

    socket: a uwsgi-protocol bind (a path or HOST:PORT); http: "http" (one request per
    connection) or "http11" (keeps connections alive, for the proxy front)."""

    def __init__(self, binary, app, workdir, *, socket_bind=None, chmod=None, http="http",
                 processes=2, threads=2, pythonpath=()):
        self.port = free_port()
        self.app = f"uwsgi:{app}"
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"uwsgi-{self.port}.log"
        module, _, call = app.partition(":")
        cmd = [binary, "--master", "--processes", str(processes), "--threads", str(threads),
               "--enable-threads", "--chdir", str(APPS), "--pythonpath", str(APPS),
               "--module", module, "--callable", call or "application", "--need-app",
               "--die-on-term", "--strict", "--buffer-size", "32768",
               f"--{http}-socket", f"127.0.0.1:{self.port}"]
        for p in pythonpath:
            cmd += ["--pythonpath", str(p)]
        if socket_bind:
            cmd += ["--socket", socket_bind]
        if chmod:
            cmd.append(f"--chmod-socket={chmod}")
        if sys.prefix != sys.base_prefix:
            cmd += ["--virtualenv", sys.prefix]
        self.cmd = cmd
        self.proc = None

    def start(self, timeout=30.0):
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"uwsgi exited with {self.proc.returncode}\n{self.describe()}")
            try:
                get(self.port, "/", timeout=5)
                return self
            except (OSError, IncompleteResponse, ValueError) as e:
                last = e
            time.sleep(0.1)
        pytest.fail(f"uwsgi did not answer within {timeout}s ({last!r})\n{self.describe()}")

    def stop(self, timeout=20.0):
        if self.proc is None:
            return None
        helpers.stop_process_group(self.proc, timeout)
        self._log.close()
        return self.proc.returncode

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def describe(self, tail=6000):
        return f"command: {' '.join(self.cmd)}\n--- log (tail) ---\n{self.log()[-tail:]}"
