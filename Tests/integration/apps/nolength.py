"""Responses without Content-Length: the server must frame them itself.

/      -> a list of several chunks (one empty among them)
/gen   -> a generator of 5 chunks
/empty -> an empty list
"""
PIECES = [b"first,", b"second,", b"", b"third,", b"x" * 10000, b",last"]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    start_response("200 OK", [("Content-Type", "text/plain")])
    if path == "/gen":
        return (b"gen%d;" % i for i in range(5))
    if path == "/empty":
        return []
    return list(PIECES)
