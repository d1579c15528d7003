"""An app wrapped in wsgiref.validate.validator: any PEP 3333 violation by the server
raises AssertionError inside the app (→ 500 and a traceback in the log)."""
from wsgiref.validate import validator


def _app(environ, start_response):
    # the validator insists on read() with exactly one argument
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    environ["wsgi.errors"].write("validated app saw %d body bytes\n" % len(body))
    environ["wsgi.errors"].flush()
    data = b"validated:" + body
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(data)))])
    return [data]


application = validator(_app)
