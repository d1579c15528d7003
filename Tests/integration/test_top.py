"""`apus top ADDR`: the live view of a stats server, run in a real terminal (tmux).

Each test runs `apus top` inside its own tmux server (a socket of its own, 160x40) and reads
the screen with `tmux capture-pane -p`. The stats servers are real: uWSGI's `--stats`
(uWSGI's format, no Apus extras), small fake servers in this file that write documents in
the Apus format (docs/observability.md), and `apus --stats` once the binary has it.
When stdout is not a terminal, `apus top` prints one snapshot and exits: tested too.
"""
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

import helpers
from conftest import APPS, APUS_BIN, clean_env, free_port, run_apus
from helpers import wait_until

TMUX = shutil.which("tmux")
# scripts/test.sh installs tmux and uwsgi: a missing one fails these tests rather than skipping them.
needs_tmux = pytest.mark.usefixtures("tmux_installed")


@pytest.fixture
def tmux_installed():
    assert TMUX is not None, "tmux is not installed (scripts/test.sh installs it)"


UWSGI = helpers.find_uwsgi()
needs_uwsgi = pytest.mark.usefixtures("uwsgi_installed")


@pytest.fixture
def uwsgi_installed():
    assert UWSGI is not None, "uwsgi is not installed (scripts/test.sh pip-installs it)"


# -- a terminal ------------------------------------------------------------------------------

class Terminal:
    """A tmux server of its own with one 160x40 window running `command` under sh; the
    shell traps SIGINT and SIGTERM so that it outlives `apus top` and prints what follows."""

    def __init__(self, command, workdir):
        """`command` None: an interactive shell (prompt "$ ") to type into."""
        self.socket = f"apus-top-{uuid.uuid4().hex[:10]}"
        script = Path(workdir) / f"{self.socket}.sh"
        # After apus top ends: its status, then the terminal's mode as stty sees it.
        script.write_text("trap : INT TERM\necho BEFORE-TOP\n" + (command or "")
                          + "\necho EXIT=$?\nstty -a | tr ' ;' '\\n\\n' | grep -E '^-?(icanon|echo)$' | tr '\\n' ' '\n"
                          + "echo\necho AFTER-TOP\nsleep 600\n")
        env = clean_env({"TERM": "xterm-256color", "PS1": "$ ", "ENV": ""})
        env.pop("TMUX", None)
        shell = ["sh", "-i"] if command is None else ["sh", str(script)]
        subprocess.run([TMUX, "-L", self.socket, "-f", "/dev/null", "new-session", "-d", "-x", "160", "-y", "40",
                        *shell], check=True, env=env, timeout=10)

    def tmux(self, *args):
        return subprocess.run([TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10)

    def screen(self):
        return self.tmux("capture-pane", "-p").stdout

    def flag(self, name):
        """A pane variable: alternate_on (1 on the alternate screen), cursor_flag (1: shown)."""
        return self.tmux("display-message", "-p", "#{" + name + "}").stdout.strip()

    def wait_for(self, text, timeout=15):
        try:
            return wait_until(lambda: text in self.screen(), timeout, what=repr(text))
        except AssertionError:
            raise AssertionError(f"{text!r} did not appear on the screen:\n{self.screen()}")

    def keys(self, *keys):
        self.tmux("send-keys", *keys)

    def top_pid(self):
        """The `apus top` process: the child of the pane's shell."""
        shell = int(self.flag("pane_pid"))
        kids = [p for p in helpers.children_of(shell) if helpers.process_name(p) == "apus"]
        return kids[0] if kids else None

    def close(self):
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path):
    made = []

    def start(address, *args):
        cmd = " ".join(shlex.quote(str(a)) for a in [APUS_BIN, "top", address, *args])
        t = Terminal(cmd, tmp_path)
        made.append(t)
        return t

    yield start
    for t in made:
        t.close()


def assert_restored(t):
    """After `apus top` ended: the main screen is back as it was, the cursor shown, the
    terminal in its usual mode, and the exit status 0."""
    t.wait_for("AFTER-TOP")
    screen = t.screen()
    assert "BEFORE-TOP" in screen, screen
    assert "EXIT=0" in screen, screen
    assert "icanon" in screen.split() and "echo" in screen.split(), screen
    assert t.flag("alternate_on") == "0"
    assert t.flag("cursor_flag") == "1"


# -- fake stats servers ----------------------------------------------------------------------

