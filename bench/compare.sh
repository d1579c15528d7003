#!/usr/bin/env bash
# Two builds of Apus side by side: before and after a change to the worker.
#
#   bench/compare.sh BASE [HEAD]     git revisions; HEAD defaults to the working tree as it is
#
# Builds each revision (`swift build -c release` in a temporary worktree; the working tree
# builds in place), then:
#   1. instructions per request, counted by callgrind (bench/instructions.py): hello 1x1 and
#      1x3, Django 1x1; deterministic to about 2 %, whatever else the machine runs;
#   2. bench/run.py with both binaries interleaved in one run (hello and Django, 2x1 and 3x3;
#      COMPARE_REPEATS, default 5, of COMPARE_DURATION seconds, default 5), then the ratio
#      HEAD / BASE of each cell's median req/s and CPU per request.
# Reports go to bench/out/compare-BASE-HEAD.{md,json}. Needs bench/setup.sh and valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
[ $# -ge 1 ] && [ $# -le 2 ] || { sed -n '4,5p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
PY="$ROOT/bench/.venv/bin/python"
[ -x "$PY" ] || { echo "compare: run bench/setup.sh first" >&2; exit 2; }
OUT="$ROOT/bench/out/compare"
mkdir -p "$OUT"

# build REV NAME: the release binary of REV at $OUT/NAME/apus ("worktree": the tree as it is).
build() {
    local rev=$1 name=$2 dir
    mkdir -p "$OUT/$name"
    if [ "$rev" = worktree ]; then
        swift build -c release >&2
        cp .build/release/apus "$OUT/$name/apus"
        return
    fi
    dir=$(mktemp -d /tmp/apus-compare-XXXXXX)
    git worktree add --detach "$dir" "$rev" >&2
    (cd "$dir" && swift build -c release >&2)
    cp "$dir/.build/release/apus" "$OUT/$name/apus"
    git worktree remove --force "$dir"
}

BASE=$1
HEAD=${2:-worktree}
base_name=$(git rev-parse --short "$BASE")
head_name=$([ "$HEAD" = worktree ] && echo worktree || git rev-parse --short "$HEAD")
echo "compare: building $BASE ($base_name) and $HEAD ($head_name)" >&2
build "$BASE" "$base_name"
build "$HEAD" "$head_name"
base_bin="$OUT/$base_name/apus"
head_bin="$OUT/$head_name/apus"

echo "== instructions per request (callgrind)"
for spec in "hello 1" "hello 3" "django 1"; do
    set -- $spec
    "$PY" bench/instructions.py --apus "$base_bin" --apus "$head_bin" --app "$1" --threads "$2" \
        | sed "s|$base_bin|base $base_name|; s|$head_bin|head $head_name|"
done

echo "== throughput, interleaved in one run"
report="$ROOT/bench/out/compare-$base_name-$head_name"
"$PY" bench/run.py --servers apus,apus-b --apus "$head_bin" --apus-b "$base_bin" \
    --apps hello,django --shapes 2x1,3x3 --repeats "${COMPARE_REPEATS:-5}" \
    --duration "${COMPARE_DURATION:-5}" --warmup 2 --out "$report" >/dev/null
"$PY" - "$report.json" "$base_name" "$head_name" <<'EOF'
import json, sys
cells = json.load(open(sys.argv[1]))["cells"]
by = {(c["app"], c["shape"], c["server"]): c for c in cells}
print(f"| app | shape | req/s {sys.argv[3]} / {sys.argv[2]} | CPU per request {sys.argv[3]} / {sys.argv[2]} |")
print("|---|---|---|---|")
for (app, shape, server), head in sorted(by.items()):
    if server != "apus":
        continue
    base = by[(app, shape, "apus-b")]
    rps = head["rps_median"] / base["rps_median"]
    cpu = head["cpu_us_per_req_median"] / base["cpu_us_per_req_median"]
    print(f"| {app} | {shape} | {rps:.2f} ({head['rps_median']:.0f} / {base['rps_median']:.0f}, "
          f"ranges {head['rps_min']:.0f}..{head['rps_max']:.0f} / {base['rps_min']:.0f}..{base['rps_max']:.0f}) "
          f"| {cpu:.2f} ({head['cpu_us_per_req_median']:.1f} / {base['cpu_us_per_req_median']:.1f} µs) |")
EOF
echo "full report: $report.md"
