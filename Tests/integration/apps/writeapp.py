"""The legacy write() callable, mixed with a returned iterable.

/       -> write(b"one;"), write(b"two;"), then returns [b"three;", b"four"] (no Content-Length)
/length -> same with a correct Content-Length
"""


def application(environ, start_response):
    headers = [("Content-Type", "text/plain")]
    if environ["PATH_INFO"] == "/length":
        headers.append(("Content-Length", str(len(b"one;two;three;four"))))
    write = start_response("200 OK", headers)
    write(b"one;")
    write(b"two;")
    return [b"three;", b"four"]
