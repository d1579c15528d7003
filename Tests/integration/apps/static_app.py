"""The app behind --static-map in test_static.py: says which path it was called for and
counts its calls (per process), so a test can tell a static answer from an app answer."""
calls = 0


def application(environ, start_response):
    global calls
    calls += 1
    if environ["PATH_INFO"] == "/__calls":
        body = str(calls).encode()
    else:
        body = ("app:" + environ["REQUEST_METHOD"] + " " + environ["PATH_INFO"]).encode("latin-1")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
