"""Writes reload_version.py, the module the reload app takes its code version from.
Importable without side effects (the tests and the benchmark use it; the app does not).

  write_version(dir, "v2")           CODE = "v2"
  write_version(dir, "BROKEN")       its import raises RuntimeError (a failed new version)
  write_version(dir, "CRASH")        its import ends the process (os._exit(3))
  write_version(dir, "v2", import_sleep=60)   its import hangs 60 s first
"""
import os


def version_source(code, import_sleep=0.0):
    lines = ["import time", f"time.sleep({float(import_sleep)!r})", f"CODE = {code!r}"]
    if code == "BROKEN":
        lines.append("raise RuntimeError('reload_version holds BROKEN: this import fails on purpose')")
    elif code == "CRASH":
        lines += ["import os", "os._exit(3)"]
    return "\n".join(lines) + "\n"


def write_version(directory, code, import_sleep=0.0):
    """Rewrite <directory>/reload_version.py atomically and drop its bytecode cache."""
    directory = os.fspath(directory)
    path = os.path.join(directory, "reload_version.py")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(version_source(code, import_sleep))
    os.replace(tmp, path)
    cache = os.path.join(directory, "__pycache__")
    if os.path.isdir(cache):
        for name in os.listdir(cache):
            if name.startswith("reload_version."):
                os.unlink(os.path.join(cache, name))
    return path
