"""`pip install` of the wheel that scripts/wheel.sh builds, into fresh venvs of pyenv's
CPython 3.9 (with Flask) and 3.13 (with Django), then `VENV/bin/apus` with no --venv: the
workers run that venv's Python and import its packages; --check makes the same choice;
--python and APUS_VENV still win; pip replaces the command under a running master, which
an upgrade in place (SIGUSR2) then runs; a symlink to the command or a bare `apus` found on PATH
finds the venv too; `pip uninstall` removes the command (the last test).

The wheel is $APUS_WHEEL (scripts/test.sh builds it and sets it), else scripts/wheel.sh is
run here. Needs the network (or pip's cache) for Flask and Django.
"""
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import zipfile
from pathlib import Path

import pytest

from conftest import ApusServer, clean_env
from helpers import REPO, get, wait_log
from test_pythons import find_python, pyenv_root

# What the apps return: the interpreter the worker runs, and where Flask/Django came from.
SYSINFO = '''
import json, sys
def application(environ, start_response):
    body = json.dumps({"version": list(sys.version_info[:3]), "prefix": sys.prefix,
                       "executable": sys.executable}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

FLASK_APP = '''
import sys
import flask
from flask import Flask, jsonify, request

app = Flask(__name__)

@app.route("/info", methods=["GET", "POST"])
def info():
    return jsonify(version=list(sys.version_info[:3]), prefix=sys.prefix, flask=flask.__file__,
                   body=request.get_data().decode())
'''

DJANGO_VIEW = '''
import sys
import django
from django.http import JsonResponse
from django.urls import path

def info(request):
    return JsonResponse({"version": list(sys.version_info[:3]), "prefix": sys.prefix,
                         "django": django.__file__, "method": request.method})

