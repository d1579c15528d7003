"""Process titles as ps and /proc/PID/cmdline show them: the master, the zygote, each worker
idle or busy with the request it serves (and how many threads are busy with --threads),
draining once retired, the next generation after a chain reload, the command line left as
it was with --no-process-titles, and an upgrade in place that still gets the original
arguments and environment."""
import os
import signal
import subprocess
import threading

import pytest

from conftest import APUS_BIN, clean_env, free_port
from helpers import children_of, fifo_send, get, process_name, wait_log, wait_until


def cmdline(pid):
    """The NUL-separated words of /proc/PID/cmdline (empty words dropped)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return [w.decode("utf-8", "replace") for w in raw.split(b"\0") if w]


def title(pid):
    words = cmdline(pid)
    return None if words is None else " ".join(words)


def ps_args(pid):
    out = subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout.strip()


def titles(srv):
    """pid -> title of the master's children."""
    return {pid: title(pid) for pid in children_of(srv.pid)}


def worker_titles(srv):
    return sorted(t for t in titles(srv).values() if t and t.startswith("apus: worker "))


def wait_titles(srv, expected, timeout=30):
    try:
        wait_until(lambda: worker_titles(srv) == sorted(expected), timeout, what=f"titles {expected}")
    except AssertionError as e:
        raise AssertionError(f"{e}: {worker_titles(srv)}\n{srv.describe()}") from None


def get_in_background(srv, path):
    box = {}

    def run():
        box["response"] = get(srv.port, path, timeout=30)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


def pid_titled(srv, text):
    found = [pid for pid, t in titles(srv).items() if t == text]
    return found[0] if len(found) == 1 else None


def test_master_zygote_and_workers_idle_then_busy_then_idle(apus):
    srv = apus("pidapp", "--processes", "2", "--no-access-log")
    assert title(srv.pid) == "apus: master [pidapp]"
    assert ps_args(srv.pid) == "apus: master [pidapp]"
    wait_titles(srv, ["apus: worker 1 gen 1 idle", "apus: worker 2 gen 1 idle"])
    zygotes = [pid for pid in children_of(srv.pid) if process_name(pid) == "zygote"]
    assert [title(pid) for pid in zygotes] == ["apus: zygote gen 1"]
    # the thread names are still the slots' (docs/architecture.md)
    assert sorted(process_name(pid) for pid in children_of(srv.pid)) == ["worker 0", "worker 1", "zygote"]

    t, box = get_in_background(srv, "/sleep?s=3")
    busy = wait_until(lambda: [p for p, x in titles(srv).items() if x and x.endswith(" busy GET /sleep?s=3")],
                      10, what="a busy title")
    assert len(busy) == 1
    assert ps_args(busy[0]) in ("apus: worker 1 gen 1 busy GET /sleep?s=3", "apus: worker 2 gen 1 busy GET /sleep?s=3")
    t.join(30)
    assert box["response"].json()["pid"] == busy[0]  # the title was the serving worker's
    wait_titles(srv, ["apus: worker 1 gen 1 idle", "apus: worker 2 gen 1 idle"], timeout=10)


def test_threads_show_how_many_are_busy_and_one_line(apus):
    srv = apus("pidapp", "--processes", "1", "--threads", "2", "--no-access-log")
    wait_titles(srv, ["apus: worker 1 gen 1 idle"])
    t1, _ = get_in_background(srv, "/sleep?s=4")
    wait_titles(srv, ["apus: worker 1 gen 1 busy 1/2 GET /sleep?s=4"], timeout=10)
    t2, _ = get_in_background(srv, "/sleep?s=1.5")
    wait_titles(srv, ["apus: worker 1 gen 1 busy 2/2 GET /sleep?s=1.5"], timeout=10)
    t2.join(30)
    # the last one started ended: the line of the one still running
    wait_titles(srv, ["apus: worker 1 gen 1 busy 1/2 GET /sleep?s=4"], timeout=10)
    t1.join(30)
    wait_titles(srv, ["apus: worker 1 gen 1 idle"], timeout=10)