def apus_document(generation=3, incoming=4, reload="graceful", requests=(100, 7), pids=(4101, 4102)):
    """A stats document in the Apus format: uWSGI's fields plus the extras."""
    workers = []
    for i, (pid, count) in enumerate(zip(pids, requests)):
        busy = i == 0
        workers.append({
            "id": i + 1, "pid": pid, "accepting": 1, "requests": count, "delta_requests": 0, "exceptions": 0,
            "harakiri_count": 0, "signals": 0, "signal_queue": 0, "status": "busy" if busy else "idle",
            "rss": (30 + i) << 20, "vsz": 0, "running_time": 1000, "last_spawn": int(time.time()) - 60,
            "respawn_count": 0, "tx": 0, "avg_rt": 1500, "apps": [],
            "cores": [{"id": 0, "requests": count, "static_requests": 0, "routed_requests": 0,
                       "offloaded_requests": 0, "write_errors": 0, "read_errors": 0,
                       "in_request": 1 if busy else 0, "vars": [],
                       "req_info": {"request_start": time.time() - 2} if busy else {}}],
            "generation": generation if busy else generation + 1, "state": "retiring" if busy else "ready",
            "last_rt": 2250, "connections": 1 if busy else 0,
            "in_progress": [{"core": 0, "request": "GET /report?id=9", "seconds": 2.0}] if busy else [],
        })
    return {
        "version": "apus 0.1.0", "listen_queue": 0, "listen_queue_errors": 0, "signal_queue": 0, "load": 0,
        "pid": 4100, "uid": 0, "gid": 0, "cwd": "/srv", "locks": [],
        "sockets": [{"name": "127.0.0.1:8000", "proto": "http", "queue": 0, "max_queue": 128,
                     "shared": 0, "can_offload": 0}],
        "workers": workers,
        "apus": {"generation": generation, "incoming": incoming, "reload": reload, "reloads": 2, "ready": True,
                 "stopping": False, "workers_wanted": len(workers), "requests": sum(requests),
                 "started_on": int(time.time()) - 3600},
    }


class FakeStats:
    """A stats server in uWSGI's plain mode on 127.0.0.1:port (or a unix socket): each
    connection gets `answer()` and is closed. With `http`, reads a request and answers it."""

    def __init__(self, answer, port=None, path=None, http=False):
        self.answer = answer
        self.http = http
        self.connections = 0
        if path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(path)
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", port or free_port()))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(16)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(c,), daemon=True).start()

    def _one(self, c):
        with c:
            try:
                if self.http:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    self.request = data
                body = self.answer()
                if body is None:
                    time.sleep(30)  # a server that never answers
                    return
                if self.http:
                    body = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                            + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
                c.sendall(body)
            except OSError:
                pass

    def close(self):
        self.stopped = True
        self.sock.close()


@pytest.fixture
def fakes():
    made = []

    def start(answer, **kw):
        f = FakeStats(answer, **kw)
        made.append(f)
        return f

    yield start
    for f in made:
        f.close()


# -- a real uWSGI ----------------------------------------------------------------------------

@pytest.fixture
def uwsgi(tmp_path):
    started = []

    def start(*extra):
        http_port, stats_port = free_port(), free_port()
        log = open(tmp_path / "uwsgi.log", "wb")
        proc = subprocess.Popen([UWSGI, "--master", "--processes", "2", "--http-socket", f"127.0.0.1:{http_port}",
                                 "--chdir", str(APPS), "--module", "pidapp:application",
                                 "--stats", f"127.0.0.1:{stats_port}", "--die-on-term", *extra],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                env=clean_env())
        started.append((proc, log))
        wait_until(lambda: _answers(http_port), 30, what="uWSGI to answer")
        return proc, http_port, stats_port

    yield start
    for proc, log in started:
        helpers.stop_process_group(proc, 10)
        log.close()


def _answers(port):
    try:
        return helpers.get(port, "/", timeout=2).status == 200
    except (OSError, helpers.IncompleteResponse, ValueError):
        return False


def stats_document(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data)


# -- the tests -------------------------------------------------------------------------------

