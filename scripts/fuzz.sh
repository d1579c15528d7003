#!/usr/bin/env bash
# libFuzzer targets for the pure parsers of Sources/ApusProtocols and the worker's
# ConnectionMachine (see Fuzz/README.md).
#
#   scripts/fuzz.sh TARGET SECONDS        build if needed, fuzz one target for SECONDS
#   scripts/fuzz.sh all SECONDS           every target, one after the other
#   scripts/fuzz.sh build                 build only
#   scripts/fuzz.sh replay TARGET FILE... run inputs once (a crash file, a corpus file)
#
# Targets: http chunked uwsgi proxy forwarded ip connection subscription static stats. The harness (Fuzz/Harness/*.swift),
# Sources/ApusProtocols/*.swift, Sources/ApusWorker/ConnectionMachine.swift (its
# `import ApusProtocols` left out) and the pure files of Sources/ApusTop ($TOP_SOURCES) are compiled as one module with swiftc
# -sanitize=fuzzer,address into .build-fuzz/apus-fuzz; the SwiftPM build is not involved.
# Seeds are read from Fuzz/corpus/TARGET (in git); what libFuzzer finds goes to
# .build-fuzz/corpus/TARGET and crashes to .build-fuzz/crashes/TARGET/ (both ignored by git).
# Exit status: 0 when every run ended without a crash, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="$ROOT/.build-fuzz"
BIN="$OUT/apus-fuzz"
TARGETS=(http chunked uwsgi proxy forwarded ip connection subscription static stats)
# The files of Sources/ApusTop with no system calls (`apus top`'s parsing, model and rendering).
TOP_SOURCES=(Sources/ApusTop/JSON.swift Sources/ApusTop/Stats.swift Sources/ApusTop/TopModel.swift
             Sources/ApusTop/TopRender.swift Sources/ApusTop/StatsAddress.swift)

usage() {
    sed -n '4,8p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

build() {
    mkdir -p "$OUT"
    local stale=0
    if [ ! -x "$BIN" ]; then
        stale=1
    elif [ -n "$(find Sources/ApusProtocols Sources/ApusWorker/ConnectionMachine.swift "${TOP_SOURCES[@]}" Fuzz/Harness scripts/fuzz.sh -newer "$BIN" -type f | head -1)" ]; then
        stale=1
    fi
    [ $stale -eq 0 ] && return 0
    echo "fuzz: building $BIN"
    # -O, as the release build: Swift's own checks (bounds, overflow) stay on, so the fuzzer
    # reports an overflow the parser would hit.
    grep -v '^import ApusProtocols$' Sources/ApusWorker/ConnectionMachine.swift >"$OUT/ConnectionMachine.swift"
    swiftc -sanitize=fuzzer,address -parse-as-library -O -g -module-name ApusFuzz -use-ld=lld \
        Sources/ApusProtocols/*.swift "$OUT/ConnectionMachine.swift" "${TOP_SOURCES[@]}" Fuzz/Harness/*.swift -o "$BIN.tmp"
    mv "$BIN.tmp" "$BIN"
}

max_len() {
    case "$1" in
        http|chunked|uwsgi|connection) echo 4096 ;;
        proxy) echo 600 ;;
        forwarded) echo 1024 ;;
        ip) echo 128 ;;
        subscription) echo 4200 ;;
        static) echo 1024 ;;
        stats) echo 8192 ;;
    esac
}

valid_target() {
    local t
    for t in "${TARGETS[@]}"; do [ "$t" = "$1" ] && return 0; done
    return 1
}

export SWIFT_BACKTRACE=enable=no   # let libFuzzer/ASan report crashes, not the Swift runtime
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"

# Fuzzes one target; prints one summary line. Returns 1 on a crash.
run_target() {
    local t=$1 seconds=$2
    local scratch="$OUT/corpus/$t" crashes="$OUT/crashes/$t" log="$OUT/logs/$t.log"
    mkdir -p "$scratch" "$crashes" "$OUT/logs"
    local dict=()
    [ -f "Fuzz/dict/$t.dict" ] && dict=("-dict=Fuzz/dict/$t.dict")
    local rc=0
    APUS_FUZZ_TARGET=$t "$BIN" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$crashes/" \
        "${dict[@]}" "$scratch" "Fuzz/corpus/$t" >"$log" 2>&1 || rc=$?
    local execs cov
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || true)
    if [ $rc -ne 0 ]; then
        echo "fuzz $t: CRASH after ${seconds}s or less (exit $rc); log $log"
        grep -E 'invariant broken|Fatal error|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY' "$log" | head -5 | sed 's/^/  /'
        grep -E '^artifact_prefix|Test unit written to' "$log" | sed 's/^/  /'
        return 1
    fi
    printf 'fuzz %-9s ok: %ss, %s runs, coverage %s, %s new inputs in %s\n' "$t" "$seconds" "${execs:-?}" \
        "${cov:-?}" "$(find "$scratch" -type f | wc -l)" "${scratch#"$ROOT"/}"
}

[ $# -ge 1 ] || usage
case "$1" in
    build)
        build ;;
    replay)
        [ $# -ge 3 ] && valid_target "$2" || usage
        t=$2; shift 2
        build
        APUS_FUZZ_TARGET=$t "$BIN" -runs=1 "$@" ;;
    all)
        [ $# -eq 2 ] || usage
        build
        failed=0
        for t in "${TARGETS[@]}"; do run_target "$t" "$2" || failed=1; done
        exit $failed ;;
    *)
        [ $# -eq 2 ] && valid_target "$1" || usage
        build
        run_target "$1" "$2" ;;
esac
