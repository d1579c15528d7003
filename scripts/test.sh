#!/usr/bin/env bash
# The test command: builds Apus (release), runs the Swift unit tests, then the integration
# suite (Tests/integration, pytest) against the built binary, then every fuzz target for a
# short while. Idempotent; meant for a fresh Debian 12 machine (run as root, from anywhere).
# Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV="$ROOT/.venv-test"
START=$(date +%s)
declare -a SUMMARY=()
FAILED=0

step() { printf '\n==> %s\n' "$*"; }
record() { SUMMARY+=("$(printf '%-28s %s' "$1" "$2")"); }

# -- system packages -------------------------------------------------------------------------
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
# nginx: Tests/integration/test_nginx.py runs its own instance in front of apus
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# systemd-socket-activate: Tests/integration/test_inherited_sockets.py and test_examples.py hand
# apus its sockets the way systemd does
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
# gcc and the Python headers: pip builds uWSGI from source (Tests/integration/test_zerg.py
# and test_subscription.py run a real uWSGI on either side of apus)
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
# tmux: Tests/integration/test_stats.py runs the real uwsgitop (curses) in a tmux pane, and
# test_top.py runs `apus top` in a real terminal and reads its screen
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || missing+=(python3-dev)
if [ ${#missing[@]} -gt 0 ]; then
    step "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null 2>&1 || { echo "swift is not on PATH: install a Swift 6 toolchain first" >&2; exit 1; }

# -- Python venv for the suite (Django and Flask are also what the test apps run on) --------
step "venv $VENV"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
# h11: the independent HTTP/1.1 parser that Tests/integration/test_differential.py compares with
# pyyaml: Tests/integration/test_examples.py reads examples/kubernetes/deployment.yaml
# uwsgi: Tests/integration/test_zerg.py (zerg mode both ways) and test_subscription.py
# (uWSGI 2.0 on either side of apus router)
"$VENV/bin/python" -m pip install -q --disable-pip-version-check pytest django flask requests h11 pyyaml uwsgi uwsgitop prometheus_client
echo "python: $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0], sys.prefix)')"

# -- build and unit tests --------------------------------------------------------------------
step "swift build -c release"
if swift build -c release; then record "swift build -c release" ok
else record "swift build -c release" FAILED; FAILED=1; fi

# The wheel of that binary (a few seconds: strip and zip); Tests/integration/test_wheel.py
# pip-installs it ($APUS_WHEEL) into fresh CPython 3.9 and 3.13 venvs.
if [ $FAILED -eq 0 ]; then
    step "scripts/wheel.sh"
    if WHEEL=$(scripts/wheel.sh | tail -n 1) && [ -f "$WHEEL" ]; then
        export APUS_WHEEL="$WHEEL"
        record "scripts/wheel.sh" "ok ($(basename "$WHEEL"))"
    else
        record "scripts/wheel.sh" FAILED; FAILED=1
    fi
fi

if [ $FAILED -eq 0 ]; then
    step "swift test"
    if swift test; then record "swift test" ok
    else record "swift test" FAILED; FAILED=1; fi
fi

# A second build of apus (debug; its modules are already built by `swift test`): the
# upgrade-in-place test replaces the running binary with it (Tests/integration/test_upgrade.py).
if [ $FAILED -eq 0 ]; then
    step "swift build --product apus (debug)"
    if swift build --product apus; then record "swift build (debug apus)" ok
    else record "swift build (debug apus)" FAILED; FAILED=1; fi
fi

# -- integration suite -----------------------------------------------------------------------
if [ -x "$ROOT/.build/release/apus" ]; then
    step "pytest Tests/integration"
    if APUS_BIN="$ROOT/.build/release/apus" "$VENV/bin/python" -m pytest Tests/integration \
            -p no:cacheprovider -q -rfEs --durations=10; then
        record "pytest Tests/integration" ok
    else
        record "pytest Tests/integration" FAILED; FAILED=1
    fi
else
    record "pytest Tests/integration" "not run (no .build/release/apus)"; FAILED=1
fi

# -- fuzzing (scripts/fuzz.sh, Fuzz/README.md) --------------------------------------------------
# Every libFuzzer target for APUS_FUZZ_SECONDS (default 30) each; a crash or a broken invariant
# fails the run (the input is in .build-fuzz/crashes/<target>/).
FUZZ_SECONDS=${APUS_FUZZ_SECONDS:-30}
step "scripts/fuzz.sh all $FUZZ_SECONDS"
if scripts/fuzz.sh all "$FUZZ_SECONDS"; then record "fuzz (every target x ${FUZZ_SECONDS}s)" ok
else record "fuzz (every target x ${FUZZ_SECONDS}s)" FAILED; FAILED=1; fi

# -- summary -----------------------------------------------------------------------------------
printf '\n==> summary (%ss)\n' "$(( $(date +%s) - START ))"
for line in "${SUMMARY[@]}"; do echo "  $line"; done
if [ $FAILED -ne 0 ]; then echo "  RESULT: FAILED"; exit 1; fi
echo "  RESULT: all passed"
