"""--uid, --gid and --umask with a real unprivileged user.

The module creates a user, its primary group and a supplementary group it is in (unique
names, removed at teardown), and runs apus as root on a port below 1024 with --uid/--gid:
the master, its zygote and its workers must all run as that user and group with no
supplementary group, the app must agree, and the server must go on serving through a chain
reload, a graceful reload and an upgrade in place. A bad name stops apus with one line
before anything listens; a reload that would change the user, or bind a port below 1024
after the drop, is refused and the old generation keeps serving.

The app is apps/whoami.py, copied into a directory the user can read. The Python is one the
user can run (the test venv's usually lives under /root): the first of /usr/bin/python3,
/usr/local/bin/python3 and python3 on PATH for which `apus --check`, run as the user, passes.
"""
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import conftest
from conftest import APUS_BIN, clean_env, free_port, run_apus
from helpers import APPS, fifo_send, get, session_members, stop_process_group, wait_log, wait_until
from loadgen import LoadGen, format_summary

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: creates a user and binds a port below 1024"),
    pytest.mark.skipif(not (shutil.which("useradd") and shutil.which("groupadd")),
                       reason="needs useradd and groupadd to create the unprivileged user"),
]

ROOT_WARNING = ("running as root: the app runs as root too; give --uid and --gid to drop "
                "privileges after binding")
LOW_PORTS = (881, 882, 883, 884, 885, 886, 887, 888, 889, 981, 982, 983)


class Account:
    """The user made for the module: names, ids, a directory it can read (`dir`, root's,
    mode 0755, holding the app) and one it owns (`own`), and a Python it can run."""

    def __init__(self, tag):
        self.user, self.group, self.extra = f"apus{tag}", f"apus{tag}g", f"apus{tag}s"
        self.uid = self.gid = self.extra_gid = None
        self.dir = self.own = self.python = None

    def describe(self):
        return f"user {self.user} (uid {self.uid}), group {self.group} (gid {self.gid})"

    def run_as(self, argv, **kw):
        """A command run as the user, with only its primary group."""
        return subprocess.run([str(a) for a in argv], user=self.uid, group=self.gid, extra_groups=[],
                              capture_output=True, text=True, timeout=60, cwd=self.dir,
                              env=clean_env(), stdin=subprocess.DEVNULL, **kw)


def _sh(*argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip()}")


def _python_for(account):
    seen = set()
    for cand in ("/usr/bin/python3", "/usr/local/bin/python3", shutil.which("python3")):
        if not cand or cand in seen or not os.access(cand, os.X_OK):
            continue
        seen.add(cand)
        r = account.run_as([APUS_BIN, "--check", "--python", cand, "--chdir", account.dir,
                            "--pythonpath", account.dir, "whoami"])
        if r.returncode == 0:
            return cand
    return None


@pytest.fixture(scope="module")
def account():
    import grp
    import pwd
    acct = Account(uuid.uuid4().hex[:8])
    undo = []
    try:
        _sh("groupadd", acct.group)
        undo.append(("groupdel", acct.group))
        _sh("groupadd", acct.extra)
        undo.append(("groupdel", acct.extra))
        _sh("useradd", "--no-create-home", "--no-user-group", "--home-dir", "/nonexistent",
            "--gid", acct.group, "--groups", acct.extra, acct.user)
        undo.append(("userdel", acct.user))
        acct.uid = pwd.getpwnam(acct.user).pw_uid
        acct.gid = grp.getgrnam(acct.group).gr_gid
        acct.extra_gid = grp.getgrnam(acct.extra).gr_gid
        acct.dir = Path(tempfile.mkdtemp(prefix="apus-privileges-"))
        undo.append(("rmtree", acct.dir))
        acct.dir.chmod(0o755)
        shutil.copy(APPS / "whoami.py", acct.dir / "whoami.py")
        (acct.dir / "whoami.py").chmod(0o644)
        acct.own = acct.dir / "own"
        acct.own.mkdir()
        os.chown(acct.own, acct.uid, acct.gid)
        acct.python = _python_for(acct)
        if acct.python is None:
            pytest.skip(f"no Python with a shared libpython that user {acct.user} can run "
                        f"(tried /usr/bin/python3, /usr/local/bin/python3, python3 on PATH)")
        yield acct
    finally:
        for what, arg in reversed(undo):
            if what == "rmtree":
                shutil.rmtree(arg, ignore_errors=True)
            else:
                subprocess.run([what, arg], capture_output=True)