@needs_tmux
@needs_uwsgi
def test_uwsgi_workers_appear_with_their_pids(terminal, uwsgi):
    proc, http_port, stats_port = uwsgi()
    workers = wait_until(lambda: len(helpers.children_of(proc.pid)) == 2 and helpers.children_of(proc.pid), 20,
                         what="two uWSGI workers")
    # One request in progress, for the REQUEST column (uWSGI names it in the core's vars).
    def slow():
        try:
            helpers.get(http_port, "/sleep?s=4", timeout=10)
        except (OSError, helpers.IncompleteResponse):
            pass  # uWSGI is stopped at the end of the test, maybe before the answer
    threading.Thread(target=slow, daemon=True).start()
    t = terminal(f"127.0.0.1:{stats_port}", "--interval", "0.3")
    t.wait_for(f"master {proc.pid}")
    t.wait_for("GET /sleep?s=4")
    screen = t.screen()
    rows = {int(line.split()[1]): line for line in screen.splitlines() if line[:3].strip().isdigit()}
    assert sorted(rows) == sorted(workers), screen
    assert "version 2." in screen and "workers 2/2 ready" in screen, screen
    assert t.flag("alternate_on") == "1"
    t.keys("q")
    assert_restored(t)


@needs_tmux
def test_apus_format_shows_generation_and_reload(terminal, fakes):
    count = [0]

    def answer():
        count[0] += 50
        return json.dumps(apus_document(requests=(100 + count[0], 7))).encode()

    fake = fakes(answer)
    t = terminal(f":{fake.port}", "--interval", "0.3")
    t.wait_for("RELOAD graceful in progress -> generation 4")
    screen = t.screen()
    assert "apus 0.1.0  master 4100  generation 3" in screen, screen
    assert "reloads 2" in screen and "workers 1/2 ready" in screen, screen
    row1 = next(line for line in screen.splitlines() if line.split()[:2] == ["1", "4101"])
    assert row1.split()[2:5] == ["3", "busy", "retiring"], row1
    assert row1.endswith("GET /report?id=9 2.0s"), row1
    row2 = next(line for line in screen.splitlines() if line.split()[:2] == ["2", "4102"])
    assert row2.split()[2:5] == ["4", "idle", "ready"], row2
    # Requests per second from the deltas between polls: worker 1 gains 50 per poll.
    wait_until(lambda: any(line.startswith("req/s ") and not line.startswith("req/s -")
                           and float(line.split()[1]) > 10 for line in t.screen().splitlines()), 10,
               what="a request rate")
    t.keys("q")
    assert_restored(t)


@needs_tmux
def test_down_server_is_a_line_then_rows_when_it_comes_up(terminal, fakes):
    port = free_port()
    t = terminal(f"127.0.0.1:{port}", "--interval", "0.3")
    t.wait_for(f"cannot reach 127.0.0.1:{port}: Connection refused")
    time.sleep(1)
    assert t.top_pid() is not None, "apus top exited while the server was down"
    fake = fakes(lambda: json.dumps(apus_document(reload=None, incoming=None)).encode(), port=port)
    t.wait_for("4101")
    assert "cannot reach" not in t.screen()
    assert "RELOAD" not in t.screen()
    # And down again: the line comes back.
    fake.close()
    t.wait_for("cannot reach")
    t.keys("q")
    assert_restored(t)


@needs_tmux
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "Q"])
def test_ctrl_c_and_sigterm_restore_the_terminal(terminal, fakes, how):
    fake = fakes(lambda: json.dumps(apus_document()).encode())
    t = terminal(f"127.0.0.1:{fake.port}")
    t.wait_for("4101")
    assert t.flag("alternate_on") == "1" and t.flag("cursor_flag") == "0"
    if how == "ctrl-c":
        t.keys("C-c")
    elif how == "sigterm":
        os.kill(t.top_pid(), signal.SIGTERM)
    else:
        t.keys("Q")
    assert_restored(t)


@needs_tmux
def test_q_is_heard_while_a_server_does_not_answer(terminal, fakes):
    answers = [json.dumps(apus_document()).encode()]
    fake = fakes(lambda: answers[0])
    t = terminal(f"127.0.0.1:{fake.port}", "--interval", "0.2")
    t.wait_for("4101")
    answers[0] = None  # from now on, connections are accepted and never answered
    # Right after a poll began: without a keyboard during the poll, q would wait for its
    # 2 s deadline.
    seen = fake.connections
    wait_until(lambda: fake.connections > seen, 10, interval=0.01, what="a poll of the silent server")
    pressed = time.monotonic()
    t.keys("q")
    t.wait_for("AFTER-TOP")
    assert time.monotonic() - pressed < 1.6, "q waited for the poll's deadline"
    assert_restored(t)


