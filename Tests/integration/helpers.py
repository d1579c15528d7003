"""Client-side helpers for the integration suite: raw sockets and a strict HTTP/1.1 response parser.

Nothing here knows about Apus; these helpers only speak HTTP over real sockets so the
tests can send byte-exact requests and see byte-exact framing.
"""
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
APPS = HERE / "apps"
EXAMPLES = REPO / "examples"


class Response:
    """One parsed response. `framing` says how its end was found:
    "length" (Content-Length), "chunked", "close" (read until EOF) or "none" (no body allowed)."""

    def __init__(self, version, status, reason, headers, body=b"", framing="none",
                 complete=True, raw_head=b"", chunk_sizes=None, trailers=None):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value) as str, names as sent
        self.body = body
        self.framing = framing
        self.complete = complete
        self.raw_head = raw_head
        self.chunk_sizes = chunk_sizes or []
        self.trailers = trailers or []

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    @property
    def keep_alive_hint(self):
        """What the header says; the tests check the socket itself for the truth."""
        tokens = [t.strip().lower() for v in self.header_all("connection") for t in v.split(",")]
        if "close" in tokens:
            return False
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return True

    def __repr__(self):
        return (f"<Response {self.status} {self.reason!r} framing={self.framing} "
                f"complete={self.complete} body={self.body[:80]!r}>")


class IncompleteResponse(Exception):
    """The connection ended (or timed out) before a response head was complete."""

    def __init__(self, msg, data=b""):
        super().__init__(f"{msg}; received {len(data)} bytes: {data[:300]!r}")
        self.data = data


