"""Zerg mode (uWSGI's protocol, spoken both ways): a zerg server owns the listening sockets
and hands them over a unix socket to every instance that attaches; instances are swapped
behind it (start the new one, wait until it is ready, SIGTERM the old one) without a failed
request, since the listening sockets never close.

- `apus --zerg-server PATH --http ADDR --socket ADDR` hands HTTP, uwsgi and unix sockets;
  `apus --zerg PATH app` serves them, telling uwsgi from HTTP by the first byte unless
  `--protocol` says which.
- Interop with a real uWSGI (from PyPI): its zerg pool (`--zerg-pool`) and its core zerg
  server (`--zerg-server`) hand sockets to Apus; Apus's zerg server hands sockets to
  `uwsgi --zerg PATH` (uwsgi protocol by default, `--protocol http` for HTTP).

uWSGI is found as $APUS_UWSGI, else next to the running Python (the suite's venv, where
scripts/test.sh installs it), else on PATH; the interop tests skip when there is none."""
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import helpers

from conftest import ApusServer, free_port, run_apus
from helpers import APPS, get, stop_process_group, wait_log, wait_until
from loadgen import LoadGen
from test_reload import LOAD_TIMEOUT, assert_no_failures, describe_failures
from test_uwsgi_socket import exchange, nginx_like, packet, parse


UWSGI = helpers.find_uwsgi()
needs_uwsgi = pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed (pip install uwsgi; "
                                 "scripts/test.sh installs it in .venv-test)")


# -- helpers ---------------------------------------------------------------------------------

class Proc:
    """Any server process in its own session, stderr in a file."""

    def __init__(self, cmd, workdir, name, env=None):
        self.log_path = Path(workdir) / f"{name}.stderr"
        self._err = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._err, stderr=self._err,
                                     env=env, start_new_session=True, cwd=str(workdir))

    def log(self):
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, timeout=20.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        status = stop_process_group(self.proc, timeout)
        self._err.close()
        return status


@pytest.fixture
def procs():
    made = []
    yield made
    for p in reversed(made):
        p.stop()


def zerg_server(tmp_path, procs, path, binds):
    """`apus --zerg-server PATH` with `binds` (option, value) pairs; returns it once PATH exists."""
    srv = ApusServer(None, ["--zerg-server", path, *[x for pair in binds for x in pair]],
                     workdir=tmp_path, bind=False, venv=False, chdir=None, name="zerg")
    srv.start(wait=False)
    procs.append(srv)
    wait_until(lambda: os.path.exists(path) or srv.proc.poll() is not None, 10, what="the zerg socket")
    assert srv.proc.poll() is None, srv.log()
    return srv


def instance(tmp_path, procs, path, port=None, args=(), app="pidapp", name="instance", wait=True):
    """`apus --zerg PATH app`, 2 workers; when `wait`, returns once every worker is ready."""
    srv = ApusServer(app, ["--zerg", path, "--processes", "2", *args], workdir=tmp_path, bind=False,
                     port=port or free_port(), name=f"{name}-{len(procs)}")
    srv.start(wait=False)
    procs.append(srv)
    if wait:
        wait_log(srv.log, r"worker 1 ready", LOAD_TIMEOUT, what=f"{name} ready\n{srv.log()}")
        wait_log(srv.log, r"worker 0 ready", LOAD_TIMEOUT, what=f"{name} ready\n{srv.log()}")
    return srv


def uwsgi_get(port, uri="/via-uwsgi", timeout=10.0):
    raw = exchange(port, packet(nginx_like(uri=uri)), timeout=timeout)
    return parse(raw)


