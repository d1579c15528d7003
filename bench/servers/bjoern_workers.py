"""Run bjoern with N worker processes sharing one listening socket.

bjoern serves one event loop in one process and has no worker option. This
wrapper binds the TCP socket itself, imports the WSGI app once (so the app's
pages are shared copy-on-write, like uWSGI without --lazy-apps), then forks N
children that each run bjoern's loop on that same socket; the kernel spreads
the accepted connections over them.

The parent only supervises: SIGTERM or SIGINT to it is passed on to the
children, and it exits once they are gone. If a child dies on its own, the
parent stops the others and exits non-zero, so a broken server is noticed
instead of silently running with fewer workers.

    python bench/servers/bjoern_workers.py --bind 127.0.0.1:8000 --workers 2 \
        --chdir examples hello:application
"""
import argparse
import importlib
import os
import signal
import socket
import sys


def load_app(spec):
    module_name, _, attr = spec.partition(":")
    obj = importlib.import_module(module_name)
    for part in (attr or "application").split("."):
        obj = getattr(obj, part)
    return obj


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("app", help="module:callable")
    parser.add_argument("--bind", default="127.0.0.1:8000", help="HOST:PORT")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--chdir", default=None, help="directory put first on sys.path")
    parser.add_argument("--backlog", type=int, default=1024)
    opts = parser.parse_args()

    if opts.chdir:
        os.chdir(opts.chdir)
    sys.path.insert(0, os.getcwd())

    import bjoern  # noqa: E402  (after sys.path is set up)

    host, _, port = opts.bind.rpartition(":")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, int(port)))
    listener.listen(opts.backlog)
    listener.setblocking(False)

    app = load_app(opts.app)

    workers = set()
    for _ in range(max(1, opts.workers)):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            try:
                bjoern.server_run(listener, app)
            finally:
                os._exit(0)
        workers.add(pid)
    listener.close()  # the parent does not accept

    stopping = False

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        for pid in list(workers):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    status = 0
    while workers:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        workers.discard(pid)
        if not stopping:
            print(f"bjoern_workers: worker {pid} exited unexpectedly "
                  f"(status {wstatus}); stopping", file=sys.stderr)
            status = 1
            stop(signal.SIGTERM, None)
    sys.exit(status)


if __name__ == "__main__":
    main()
