"""Exercise every method of wsgi.input; the path picks the method, `?n=` its size argument.

The answer is JSON: "pieces" (each non-empty result, latin-1 decoded), "end" (what the
next call returned once the body was exhausted, as repr), "types" (type of each result).
"""
import json
from urllib.parse import parse_qs


def application(environ, start_response):
    inp = environ["wsgi.input"]
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    n = int(qs.get("n", ["4"])[0])
    path = environ["PATH_INFO"]
    pieces, end = [], None
    if path == "/read":
        pieces = [inp.read()]
        end = inp.read()
    elif path == "/read-n":
        while True:
            b = inp.read(n)
            if not b:
                end = b
                break
            pieces.append(b)
    elif path == "/read-big":
        # read(n) with n far beyond the body returns the body, then b"".
        pieces = [inp.read(1 << 20)]
        end = inp.read(1 << 20)
    elif path == "/readline":
        while True:
            b = inp.readline()
            if not b:
                end = b
                break
            pieces.append(b)
    elif path == "/readline-n":
        while True:
            b = inp.readline(n)
            if not b:
                end = b
                break
            pieces.append(b)
    elif path == "/readlines":
        pieces = inp.readlines()
        end = inp.read()
    elif path == "/iter":
        pieces = [line for line in inp]
        end = inp.readline()
    elif path == "/none":
        pieces = []  # never reads the body
        end = b""
    else:
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", "0")])
        return [b""]
    out = {
        "pieces": [p.decode("latin-1") for p in pieces],
        "types": sorted({type(p).__name__ for p in pieces} | {type(end).__name__}),
        "end": repr(end),
        "content_length": environ.get("CONTENT_LENGTH"),
        "input_terminated": environ.get("wsgi.input_terminated"),
    }
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
