"""Record every call of the response iterable's close() in the file named by $CLOSE_LOG.

/normal?tag=T      -> a small body; close() writes "closed T"
/slow?tag=T&n=N    -> a generator of N 64 KiB chunks, 50 ms apart (the client leaves early)
/raise?tag=T       -> the iterable raises on its 2nd item
/writecb?tag=T     -> uses write() too, then returns the tracked iterable
Each line is "closed <tag> <how far the iteration got>".
"""
import os
import time
from urllib.parse import parse_qs


def record(line):
    with open(os.environ["CLOSE_LOG"], "a") as f:
        f.write(line + "\n")


class Tracked:
    def __init__(self, tag, items, delay=0.0, fail_at=None):
        self.tag, self.items, self.delay, self.fail_at = tag, items, delay, fail_at
        self.done = 0

    def __iter__(self):
        for i, item in enumerate(self.items):
            if self.fail_at is not None and i == self.fail_at:
                raise RuntimeError("apus-test-marker-iterable-failed")
            if i and self.delay:
                time.sleep(self.delay)
            self.done = i + 1
            yield item

    def close(self):
        record(f"closed {self.tag} {self.done}")


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    tag = qs.get("tag", ["none"])[0]
    path = environ["PATH_INFO"]
    if path == "/slow":
        n = int(qs.get("n", ["200"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n * 65536))])
        return Tracked(tag, [b"s" * 65536] * n, delay=0.05)
    if path == "/raise":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked(tag, [b"a", b"b", b"c"], fail_at=1)
    if path == "/writecb":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        return Tracked(tag, [b"iterated"])
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return Tracked(tag, [b"he", b"llo"])