def test_a_retired_worker_says_draining(apus):
    srv = apus("pidapp", "--processes", "1", "--threads", "2", "--no-access-log")
    wait_titles(srv, ["apus: worker 1 gen 1 idle"])
    t, box = get_in_background(srv, "/sleep?s=3")
    wait_titles(srv, ["apus: worker 1 gen 1 busy 1/2 GET /sleep?s=3"], timeout=10)
    worker = pid_titled(srv, "apus: worker 1 gen 1 busy 1/2 GET /sleep?s=3")
    os.kill(worker, signal.SIGHUP)  # what the master sends a worker a reload retires
    wait_until(lambda: title(worker) == "apus: worker 1 gen 1 draining busy 1/2 GET /sleep?s=3", 10,
               what=f"the draining title, not {title(worker)!r}")
    t.join(30)
    assert box["response"].status == 200


def test_chain_reload_shows_the_next_generation(apus, tmp_path):
    fifo = tmp_path / "master.fifo"
    srv = apus("pidapp", "--processes", "2", "--master-fifo", fifo, "--no-access-log")
    wait_titles(srv, ["apus: worker 1 gen 1 idle", "apus: worker 2 gen 1 idle"])
    fifo_send(fifo, "c")
    wait_titles(srv, ["apus: worker 1 gen 2 idle", "apus: worker 2 gen 2 idle"])
    zygotes = [title(pid) for pid in children_of(srv.pid) if process_name(pid) == "zygote"]
    assert "apus: zygote gen 2" in zygotes
    assert title(srv.pid) == "apus: master [pidapp]"


def test_preloader_proc_name_and_prefix(apus):
    srv = apus("pidapp", "--processes", "1", "--preload", "--proc-name", "shop",
               "--procname-prefix-spaced", "eu1")
    assert title(srv.pid) == "eu1 apus: master [shop]"
    wait_until(lambda: sorted(titles(srv).values()) == ["eu1 apus: preloader gen 1", "eu1 apus: worker 1 gen 1 idle"],
               20, what="the preloader's and the worker's titles")


def test_switched_off_the_command_line_stays(apus):
    srv = apus("pidapp", "--processes", "2", "--no-process-titles", env={"TITLE_MARK": "here"})
    wait_until(lambda: len(srv.workers()) == 2, 20, what="2 workers")
    assert get(srv.port, "/").status == 200
    for pid in [srv.pid, *children_of(srv.pid)]:
        assert cmdline(pid) == srv.cmd
        with open(f"/proc/{pid}/environ", "rb") as f:
            assert b"TITLE_MARK=here\0" in f.read()


def test_upgrade_in_place_gets_the_original_arguments_and_environment(apus):
    srv = apus("echo_env", "--proc-name", "shop", "--no-access-log",
               env={"APUS_PROCESSES": "2", "TITLE_MARK": "kept across the upgrade"})
    wait_titles(srv, ["apus: worker 1 gen 1 idle", "apus: worker 2 gen 1 idle"])
    assert title(srv.pid) == "apus: master [shop]"
    os.kill(srv.pid, signal.SIGUSR2)
    wait_log(srv.log, r"upgrade in place done: generation 2 serving", 60)
    # the new image got the arguments (--proc-name) and APUS_PROCESSES, and titled itself
    assert title(srv.pid) == "apus: master [shop]"
    wait_titles(srv, ["apus: worker 1 gen 2 idle", "apus: worker 2 gen 2 idle"])
    body = get(srv.port, "/?osenv=TITLE_MARK").json()
    assert body["osenv"] == {"TITLE_MARK": "kept across the upgrade"}


def test_router_title():
    port, sub = free_port(), free_port()
    proc = subprocess.Popen([APUS_BIN, "router", "--http", f"127.0.0.1:{port}", "--subscription-server",
                             f"127.0.0.1:{sub}", "--procname-prefix", "eu1-"], env=clean_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: title(proc.pid) == "eu1-apus: router", 10, what=f"the router's title, not {title(proc.pid)!r}")
        assert ps_args(proc.pid) == "eu1-apus: router"
    finally:
        proc.terminate()
        proc.wait(30)