class _Source:
    """A growing buffer fed either by a socket or by fixed bytes."""

    def __init__(self, data=b"", sock=None, deadline=None):
        self.buf = bytearray(data)
        self.sock = sock
        self.deadline = deadline
        self.eof = sock is None
        self.timed_out = False
        self.reset = False

    def fill(self):
        """Read more bytes; False at EOF or timeout (then self.eof is True)."""
        if self.eof:
            return False
        remaining = None if self.deadline is None else self.deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            self.eof = True
            self.timed_out = True
            return False
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            self.eof = True
            self.timed_out = True
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            self.reset = True
            return False
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_line(self):
        """A line ending in CRLF (or LF), without it; None if the data ends first."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if not self.fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                data = bytes(self.buf)
                self.buf.clear()
                return data
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_all(self):
        while self.fill():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _read_head(src):
    start = bytes(src.buf)
    status_line = src.read_line()
    if status_line is None:
        raise IncompleteResponse("no status line", start + bytes(src.buf))
    parts = status_line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ValueError(f"bad status line {status_line!r}")
    version, status = parts[0], int(parts[1])
    reason = parts[2] if len(parts) > 2 else ""
    headers = []
    raw = [status_line]
    while True:
        line = src.read_line()
        if line is None:
            raise IncompleteResponse("head cut short", b"\r\n".join(raw))
        raw.append(line)
        if line == b"":
            break
        if line[:1] in (b" ", b"\t"):
            raise ValueError(f"obsolete line folding in response: {line!r}")
        name, sep, value = line.partition(b":")
        if not sep or name != name.strip() or not name:
            raise ValueError(f"malformed header line {line!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return version, status, reason, headers, b"\r\n".join(raw) + b"\r\n"


def _read_response(src, method="GET", skip_interim=True):
    while True:
        version, status, reason, headers, raw_head = _read_head(src)
        if 100 <= status < 200 and skip_interim and status != 101:
            continue
        break
    resp = Response(version, status, reason, headers, raw_head=raw_head)
    te = ",".join(resp.header_all("transfer-encoding")).lower()
    cls = resp.header_all("content-length")
    if method == "HEAD" or 100 <= status < 200 or status in (204, 304):
        resp.framing = "none"
        return resp
    if te:
        codings = [c.strip() for c in te.split(",") if c.strip()]
        if codings[-1:] != ["chunked"]:
            raise ValueError(f"response transfer-encoding not ending in chunked: {te!r}")
        resp.framing = "chunked"
        body = bytearray()
        while True:
            line = src.read_line()
            if line is None:
                resp.complete = False
                break
            size_txt = line.split(b";", 1)[0].strip()
            size = int(size_txt, 16)
            if size == 0:
                trailers = []
                while True:
                    t = src.read_line()
                    if t is None:
                        resp.complete = False
                        break
                    if t == b"":
                        break
                    trailers.append(t)
                resp.trailers = trailers
                break
            data = src.read_exact(size)
            body += data
            if len(data) < size:
                resp.complete = False
                break
            resp.chunk_sizes.append(size)
            crlf = src.read_exact(2)
            if crlf != b"\r\n":
                if len(crlf) < 2:
                    resp.complete = False
                    break
                raise ValueError(f"chunk not followed by CRLF: {crlf!r}")
        resp.body = bytes(body)
        return resp
    if cls:
        if len(set(v.strip() for v in cls)) != 1:
            raise ValueError(f"conflicting Content-Length in response: {cls}")
        n = int(cls[0])
        resp.framing = "length"
        resp.body = src.read_exact(n)
        resp.complete = len(resp.body) == n
        return resp
    resp.framing = "close"
    resp.body = src.read_all()
    resp.complete = not getattr(src, "timed_out", False)
    return resp


def parse_response(data, method="GET"):
    """Parse the first response in `data` (bytes received until the connection closed)."""
    return _read_response(_Source(data), method)


def parse_responses(data, methods):
    """Parse one response per entry of `methods` from `data`; returns (responses, leftover bytes)."""
    src = _Source(data)
    out = []
    for m in methods:
        out.append(_read_response(src, m))
    return out, bytes(src.buf)


def connect(port, host="127.0.0.1", timeout=10.0):
    if isinstance(port, str) and port.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(port[5:])
        return s
    return socket.create_connection((host, port), timeout=timeout)


def raw_request(port, data, timeout=10.0, host="127.0.0.1", shutdown_write=False):
    """Send `data` on a fresh connection and return every byte read until the server
    closes the connection or `timeout` seconds pass. Returns (bytes, closed_by_server)."""
    s = connect(port, host, timeout)
    try:
        if data:
            s.sendall(data)
        if shutdown_write:
            s.shutdown(socket.SHUT_WR)
        src = _Source(sock=s, deadline=time.monotonic() + timeout)
        body = src.read_all()
        return body, not getattr(src, "timed_out", False)
    finally:
        s.close()


class Conn:
    """A raw keep-alive connection: send bytes, read responses one at a time."""

    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = connect(port, host, timeout)
        self.timeout = timeout
        self.src = _Source(sock=self.sock)
        self.src.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def request(self, method="GET", path="/", headers=None, body=b"", version="HTTP/1.1"):
        self.send(build_request(method, path, headers, body, version))
        return self.response(method)

    def response(self, method="GET", timeout=None, skip_interim=True):
        self.src.deadline = time.monotonic() + (timeout or self.timeout)
        self.src.eof = False
        self.src.timed_out = False
        return _read_response(self.src, method, skip_interim)

    def read_some(self, timeout):
        """Bytes that arrive within `timeout` seconds (b"" if none, also at EOF)."""
        self.src.deadline = time.monotonic() + timeout
        self.src.eof = False
        self.src.timed_out = False
        if not self.src.buf:
            self.src.fill()
        data = bytes(self.src.buf)
        self.src.buf.clear()
        return data

    def wait_closed(self, timeout):
        """True when the server closes the connection (EOF or reset) within `timeout` seconds.
        Any bytes received meanwhile are kept in self.extra."""
        self.src.deadline = time.monotonic() + timeout
        self.src.eof = False
        self.src.timed_out = False
        self.src.reset = False
        while self.src.fill():
            pass
        self.extra = bytes(self.src.buf)
        return not self.src.timed_out

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_until_close(s):
    """Everything a socket yields until the peer closes it (or resets it)."""
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def stop_process_group(proc, timeout):
    """SIGTERM to a server started with start_new_session=True, then SIGKILL to whatever is
    left of its process group (workers included). Returns the exit status."""
    import signal
    import subprocess
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    return proc.returncode


def build_request(method="GET", path="/", headers=None, body=b"", version="HTTP/1.1",
                  host="localhost"):
    """Bytes of a request; adds Host (1.1) and Content-Length (when a body is given and no
    Content-Length/Transfer-Encoding header is)."""
    headers = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names and version == "HTTP/1.1":
        headers.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        headers.append(("Content-Length", str(len(body))))
    if isinstance(body, str):
        body = body.encode("latin-1")
    head = f"{method} {path} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + body


def chunked(pieces, trailers=b""):
    out = b""
    for p in pieces:
        if p:
            out += b"%x\r\n" % len(p) + p + b"\r\n"
    return out + b"0\r\n" + trailers + b"\r\n"


def get(port, path="/", timeout=10.0, headers=None):
    """One GET on a fresh connection with Connection: close; returns a Response."""
    h = {"Host": f"127.0.0.1:{port}"} if isinstance(port, int) else {}
    h["Connection"] = "close"
    h.update(headers or {})
    data, _ = raw_request(port, build_request("GET", path, h), timeout=timeout)
    return parse_response(data)


def wait_until(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def children_of(pid):
    """Live (non-zombie) processes whose parent is `pid`, read from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = proc_stat(int(entry))
        if st and st[1] == pid and st[0] != "Z":
            out.append(int(entry))
    return sorted(out)


