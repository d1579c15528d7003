"""A small closed-loop HTTP/1.1 load generator for reload tests and the reload benchmark.

Stdlib only (threads and raw sockets), so it runs under any Python 3.8+ without a venv.

    lg = LoadGen(port, path="/", keepalive=2, per_request=2, max_duration=60)
    lg.start()
    ...                      # fire a reload; lg.now() is the load clock (seconds since start)
    lg.stop()
    s = lg.summary()         # s["failed"] == 0, s["longest_gap"], s["buckets"], ...
    lg.records               # one Record per request

Two kinds of clients loop GET `path` as fast as the server answers (closed loop):

* keep-alive clients reuse one connection. A connection the server closed *between* requests
  is normal HTTP behaviour, handled the way browsers and HTTP client libraries do:
  - after a response carrying `Connection: close` (or an HTTP/1.0 response without
    keep-alive) the client opens a new connection for the next request;
  - before reusing an idle connection it peeks at it; EOF there means the server closed it
    while idle, so it reconnects;
  - if a request sent on a *reused* connection gets EOF or a reset before any byte of its
    response, the server closed the idle connection while the request was on its way: the
    client reconnects and sends that request again, once (counted in `stale_retries`, not
    as a failure). If that retry fails too, the request failed.
* per-request clients open a new connection for every request (`Connection: close`).

Everything else counts as a failed request, by kind: `refused` (connection refused),
`reset` (reset during a request), `timeout` (no complete response within `timeout`),
`truncated` (the connection ended part-way through a response), `closed` (it ended before
any byte of the response, on a fresh connection or on the retry), `status_NNN` (a non-2xx answer), `bad_response` (unparsable).

The response body, when it is a JSON object, contributes its `code`, `pid`, `env` and
`import_pid` fields to the record (what the reload test app returns).
"""
import errno
import json
import select
import socket
import statistics
import threading
import time

__all__ = ["LoadGen", "Record", "summarize", "format_summary"]


class Record:
    __slots__ = ("client", "kind", "start", "end", "status", "error", "code", "pid", "env",
                 "import_pid", "retried", "body", "data")

    def __init__(self, client, kind, start):
        self.client = client      # client index
        self.kind = kind          # "keepalive" or "close"
        self.start = start        # load-clock seconds when the request was started
        self.end = None           # when it completed or failed
        self.status = None        # HTTP status, None if no response
        self.error = None         # None for a success, else the failure kind
        self.code = None
        self.pid = None
        self.env = None
        self.import_pid = None
        self.retried = False      # sent again on a fresh connection after a stale keep-alive
        self.body = None          # the first bytes of a body that was not JSON
        self.data = None          # the body, when it was a JSON object

    @property
    def ok(self):
        return self.error is None

    def as_dict(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __repr__(self):
        return (f"<Record {self.kind}#{self.client} {self.start:.3f}-{self.end} status={self.status} "
                f"error={self.error} code={self.code} pid={self.pid}>")


class _Failure(Exception):
    def __init__(self, kind, got_bytes=False):
        super().__init__(kind)
        self.kind = kind
        self.got_bytes = got_bytes   # any byte of the response had arrived


def _classify(exc):
    if isinstance(exc, socket.timeout):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,):
        return "refused"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    return "oserror"


