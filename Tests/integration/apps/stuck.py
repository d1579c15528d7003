"""Views that never finish, for --harakiri.

/ok        -> {"pid"}: answers at once
/sleep     -> sleeps 30 s (waits in the kernel, GIL released)
/spin      -> runs Python for 30 s without waiting on anything (holds the GIL)
/cblock    -> blocked under a C call: libc's qsort, through ctypes, calls back into Python,
              which sleeps there for 30 s (the Python frames sit below a C frame)
/stream    -> sends its first chunk, then sleeps 30 s before the next
Each stuck view first appends "PATH PID" to $STARTED_LOG when it is set.
"""
import ctypes
import json
import os
import time


def _started(path):
    log = os.environ.get("STARTED_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{path} {os.getpid()}\n")


def sleep_view():
    time.sleep(30)


def spin_view():
    end = time.monotonic() + 30
    n = 0
    while time.monotonic() < end:
        n += 1
    return n


_COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))


def cblock_compare(a, b):
    time.sleep(30)
    return a[0] - b[0]


def cblock_view():
    libc = ctypes.CDLL(None)
    values = (ctypes.c_int * 2)(2, 1)
    compare = _COMPARE(cblock_compare)
    libc.qsort(values, 2, ctypes.sizeof(ctypes.c_int), compare)


def stream_view():
    yield b"first chunk\n"
    time.sleep(30)
    yield b"never sent\n"


VIEWS = {"/sleep": sleep_view, "/spin": spin_view, "/cblock": cblock_view}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/stream":
        _started(path)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return stream_view()
    if path in VIEWS:
        _started(path)
        VIEWS[path]()
    data = json.dumps({"pid": os.getpid()}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