def process_name(pid):
    """The process's name (what apus sets: "worker 3", "zygote", "preloader"), or None."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None


ZYGOTE_NAMES = ("zygote", "preloader")


def workers_of(pid):
    """The master's children that serve requests: all but its zygotes (a worker the zygote
    just forked carries the zygote's name until it has named itself)."""
    return [c for c in children_of(pid) if process_name(c) not in ZYGOTE_NAMES]


def session_members(sid):
    """Live (non-zombie) processes of session `sid` (apus is started with setsid, so this is
    the master and everything it forked, even processes re-parented away from it)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                data = f.read()
        except OSError:
            continue
        rest = data[data.rindex(")") + 2:].split()
        if int(rest[3]) == sid and rest[0] not in ("Z", "X"):
            out.append(int(entry))
    return sorted(out)


def proc_stat(pid):
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1])


def alive(pid):
    st = proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


# -- reloads and the master's controls (added for test_reload.py / test_controls.py) ----------

def fifo_send(path, data, timeout=10.0):
    """Write `data` (str or bytes) to the master FIFO at `path`, waiting until the FIFO exists
    and has a reader (the master opens it at startup)."""
    if isinstance(data, str):
        data = data.encode()
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except (FileNotFoundError, OSError) as e:
            if time.monotonic() > deadline:
                raise AssertionError(f"cannot open the master FIFO {path}: {e!r}")
            time.sleep(0.05)
            continue
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return


def wait_log(read_log, pattern, timeout, start=0, interval=0.05, what=None):
    """Wait until the regex `pattern` (compiled, or a string) matches the log text from
    offset `start`; `read_log` returns the whole log. Returns the match (offsets are relative
    to `start`)."""
    import re
    rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + timeout
    while True:
        m = rx.search(read_log()[start:])
        if m:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or rx.pattern!r} "
                                 f"in the log")
        time.sleep(interval)


def touch(path):
    """Change a file's modification time to now (creating the file if needed)."""
    with open(path, "a"):
        pass
    now = time.time_ns()
    os.utime(path, ns=(now, now))


def find_uwsgi():
    """A uWSGI binary: $APUS_UWSGI, else next to the running Python (the suite's venv, where
    scripts/test.sh installs it), else on PATH; None if there is none."""
    given = os.environ.get("APUS_UWSGI")
    if given:
        return given
    beside = Path(sys.prefix) / "bin" / "uwsgi"
    if beside.exists():
        return str(beside)
    return shutil.which("uwsgi")