class _Reader:
    """Reads one HTTP/1.x response from a socket (Content-Length, chunked or until EOF)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.got = 0  # bytes received for the current response

    def _fill(self):
        try:
            chunk = self.sock.recv(65536)
        except OSError as e:
            raise _Failure(_classify(e), self.got > 0)
        if not chunk:
            return False
        self.buf += chunk
        self.got += len(chunk)
        return True

    def _line(self):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line.rstrip(b"\r")
            if not self._fill():
                raise _Failure("truncated" if self.got else "eof", self.got > 0)

    def _exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise _Failure("truncated", True)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def response(self):
        """(status, keep_alive, body)."""
        self.got = len(self.buf)
        while True:
            line = self._line()
            parts = line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/"):
                raise _Failure("bad_response", True)
            try:
                status = int(parts[1])
            except ValueError:
                raise _Failure("bad_response", True)
            headers = {}
            while True:
                h = self._line()
                if not h:
                    break
                k, _, v = h.partition(b":")
                k = k.strip().lower()
                v = v.strip()
                headers[k] = headers[k] + b"," + v if k in headers else v
            if 100 <= status < 200:
                continue
            break
        version = parts[0]
        conn = headers.get(b"connection", b"").lower()
        keep = b"close" not in conn and (version == b"HTTP/1.1" or b"keep-alive" in conn)
        te = headers.get(b"transfer-encoding", b"").lower()
        if status in (204, 304):
            body = b""
        elif te.endswith(b"chunked"):
            body = bytearray()
            while True:
                size = int(self._line().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._exact(size)
                self._exact(2)
            body = bytes(body)
        elif b"content-length" in headers:
            body = self._exact(int(headers[b"content-length"].split(b",")[0]))
        else:
            while self._fill():
                pass
            body = bytes(self.buf)
            self.buf.clear()
            keep = False
        return status, keep, body


class LoadGen:
    def __init__(self, port, path="/", *, keepalive=2, per_request=2, host="127.0.0.1",
                 timeout=10.0, max_duration=120.0, interval=0.0, connect_timeout=None):
        self.port = port
        self.host = host
        self.path = path
        self.keepalive = keepalive
        self.per_request = per_request
        self.timeout = timeout
        self.connect_timeout = connect_timeout or timeout
        self.max_duration = max_duration   # clients stop by themselves after this
        # each client starts a request at most every `interval` seconds (0: back to back);
        # slots missed while a request took longer are not made up
        self.interval = interval
        self.records = []
        self.stale_retries = 0
        self.idle_reconnects = 0
        self.marks = {}                    # name -> load-clock seconds
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self.t0 = None
        self.t_end = None
        host_hdr = host if port == 80 else f"{host}:{port}"
        self._req_ka = (f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\n"
                        f"User-Agent: apus-loadgen\r\n\r\n").encode("latin-1")
        self._req_close = (f"GET {path} HTTP/1.1\r\nHost: {host_hdr}\r\n"
                           f"User-Agent: apus-loadgen\r\nConnection: close\r\n\r\n").encode("latin-1")

    # -- clock and control ---------------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def mark(self, name):
        """Remember the load-clock time of an event (e.g. "reload"); returns it."""
        t = self.now()
        self.marks[name] = t
        return t

    def start(self):
        self.t0 = time.monotonic()
        n = 0
        for _ in range(self.keepalive):
            self._threads.append(threading.Thread(target=self._run_keepalive, args=(n,), daemon=True))
            n += 1
        for _ in range(self.per_request):
            self._threads.append(threading.Thread(target=self._run_close, args=(n,), daemon=True))
            n += 1
        for t in self._threads:
            t.start()
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + self.connect_timeout + 5)
        self.t_end = self.now()
        with self._lock:
            self.records.sort(key=lambda r: r.start)
        return self

    def run(self, duration):
        """Start, load for `duration` seconds, stop; returns the summary."""
        self.start()
        time.sleep(duration)
        self.stop()
        return self.summary()

    def _running(self):
        return not self._stop.is_set() and self.now() < self.max_duration

    def _add(self, rec):
        with self._lock:
            self.records.append(rec)

    def _pace(self, rec):
        if self.interval > 0:
            delay = rec.start + self.interval - self.now()
            if delay > 0:
                self._stop.wait(delay)

    # -- one exchange --------------------------------------------------------------------------
    def _connect(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(self.connect_timeout)
        try:
            s.connect((self.host, self.port))
        except OSError as e:
            s.close()
            raise _Failure(_classify(e))
        s.settimeout(self.timeout)
        return s

    def _exchange(self, sock, reader, data):
        try:
            sock.sendall(data)
        except OSError as e:
            raise _Failure(_classify(e))
        return reader.response()

    @staticmethod
    def _closed_while_idle(sock):
        """True if the peer closed (or reset) this idle connection."""
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return False
            data = sock.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError, socket.timeout):
            return False
        except OSError:
            return True
        return data == b""

    def _finish(self, rec, status, body):
        rec.end = self.now()
        rec.status = status
        if not 200 <= status < 300:
            rec.error = f"status_{status}"
        try:
            obj = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            obj = None
        if isinstance(obj, dict):
            rec.data = obj
            rec.code = obj.get("code")
            rec.pid = obj.get("pid")
            rec.env = obj.get("env")
            rec.import_pid = obj.get("import_pid")
        else:
            rec.body = body[:200]

    def _run_keepalive(self, idx):
        sock = reader = None
        while self._running():
            if sock is not None and self._closed_while_idle(sock):
                sock.close()
                sock = None
                with self._lock:
                    self.idle_reconnects += 1
            rec = Record(idx, "keepalive", self.now())
            attempt = 0
            while True:
                fresh = sock is None
                try:
                    if fresh:
                        sock = self._connect()
                        reader = _Reader(sock)
                    status, keep, body = self._exchange(sock, reader, self._req_ka)
                except _Failure as f:
                    if sock is not None:
                        sock.close()
                        sock = None
                    if (not fresh and not f.got_bytes and f.kind in ("eof", "reset")
                            and attempt == 0):
                        attempt += 1
                        rec.retried = True
                        with self._lock:
                            self.stale_retries += 1
                        continue
                    rec.end = self.now()
                    rec.error = "closed" if f.kind == "eof" else f.kind
                    break
                self._finish(rec, status, body)
                if not keep:
                    sock.close()
                    sock = None
                break
            self._add(rec)
            if rec.error and rec.error in ("refused", "reset", "timeout", "oserror"):
                time.sleep(0.01)   # do not spin on a dead port
            self._pace(rec)
        if sock is not None:
            sock.close()

    def _run_close(self, idx):
        while self._running():
            rec = Record(idx, "close", self.now())
            sock = None
            try:
                sock = self._connect()
                status, _, body = self._exchange(sock, _Reader(sock), self._req_close)
                self._finish(rec, status, body)
            except _Failure as f:
                rec.end = self.now()
                rec.error = "closed" if f.kind == "eof" else f.kind
            finally:
                if sock is not None:
                    sock.close()
            self._add(rec)
            if rec.error and rec.error in ("refused", "reset", "timeout", "oserror"):
                time.sleep(0.01)
            self._pace(rec)

    # -- results -------------------------------------------------------------------------------
    def failures(self, since=None, until=None):
        return [r for r in self.records if r.error
                and (since is None or r.start >= since) and (until is None or r.start < until)]

    def summary(self, **kw):
        return summarize(self.records, t_end=self.t_end if self.t_end is not None else self.now(),
                         stale_retries=self.stale_retries, idle_reconnects=self.idle_reconnects,
                         **kw)


def summarize(records, t_end, bucket=0.1, stale_retries=0, idle_reconnects=0):
    """Totals, failures by kind, longest gap without a success completing, max latency,
    successes per `bucket`-second interval (by completion time)."""
    ok = sorted(r.end for r in records if r.error is None)
    failed = {}
    for r in records:
        if r.error:
            failed[r.error] = failed.get(r.error, 0) + 1
    # longest stretch of the load (from its start to its end) with no success completing
    points = [0.0] + ok + [t_end]
    gap, gap_at = 0.0, 0.0
    for a, b in zip(points, points[1:]):
        if b - a > gap:
            gap, gap_at = b - a, a
    lat = [r.end - r.start for r in records if r.error is None]
    n_buckets = max(1, int(t_end / bucket + 0.999999))
    buckets = [0] * n_buckets
    for t in ok:
        buckets[min(n_buckets - 1, int(t / bucket))] += 1
    return {
        "total": len(records),
        "ok": len(ok),
        "failed": sum(failed.values()),
        "failed_by_kind": failed,
        "stale_retries": stale_retries,
        "idle_reconnects": idle_reconnects,
        "longest_gap": gap,
        "longest_gap_at": gap_at,
        "max_latency": max(lat) if lat else None,
        "median_latency": statistics.median(lat) if lat else None,
        "duration": t_end,
        "bucket": bucket,
        "buckets": buckets,
        "throughput": len(ok) / t_end if t_end > 0 else 0.0,
    }


def format_summary(s):
    kinds = ", ".join(f"{k}:{v}" for k, v in sorted(s["failed_by_kind"].items())) or "-"
    ml = "-" if s["max_latency"] is None else f"{s['max_latency'] * 1000:.0f} ms"
    return (f"{s['total']} requests in {s['duration']:.1f} s ({s['throughput']:.0f}/s), "
            f"failed {s['failed']} ({kinds}), stale keep-alive retries {s['stale_retries']}, "
            f"longest gap {s['longest_gap'] * 1000:.0f} ms at {s['longest_gap_at']:.2f} s, "
            f"max latency {ml}")


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="closed-loop GET load; prints a summary")
    ap.add_argument("port", type=int)
    ap.add_argument("--path", default="/")
    ap.add_argument("-d", "--duration", type=float, default=5.0)
    ap.add_argument("-k", "--keepalive", type=int, default=2)
    ap.add_argument("-c", "--per-request", type=int, default=2)
    a = ap.parse_args()
    lg = LoadGen(a.port, a.path, keepalive=a.keepalive, per_request=a.per_request)
    print(format_summary(lg.run(a.duration)))
