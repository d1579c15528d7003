"""Listening sockets Apus does not open itself: systemd's socket activation (run here with
`systemd-socket-activate`, which listens, then execs apus with LISTEN_PID/LISTEN_FDS/
LISTEN_FDNAMES on the first connection), and `--fd N` / `fd://N` for a socket made by any
parent (here a Python parent with pass_fds). The protocol rule: HTTP, unless the socket is
named `uwsgi`, given as `--socket fd://N`, or at the address of a `--socket` bind. A graceful
reload keeps serving on the same socket and loses nothing; a bad descriptor is one line and
no start."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import conftest
from conftest import APUS_BIN, ApusServer, free_port
from helpers import APPS, fifo_send, get, wait_log, wait_until
from test_reload import (LOAD_TIMEOUT, Reloadable, assert_no_failures, assert_only_code_after,
                         reload_under_load)
from test_uwsgi_socket import exchange, nginx_like, packet, parse

sys.path.insert(0, str(APPS))
from reloadapp.versionfile import write_version  # noqa: E402

ACTIVATE = shutil.which("systemd-socket-activate")
needs_activate = pytest.mark.skipif(ACTIVATE is None, reason="systemd-socket-activate is not installed")


def activated(tmp_path, app, listen, args=(), names=None, env=None, wait=True):
    """apus under systemd-socket-activate listening on `listen` (ports or unix paths), with
    fd names `names`. systemd-socket-activate passes the child only PATH, HOME, TERM and what
    -E names, so `env` goes through -E. Served on port listen[0] (it must be a port when
    `wait`)."""
    first = listen[0] if isinstance(listen[0], int) else free_port()
    srv = ApusServer(app, args, workdir=tmp_path, env=env, bind=False, port=first)
    prefix = [ACTIVATE]
    for item in listen:
        prefix += ["-l", f"127.0.0.1:{item}" if isinstance(item, int) else str(item)]
    if names:
        prefix.append("--fdname=" + ":".join(names))
    for key, value in (env or {}).items():
        prefix += ["-E", f"{key}={value}"]
    srv.cmd = prefix + ["--"] + srv.cmd
    return srv.start(wait=wait)


@pytest.fixture
def servers():
    made = []
    yield made
    for srv in made:
        srv.stop()


def socket_inode(pid, fd):
    return os.readlink(f"/proc/{pid}/fd/{fd}")


def socket_inodes(pid):
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            out.add(target)
    return out


def uwsgi_answer(port, timeout=20.0):
    """The parsed answer to a GET packet, retried until the server is up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            raw = exchange(port, packet(nginx_like(uri="/via-uwsgi")))
            if raw:
                return parse(raw)
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"no uwsgi answer on port {port}")
        time.sleep(0.1)


# -- systemd socket activation -----------------------------------------------------------------

@needs_activate
def test_an_activated_socket_serves_http_and_the_variables_are_gone(tmp_path, servers):
    port = free_port()
    srv = activated(tmp_path, "echo_env", [port], names=["web"])
    servers.append(srv)
    r = get(port, "/?osenv=LISTEN_PID&osenv=LISTEN_FDS&osenv=LISTEN_FDNAMES")
    assert r.status == 200
    info = r.json()
    # the workers (and anything the app starts) do not see the sockets as theirs
    assert info["osenv"] == {"LISTEN_PID": None, "LISTEN_FDS": None, "LISTEN_FDNAMES": None}
    assert info["environ"]["SERVER_PORT"]["value"] == str(port)
    assert "listening on http://fd:3" in srv.log()
    # no socket of its own: nothing on the default address
    assert "127.0.0.1:8000" not in srv.log()


@needs_activate
def test_a_socket_named_uwsgi_speaks_the_uwsgi_protocol(tmp_path, servers):
    port = free_port()
    srv = activated(tmp_path, "echo_env", [port], names=["uwsgi"], wait=False)
    servers.append(srv)
    status, headers, body = uwsgi_answer(port)
    assert status.startswith("HTTP/1.1 200"), status
    assert '"/via-uwsgi"' in body.decode()
    assert "listening on uwsgi://fd:3" in srv.log()