@needs_tmux
def test_ctrl_z_gives_the_terminal_back_until_fg(fakes, tmp_path):
    """In an interactive shell with job control, as people use it: Ctrl-Z stops apus top
    with the terminal as it was (the kernel discards SIGTSTP in the orphaned process group
    of the other tests' non-interactive shell), `fg` brings the view back."""
    fake = fakes(lambda: json.dumps(apus_document()).encode())
    t = Terminal(None, tmp_path)
    try:
        t.wait_for("$")
        t.keys(f"{APUS_BIN} top 127.0.0.1:{fake.port} --interval 0.3", "Enter")
        t.wait_for("4101")
        assert t.flag("alternate_on") == "1"
        pid = t.top_pid()
        t.keys("C-z")
        wait_until(lambda: helpers.proc_stat(pid)[0] == "T", 5, what="apus top stopped")
        wait_until(lambda: t.flag("alternate_on") == "0", 5, what="the main screen back")
        assert t.flag("cursor_flag") == "1"
        t.keys("stty -a | tr ' ;' '\\n\\n' | grep -cxE 'icanon|echo'", "Enter")
        t.wait_for("\n2\n")
        t.keys("fg", "Enter")
        wait_until(lambda: t.flag("alternate_on") == "1", 5, what="the view back")
        t.wait_for("4101")
        assert t.flag("cursor_flag") == "0"
        t.keys("q")
        wait_until(lambda: helpers.proc_stat(pid) is None, 5, what="apus top gone")
        assert t.flag("alternate_on") == "0" and t.flag("cursor_flag") == "1"
    finally:
        t.close()


@needs_tmux
def test_a_resized_terminal_is_redrawn_at_its_width(terminal, fakes):
    fake = fakes(lambda: json.dumps(apus_document()).encode())
    t = terminal(f"127.0.0.1:{fake.port}", "--interval", "30")
    t.wait_for("GET /report?id=9")
    t.tmux("resize-window", "-x", "60", "-y", "20")
    wait_until(lambda: "GET /report" not in t.screen(), 5, what="a redraw at 60 columns")
    lines = t.screen().splitlines()
    assert any(line.startswith(" ID      PID") for line in lines), lines
    assert max(len(line) for line in lines) <= 60
    t.tmux("resize-window", "-x", "160", "-y", "40")
    t.wait_for("GET /report?id=9")
    t.keys("q")
    assert_restored(t)