class UwsgiLoad:
    """Clients that send uwsgi packets back to back, one connection each (as nginx's
    uwsgi_pass does); every answer that is not a complete 200 is a failure."""

    def __init__(self, port, clients=2, path=None):
        self.port, self.path = port, path
        self.ok = 0
        self.failures = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]
        self._lock = threading.Lock()

    def _one(self):
        data = packet(nginx_like(uri="/"))
        fam = socket.AF_UNIX if self.path else socket.AF_INET
        with socket.socket(fam) as s:
            s.settimeout(10)
            s.connect(self.path or ("127.0.0.1", self.port))
            s.sendall(data)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        status, headers, body = parse(raw)
        if not status.startswith("HTTP/1.1 200") or int(headers.get("content-length", -1)) != len(body):
            raise RuntimeError(f"bad answer {raw[:200]!r}")

    def _run(self):
        while not self._stop.is_set():
            try:
                self._one()
                with self._lock:
                    self.ok += 1
            except Exception as e:  # noqa: BLE001  every kind of failure counts
                with self._lock:
                    self.failures.append(repr(e))

    def start(self):
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(30)
        return self


def assert_uwsgi_load_clean(load):
    assert not load.failures, f"{len(load.failures)} failed uwsgi requests: {load.failures[:10]}"
    assert load.ok > 20, f"too few uwsgi requests to mean anything: {load.ok}"


def swap_under_load(tmp_path, procs, path, port, first, swaps, make):
    """`swaps` times: start the next instance with `make()`, once it is ready SIGTERM the
    previous one and wait for its exit. Returns the last one."""
    current = first
    for _ in range(swaps):
        nxt = make()
        current.signal(signal.SIGTERM)
        assert current.wait_exit(LOAD_TIMEOUT) == 0, current.log()[-3000:]
        procs.remove(current)
        current.stop()
        current = nxt
    return current


# -- Apus zerg server, Apus instances ----------------------------------------------------------

def test_an_apus_zerg_server_hands_http_uwsgi_and_unix_sockets(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    http_port, uwsgi_port = free_port(), free_port()
    unix_path = tmp_path / "http.sock"
    zs = zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{http_port}"),
                                             ("--socket", f"127.0.0.1:{uwsgi_port}"),
                                             ("--http", f"unix:{unix_path}")])
    # the zerg server's own socket is the owner's only: whoever connects gets the sockets
    assert os.stat(path).st_mode & 0o777 == 0o700
    inst = instance(tmp_path, procs, path, port=http_port)
    assert "handed 3 sockets" in inst.log(), inst.log()
    # no protocol given: each connection is told apart by its first byte, on every socket
    assert "listening on auto://fd:" in inst.log()
    r = get(http_port)
    assert r.status == 200 and r.json()["pid"] != inst.pid
    status, _, body = uwsgi_get(uwsgi_port)
    assert status.startswith("HTTP/1.1 200"), status
    status, _, _ = uwsgi_get(http_port)
    assert status.startswith("HTTP/1.1 200"), status  # a uwsgi packet on the HTTP socket too
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(unix_path))
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    # the instance leaves; the zerg server's sockets stay: connections queue for the next one
    assert inst.stop() == 0
    procs.remove(inst)
    with socket.create_connection(("127.0.0.1", http_port), timeout=5):
        pass
    # SIGTERM stops the zerg server and removes its socket and its unix binds
    zs.signal(signal.SIGTERM)
    assert zs.wait_exit(10) == 0, zs.log()
    assert not os.path.exists(path) and not unix_path.exists()
    assert "stopping (handed the sockets 1 times)" in zs.log()


