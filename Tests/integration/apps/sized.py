"""Responses of a chosen size and shape, for the response write path.

`/size/N` answers N bytes (a repeating pattern that starts with the path), from a list;
`/gen/N` the same from a generator with a Content-Length; `/sleep/S/N` sleeps S seconds
first. The pattern lets a test check that every byte of every response arrived in order.
"""
import time


def pattern(tag, n):
    unit = (tag + "|").encode()
    return (unit * (n // len(unit) + 1))[:n]


def application(environ, start_response):
    parts = environ["PATH_INFO"].strip("/").split("/")
    kind = parts[0] if parts else ""
    if kind == "sleep":
        time.sleep(float(parts[1]))
        parts = ["size", parts[2]]
        kind = "size"
    n = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 5
    body = pattern(environ["PATH_INFO"], n)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(n))])
    if kind == "gen":
        def chunks():
            for i in range(0, n, 1000):
                yield body[i:i + 1000]
        return chunks()
    return [body]
