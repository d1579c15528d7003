"""start_response with exc_info (PEP 3333).

/before -> start_response 200 (nothing sent yet), then an error: start_response("500 ...",
           exc_info) replaces it and the app returns its own error page
/after  -> the 200 head and a first chunk are sent, then start_response(exc_info) must
           re-raise; the app lets it propagate (the response can only be cut short)
/twice  -> start_response twice without exc_info: must raise; the app reports that it did
/reenter -> the headers are a sequence (not a list) whose first item, as the server reads
           it, calls start_response again with exc_info: the status and headers being
           read are then no longer the app's, and the server must still have them
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
    if path == "/reenter":
        class Headers:
            def __init__(self, items):
                self.items = items

            def __len__(self):
                return len(self.items)

            def __getitem__(self, i):
                if i == 0:
                    try:
                        raise ValueError("replaced while read")
                    except ValueError:
                        start_response("500 Internal Server Error", [("X-Second", "yes")], sys.exc_info())
                return self.items[i]

        # Built at run time, so the app keeps no other reference to them.
        start_response("".join(["200", " OK"]), Headers([("Content-Type", "text/plain"), ("X-First", "yes")]))
        return [b"body"]
    start_response("404 Not Found", [("Content-Length", "0")])
    return []
