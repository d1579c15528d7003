"""For the stats server tests (test_stats.py).

/slow...  -> sleeps (?s=SECONDS, 3 by default; any path under /slow), then answers
/raise    -> raises (the worker counts an exception, the client gets a 500)
/...      -> the worker's pid
"""
import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/slow"):
        time.sleep(float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["3"])[0]))
    elif path == "/raise":
        raise RuntimeError("apus-test-marker-stats-raise")
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
