#!/usr/bin/env bash
# bench/run.sh: the nexus benchmark suite (called by `make bench`).
#
# Four workloads (spawn/join, sleepers, parked-task memory, byte channel), each run by
# several implementations: nexus and its peers (bare coroutines, a
# hand-written Lua scheduler, luv, cqueues, plain C on libuv). Every
# measurement is its own process; each implementation runs BENCH_RUNS times,
# round-robin with the others so that machine noise hits all alike, and the
# tables report the median and the ratio to the workload's reference.
#
# Environment:
#   NEXUS_BUILD   build directory (default ./build): bin/nexus, lib/nexus/core.so
#   BENCH_RUNS    measurements per implementation (default 5)
#   BENCH_ONLY    comma list of workloads to run: spawn,sleepers,parked,pool,chan,world,bytes
#                 (chan is two tables: ping-pong, chan_try)
#   LUAJIT        the interpreter (default luajit)
#   CC            C compiler for the libuv baseline (default cc)
#   BENCH_SPAWN_N, BENCH_SLEEPERS_N, BENCH_PARKED_N  problem sizes
#                 (defaults 200000, 100000, 100000)
#   BENCH_CHAN_N, BENCH_CHAN_TRY_N  chan round trips, try pairs
#                 (defaults 1000000, 10000000)
#   BENCH_WORLD_N dispatches / with_world calls per world run (default 10000000)
#   BENCH_BYTES_N byte-channel messages (default 1000000)
#   BENCH_POOL_N  detached spawns per pool run (default 200000)
# Output: the tables on stdout; raw results in $NEXUS_BUILD/bench/results.txt
# and the tables as Markdown in $NEXUS_BUILD/bench/results.md.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
BENCH_RUNS=${BENCH_RUNS:-5}
BENCH_ONLY=${BENCH_ONLY:-spawn,sleepers,parked,pool,chan,world,bytes}
LUAJIT=${LUAJIT:-luajit}
CC=${CC:-cc}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}

OUT=$NEXUS_BUILD/bench
RESULTS=$OUT/results.txt
mkdir -p "$OUT" || exit 1
: >"$RESULTS"

export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;"
export LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"

if ! command -v "$LUAJIT" >/dev/null 2>&1; then
  echo "bench: $LUAJIT not found" >&2
  exit 1
fi

wanted() { case ",$BENCH_ONLY," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }

# record WORKLOAD IMPL KIND TEXT...: one line of results.txt.
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS"; }

# --- what can run -------------------------------------------------------
# Each check prints nothing when the implementation can run, else why not.

lua_loads() {   # lua_loads MODULE
  local err
  err=$("$LUAJIT" -e "require '$1'" 2>&1 >/dev/null) && return 0
  echo "require '$1' failed: $(printf '%s\n' "$err" | head -n 1)"
}

nexus_why=""
if [ ! -x "$NEXUS_BUILD/bin/nexus" ] || [ ! -f "$NEXUS_BUILD/lib/nexus/core.so" ]; then
  nexus_why="nexus not built ($NEXUS_BUILD/bin/nexus or $NEXUS_BUILD/lib/nexus/core.so missing; run make)"
else
  nexus_why=$(lua_loads nexus)
fi
nexus_cmd_why=$nexus_why
luv_why=$(lua_loads luv)
cqueues_why=$(lua_loads cqueues)

uv_c_why=""
UV_C=$OUT/sleepers_uv
if ! wanted sleepers; then
  :
elif ! flags=$(pkg-config --cflags --libs libuv 2>&1); then
  uv_c_why="pkg-config libuv failed: $(printf '%s\n' "$flags" | head -n 1)"
elif ! err=$($CC -O2 -o "$UV_C" "$ROOT/bench/sleepers_uv.c" $flags 2>&1); then
  uv_c_why="cc failed: $(printf '%s\n' "$err" | head -n 1)"
fi

# The C producer/consumer of the byte-channel workload.
bytes_c_why=$nexus_why
BYTES_C=$OUT/bytes_c.so
if ! wanted bytes || [ -n "$bytes_c_why" ]; then
  :
elif ! err=$($CC -O2 -shared -fPIC -I "$ROOT/include" -o "$BYTES_C" "$ROOT/bench/bytes_c.c" 2>&1); then
  bytes_c_why="cc failed: $(printf '%s\n' "$err" | head -n 1)"
fi

# The world workload's handler library (examples/handlers), built plain.
world_why=$nexus_why
WORLD_LIB=$OUT/liborderbook.so
if ! wanted world || [ -n "$world_why" ]; then
  :
elif ! err=$($CC -O2 -fPIC -shared -I"$ROOT/include" -o "$WORLD_LIB" \
                "$ROOT/examples/handlers/orderbook.c" -lm 2>&1); then
  world_why="cc failed on examples/handlers/orderbook.c: $(printf '%s\n' "$err" | head -n 1)"
fi

# --- the implementations ------------------------------------------------
# Per workload: "impl|why-not-variable|command". The first is the reference.

