"""The Django echo project (examples/djecho) with two extra paths, for the nginx tests.

Needs examples/djecho on sys.path (--pythonpath). Every path goes to djecho.wsgi, except:
/_big?n=N[&stream=1]  -> N bytes of a repeating pattern ("0123456789abcdef" cycled);
                         with Content-Length, or with stream=1 as 64 KiB pieces without it
/_conn                -> {"remote_addr", "remote_port", "pid"}: the direct peer's
                         port marks the connection the request came on
"""
import json
import os
from urllib.parse import parse_qs

from djecho.wsgi import application as django_app

PATTERN = b"0123456789abcdef"


def big_body(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path == "/_big":
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        n = int(qs.get("n", ["5242880"])[0])
        data = big_body(n)
        if qs.get("stream"):
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return (data[i:i + 65536] for i in range(0, n, 65536))
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(n))])
        return [data]
    if path == "/_conn":
        out = json.dumps({"remote_addr": environ.get("REMOTE_ADDR"),
                          "remote_port": environ.get("REMOTE_PORT"),
                          "pid": os.getpid()}).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(out)))])
        return [out]
    return django_app(environ, start_response)
