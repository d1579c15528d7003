#!/usr/bin/env bash
# Installs what bench/run.py needs on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are not reinstalled, an existing venv is
# kept and only topped up with what is missing.
#
#   bench/setup.sh                 # apt packages + bench/.venv
#   BENCH_PYTHON=/usr/bin/python3.11 bench/setup.sh
#
# Every server must run the same Python code for a fair comparison. Apus (and uWSGI) embed
# the shared libpython; a Python whose own executable is statically linked (Debian's
# /usr/bin/python3) would run gunicorn, granian and bjoern on a different, non-PIC build of
# the interpreter. So the venv is made from the first python3 on PATH whose executable is
# linked against its shared libpython (pyenv's builds here), else Debian's with a warning.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
venv="$here/.venv"
shared_python() {
    local candidate
    for candidate in "$(command -v python3 || true)" /root/.pyenv/versions/3.11*/bin/python3 /usr/bin/python3; do
        [ -x "$candidate" ] || continue
        local exe
        exe=$("$candidate" -c 'import sys; print(sys.executable)' 2>/dev/null) || continue
        if ldd "$exe" 2>/dev/null | grep -q libpython; then echo "$exe"; return; fi
    done
    echo "setup: warning: no python3 linked to a shared libpython; servers will not run the same interpreter build" >&2
    echo /usr/bin/python3
}
python=${BENCH_PYTHON:-$(shared_python)}

apt_pkgs=(wrk nginx libev-dev build-essential python3-dev python3-venv procps)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: apt-get install ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "setup: need root for apt-get (missing: ${missing[*]})" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
    echo "setup: apt packages present"
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "setup: creating $venv with $python"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install -q --upgrade pip
fi

# PyPI distribution -> module imported to check it is there
declare -A mods=([uwsgi]=uwsgidecorators [gunicorn]=gunicorn [granian]=granian
                 [bjoern]=bjoern [django]=django [flask]=flask)
need=()
for dist in uwsgi gunicorn granian bjoern django flask; do
    if [ "$dist" = uwsgi ]; then
        [ -x "$venv/bin/uwsgi" ] || need+=("$dist")
    else
        "$venv/bin/python" -c "import ${mods[$dist]}" 2>/dev/null || need+=("$dist")
    fi
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: pip install ${need[*]} (uwsgi and bjoern compile from source: a few minutes)"
    "$venv/bin/python" -m pip install -q "${need[@]}"
else
    echo "setup: venv packages present"
fi

"$venv/bin/python" - <<'PY'
import importlib.metadata as md, sys
print("setup: python", sys.version.split()[0], "in", sys.prefix)
for d in ("uWSGI", "gunicorn", "granian", "bjoern", "Django", "Flask"):
    print(f"setup:   {d} {md.version(d)}")
PY
echo "setup: wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'), $(nginx -v 2>&1)"
echo "setup: ready. Run: $venv/bin/python $here/run.py --help"
