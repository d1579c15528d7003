"""Views that use the uwsgi module the way uWSGI projects do. `import uwsgi` fails under
--no-uwsgi-module, so it is imported in the views, not at the top."""
import importlib
import os
import time

from django.http import JsonResponse

from uwsgiproj.wsgi import IMPORT_PID, IMPORT_WORKER_ID


def info(request):
    import uwsgi
    opt = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in uwsgi.opt.items()}
    return JsonResponse({
        "pid": os.getpid(),
        "import_pid": IMPORT_PID,
        "import_worker_id": IMPORT_WORKER_ID,
        "worker_id": uwsgi.worker_id(),
        "numproc": uwsgi.numproc,
        "masterpid": uwsgi.masterpid(),
        "ppid": os.getppid(),
        "opt": opt,
        "opt_types": sorted({type(v).__name__ for v in uwsgi.opt.values()}),
        "version_type": type(uwsgi.version).__name__,
        "started_on": uwsgi.started_on,
        "same_module": uwsgi is importlib.import_module("apus"),
    })


def reload(request):
    import uwsgi
    done = uwsgi.reload()
    time.sleep(0.2)  # the reload starts while this request is still in the app
    return JsonResponse({"pid": os.getpid(), "result": done})


def chain(request):
    import uwsgi
    done = uwsgi.chain_reload()
    time.sleep(0.2)
    return JsonResponse({"pid": os.getpid(), "result": done})


def workers(request):
    import uwsgi
    done = uwsgi.workers_reload()
    time.sleep(0.2)
    return JsonResponse({"pid": os.getpid(), "result": done})


def imports(request):
    out = {}
    for name in ("apus", "uwsgi"):
        try:
            importlib.import_module(name)
            out[name] = "ok"
        except ImportError as e:
            out[name] = "ImportError: %s" % e
    import apus
    try:
        apus.cache_get("x")
        out["cache_get"] = "no error"
    except AttributeError as e:
        out["cache_get"] = "AttributeError: %s" % e
    try:
        import uwsgidecorators  # noqa: F401
        out["uwsgidecorators"] = "ok"
    except Exception as e:
        out["uwsgidecorators"] = "%s: %s" % (type(e).__name__, e)
    return JsonResponse(out)
