"""Which Python and which apus binary answer, for the upgrade-in-place tests.

/ -> {"code": "3.11" (the Python's major.minor), "pid": the worker's pid,
      "env": the inode of the apus binary the worker runs (str)}

Read at import: a worker of an upgraded master runs the new binary and, after a change of
--python, the new interpreter.
"""
import json
import os
import sys

CODE = "%d.%d" % sys.version_info[:2]
BINARY = str(os.stat("/proc/self/exe").st_ino)


def application(environ, start_response):
    body = json.dumps({"code": CODE, "pid": os.getpid(), "env": BINARY}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
