"""What a worker maps (docs/architecture.md, "Memory of a worker"): a bounded part of the
binary's code, libpython and the libraries of hashlib and zlib mapped once by the master, also
across a reload to another Python, and Python started once per generation, in the zygote."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import APUS_BIN
import helpers
from helpers import APPS, EXAMPLES, Conn, get, wait_until
from test_pythons import find_python


def mapped_rss_kib(pid, path, perms):
    """Resident KiB of the mappings of `path` with `perms` in process `pid`."""
    total, current = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5 and ":" in fields[3]:
                current = len(fields) >= 6 and os.path.realpath(fields[5]) == os.path.realpath(path) \
                    and fields[1] == perms
            elif current and fields[0] == "Rss:":
                total += int(fields[1])
    return total


def mapped_libpythons(pid):
    with open(f"/proc/{pid}/maps") as f:
        return {line.split()[-1] for line in f if "/libpython3" in line}


def versions(libpythons):
    """"3.11" for .../libpython3.11.so.1.0"""
    return sorted(os.path.basename(p)[len("libpython"):].split(".so")[0] for p in libpythons)


def test_a_worker_maps_little_of_the_binary(apus):
    srv = apus("hello", "--processes", "1", chdir=EXAMPLES)
    with Conn(srv.port) as c:
        for i in range(200):
            assert c.request("GET", f"/?i={i}").status == 200
    [worker] = srv.workers()
    code = mapped_rss_kib(worker, APUS_BIN, "r-xp")
    # About 2.6-3.0 MiB (of 5.5 MiB of code): the request path with the access log and the
    # process title, the parts of the Swift runtime and standard library it calls, and the
    # 64 KiB windows around them that the kernel maps in with them. Pages shared by every
    # worker (page cache); measured side by side in docs/architecture.md, "Memory of a worker".
    assert 0 < code <= 3584, f"the worker has {code} KiB of the binary's code resident"


def test_the_master_maps_the_libpython_of_its_workers(apus):
    srv = apus("echo_env", "--processes", "2")
    assert get(srv.port, "/").status == 200
    workers = srv.workers()
    assert len(workers) == 2
    master_libs = mapped_libpythons(srv.pid)
    assert len(master_libs) == 1, master_libs
    for w in workers:
        assert mapped_libpythons(w) == master_libs


def test_a_reload_to_another_python_maps_the_new_libpython(apus, tmp_path):
    old, new = find_python(11), find_python(12)
    if old is None or new is None:
        pytest.skip("needs CPython 3.11 and 3.12 under pyenv")
    ini = tmp_path / "apus.ini"
    ini.write_text(f"[apus]\npython = {old}\nprocesses = 1\n")
    srv = apus("echo_env", "--ini", ini, venv=False, chdir=APPS)
    assert get(srv.port, "/").json()["python"][:2] == [3, 11]
    assert versions(mapped_libpythons(srv.pid)) == ["3.11"]
    ini.write_text(f"[apus]\npython = {new}\nprocesses = 1\n")
    srv.signal(signal.SIGHUP)  # graceful reload: the ini is read again
    wait_until(lambda: get(srv.port, "/").json()["python"][:2] == [3, 12], 30, what="a 3.12 worker")
    wait_until(lambda: versions(mapped_libpythons(srv.pid)) == ["3.12"], 30,
               what="the master mapping 3.12's libpython only")


def loaded_by_stdlib_modules(python):
    """The shared libraries that importing _hashlib, zlib, ... maps in `python`."""
    script = ("def m():\n"
              "    return {l.split(None, 5)[5].strip() for l in open('/proc/self/maps') if len(l.split()) >= 6}\n"
              "b = m()\n"
              "import _hashlib, zlib\n"
              "print('\\n'.join(p for p in m() - b if '.cpython-' not in p))\n")
    out = subprocess.run([python, "-c", script], capture_output=True, text=True, check=True).stdout
    return {os.path.realpath(p) for p in out.split()}


HASHING_APP = """
import hashlib, zlib

def application(environ, start_response):
    body = hashlib.sha256(zlib.compress(b"apus")).hexdigest().encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


