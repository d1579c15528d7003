"""Imports, unless the file named by $BOOTFAIL_FLAG exists: then the import fails, so a
worker started meanwhile dies while starting (and keeps dying until the file is gone)."""
import os

if os.path.exists(os.environ["BOOTFAIL_FLAG"]):
    raise RuntimeError("apus-test-bootfail: the flag file is there")


def application(environ, start_response):
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