impls_spawn=(
  "coro-loop||$LUAJIT $ROOT/bench/spawn_coro.lua"
  "coro-alive||$LUAJIT $ROOT/bench/spawn_coro_alive.lua"
  "lua-sched||$LUAJIT $ROOT/bench/spawn_sched.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/spawn_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/spawn_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/spawn_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/spawn_nexus.lua"
  "nexus-shared|nexus_why|$LUAJIT $ROOT/bench/spawn_nexus_shared.lua"
)
impls_sleepers=(
  "c-libuv|uv_c_why|$UV_C"
  "luv|luv_why|$LUAJIT $ROOT/bench/sleepers_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/sleepers_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/sleepers_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/sleepers_nexus.lua"
)
impls_parked=(
  "coro||$LUAJIT $ROOT/bench/parked_coro.lua"
  "lua-sched||$LUAJIT $ROOT/bench/parked_sched.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/parked_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/parked_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/parked_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/parked_nexus.lua"
)
impls_chan=(
  "lua-chan||$LUAJIT $ROOT/bench/chan_pingpong_lua.lua"
  "coro||$LUAJIT $ROOT/bench/chan_pingpong_coro.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/chan_pingpong_luv.lua"
  "luv-drain|luv_why|env BENCH_LUV_DRAIN=1 $LUAJIT $ROOT/bench/chan_pingpong_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/chan_pingpong_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/chan_pingpong_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/chan_pingpong_nexus.lua"
)
impls_pool=(
  "spawn|nexus_why|$LUAJIT $ROOT/bench/pool_spawn.lua"
  "pooled|nexus_why|env BENCH_POOL_MODE=pooled $LUAJIT $ROOT/bench/pool_spawn.lua"
  "pooled-cmd|nexus_cmd_why|env BENCH_POOL_MODE=pooled $NEXUS_BUILD/bin/nexus $ROOT/bench/pool_spawn.lua"
)
impls_chan_try=(
  "lua-chan||$LUAJIT $ROOT/bench/chan_try_lua.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/chan_try_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/chan_try_nexus.lua"
)

impls_world=(
  "c-direct|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua direct $WORLD_LIB"
  "c-handler|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua handler $WORLD_LIB"
  "c-handler-call|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua call $WORLD_LIB"
  "lua-handler|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua lua $WORLD_LIB"
  "touch-direct|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua touch-direct $WORLD_LIB"
  "touch-handler|world_why|$LUAJIT $ROOT/bench/world_dispatch.lua touch-handler $WORLD_LIB"
  "with_world|nexus_why|$LUAJIT $ROOT/bench/world_with.lua"
  "with_world_ref|nexus_why|$LUAJIT $ROOT/bench/world_with.lua ref"
  "with_world-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/world_with.lua"
)

impls_bytes=(
  "lua-queue||$LUAJIT $ROOT/bench/bytes_lua_queue.lua"
  "nexus-lua|nexus_why|$LUAJIT $ROOT/bench/bytes_nexus.lua lua"
  "nexus-c|bytes_c_why|$LUAJIT $ROOT/bench/bytes_nexus.lua c $BYTES_C"
  "nexus-cmd-lua|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/bytes_nexus.lua lua"
  "nexus-cmd-c|bytes_c_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/bytes_nexus.lua c $BYTES_C"
)

# run_workload NAME: BENCH_RUNS rounds over the runnable implementations.
run_workload() {
  local w=$1 spec impl whyvar cmd why r out rc line
  local -n specs="impls_$w"
  local runnable=()
  for spec in "${specs[@]}"; do
    IFS='|' read -r impl whyvar cmd <<<"$spec"
    why=""
    [ -n "$whyvar" ] && why=${!whyvar}
    if [ -n "$why" ]; then
      record "$w" "$impl" SKIP "$why"
    else
      record "$w" "$impl" ORDER ""
      runnable+=("$impl|$cmd")
    fi
  done
  echo "bench: $w: ${#runnable[@]} implementations x $BENCH_RUNS runs" >&2
  local failed=" "
  for ((r = 1; r <= BENCH_RUNS; r++)); do
    for spec in "${runnable[@]}"; do
      impl=${spec%%|*}
      cmd=${spec#*|}
      case $failed in *" $impl "*) continue ;; esac
      out=$(timeout "$RUN_TIMEOUT" $cmd 2>"$OUT/stderr.txt")
      rc=$?
      line=$(printf '%s\n' "$out" | grep '^RESULT ' | tail -n 1)
      if [ $rc -eq 0 ] && [ -n "$line" ]; then
        record "$w" "$impl" RUN "${line#RESULT }"
      else
        [ $rc -eq 124 ] && why="timed out after ${RUN_TIMEOUT}s" ||
          why="exit $rc: $(grep -v '^[[:space:]]*$' "$OUT/stderr.txt" | head -n 3 | tr '\n' ' ')"
        [ $rc -eq 0 ] && why="no RESULT line"
        record "$w" "$impl" FAIL "run $r: $why"
        failed="$failed$impl "   # a broken implementation is not retried
      fi
    done
  done
}

echo "bench: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $($LUAJIT -v | cut -d' ' -f1-2)" >&2
for w in spawn sleepers parked pool world bytes; do
  wanted "$w" && run_workload "$w"
done
wanted chan && { run_workload chan; run_workload chan_try; }

"$LUAJIT" "$ROOT/bench/report.lua" "$RESULTS" "$OUT/results.md"
