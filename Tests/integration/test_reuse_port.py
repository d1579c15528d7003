"""--reuse-port: two instances hand over one address with zero failed requests.

The swaps run in reuse_port_swap.py inside a network namespace of their own (`unshare
--net`, as root), which brings `lo` up and sets net.ipv4.tcp_migrate_req there only:

* 20 swaps under keep-alive and connection-per-request load (start B with the same
  arguments, wait for B's "worker N ready", SIGTERM A, wait for A to exit), once with
  tcp_migrate_req 0 (queued connections are reset when their socket closes) and once with 1
  (the kernel moves them to another listener);
* a new instance whose app takes 2 s to import gets no connection before it is ready.

Outside a namespace: --reuse-port with a unix bind is refused before anything starts, and a
graceful reload that adds a bind makes it listen only once a new worker is ready.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

import conftest
from helpers import APPS, get, wait_until

sys.path.insert(0, str(APPS))
from reloadapp.versionfile import write_version  # noqa: E402

DRIVER = os.path.join(os.path.dirname(__file__), "reuse_port_swap.py")


def _run_driver(tmp_path, *args, timeout=120):
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a network namespace")
    cmd = ["unshare", "--net", sys.executable, DRIVER, "--apus", conftest.APUS_BIN,
           "--venv", sys.prefix, "--workdir", str(tmp_path), *map(str, args)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if p.returncode != 0 and "unshare failed" in p.stderr:
        pytest.skip(f"cannot make a network namespace: {p.stderr.strip()}")
    assert p.returncode == 0, p.stderr[-4000:]
    return json.loads(p.stdout)


def _explain(out):
    return json.dumps({k: v for k, v in out.items() if k != "records"}, indent=1)[:12000]


@pytest.mark.parametrize("migrate", ["0", "1"], ids=["migrate_req_0", "migrate_req_1"])
def test_twenty_swaps_under_load_lose_nothing(tmp_path, migrate):
    out = _run_driver(tmp_path, "--scenario", "swap", "--swaps", 20, "--migrate", migrate)
    why = _explain(out)
    assert "error" not in out, why
    s = out["summary"]
    assert s["failed"] == 0, why
    assert s["ok"] > 0, why
    instances = out["instances"]
    assert len(instances) == 21, why
    # every old instance stopped cleanly; every instance answered part of the load
    assert all(i["rc"] == 0 for i in instances), why
    assert all(i["answered"] > 0 for i in instances), why
    assert out["unknown_pids"] == [], why


def test_new_instance_takes_no_connection_before_its_app_is_ready(tmp_path):
    out = _run_driver(tmp_path, "--scenario", "slow-import")
    why = _explain(out)
    assert "error" not in out, why
    assert out["summary"]["failed"] == 0, why
    a, b = out["instances"]
    assert a["rc"] == 0 and b["rc"] == 0, why
    assert out["b_imported"] is not None, why
    # requests answered while B imported its app (2 s): all by A
    during = [r for r in out["records"] if r[3] is None and out["b_started"] <= r[0] and r[1] <= out["b_imported"]]
    assert during, why
    assert all(pid in a["workers"] for _, _, pid, _ in during), why
    # and B took over once ready
    assert b["answered"] > 0, why


def test_reuse_port_refuses_a_unix_bind(tmp_path):
    sock = tmp_path / "x.sock"
    r = conftest.run_apus(["--reuse-port", "--http", "127.0.0.1:8000", "--http", f"unix:{sock}",
                           "--chdir", str(APPS), "pidapp"])
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--reuse-port" in lines[0] and str(sock) in lines[0], r.stderr
    assert not sock.exists()


def _connects(port):
    with socket.socket() as s:
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
            return True
        except ConnectionRefusedError:
            return False


def test_graceful_reload_listens_on_a_new_bind_once_a_worker_is_ready(apus, tmp_path):
    p1, p2 = conftest.free_port(), conftest.free_port()
    vdir, ready = tmp_path / "ver", tmp_path / "ready"
    vdir.mkdir()
    ready.mkdir()
    write_version(vdir, "v1")
    ini = tmp_path / "apus.ini"
    ini.write_text(f"[apus]\nhttp = 127.0.0.1:{p1}\n")
    fifo = tmp_path / "master.fifo"
    srv = apus("reloadapp.wsgi:application", "--ini", ini, "--reuse-port", "--processes", 1,
               "--pythonpath", vdir, "--master-fifo", fifo, "--no-access-log",
               env={"STARTUP_SECONDS": "1", "READY_DIR": str(ready)}, bind=False, port=p1)
    assert get(p1).json()["code"] == "v1"
    assert not _connects(p2)
    before = set(os.listdir(ready))
    write_version(vdir, "v2")
    ini.write_text(f"[apus]\nhttp = 127.0.0.1:{p1}\nhttp = 127.0.0.1:{p2}\n")
    with open(fifo, "wb") as f:
        f.write(b"r")
    # p2 is bound at once but listens only when a worker of the new generation has the app:
    # whenever it accepts a connection, that worker's import is done (written before it listens)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if _connects(p2):
            assert set(os.listdir(ready)) - before, "p2 accepted before any new worker imported the app"
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"port {p2} never listened\n{srv.describe()}")
    wait_until(lambda: get(p2).json()["code"] == "v2", 20, what="v2 on the new bind")
    assert get(p1).json()["code"] == "v2"
