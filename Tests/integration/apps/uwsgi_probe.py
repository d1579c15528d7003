"""Answers with the environ keys a uwsgi front end sets, and counts its calls in the file
named by CALLS_FILE (so a test can tell that a malformed packet never reached the app)."""
import json
import os

KEYS = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SCRIPT_NAME", "REMOTE_ADDR", "SERVER_NAME",
        "SERVER_PORT", "SERVER_PROTOCOL", "CONTENT_LENGTH", "HTTP_HOST", "HTTP_X_CUSTOM", "HTTPS"]


def application(environ, start_response):
    with open(os.environ["CALLS_FILE"], "a") as f:
        f.write("call\n")
    body = environ["wsgi.input"].read()
    out = {k: environ.get(k) for k in KEYS}
    out["wsgi.url_scheme"] = environ["wsgi.url_scheme"]
    out["body"] = body.decode("latin-1")
    data = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]
