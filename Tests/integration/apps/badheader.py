"""Response headers that must never reach the wire (the server answers 500 instead).

/cr /lf /crlf /nul -> that character inside a header value
/name              -> a header name with a space and a colon
/unicode           -> a value outside latin-1
/status            -> a status line with CRLF inside
/latin1            -> a legal latin-1 value ("caf\xe9"): must be sent as byte E9
/ok                -> fine
"""
BAD = {
    "/cr": [("X-Bad", "a\rX-Injected: 1")],
    "/lf": [("X-Bad", "a\nX-Injected: 1")],
    "/crlf": [("X-Bad", "a\r\nX-Injected: 1")],
    "/nul": [("X-Bad", "a\x00b")],
    "/name": [("X-Injected: 1\r\nX-Bad", "a")],
    "/unicode": [("X-Bad", "snow \u2603")],
}


def application(environ, start_response):
    path = environ["PATH_INFO"]
    status = "200 OK"
    headers = [("Content-Type", "text/plain"), ("Content-Length", "2")]
    if path in BAD:
        headers += BAD[path]
    elif path == "/status":
        status = "200 OK\r\nX-Injected: 1"
    elif path == "/latin1":
        headers.append(("X-Latin", "caf\xe9"))
    start_response(status, headers)
    return [b"ok"]
