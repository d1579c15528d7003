"""The app behind test_access_log_format.py: answers "ok" (2 bytes) with a Content-Type and
an X-Trace header whose value is hostile for a log line: a quote, a backslash, byte 0x85
and the UTF-8 bytes of U+2028, sent as latin-1 as PEP 3333 wants. `?status=NNN` picks the
status."""
from urllib.parse import parse_qs

TRACE = 'q"b\\s\x85n\xe2\x80\xa8e'


def application(environ, start_response):
    status = parse_qs(environ.get("QUERY_STRING", "")).get("status", ["200"])[0]
    start_response(f"{status} X", [("Content-Type", "text/plain; charset=utf-8"), ("X-Trace", TRACE)])
    return [b"ok"]
