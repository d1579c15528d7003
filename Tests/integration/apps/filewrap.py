"""wsgi.file_wrapper: /file?path=P serves the file P through the wrapper;
/bytesio serves an in-memory io.BytesIO through it (a file-like object with no fileno);
/range?path=P&len=N serves only the first N bytes (Content-Length N, the file is longer)."""
import io
import os
from urllib.parse import parse_qs

CLOSED = []


def application(environ, start_response):
    qs = parse_qs(environ.get("QUERY_STRING", ""))
    path = environ["PATH_INFO"]
    wrapper = environ["wsgi.file_wrapper"]
    if path == "/bytesio":
        data = b"in-memory " * 1000
        start_response("200 OK", [("Content-Type", "application/octet-stream"),
                                  ("Content-Length", str(len(data)))])
        return wrapper(io.BytesIO(data), 4096)
    fn = qs["path"][0]
    size = os.path.getsize(fn)
    if path == "/range":
        size = int(qs["len"][0])
    f = open(fn, "rb")
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    return wrapper(f, 65536)
