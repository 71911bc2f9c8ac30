#!/usr/bin/env bash
# fuzz/run.sh FUZZER SECONDS: a bounded libFuzzer run (called by make fuzz).
# New inputs go to a temporary corpus directory, never into fuzz/corpus
# (which libFuzzer only reads); a crash is saved outside the tree and
# reproduced with: luajit fuzz/replay.lua FILE (see docs/fuzzing.md).
set -u
fuzzer=$1
secs=${2:-60}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/nexus-fuzz.XXXXXX")
mkdir -p "$work/corpus" "$work/crashes"
# LuaJIT and libuv are not instrumented and the Lua state lives for the
# whole run: no leak checking (as in make test SANITIZE=...).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$fuzzer" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
  -print_final_stats=1 -artifact_prefix="$work/crashes/" \
  "$work/corpus" "$root/fuzz/corpus" 2>&1 | tee "$work/log" | grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::|ERROR|==[0-9]+==|nexus fuzz|SUMMARY|Test unit written'
rc=${PIPESTATUS[0]}
crashes=$(ls "$work/crashes" 2>/dev/null)
if [ "$rc" != 0 ] || [ -n "$crashes" ]; then
  echo "fuzz: FAILED (status $rc); the input and the log are kept in $work:"
  ls -l "$work/crashes"
  for f in "$work"/crashes/*; do
    [ -e "$f" ] || continue
    echo "fuzz: crashing input: $f"
    echo "fuzz: reproduce with: $fuzzer $f"
    echo "fuzz:   or unsanitized: NEXUS_FUZZ_TRACE=1 LUA_PATH='$root/lua/?.lua;;' LUA_CPATH='$root/build/lib/?.so;;' luajit $root/fuzz/replay.lua $f"
  done
  exit 1
fi
echo "fuzz: no crash or invariant violation in ${secs}s ($(ls "$work/corpus" | wc -l) new inputs, not kept)"
rm -rf "$work"
