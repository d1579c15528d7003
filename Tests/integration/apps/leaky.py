"""An app that leaks memory, for --reload-on-rss and --evil-reload-on-rss.

/          -> {"pid", "mib"}: the worker's pid and how many MiB it holds on to
/leak?mb=5 -> keeps mb more MiB (touched, so it is resident) in a global list, then as /
/hog?mb=N&hold=S -> the same, a lot at once, then stays S seconds in the app (for
              --evil-reload-on-rss: killed with the request in flight)
"""
import json
import os
import time
from urllib.parse import parse_qs

KEPT = []


def _hold(mb):
    # bytearray pages are zeroed by the kernel lazily: write one byte per page so they count
    chunk = bytearray(mb << 20)
    for i in range(0, len(chunk), 4096):
        chunk[i] = 1
    KEPT.append(chunk)


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path in ("/leak", "/hog"):
        qs = parse_qs(environ.get("QUERY_STRING", ""))
        _hold(int(qs.get("mb", ["5"])[0]))
        time.sleep(float(qs.get("hold", ["0"])[0]))
    data = json.dumps({"pid": os.getpid(), "mib": sum(len(c) for c in KEPT) >> 20}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(data)))])
    return [data]
