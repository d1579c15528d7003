"""Plain WSGI flavour of the reload app (what the integration tests serve).

GET /          -> {"pid", "import_pid", "code", "env", "warmed"} (see common.py)
GET /slow?s=N  -> the same after sleeping N seconds
GET /warmup    -> the same after WARMUP_SECONDS; marks the process warmed
The import takes STARTUP_SECONDS and fails when reload_version holds BROKEN.
"""
from urllib.parse import parse_qs

from reloadapp import common


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/slow":
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        obj = common.slow(float(qs.get("s", ["1"])[0]))
    elif path == "/warmup":
        obj = common.warmup()
    else:
        obj = common.info()
    data = common.body(obj)
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