urlpatterns = [path("info", info)]
'''

# PATH without any venv: the venv can only come from where the apus binary is.
PLAIN_PATH = "/usr/local/bin:/usr/bin:/bin"


@pytest.fixture(scope="session")
def wheel():
    given = os.environ.get("APUS_WHEEL")
    if given:
        assert os.path.isfile(given), f"APUS_WHEEL={given} does not exist"
        return Path(given)
    out = subprocess.run([str(REPO / "scripts" / "wheel.sh")], capture_output=True, text=True,
                         timeout=1800)
    assert out.returncode == 0, out.stderr[-4000:]
    return Path(out.stdout.strip().splitlines()[-1])


def make_venv(root, minor, packages, wheel):
    python = find_python(minor)
    if python is None:
        pytest.skip(f"CPython 3.{minor} is not installed under {pyenv_root()}/versions")
    venv = root / f"venv3{minor}"
    subprocess.run([python, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", str(wheel), *packages],
                         capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stdout[-2000:] + pip.stderr[-4000:]
    return venv


@pytest.fixture(scope="module")
def flask39(tmp_path_factory, wheel):
    return make_venv(tmp_path_factory.mktemp("wheel"), 9, ["flask"], wheel)


@pytest.fixture(scope="module")
def django313(tmp_path_factory, wheel):
    return make_venv(tmp_path_factory.mktemp("wheel"), 13, ["django"], wheel)


@pytest.fixture
def serve(tmp_path):
    """serve(command, app, *args, chdir=DIR, env=...): apus started as `command` (a path, or a
    bare name looked up on the PATH of env), with no --venv."""
    started = []

    def start(command, app, *args, chdir, env=None, ready_path="/"):
        srv = ApusServer(app, args, workdir=tmp_path, chdir=chdir, venv=False,
                         env={"PATH": PLAIN_PATH, **(env or {})})
        srv.cmd[0] = str(command)
        started.append(srv)
        return srv.start(ready_path=ready_path)

    yield start
    for srv in started:
        srv.stop()


def write_app(directory, name, text):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    return directory


def test_the_wheel_is_one_binary_for_every_python3(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        names = sorted(z.namelist())
        version = re.match(r"apus-([^-]+)-", wheel.name).group(1)
        dist_info = f"apus-{version}.dist-info"
        assert names == sorted([f"apus-{version}.data/scripts/apus", f"{dist_info}/METADATA",
                                f"{dist_info}/RECORD", f"{dist_info}/WHEEL"])
        meta = z.read(f"{dist_info}/METADATA").decode()
        assert "\nRequires-Python: >=3.9\n" in meta and "\nName: apus\n" in meta
        tag = re.search(r"^Tag: (.+)$", z.read(f"{dist_info}/WHEEL").decode(), re.M).group(1)
        assert wheel.name == f"apus-{version}-{tag}.whl"
        m = re.fullmatch(r"py3-none-manylinux_2_(\d+)_(x86_64|aarch64)", tag)
        assert m, tag
        assert m.group(2) == platform.machine()
        # The tag installs here, so the glibc it names is at most this machine's.
        assert int(m.group(1)) <= int(os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[1])
        # RECORD: every other file, with its sha256 and size.
        for line in z.read(f"{dist_info}/RECORD").decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if name == f"{dist_info}/RECORD":
                assert digest == size == ""
                continue
            content = z.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(content).digest()).rstrip(b"=").decode()
            assert (digest, int(size)) == (f"sha256={want}", len(content)), name
        entry = z.getinfo(f"apus-{version}.data/scripts/apus")
        assert (entry.external_attr >> 16) & 0o777 == 0o755
        binary = tmp_path / "apus"
        binary.write_bytes(z.read(entry))
    # No Swift runtime to install: the binary needs only system libraries.
    readelf = shutil.which("readelf")
    if readelf:
        dynamic = subprocess.run([readelf, "-d", str(binary)], capture_output=True, text=True).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", dynamic)
        assert needed and not [n for n in needed if "swift" in n.lower() or "Foundation" in n], needed
        assert "debug_info" not in subprocess.run([readelf, "-S", str(binary)], capture_output=True,
                                                  text=True).stdout  # stripped
    binary.chmod(0o755)
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True)
    assert out.stdout.strip() == f"apus {version}"


def test_flask_in_a_python39_venv(flask39, serve, tmp_path):
    apus = flask39 / "bin" / "apus"
    assert apus.is_file() and not apus.is_symlink()
    appdir = write_app(tmp_path / "app", "flasksite.py", FLASK_APP)
    srv = serve(apus, "flasksite:app", "--processes", "2", chdir=appdir, ready_path="/info")
    r = get(srv.port, "/info")
    assert r.status == 200 and r.header("content-type") == "application/json"
    info = r.json()
    assert info["version"][:2] == [3, 9]
    assert Path(info["prefix"]) == flask39
    assert Path(info["flask"]).is_relative_to(flask39)
    conn = srv.conn()
    r = conn.request("POST", "/info", body=b"hello")
    assert r.status == 200 and r.json()["body"] == "hello"
    conn.sock.close()
    log = srv.log()
    assert f"venv {flask39}: the apus binary is in its bin/" in log
    assert f"Python {'.'.join(map(str, info['version']))} at {flask39}/bin/python" in log


def test_django_in_a_python313_venv(django313, serve, tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    subprocess.run([str(django313 / "bin" / "django-admin"), "startproject", "mysite", str(project)],
                   check=True, timeout=60, env=clean_env({"PATH": PLAIN_PATH}))
    (project / "mysite" / "urls.py").write_text(DJANGO_VIEW)
    srv = serve(django313 / "bin" / "apus", "mysite.wsgi", "--threads", "4", chdir=project,
                env={"DJANGO_SETTINGS_MODULE": "mysite.settings"}, ready_path="/info")
    r = get(srv.port, "/info")
    assert r.status == 200, r.body
    info = r.json()
    assert info["version"][:2] == [3, 13] and info["method"] == "GET"
    assert Path(info["prefix"]) == django313
    assert Path(info["django"]).is_relative_to(django313)
    assert get(srv.port, "/nowhere").status == 404


def test_check_makes_the_same_choice(flask39, tmp_path):
    appdir = write_app(tmp_path / "app", "sysinfo.py", SYSINFO)
    out = subprocess.run([str(flask39 / "bin" / "apus"), "--check", "--chdir", str(appdir), "sysinfo"],
                         env=clean_env({"PATH": PLAIN_PATH}), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert re.search(rf"check passed: .* with Python 3\.9\.\d+ \({re.escape(str(flask39))}/bin/python\)",
                     out.stderr), out.stderr


def test_explicit_python_or_venv_wins(flask39, django313, serve, tmp_path):
    appdir = write_app(tmp_path / "app", "sysinfo.py", SYSINFO)
    apus = flask39 / "bin" / "apus"
    srv = serve(apus, "sysinfo", "--venv", django313, chdir=appdir)
    assert Path(get(srv.port, "/").json()["prefix"]) == django313
    srv.stop()
    srv = serve(apus, "sysinfo", chdir=appdir, env={"APUS_VENV": str(django313)})
    assert Path(get(srv.port, "/").json()["prefix"]) == django313
    srv.stop()
    python313 = find_python(13)
    srv = serve(apus, "sysinfo", "--python", python313, chdir=appdir)
    info = get(srv.port, "/").json()
    assert info["version"][:2] == [3, 13] and Path(info["prefix"]) != flask39
    assert "the apus binary is in its bin/" not in srv.log()


def test_found_through_a_symlink_and_on_path(flask39, serve, tmp_path):
    appdir = write_app(tmp_path / "app", "sysinfo.py", SYSINFO)
    # A symlink outside the venv (as /usr/local/bin/apus would be): /proc/self/exe finds it.
    links = tmp_path / "links" / "bin"
    links.mkdir(parents=True)
    (links / "apus").symlink_to(flask39 / "bin" / "apus")
    srv = serve(links / "apus", "sysinfo", chdir=appdir)
    assert Path(get(srv.port, "/").json()["prefix"]) == flask39
    srv.stop()
    # A bare `apus`, found on PATH (an activated venv).
    srv = serve("apus", "sysinfo", chdir=appdir, env={"PATH": f"{flask39}/bin:{PLAIN_PATH}"})
    assert srv.cmd[0] == "apus"
    info = get(srv.port, "/").json()
    assert info["version"][:2] == [3, 9] and Path(info["prefix"]) == flask39


def test_pip_reinstall_under_a_running_master_then_upgrade_in_place(django313, wheel, serve, tmp_path):
    appdir = write_app(tmp_path / "app", "sysinfo.py", SYSINFO)
    apus = django313 / "bin" / "apus"
    srv = serve(apus, "sysinfo", chdir=appdir)
    before = apus.stat().st_ino
    pip = subprocess.run([str(django313 / "bin" / "python"), "-m", "pip", "install", "-q", "--force-reinstall",
                          "--no-deps", "--disable-pip-version-check", str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr  # no ETXTBSY: pip writes a new file
    assert apus.stat().st_ino != before
    assert Path(get(srv.port, "/").json()["prefix"]) == django313
    srv.signal(signal.SIGUSR2)
    wait_log(srv.log, r"upgrade in place done: generation 2 serving", 60)
    log = srv.log()
    assert re.search(rf"check passed: .* with Python 3\.13\.\d+ \({re.escape(str(django313))}/bin/python\)", log), log
    assert srv.proc.poll() is None
    info = get(srv.port, "/").json()
    assert info["version"][:2] == [3, 13] and Path(info["prefix"]) == django313


# Last: it takes the command out of the 3.13 venv.
def test_pip_uninstall_removes_the_command(django313):
    venv = django313
    apus = venv / "bin" / "apus"
    out = subprocess.run([str(apus), "--version"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout.startswith("apus ")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    shown = subprocess.run([*pip, "show", "-f", "apus"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and re.search(r"^\s+\S*bin/apus$", shown.stdout, re.M), shown.stdout
    subprocess.run([*pip, "uninstall", "-y", "-q", "apus"], check=True, timeout=120)
    assert not apus.exists()
    assert subprocess.run([*pip, "show", "apus"], capture_output=True, timeout=120).returncode != 0