@needs_activate
def test_two_activated_sockets_and_a_unix_one_matched_by_address(tmp_path, servers):
    http_port, uwsgi_port = free_port(), free_port()
    path = tmp_path / "app.sock"
    # fd 3 HTTP by default, fd 4 uwsgi by name, fd 5 (unix) uwsgi because --socket names its path
    srv = activated(tmp_path, "echo_env", [http_port, uwsgi_port, path], names=["web", "uwsgi", "app"],
                    args=["--socket", f"unix:{path}"])
    servers.append(srv)
    assert get(http_port).status == 200
    status, _, _ = uwsgi_answer(uwsgi_port)
    assert status.startswith("HTTP/1.1 200"), status
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(packet(nginx_like(uri="/over-unix")))
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    assert raw.startswith(b"HTTP/1.1 200") and b"/over-unix" in raw
    # the banner names each inherited socket by its descriptor and its address
    assert (f"listening on uwsgi://fd:5 (uwsgi://unix:{path}), http://fd:3 (http://127.0.0.1:{http_port}), "
            f"uwsgi://fd:4 (uwsgi://127.0.0.1:{uwsgi_port})") in srv.log()
    srv.stop()
    # the socket file is systemd's (here systemd-socket-activate's): Apus never unlinks it
    assert path.exists()


# -- --fd N from any parent --------------------------------------------------------------------

def listening_socket(family=socket.AF_INET, listen=True):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    if listen:
        s.listen(64)
    return s


def start_with_fds(tmp_path, app, args, fds, name="fdparent"):
    """apus started by this (Python) process with `fds` inherited."""
    port = free_port()
    srv = ApusServer(app, args, workdir=tmp_path, bind=False, port=port, name=name)
    srv._err = open(srv.log_path, "wb")
    srv._out = open(srv.out_path, "wb")
    srv.proc = subprocess.Popen(srv.cmd, env=srv.env, stdin=subprocess.DEVNULL, stdout=srv._out,
                                stderr=srv._err, start_new_session=True, pass_fds=fds)
    conftest.LIVE.append(srv)
    return srv


@pytest.mark.parametrize("spelling", ["--fd", "--http fd://", "--socket fd://"])
def test_a_socket_from_a_python_parent(tmp_path, servers, spelling):
    sock = listening_socket()
    port = sock.getsockname()[1]
    fd = sock.fileno()
    option, _, prefix = spelling.partition(" ")
    srv = start_with_fds(tmp_path, "echo_env", [option, f"{prefix}{fd}"], [fd])
    servers.append(srv)
    try:
        srv.port = port
        if option == "--socket":
            status, _, body = uwsgi_answer(port)
            assert status.startswith("HTTP/1.1 200"), status
        else:
            srv.wait_ready()
            r = get(port)
            assert r.status == 200
            assert r.json()["environ"]["SERVER_PORT"]["value"] == str(port)
        # the parent's socket stays the parent's: after apus stops it still listens
        srv.stop()
        sock.settimeout(5)
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            conn, _ = sock.accept()
            conn.close()
    finally:
        sock.close()


# -- a graceful reload keeps the inherited socket ----------------------------------------------

@needs_activate
@pytest.mark.parametrize("command", ["r", "f"], ids=["graceful-reload", "upgrade-in-place"])
def test_graceful_reload_under_load_keeps_the_activated_socket(tmp_path, servers, command):
    """FIFO r, and FIFO f, which re-executes the master: it hands systemd's sockets to its
    next image as LISTEN_* again (same pid, same descriptors)."""
    port = free_port()
    vdir, ready, slow = tmp_path / "ver", tmp_path / "ready", tmp_path / "slow"
    for d in (vdir, ready, slow):
        d.mkdir()
    write_version(vdir, "v1")
    fifo = tmp_path / "master.fifo"
    env = {"STARTUP_SECONDS": "1.0", "READY_DIR": str(ready), "SLOW_DIR": str(slow),
           "PYTHONDONTWRITEBYTECODE": "1"}
    srv = activated(tmp_path, "reloadapp.wsgi:application", [port], names=["web"], env=env,
                    args=["--pythonpath", vdir, "--no-access-log", "--master-fifo", fifo, "--processes", "2"])
    servers.append(srv)
    app = Reloadable(srv, vdir, fifo, ready, slow)
    wait_until(lambda: len(srv.workers()) == 2 and all(
        (ready / f"import-{p}").exists() for p in srv.workers()), 30, what="2 workers imported")
    before = socket_inode(srv.pid, 3)
    offset = app.log_len()
    lg, _ = reload_under_load(app, lambda: app.send(command), "v2")
    assert_no_failures(lg)
    assert_only_code_after(lg, lg.marks["complete"], "v2")
    # the same socket, in the master and in every new worker; nothing opened again
    assert socket_inode(srv.pid, 3) == before
    workers = srv.workers()
    assert workers and all(before in socket_inodes(w) for w in workers)
    log = srv.log()[offset:]
    assert "new in generation" not in log and "stopped listening" not in log
    assert get(port).json()["code"] == "v2"


