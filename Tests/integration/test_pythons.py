"""One binary, every CPython: `--python <pyenv>/versions/3.X*/bin/python3` with no venv."""
import glob
import os
import shutil
import subprocess

import pytest

from helpers import APPS, EXAMPLES, get


def pyenv_root():
    if shutil.which("pyenv"):
        try:
            out = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=20)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            pass
    return os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))


def find_python(minor):
    cands = sorted(glob.glob(os.path.join(pyenv_root(), "versions", f"3.{minor}*", "bin", "python3")))
    # 3.1* must not match 3.10: keep only 3.<minor> or 3.<minor>.<patch>
    cands = [c for c in cands
             if os.path.basename(os.path.dirname(os.path.dirname(c))).split(".")[1] == str(minor)]
    return cands[-1] if cands else None


@pytest.mark.parametrize("minor", [9, 10, 11, 12, 13])
def test_serves_hello_under_each_python(apus, minor):
    py = find_python(minor)
    if py is None:
        pytest.skip(f"CPython 3.{minor} is not installed under {pyenv_root()}/versions")
    srv = apus("hello", "--python", py, venv=False, chdir=EXAMPLES)
    r = get(srv.port, "/")
    assert r.status == 200 and r.body == b"Hello, World!"
    assert r.header("content-length") == "13"
    srv.stop()
    # the interpreter really is that version
    srv = apus("echo_env", "--python", py, venv=False, chdir=APPS)
    j = get(srv.port, "/").json()
    assert j["python"][:2] == [3, minor], j["python"]
