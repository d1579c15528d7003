"""What both flavours of the reload app share: the slow import, the version, the answers.

Importing this module:
  * sleeps STARTUP_SECONDS (env, default 2): an app that takes a while to import;
  * imports `reload_version` (a module the test rewrites on disk between reloads, in a
    directory on --pythonpath); its CODE is the "code version" every answer carries. The
    module raises at import when it holds BROKEN (see versionfile.py), so a test can make
    the next import fail;
  * reads APP_ENV_VERSION from the environment (the configuration the server passed).
If $READY_DIR is set, import-<pid> is written there once the import is done: the code, and
when the import started and ended (time.time()).
"""
import json
import os
import time

IMPORT_STARTED = time.time()
time.sleep(float(os.environ.get("STARTUP_SECONDS", "2")))

import reload_version  # noqa: E402  (rewritten between reloads)

CODE = reload_version.CODE
ENV = os.environ.get("APP_ENV_VERSION", "")
IMPORT_PID = os.getpid()
IMPORTED_AT = time.time()
WARMED = {"done": False}

if os.environ.get("READY_DIR"):
    with open(os.path.join(os.environ["READY_DIR"], f"import-{IMPORT_PID}"), "w") as f:
        f.write(f"{CODE} {IMPORT_STARTED:.6f} {IMPORTED_AT:.6f}\n")


def info():
    return {"pid": os.getpid(), "import_pid": IMPORT_PID, "code": CODE, "env": ENV,
            "warmed": WARMED["done"]}


def body(obj):
    return json.dumps(obj).encode()


def slow(seconds):
    """/slow?s=N: sleep N seconds (marker file in $SLOW_DIR on entry), then answer."""
    d = os.environ.get("SLOW_DIR")
    if d:
        with open(os.path.join(d, f"slow-{os.getpid()}-{time.time():.6f}"), "w") as f:
            f.write(CODE)
    time.sleep(seconds)
    out = info()
    out["slept"] = seconds
    return out


def warmup():
    """/warmup: sleeps WARMUP_SECONDS (default 1), then marks this process warmed (every
    later answer says "warmed": true) and, with $READY_DIR, writes warm-<pid>."""
    time.sleep(float(os.environ.get("WARMUP_SECONDS", "1")))
    WARMED["done"] = True
    if os.environ.get("READY_DIR"):
        with open(os.path.join(os.environ["READY_DIR"], f"warm-{os.getpid()}"), "w") as f:
            f.write(CODE)
    return info()
