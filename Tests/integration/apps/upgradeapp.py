"""Which Python and which apus binary answer, for the upgrade-in-place tests.

/ -> {"code": "3.11" (the Python's major.minor), "pid": the worker's pid,
      "env": the inode of the apus binary the worker runs (str)}

Read at import: a worker of an upgraded master runs the new binary and, after a change of
--python, the new interpreter.

$FAIL_IN_WORKERS: a file; while it exists the import fails in workers but not under
`apus --check` (an app that passes the check and still cannot start its workers).
"""
import json
import os
import sys

_marker = os.environ.get("FAIL_IN_WORKERS")
if _marker and os.path.exists(_marker):
    with open("/proc/self/cmdline", "rb") as f:
        if b"--check" not in f.read().split(b"\0"):
            raise RuntimeError("this worker cannot start (FAIL_IN_WORKERS)")

CODE = "%d.%d" % sys.version_info[:2]
BINARY = str(os.stat("/proc/self/exe").st_ino)


def application(environ, start_response):
    body = json.dumps({"code": CODE, "pid": os.getpid(), "env": BINARY}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
