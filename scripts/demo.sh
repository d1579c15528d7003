#!/usr/bin/env bash
# Demo: build Apus and serve the Django echo project (examples/djecho) on 127.0.0.1:8000
# with 2 processes x 2 threads, in the foreground (Ctrl-C stops it gracefully).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/.venv-demo"

command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH: install a Swift 6 toolchain first" >&2; exit 1; }
if ! command -v python3 >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null
fi

echo "==> swift build -c release"
swift build -c release

echo "==> venv $VENV (Django, Flask)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check django flask

echo
echo "==> Open http://127.0.0.1:8000/any/path?x=1 (every path answers with the request as JSON)"
echo
exec "$ROOT/.build/release/apus" --venv "$VENV" --chdir "$ROOT/examples/djecho" \
    --http 127.0.0.1:8000 --processes 2 --threads 2 djecho.wsgi
