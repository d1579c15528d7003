"""Report which process and thread answered.

/              -> {"pid", "import_pid", "tid"}
/sleep?s=1     -> sleeps s seconds first; if $STARTED_LOG is set, appends a line on entry
/spin?s=1      -> runs Python for s seconds without waiting on anything (holds the GIL)
/barrier?key=K&n=N&timeout=T
               -> waits until N requests with the same key are inside the app at once
                  (counted with a file in $BARRIER_DIR, so it works across processes);
                  "reached": false if that did not happen within T seconds
"""
import json
import os
import threading
import time
from urllib.parse import parse_qs

IMPORT_PID = os.getpid()


def _answer(start_response, obj):
    data = json.dumps(obj).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ["PATH_INFO"]
    info = {"pid": os.getpid(), "import_pid": IMPORT_PID, "tid": threading.get_ident()}
    if path == "/sleep":
        log = os.environ.get("STARTED_LOG")
        if log:
            with open(log, "a") as f:
                f.write(f"{os.getpid()}\n")
        time.sleep(float(qs.get("s", ["1"])[0]))
        info["slept"] = True
    elif path == "/spin":
        end = time.monotonic() + float(qs.get("s", ["1"])[0])
        n = 0
        while time.monotonic() < end:
            n += 1
        info["spun"] = n
    elif path == "/barrier":
        key, n = qs["key"][0], int(qs["n"][0])
        timeout = float(qs.get("timeout", ["15"])[0])
        fn = os.path.join(os.environ["BARRIER_DIR"], f"barrier-{key}")
        fd = os.open(fn, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"x\n")
        os.close(fd)
        deadline = time.monotonic() + timeout
        reached = False
        while time.monotonic() < deadline:
            with open(fn, "rb") as f:
                if f.read().count(b"\n") >= n:
                    reached = True
                    break
            time.sleep(0.02)
        info["reached"] = reached
    return _answer(start_response, info)
