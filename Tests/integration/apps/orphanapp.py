"""Leaves orphans behind, as apps that shell out do.

/        -> "ok"
/orphan  -> runs `sh -c "sleep S &"` (S from ?s=, default 0.3) and waits for the shell only:
            the sleep outlives its parent and is re-parented (to Apus's master, a subreaper,
            or PID 1 of a container), which must reap it when it exits; answers its pid
"""
import os
import subprocess
from urllib.parse import parse_qs


def application(environ, start_response):
    body = b"ok"
    if environ["PATH_INFO"] == "/orphan":
        seconds = parse_qs(environ.get("QUERY_STRING", "")).get("s", ["0.3"])[0]
        out = subprocess.run(["sh", "-c", f'sleep {float(seconds)} >/dev/null 2>&1 & echo $!'],
                             capture_output=True, check=True)
        body = out.stdout.strip()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
