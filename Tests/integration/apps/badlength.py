"""Content-Length that does not match the body.

/short -> says 100, gives 10 bytes
/long  -> says 5, gives 20 bytes ("12345" then surplus that must never be sent)
/ok    -> correct
"""


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/short":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "100")])
        return [b"0123456789"]
    if path == "/long":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
        return [b"12345", b"SURPLUS-SURPLUS!"]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
