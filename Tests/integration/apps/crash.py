"""Ways for a worker or a request to die.

/       -> pid
/exit   -> os._exit(1): the worker process ends without answering
/segv   -> SIGSEGV sent to the worker itself with os.kill (if the process survives that,
           the app answers 200 with its pid, and the test reports it)
/segv-real -> a real invalid memory read (ctypes.string_at(0))
/raise  -> an exception with a recognisable message (the server answers 500)
/raise-late -> the exception comes from the response iterable, before any body byte
/hog?mb=N -> allocates and writes N MiB (for a memory limit the kernel enforces)
"""
import os
import signal


class MarkerError(Exception):
    pass


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/exit":
        os._exit(1)
    if path == "/segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if path == "/segv-real":
        import ctypes
        ctypes.string_at(0)
    if path == "/hog":
        mb = int(environ.get("QUERY_STRING", "mb=0").partition("=")[2] or 0)
        hog = b"x" * (mb << 20)
        body = str(len(hog)).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if path == "/raise":
        raise MarkerError("apus-test-marker-raised-in-app")
    if path == "/raise-late":
        def gen():
            raise MarkerError("apus-test-marker-raised-in-iterable")
            yield b""  # pragma: no cover
        start_response("200 OK", [("Content-Type", "text/plain")])
        return gen()
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
