"""start_response with exc_info (PEP 3333).

/before -> start_response 200 (nothing sent yet), then an error: start_response("500 ...",
           exc_info) replaces it and the app returns its own error page
/after  -> the 200 head and a first chunk are sent, then start_response(exc_info) must
           re-raise; the app lets it propagate (the response can only be cut short)
/twice  -> start_response twice without exc_info: must raise; the app reports that it did
"""
import sys


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/before":
        start_response("200 OK", [("Content-Type", "text/plain"), ("X-First", "yes")])
        try:
            raise ValueError("boom before body")
        except ValueError:
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("X-Error-Page", "yes")],
                           sys.exc_info())
        return [b"custom error page"]
    if path == "/after":
        def gen():
            yield b"first part;"
            try:
                raise ValueError("apus-test-marker-after-headers")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")],
                               sys.exc_info())
            yield b"must never be sent"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    if path == "/twice":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            start_response("201 Created", [("Content-Type", "text/plain")])
            raised = b"no"
        except Exception:
            raised = b"yes"
        return [b"second start_response raised: " + raised]
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