def _free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def low_port():
    """A port below 1024 that nothing uses on 127.0.0.1 (only root can bind it)."""
    for port in LOW_PORTS:
        if _free(port):
            return port
    pytest.skip(f"none of the ports {LOW_PORTS} is free")


def serve(apus, account, *args, port=None, **kw):
    """apus serving whoami from the account's directory, with the Python it can run."""
    return apus("whoami", "--python", account.python, *args, chdir=account.dir, venv=False,
                port=port or low_port(), env={"WRITE_DIR": str(account.own)}, **kw)


def credentials(pid):
    """The ids, groups and umask of a process from /proc/PID/status (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.rstrip("\n").split(":", 1) for line in f if ":" in line)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return {"name": fields["Name"].strip(),
            "uids": {int(x) for x in fields["Uid"].split()},
            "gids": {int(x) for x in fields["Gid"].split()},
            "groups": sorted(int(x) for x in fields["Groups"].split()),
            "umask": int(fields["Umask"].strip(), 8)}


def every_process(srv):
    """Master, zygote and workers, with their credentials."""
    found = {pid: credentials(pid) for pid in session_members(srv.pid)}
    return {pid: c for pid, c in found.items() if c is not None}


def assert_runs_as(srv, account, min_processes):
    procs = every_process(srv)
    assert srv.pid in procs and len(procs) >= min_processes, procs
    for pid, c in procs.items():
        assert c["uids"] == {account.uid}, (pid, c)
        assert c["gids"] == {account.gid}, (pid, c)
        assert c["groups"] == [account.gid], (pid, c)
    for _ in range(6):
        who = get(srv.port).json()
        assert (who["uid"], who["euid"]) == (account.uid, account.uid), who
        assert (who["gid"], who["egid"]) == (account.gid, account.gid), who
        assert who["groups"] == [account.gid], who
    return procs


@pytest.mark.parametrize("spelling", ["uid", "uid-number-gid-name", "gunicorn"])
def test_drops_to_the_user_after_binding_a_low_port(apus, account, spelling):
    args = {"uid": ["--uid", account.user],
            "uid-number-gid-name": ["--uid", account.uid, "--gid", account.group],
            "gunicorn": ["--user", account.user, "--group", account.gid]}[spelling]
    srv = serve(apus, account, *args, "--processes", "2")
    assert srv.port < 1024
    wait_until(lambda: len(srv.workers()) == 2, 30, what="2 workers")
    procs = assert_runs_as(srv, account, 4)  # master, zygote, 2 workers
    assert account.extra_gid not in {g for c in procs.values() for g in c["groups"]}
    log = srv.log()
    assert f"dropped privileges: now {account.describe()}, no supplementary groups" in log
    assert ROOT_WARNING not in log


def test_umask_applies_to_every_process_its_files_and_sockets(apus, account):
    sock = account.own / f"umask-{uuid.uuid4().hex[:6]}.sock"
    srv = serve(apus, account, "--uid", account.user, "--umask", "027", "--socket", f"unix:{sock}",
                "--processes", "1")
    wait_until(lambda: len(srv.workers()) == 1, 30, what="1 worker")
    for pid, c in every_process(srv).items():
        assert c["umask"] == 0o027, (pid, c)
    assert get(srv.port).json()["umask"] == 0o027
    made = get(srv.port, f"/write?name=made-{srv.port}").json()
    assert (made["mode"], made["uid"], made["gid"]) == (0o640, account.uid, account.gid), made
    # The socket is made by root before the drop, without --chmod-socket: the mask alone.
    st = os.stat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750, oct(st.st_mode)
    assert st.st_uid == 0


@pytest.mark.parametrize("option, kind", [("--uid", "user"), ("--gid", "group")])
def test_a_bad_name_stops_apus_before_it_listens(account, tmp_path, option, kind):
    port = low_port()
    name = f"nosuch{uuid.uuid4().hex[:6]}"
    pidfile = tmp_path / "apus.pid"
    r = run_apus(["--python", account.python, "--chdir", account.dir, "--pythonpath", account.dir,
                  "--http", f"127.0.0.1:{port}",
                  "--pidfile", pidfile, option, name, "whoami"])
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == [f'apus: {option}: no such {kind} "{name}"'], r.stderr
    assert not pidfile.exists()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_user_that_is_not_root_cannot_switch_to_another(account):
    r = account.run_as([APUS_BIN, "--python", account.python, "--chdir", account.dir,
                        "--pythonpath", account.dir, "--http", f"127.0.0.1:{free_port()}", "--uid", "root", "whoami"])
    assert r.returncode == 2, r
    assert r.stderr.splitlines() == [
        f"apus: --uid: cannot become user root (uid 0), group root (gid 0): apus runs as uid {account.uid}, not root"]


def test_a_user_started_as_itself_has_nothing_to_drop(account):
    port = free_port()
    log_path = account.own / f"self-{port}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([APUS_BIN, "--python", account.python, "--chdir", account.dir,
                                 "--pythonpath", account.dir, "--http", f"127.0.0.1:{port}", "--uid", account.user, "whoami"],
                                user=account.uid, group=account.gid, extra_groups=[], cwd=account.dir,
                                env=clean_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    try:
        def answers():
            try:
                return get(port, timeout=2).json()
            except (OSError, ValueError):
                return None
        who = wait_until(answers, 30, what=f"apus started by {account.user}")
        assert (who["uid"], who["gid"]) == (account.uid, account.gid)
        text = log_path.read_text()
        assert f"running as {account.describe()}" in text
        assert "dropped privileges" not in text and "ERROR" not in text
    finally:
        stop_process_group(proc, 20)


def test_root_without_uid_is_warned(apus, account):
    srv = serve(apus, account, port=free_port())
    assert srv.log().count(ROOT_WARNING) == 1
    assert get(srv.port).json()["uid"] == 0


def test_gid_alone_changes_only_the_group(apus, account):
    srv = serve(apus, account, "--gid", account.group, "--processes", "1", port=free_port())
    wait_until(lambda: len(srv.workers()) == 1, 30, what="1 worker")
    for pid, c in every_process(srv).items():
        assert (c["uids"], c["gids"], c["groups"]) == ({0}, {account.gid}, [account.gid]), (pid, c)
    assert srv.log().count(ROOT_WARNING) == 1


@pytest.mark.parametrize("how", ["fifo-c", "SIGHUP"])
def test_reloads_under_the_user_keep_serving(apus, account, how):
    fifo = account.own / f"master-{uuid.uuid4().hex[:6]}.fifo"
    srv = serve(apus, account, "--uid", account.user, "--processes", "2", "--master-fifo", fifo,
                "--no-access-log")
    wait_until(lambda: len(srv.workers()) == 2, 30, what="2 workers")
    before = set(srv.workers())
    lg = LoadGen(srv.port, "/", keepalive=2, per_request=1, interval=0.01, timeout=30.0).start()
    try:
        time.sleep(0.5)
        start = len(srv.log())
        if how == "fifo-c":
            fifo_send(fifo, "c")
        else:
            srv.signal(signal.SIGHUP)
        wait_log(srv.log, r"reload done: generation 2 serving", 60, start=start)
        wait_until(lambda: not set(srv.workers()) & before, 30, what="the old workers gone")
        time.sleep(0.3)
    finally:
        lg.stop()
    summary = lg.summary()
    assert summary["failed"] == 0 and summary["total"] > 0, format_summary(summary)
    assert "reload failed" not in srv.log()
    assert_runs_as(srv, account, 4)


def test_a_reload_that_changes_the_user_is_refused(apus, account):
    ini = account.own / f"privileges-{uuid.uuid4().hex[:6]}.ini"
    ini.write_text(f"[uwsgi]\nuid = {account.user}\n")
    srv = serve(apus, account, "--ini", ini, "--processes", "1")
    wait_until(lambda: len(srv.workers()) == 1, 30, what="1 worker")
    workers = set(srv.workers())
    ini.write_text("[uwsgi]\nuid = root\n")
    start = len(srv.log())
    srv.signal(signal.SIGHUP)
    m = wait_log(srv.log, r"reload failed: (.*)$", 30, start=start)
    assert m.group(1) == (f"--uid: cannot become user root (uid 0), group root (gid 0): apus runs as "
                          f"uid {account.uid}, not root; generation 1 keeps serving")
    assert set(srv.workers()) == workers
    assert_runs_as(srv, account, 3)


def test_a_reload_cannot_bind_a_new_low_port_after_the_drop(apus, account):
    first = low_port()
    extra = next(p for p in LOW_PORTS if p != first and _free(p))
    ini = account.own / f"ports-{uuid.uuid4().hex[:6]}.ini"
    # The binds are the ini file's: one on the command line would override them.
    settings = f"[uwsgi]\nuid = {account.user}\nprocesses = 1\nhttp = 127.0.0.1:{first}\n"
    ini.write_text(settings)
    srv = serve(apus, account, "--ini", ini, port=first, bind=False)
    wait_until(lambda: len(srv.workers()) == 1, 30, what="1 worker")
    ini.write_text(settings + f"http = 127.0.0.1:{extra}\n")
    start = len(srv.log())
    srv.signal(signal.SIGHUP)
    m = wait_log(srv.log, r"reload failed: (.*)$", 30, start=start)
    assert m.group(1) == f"cannot bind http://127.0.0.1:{extra}: Permission denied; generation 1 keeps serving"
    assert get(srv.port).json()["uid"] == account.uid

def test_upgrade_in_place_and_log_reopen_after_the_drop(apus, account):
    tag = uuid.uuid4().hex[:6]
    log_file, pidfile = account.own / f"apus-{tag}.log", account.own / f"apus-{tag}.pid"
    srv = serve(apus, account, "--uid", account.user, "--processes", "1", "--log-file", log_file,
                "--pidfile", pidfile)

    def text():
        return log_file.read_text(errors="replace")
    # The log file is the user's, so the dropped master can open it again.
    assert os.stat(log_file).st_uid == account.uid
    old = set(srv.workers())
    srv.signal(signal.SIGUSR2)
    wait_log(text, r"upgrade in place done: generation 2 serving", 60)
    wait_until(lambda: set(srv.workers()) and not set(srv.workers()) & old, 30, what="the old worker gone")
    assert f"running as {account.describe()}" in text()
    assert "ERROR" not in text()
    assert pidfile.read_text() == f"{srv.pid}\n"
    assert_runs_as(srv, account, 3)
    # Rotated by renaming: SIGUSR1 makes a new file, in the directory the user owns.
    log_file.rename(log_file.with_name(log_file.name + ".1"))
    srv.signal(signal.SIGUSR1)
    wait_until(lambda: log_file.exists() and "SIGUSR1: reopened" in text(), 20, what="the reopened log")
    assert os.stat(log_file).st_uid == account.uid
    assert get(srv.port).json()["uid"] == account.uid


def test_a_root_master_does_not_drop_on_a_reload_or_an_upgrade(apus, account):
    ini = account.own / f"later-{uuid.uuid4().hex[:6]}.ini"
    ini.write_text("[uwsgi]\nprocesses = 1\n")
    srv = serve(apus, account, "--ini", ini, port=free_port())
    wait_until(lambda: len(srv.workers()) == 1, 30, what="1 worker")
    ini.write_text(f"[uwsgi]\nprocesses = 1\nuid = {account.user}\n")
    refusal = (f"--uid: privileges change only at start, not on a reload or an upgrade in place: "
               f"restart apus to run as {account.describe()}")
    start = len(srv.log())
    srv.signal(signal.SIGHUP)
    m = wait_log(srv.log, r"reload failed: (.*)$", 30, start=start)
    assert m.group(1) == f"{refusal}; generation 1 keeps serving"
    start = len(srv.log())
    srv.signal(signal.SIGUSR2)
    wait_log(srv.log, r"upgrade in place: the check of the new setup failed .*; generation 1 keeps serving", 60,
             start=start)
    assert f"apus: {refusal}\n" in srv.log()[start:]
    assert get(srv.port).json()["uid"] == 0
    assert all(c["uids"] == {0} for c in every_process(srv).values())
