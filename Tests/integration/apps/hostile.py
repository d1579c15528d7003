"""The app behind the hostile-input tests (test_hostile_input.py); the path picks the view.

/ignore       answers without reading the body
/read         reads the whole body; answers its length, its first bytes and the path
/read-raise   reads the whole body, then raises
/big?n=N      N bytes of "b" (default 64 KiB)
/write-read   write()s a first piece, then reads the body and returns it
/sleep?ms=N   sleeps N ms, then answers the path
/kw           start_response with every argument by keyword, exc_info=None
/exc-none     write()s, then calls start_response again with exc_info=(None, None, None)
/status-1xx?s=NNN  answers with that status (a 1xx is the app's error)
"""
import hashlib
import sys
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    path = environ["PATH_INFO"]
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/ignore":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ignored " + path.encode()]
    if path in ("/read", "/read-raise"):
        data = environ["wsgi.input"].read()
        if path == "/read-raise":
            raise RuntimeError(f"read {len(data)} bytes, then failed on purpose")
        body = f"{len(data)} {hashlib.sha256(data).hexdigest()} {path}".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/big":
        n = int(qs.get("n", ["65536"])[0])
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(n))])
        return [b"b" * n]
    if path == "/write-read":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first;")
        return [environ["wsgi.input"].read()]
    if path == "/sleep":
        time.sleep(int(qs.get("ms", ["10"])[0]) / 1000)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [path.encode()]
    if path == "/kw":
        start_response(status="200 OK", headers=[("Content-Type", "text/plain")], exc_info=None)
        return [b"keywords accepted"]
    if path == "/exc-none":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"head sent;")
        try:
            start_response("500 Internal Server Error", [], (None, None, None))
            outcome = "no exception"
        except BaseException as e:  # what the server raised into the app
            outcome = type(e).__name__
        return [outcome.encode()]
    if path == "/status-1xx":
        start_response(qs.get("s", ["103"])[0] + " Early", [("Content-Type", "text/plain")])
        return [b"not a final response"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    sys.stderr.flush()
    return [b"hostile app " + path.encode()]