def test_workers_inherit_the_libraries_of_hashlib_and_zlib(apus, tmp_path):
    # The master maps them before forking (as uWSGI, which links them): a worker whose app
    # imports hashlib finds libcrypto loaded and does not load or initialise it again.
    libs = loaded_by_stdlib_modules(sys.executable)
    if not libs:
        pytest.skip("this Python's _hashlib and zlib load no shared library of their own")
    app = tmp_path / "hashing.py"
    app.write_text(HASHING_APP)
    srv = apus(None, "--wsgi-file", app, "--processes", "2", env={"LD_DEBUG": "files"})
    assert get(srv.port, "/").status == 200
    workers = srv.workers()
    assert len(workers) == 2
    with open(f"/proc/{srv.pid}/maps") as f:
        in_master = {os.path.realpath(line.split(None, 5)[5].strip()) for line in f if len(line.split()) >= 6}
    assert libs <= in_master, sorted(libs - in_master)
    # ld.so's LD_DEBUG=files lines: "PID: calling init: PATH" for each library it initialises
    inits = re.findall(r"^\s*(\d+):\s+calling init: (\S+)", srv.log(), re.M)
    assert inits, "no LD_DEBUG output in the log"
    again = [(pid, path) for pid, path in inits if int(pid) in workers and os.path.realpath(path) in libs]
    assert not again, f"workers initialised these themselves: {again}"


STARTUP_MARKER = """
import os
with open(os.path.join(os.path.dirname(__file__), "started-%d" % os.getpid()), "w"):
    pass
"""


@pytest.mark.parametrize("preload", [False, True], ids=["lazy", "preload"])
def test_python_starts_once_per_generation_not_in_each_worker(apus, tmp_path, preload):
    # sitecustomize runs during the interpreter's start-up: in the zygote only, and again in
    # the new zygote of a reload. The app is still imported by each worker without --preload.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(STARTUP_MARKER)
    srv = apus("pidapp", "--processes", "2", *(["--preload"] if preload else []),
               chdir=APPS, env={"PYTHONPATH": str(site)})
    workers = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and w, 20, what="2 workers")

    def started():
        """Processes that ran the start-up (also apus's one-off `python -c` that finds
        libpython, which is gone by now)."""
        return {int(p.name.split("-")[1]) for p in site.glob("started-*")}

    def zygotes():
        return {p for p in started() if helpers.alive(p)}

    [zygote] = zygotes()
    assert zygote not in workers and zygote in helpers.children_of(srv.pid)
    answers = {}
    deadline = time.monotonic() + 20
    while len(answers) < 2 and time.monotonic() < deadline:
        with ThreadPoolExecutor(8) as ex:  # concurrent, so that both workers answer
            for j in ex.map(lambda _: get(srv.port, "/sleep?s=0.2").json(), range(8)):
                answers[j["pid"]] = j["import_pid"]
    assert set(answers) == set(workers), (answers, workers, zygote)
    for pid, imported in answers.items():
        assert imported == (zygote if preload else pid)
    srv.signal(signal.SIGHUP)
    new = wait_until(lambda: (w := srv.workers()) and len(w) == 2 and not set(w) & set(workers) and w,
                     30, what="2 new workers")
    [second] = wait_until(lambda: (z := zygotes()) and z != {zygote} and z, 30, what="the new zygote alone")
    assert second in helpers.children_of(srv.pid)
    assert not started() & (set(workers) | set(new)), "a worker ran Python's start-up"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


def uwsgi_packet(env):
    body = b"".join(len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
                    for k, v in env.items())
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def test_ever_new_header_names_cost_no_memory(apus, tmp_path):
    # Environ keys are kept for a bounded number of distinct names; past that a key lives
    # only as long as its request. Before, each request with a name never seen before kept
    # about 120 bytes for good: over HTTP, and over uwsgi (nginx passes headers as vars).
    sock = tmp_path / "u.sock"
    srv = apus("hello", "--processes", "1", "--socket", f"unix:{sock}", chdir=EXAMPLES)
    [worker] = srv.workers()

    def http(n):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
            for _ in range(n // 100):
                s.sendall(b"".join(b"GET / HTTP/1.1\r\nHost: x\r\nX-" + os.urandom(12).hex().encode()
                                   + b": 1\r\n\r\n" for _ in range(100)))
                data = b""
                while data.count(b"HTTP/1.1 200 ") < 100:
                    chunk = s.recv(1 << 20)
                    assert chunk, "the server closed the connection"
                    data += chunk

    def uwsgi(n):
        for _ in range(n):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(str(sock))
                s.sendall(uwsgi_packet({b"REQUEST_METHOD": b"GET", b"PATH_INFO": b"/", b"SERVER_NAME": b"x",
                                        b"SERVER_PORT": b"80", b"SERVER_PROTOCOL": b"HTTP/1.1",
                                        b"HTTP_X_" + os.urandom(12).hex().upper().encode(): b"1"}))
                reply = b""
                while chunk := s.recv(65536):
                    reply += chunk
                assert reply.startswith(b"HTTP/1.1 200 "), reply[:100]

    http(2000)  # fill the tables and the allocator's pools first
    uwsgi(2000)
    before = rss_kib(worker)
    http(30000)
    uwsgi(15000)
    grown = rss_kib(worker) - before
    # the leak grew this worker by about 5 MiB
    assert grown < 1024, f"the worker grew by {grown} KiB"
