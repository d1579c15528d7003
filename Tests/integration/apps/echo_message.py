"""Echo where the server thinks a request is, for the differential test (test_differential.py).

The answer is JSON: "method" (REQUEST_METHOD), "target" (REQUEST_URI, the raw request-target)
and "body" (wsgi.input read whole, as hex), all as the latin-1 bytes the server passed.
"""
import json


def application(environ, start_response):
    body = environ["wsgi.input"].read()
    out = json.dumps({
        "method": environ["REQUEST_METHOD"].encode("latin-1").hex(),
        "target": environ.get("REQUEST_URI", "").encode("latin-1").hex(),
        "body": body.hex(),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(out)))])
    return [out]
