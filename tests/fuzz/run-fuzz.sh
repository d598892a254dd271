#!/usr/bin/env bash
# Fuzz Warren's codec for SECONDS (default 60): build tests/fuzz/fuzz_codec
# if needed (in an out-of-tree build directory), write the seed corpus (every
# method, content headers, a publish stream, tables), run libFuzzer, and print
# the number of executions. Exit status 1 if libFuzzer found a crash, a leak,
# a timeout or a broken round-trip invariant; the input is saved as
# tests/fuzz/crash-* (or leak-*, timeout-*) and can be replayed with
#   BUILD/tests/fuzz/fuzz_codec tests/fuzz/crash-...
#
# Environment:
#   WARREN_FUZZ_BUILD   build directory (default: build-fuzz at the top level)
#   WARREN_FUZZ_CORPUS  corpus kept between runs (default: tests/fuzz/corpus-run)
set -u
seconds=${1:-60}
case $seconds in
'' | *[!0-9]*)
    echo "usage: $0 [SECONDS]" >&2
    exit 2
    ;;
esac

top=$(cd "$(dirname "$0")/../.." && pwd)
build=${WARREN_FUZZ_BUILD:-$top/build-fuzz}
corpus=${WARREN_FUZZ_CORPUS:-$top/tests/fuzz/corpus-run}
seeds=$build/tests/fuzz/seeds
log=$build/tests/fuzz/fuzz.log

# Configure once, then build only the fuzz targets: the broker may be
# mid-edit and has no part in this.
if [ ! -x "$top/configure" ] || [ "$top/configure.ac" -nt "$top/configure" ]; then
    (cd "$top" && autoreconf -fi >/dev/null 2>&1) || {
        echo "run-fuzz: autoreconf failed" >&2
        exit 1
    }
fi
mkdir -p "$build"
if [ ! -f "$build/tests/Makefile" ]; then
    (cd "$build" && "$top/configure" -q) || {
        echo "run-fuzz: configure failed in $build" >&2
        exit 1
    }
fi
make -s -C "$build/tests" fuzz || {
    echo "run-fuzz: building the fuzzer failed" >&2
    exit 1
}

rm -rf "$seeds"
mkdir -p "$seeds" "$corpus"
"$build/tests/fuzz/seed_codec" "$seeds" || exit 1

echo "run-fuzz: fuzzing for ${seconds}s (log: $log)"
"$build/tests/fuzz/fuzz_codec" -max_total_time="$seconds" -max_len=4096 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$top/tests/fuzz/" "$corpus" "$seeds" >"$log" 2>&1
rc=$?

execs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$log" | tail -1)
rate=$(awk '/^stat::average_exec_per_sec:/ {print $2}' "$log" | tail -1)
inputs=$(find "$corpus" -type f | wc -l)
echo "run-fuzz: ${execs:-?} executions (${rate:-?}/s), corpus of $inputs inputs"
if [ "$rc" -ne 0 ]; then
    echo "run-fuzz: FAILED: libFuzzer exited with status $rc" >&2
    grep -E 'ERROR|invariant broken|runtime error|SUMMARY|Test unit written' "$log" | head -20 >&2
    exit 1
fi
echo "run-fuzz: no findings"
