"""Echo the WSGI environ as JSON.

Every key whose value is a str, int, bool, float or tuple of those is reported as
{"value": ..., "type": "<python type name>"}; other keys only with their type name.
PATH_INFO and SCRIPT_NAME are also given as repr() and as the hex of their latin-1 bytes,
so the tests see exactly which code points the server produced. The body is read whole.
`?log=TEXT` writes TEXT to wsgi.errors; `?status=NNN` picks the status; `?osenv=NAME`
(repeatable) reports os.environ[NAME]; `?mark=FILE` creates FILE just before reading the body.
"""
import json
import os
import sys
from urllib.parse import parse_qs

SIMPLE = (str, int, bool, float)


def describe(value):
    if isinstance(value, SIMPLE):
        return {"value": value, "type": type(value).__name__}
    if isinstance(value, tuple) and all(isinstance(v, SIMPLE) for v in value):
        return {"value": list(value), "type": "tuple"}
    return {"type": type(value).__name__}


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    if "log" in qs:
        environ["wsgi.errors"].write(qs["log"][0] + "\n")
        environ["wsgi.errors"].flush()
    if "mark" in qs:
        open(qs["mark"][0], "w").close()
    body = environ["wsgi.input"].read()
    out = {
        "environ": {k: describe(v) for k, v in environ.items()},
        "path_info_repr": repr(environ.get("PATH_INFO")),
        "path_info_latin1_hex": environ.get("PATH_INFO", "").encode("latin-1").hex(),
        "script_name_repr": repr(environ.get("SCRIPT_NAME")),
        "body_length": len(body),
        "body_latin1": body.decode("latin-1"),
        "pid": os.getpid(),
        "python": list(sys.version_info[:3]),
        "executable_prefix": sys.prefix,
        "osenv": {name: os.environ.get(name) for name in qs.get("osenv", [])},
        "input_has": {m: hasattr(environ["wsgi.input"], m)
                      for m in ("read", "readline", "readlines", "__iter__")},
        "errors_has": {m: hasattr(environ["wsgi.errors"], m)
                       for m in ("write", "writelines", "flush")},
    }
    data = json.dumps(out).encode()
    status = qs.get("status", ["200"])[0]
    start_response(f"{status} Whatever", [("Content-Type", "application/json"),
                                           ("Content-Length", str(len(data)))])
    return [data]