# -- bad descriptors: one line, no start -------------------------------------------------------

def run_with_fds(args, fds, timeout=30):
    return subprocess.run([APUS_BIN, "--venv", sys.prefix, "--chdir", str(APPS), *args, "echo_env"],
                          env=conftest.clean_env(), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, pass_fds=fds, start_new_session=True)


def test_bad_inherited_descriptors_are_one_line_and_no_start(tmp_path):
    # not open at all (fd 9 is not passed)
    r = run_with_fds(["--fd", "9"], [])
    assert r.returncode != 0
    assert r.stderr == "apus: inherited fd 9 (http://fd:9) is not open\n"
    # a file
    with open(tmp_path / "plain", "w") as f:
        n = f.fileno()
        r = run_with_fds(["--fd", str(n)], [n])
    assert r.returncode != 0
    assert r.stderr == f"apus: inherited fd {n} (http://fd:{n}) is not a socket\n"
    # a socket nobody listens on
    with listening_socket(listen=False) as s:
        n = s.fileno()
        r = run_with_fds(["--socket", f"fd://{n}"], [n])
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and f"fd {n} (uwsgi://fd:{n}) is not listening" in r.stderr
    # a datagram socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        n = u.fileno()
        r = run_with_fds(["--fd", str(n)], [n])
    assert r.returncode != 0
    assert r.stderr == f"apus: inherited fd {n} (http://fd:{n}) is not a stream socket\n"
    # nothing started: no banner, no zygote
    assert "listening" not in r.stderr


def test_listen_variables_for_another_process_are_ignored(apus):
    # LISTEN_PID of some other process: those sockets are not ours; the usual bind is used
    srv = apus("echo_env", env={"LISTEN_PID": "1", "LISTEN_FDS": "1"})
    assert srv.get().status == 200
    assert "fd:3" not in srv.log()


def test_a_reload_that_drops_an_inherited_socket_keeps_it_for_a_later_one(tmp_path, servers):
    """A socket Apus cannot open again is never closed by a reload: dropped from the
    configuration it is no longer served (connections wait in its queue), and a later
    reload serves it again, here with the other protocol."""
    sock = listening_socket()
    port, fd = sock.getsockname()[1], sock.fileno()
    other = free_port()
    ini, fifo = tmp_path / "apus.ini", tmp_path / "master.fifo"

    def configure(*lines):
        ini.write_text("[apus]\n" + "\n".join(lines) + "\n")

    def reload_to(generation):
        offset = len(srv.log())
        fifo_send(fifo, "r")
        wait_log(srv.log, rf"generation {generation} serving", LOAD_TIMEOUT, start=offset)

    configure(f"fd = {fd}")
    srv = start_with_fds(tmp_path, "echo_env", ["--ini", ini, "--master-fifo", fifo], [fd])
    servers.append(srv)
    try:
        srv.port = port
        srv.wait_ready()
        configure(f"http = 127.0.0.1:{other}")
        reload_to(2)
        assert get(other).status == 200
        assert socket_inode(srv.pid, fd) == f"socket:[{os.fstat(fd).st_ino}]"
        configure(f"http = 127.0.0.1:{other}", f"socket = fd://{fd}")
        reload_to(3)
        status, _, _ = uwsgi_answer(port)
        assert status.startswith("HTTP/1.1 200"), status
    finally:
        sock.close()