def test_protocol_option_forces_the_handed_sockets_protocol(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    port = free_port()
    zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{port}")])
    inst = instance(tmp_path, procs, path, port=port, args=["--protocol", "uwsgi"])
    assert "listening on uwsgi://fd:" in inst.log()
    status, _, _ = uwsgi_get(port)
    assert status.startswith("HTTP/1.1 200"), status
    # an HTTP request on a uwsgi-only socket is a broken packet: closed, the app never called
    raw = exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert not raw.startswith(b"HTTP/1.1 200"), raw[:200]


def test_ten_swaps_under_load_lose_nothing(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    port, uport = free_port(), free_port()
    zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{port}"), ("--socket", f"127.0.0.1:{uport}")])
    first = instance(tmp_path, procs, path, port=port)
    lg = LoadGen(port, keepalive=2, per_request=2, max_duration=300).start()
    ul = UwsgiLoad(uport).start()
    time.sleep(0.5)
    pids = set()
    try:
        last = swap_under_load(tmp_path, procs, path, port, first, 10,
                               lambda: instance(tmp_path, procs, path, port=port))
        time.sleep(0.5)
    finally:
        lg.stop()
        ul.stop()
    assert_no_failures(lg)
    assert_uwsgi_load_clean(ul)
    pids = {r.pid for r in lg.records if r.pid}
    assert len(pids) >= 10, f"answers came from only {len(pids)} worker processes"
    assert last.proc.poll() is None


def test_handed_sockets_survive_a_graceful_reload_and_an_upgrade_without_the_zerg_server(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    port = free_port()
    zs = zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{port}")])
    inst = instance(tmp_path, procs, path, port=port)
    # the zerg server goes away: the instance holds the socket, and reloads never attach again
    zs.signal(signal.SIGTERM)
    assert zs.wait_exit(10) == 0
    lg = LoadGen(port, keepalive=2, per_request=2, max_duration=120).start()
    try:
        time.sleep(0.3)
        mark = len(inst.log())
        inst.signal(signal.SIGHUP)
        wait_log(inst.log, r"graceful reload done: generation 2 serving", LOAD_TIMEOUT, start=mark)
        mark = len(inst.log())
        inst.signal(signal.SIGUSR2)
        wait_log(inst.log, r"upgrade in place done: generation \d+ serving", LOAD_TIMEOUT, start=mark)
        time.sleep(0.3)
    finally:
        lg.stop()
    assert_no_failures(lg)
    log = inst.log()
    assert log.count("handed 1 socket") == 1, log
    assert "stopped listening" not in log, log
    assert get(port).status == 200


def test_attach_failures_are_one_line_and_no_start(tmp_path):
    missing = tmp_path / "nobody.sock"
    r = run_apus(["--zerg", str(missing), "--venv", sys.prefix, "--chdir", str(APPS), "pidapp"])
    assert r.returncode == 2 and f"--zerg {missing}: cannot connect" in r.stderr, r.stderr
    # a server that answers garbage, or hands something that is not a listening socket
    for reply in ("garbage", "not-listening", "count"):
        path = str(tmp_path / f"{reply}.sock")
        srv = socket.socket(socket.AF_UNIX)
        srv.bind(path)
        srv.listen(1)
        stray = socket.socket()

        def serve(reply=reply, srv=srv, stray=stray):
            c, _ = srv.accept()
            if reply == "garbage":
                c.sendall(b"hello, I am not a zerg server")
            elif reply == "not-listening":
                socket.send_fds(c, [b"uwsgi-zerg" + struct.pack("=i", 1)], [stray.fileno()])
            else:
                socket.send_fds(c, [b"uwsgi-zerg" + struct.pack("=i", 7)], [srv.fileno()])
            c.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        r = run_apus(["--zerg", path, "--venv", sys.prefix, "--chdir", str(APPS), "pidapp"])
        t.join(5)
        srv.close()
        stray.close()
        assert r.returncode == 2, (reply, r.stderr)
        assert r.stderr.count("\n") == 1 and f"--zerg {path}:" in r.stderr, (reply, r.stderr)
        expected = {"garbage": "does not start with", "not-listening": "is not listening",
                    "count": "announces 7 sockets but carries 1"}[reply]
        assert expected in r.stderr, (reply, r.stderr)


def test_zerg_server_options_are_checked(tmp_path):
    path = str(tmp_path / "z.sock")
    r = run_apus(["--zerg-server", path, "pidapp"])
    assert r.returncode == 2 and "--zerg-server runs no application" in r.stderr, r.stderr
    r = run_apus(["--zerg-server", path, "--zerg", path])
    assert r.returncode == 2 and "cannot also attach" in r.stderr, r.stderr
    r = run_apus(["--zerg", path, "--protocol", "fastcgi", "pidapp"])
    assert r.returncode == 2 and "expected http or uwsgi" in r.stderr, r.stderr
    # --check of a zerg server resolves its options and binds nothing
    r = run_apus(["--check", "--zerg-server", path, "--http", "127.0.0.1:1"])
    assert r.returncode == 0 and not os.path.exists(path), r.stderr


def test_a_zerg_server_writes_its_pidfile_and_log_file(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    pidfile, logfile = tmp_path / "zerg.pid", tmp_path / "zerg.log"
    zs = zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{free_port()}"),
                                             ("--pidfile", str(pidfile)), ("--log-file", str(logfile))])
    assert pidfile.read_text().strip() == str(zs.pid)
    assert "apus zerg server" in logfile.read_text()
    zs.signal(signal.SIGTERM)
    assert zs.wait_exit(10) == 0
    assert not pidfile.exists() and "stopped" in logfile.read_text()


# -- interop with uWSGI --------------------------------------------------------------------------

def uwsgi_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("UWSGI_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@needs_uwsgi
def test_a_uwsgi_zerg_pool_hands_http_and_uwsgi_sockets_to_apus_swapped_under_load(tmp_path, procs):
    path = str(tmp_path / "pool.sock")
    port, uport = free_port(), free_port()
    pool = Proc([UWSGI, "--master", "--zerg-pool", f"{path}:127.0.0.1:{port},127.0.0.1:{uport}"],
                tmp_path, "uwsgi-pool", env=uwsgi_env())
    procs.append(pool)
    wait_until(lambda: os.path.exists(path) or pool.proc.poll() is not None, 20, what="the zerg pool")
    assert pool.proc.poll() is None, pool.log()
    first = instance(tmp_path, procs, path, port=port)
    assert "handed 2 sockets" in first.log(), first.log()
    lg = LoadGen(port, keepalive=2, per_request=2, max_duration=300).start()
    ul = UwsgiLoad(uport).start()
    time.sleep(0.5)
    try:
        swap_under_load(tmp_path, procs, path, port, first, 3,
                        lambda: instance(tmp_path, procs, path, port=port))
        time.sleep(0.5)
    finally:
        lg.stop()
        ul.stop()
    assert_no_failures(lg)
    assert_uwsgi_load_clean(ul)


@needs_uwsgi
def test_a_uwsgi_zerg_server_hands_its_sockets_to_apus(tmp_path, procs):
    # uWSGI's core zerg server is a full instance: its own worker serves the sockets too, so
    # it runs the same app, and Apus's workers share the load with it.
    path = str(tmp_path / "zerg.sock")
    port, uport = free_port(), free_port()
    core = Proc([UWSGI, "--master", "--processes", "1", "--zerg-server", path,
                 "--http-socket", f"127.0.0.1:{port}", "--socket", f"127.0.0.1:{uport}",
                 "--wsgi-file", str(APPS / "pidapp.py")], tmp_path, "uwsgi-core", env=uwsgi_env())
    procs.append(core)
    wait_until(lambda: "Zerg server enabled" in core.log() or core.proc.poll() is not None, 20,
               what="the uWSGI zerg server")
    assert core.proc.poll() is None, core.log()
    inst = instance(tmp_path, procs, path, port=port)
    assert "handed 2 sockets" in inst.log(), inst.log()
    lg = LoadGen(port, keepalive=2, per_request=2, max_duration=120).start()
    ul = UwsgiLoad(uport).start()
    try:
        # Apus's workers answer part of it (their access log lines), HTTP and uwsgi alike
        wait_log(inst.log, r'"GET / HTTP/1\.1" 200', LOAD_TIMEOUT, what=f"an HTTP answer from Apus\n{inst.log()}")
        wait_log(inst.log, r'"GET / HTTP/1\.0" 200', LOAD_TIMEOUT, what=f"a uwsgi answer from Apus\n{inst.log()}")
        time.sleep(1.0)
    finally:
        lg.stop()
        ul.stop()
    assert_no_failures(lg)
    assert_uwsgi_load_clean(ul)


def uwsgi_instance(tmp_path, procs, path, args=(), name="uwsgi-instance"):
    p = Proc([UWSGI, "--master", "--processes", "2", "--zerg", path, "--wsgi-file", str(APPS / "pidapp.py"),
              "--master-fifo", str(tmp_path / f"{name}.fifo"), *args], tmp_path, name, env=uwsgi_env())
    procs.append(p)
    wait_until(lambda: "spawned uWSGI worker 2" in p.log() or p.proc.poll() is not None,
               LOAD_TIMEOUT, what="the uWSGI instance")
    time.sleep(0.5)
    assert p.proc.poll() is None, p.log()
    return p


def stop_uwsgi(p, procs):
    """uWSGI's graceful stop is FIFO `q` (its SIGTERM is a reload in 2.0)."""
    with open(p.log_path.parent / f"{p.log_path.stem}.fifo", "w") as f:
        f.write("q")
    assert p.proc.wait(LOAD_TIMEOUT) == 0, p.log()[-3000:]
    procs.remove(p)
    p.stop()


@needs_uwsgi
def test_an_apus_zerg_server_hands_http_to_uwsgi_and_back_under_load(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    port = free_port()
    zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{port}")])
    apus_a = instance(tmp_path, procs, path, port=port)
    lg = LoadGen(port, keepalive=2, per_request=2, max_duration=300).start()
    try:
        time.sleep(0.5)
        # Apus -> uWSGI (`--protocol http`: uWSGI's zerg sockets speak uwsgi otherwise) -> Apus
        u = uwsgi_instance(tmp_path, procs, path, args=["--protocol", "http"])
        assert "uwsgi zerg socket 0 attached to INET address 127.0.0.1:" in u.log(), u.log()
        apus_a.signal(signal.SIGTERM)
        assert apus_a.wait_exit(LOAD_TIMEOUT) == 0
        uwsgi_mark = lg.mark("uwsgi alone")
        time.sleep(1.5)
        instance(tmp_path, procs, path, port=port, name="apus-b")
        stop_uwsgi(u, procs)
        time.sleep(0.5)
    finally:
        lg.stop()
    assert_no_failures(lg)
    uwsgi_pids = {r.pid for r in lg.records if r.start > uwsgi_mark + 0.2 and r.pid} - {None}
    assert uwsgi_pids, describe_failures(lg)


@needs_uwsgi
def test_an_apus_zerg_server_hands_a_uwsgi_socket_to_uwsgi(tmp_path, procs):
    path = str(tmp_path / "zerg.sock")
    uport = free_port()
    unix_path = str(tmp_path / "app.sock")
    zerg_server(tmp_path, procs, path, [("--socket", f"127.0.0.1:{uport}"), ("--socket", f"unix:{unix_path}")])
    u = uwsgi_instance(tmp_path, procs, path)
    assert "uwsgi zerg socket 1 attached to UNIX address" in u.log(), u.log()
    tcp_load = UwsgiLoad(uport).start()
    unix_load = UwsgiLoad(None, path=unix_path).start()
    time.sleep(2.0)
    tcp_load.stop()
    unix_load.stop()
    assert_uwsgi_load_clean(tcp_load)
    assert_uwsgi_load_clean(unix_load)


@needs_uwsgi
def test_uwsgi_takes_more_than_eight_sockets_from_apus(tmp_path, procs):
    # uWSGI's instance reads with room for 8 descriptors, then connects again with room for
    # the count the reply announced: Apus's zerg server answers every connection alike.
    path = str(tmp_path / "zerg.sock")
    ports = [free_port() for _ in range(10)]
    zerg_server(tmp_path, procs, path, [("--http", f"127.0.0.1:{p}") for p in ports])
    u = uwsgi_instance(tmp_path, procs, path, args=["--protocol", "http"])
    assert "uwsgi zerg socket 9 attached to INET address" in u.log(), u.log()
    for p in ports:
        assert get(p).status == 200
