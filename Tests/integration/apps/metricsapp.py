"""For /metrics: answers with the status the path asks for, sleeps on request.

/status/NNN -> answers NNN with a short body
/sleep/S    -> sleeps S seconds (float), then 200
/boom       -> raises (the server answers 500)
anything else -> 200 "ok"
With IMPORT_SLEEP set, the import itself sleeps that many seconds (a slow app start).
"""
import os
import time

if os.environ.get("IMPORT_SLEEP"):
    time.sleep(float(os.environ["IMPORT_SLEEP"]))

REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error", 302: "Found", 418: "I'm a teapot"}


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    status = 200
    if path.startswith("/status/"):
        status = int(path[len("/status/"):])
    elif path.startswith("/sleep/"):
        time.sleep(float(path[len("/sleep/"):]))
    elif path == "/boom":
        raise RuntimeError("boom")
    body = f"{status} pid {os.getpid()}\n".encode()
    start_response(f"{status} {REASONS.get(status, 'Status')}",
                   [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