@needs_tmux
def test_http_and_unix_stats_servers(terminal, fakes, tmp_path):
    http = fakes(lambda: json.dumps(apus_document()).encode(), http=True)
    t = terminal(f"http://127.0.0.1:{http.port}/stats")
    t.wait_for("4101")
    assert http.request.startswith(b"GET /stats HTTP/1."), http.request
    t.keys("q")
    assert_restored(t)
    path = str(tmp_path / "stats.sock")
    fakes(lambda: json.dumps(apus_document(generation=8, reload=None, incoming=None)).encode(), path=path)
    out = subprocess.run([APUS_BIN, "top", f"unix:{path}"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0 and "generation 8" in out.stdout, out


def test_not_a_terminal_prints_one_plain_snapshot(fakes):
    fake = fakes(lambda: json.dumps(apus_document()).encode())
    out = run_apus(["top", f"127.0.0.1:{fake.port}"])
    assert out.returncode == 0, out
    assert "\x1b" not in out.stdout
    lines = out.stdout.splitlines()
    assert lines[0] == f"apus top 127.0.0.1:{fake.port}"
    assert lines[1] == "apus 0.1.0  master 4100  generation 3  RELOAD graceful in progress -> generation 4"
    assert lines[4].split()[:3] == ["ID", "PID", "GEN"]
    assert [line.split()[1] for line in lines[5:]] == ["4101", "4102"]
    assert fake.connections == 1


@pytest.mark.parametrize("answer, reason", [
    (b"", "not JSON"),
    (b"\xff\x00garbage{{{", "not JSON"),
    (b"[" * 100000, "nested deeper"),
    (b'{"version": "x"}', "no \"workers\" array"),
    (b'{"workers": [1, "x", {"pid": "no"}]', "not JSON"),
    (None, "no answer within the timeout (a --stats-http server? give http://HOST:PORT/)"),
])
def test_hostile_servers_are_a_message_not_a_crash(fakes, answer, reason):
    fake = fakes(lambda: answer)
    started = time.monotonic()
    out = run_apus(["top", f"127.0.0.1:{fake.port}"])
    assert out.returncode == 1, out
    assert reason in out.stderr, out.stderr
    assert time.monotonic() - started < 8


def test_an_answer_over_16_mib_is_refused(fakes):
    big = b'{"workers": [], "pad": "' + b"x" * (17 << 20) + b'"}'
    fake = fakes(lambda: big)
    out = run_apus(["top", f"127.0.0.1:{fake.port}"])
    assert out.returncode == 1 and "larger than" in out.stderr, out


def test_bad_command_lines():
    for args, text in [(["top"], "which stats server?"), (["top", "nowhere"], "is not an address"),
                       (["top", ":1", "--interval", "0"], "--interval"), (["top", ":1", "-x"], "unknown option")]:
        out = run_apus(args)
        assert out.returncode == 2 and text in out.stderr, (args, out)
    out = run_apus(["top", "--help"])
    assert out.returncode == 0 and "apus top ADDR [--interval S]" in out.stdout


@needs_tmux
def test_against_apus_stats(terminal, apus, tmp_path):
    # An app whose import takes SLOW_IMPORT seconds when that file exists: a reload's new
    # workers then take that long to start, and the reload stays in progress meanwhile.
    (tmp_path / "slowstart.py").write_text(
        "import os, time\n"
        "flag = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'SLOW_IMPORT')\n"
        "if os.path.exists(flag):\n"
        "    time.sleep(float(open(flag).read()))\n"
        "def application(environ, start_response):\n"
        "    if environ['PATH_INFO'] == '/sleep':\n"
        "        time.sleep(float(environ['QUERY_STRING'].partition('=')[2] or 1))\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [str(os.getpid()).encode()]\n")
    stats_port = free_port()
    srv = apus("slowstart", "--processes", "2", "--stats", f"127.0.0.1:{stats_port}", chdir=tmp_path)
    wait_until(lambda: len(srv.workers()) == 2, 20, what="two workers")
    t = terminal(f"127.0.0.1:{stats_port}", "--interval", "0.2")
    t.wait_for(f"master {srv.pid}")
    wait_until(lambda: "workers 2/2 ready" in t.screen(), 20, what="both workers ready")
    screen = t.screen()
    rows = [line for line in screen.splitlines() if line[:3].strip().isdigit()]
    assert sorted(int(r.split()[1]) for r in rows) == sorted(srv.workers()), screen
    # Every worker of the first generation, in the GEN column.
    assert [r.split()[2] for r in rows] == ["1", "1"], screen
    # The serving generation in the header comes from the document's "apus" object (the
    # Apus extras of the stats format), when the server writes it.
    doc = stats_document(stats_port)
    assert doc["version"].startswith("apus ")
    if "apus" in doc:
        assert f"generation {doc['apus']['generation']}" in screen.splitlines()[1], screen
    # A graceful reload while a request holds an old worker: shown in progress, with the
    # request, then the new generation's rows.
    def slow():
        try:
            helpers.get(srv.port, "/sleep?s=3", timeout=15)
        except (OSError, helpers.IncompleteResponse):
            pass
    threading.Thread(target=slow, daemon=True).start()
    t.wait_for("GET /sleep?s=3")
    (tmp_path / "SLOW_IMPORT").write_text("1.5")
    srv.signal(signal.SIGHUP)
    screens = []

    def settled():
        screens.append(t.screen())
        lines = screens[-1].splitlines()
        return "generation 2" in lines[1] and "RELOAD" not in lines[1] and "retiring" not in screens[-1]
    wait_until(settled, 30, interval=0.02, what="generation 2 serving alone")
    assert any("RELOAD graceful in progress -> generation 2" in x for x in screens), screens
    assert any("retiring" in line and "GET /sleep?s=3" in line for x in screens for line in x.splitlines()), screens
    wait_until(lambda: sorted(int(r.split()[1]) for r in t.screen().splitlines() if r[:3].strip().isdigit())
               == sorted(srv.workers()), 20, what="the new workers' rows")
    assert all(r.split()[2] == "2" for r in t.screen().splitlines() if r[:3].strip().isdigit()), t.screen()
    t.keys("q")
    assert_restored(t)
