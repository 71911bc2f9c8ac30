#!/usr/bin/env bash
# bench/run.sh: the nexus benchmark suite (called by `make bench`).
#
# Workloads (spawn/join, sleepers, parked-task memory, pool, channels,
# world, byte channel, TCP echo), each run by several implementations:
# nexus and its peers (bare coroutines, a hand-written Lua scheduler, luv,
# cqueues, copas, plain C on libuv or epoll). Every
# measurement is its own process; each implementation runs BENCH_RUNS times,
# round-robin with the others so that machine noise hits all alike, and the
# tables report the median and the ratio to the workload's reference.
#
# Environment:
#   NEXUS_BUILD   build directory (default ./build): bin/nexus, lib/nexus/core.so
#   BENCH_RUNS    measurements per implementation (default 5)
#   BENCH_ONLY    comma list of workloads to run:
#                 spawn,sleepers,parked,pool,chan,world,bytes,signal,compose,echo
#                 (compose is four tables: select, group, sem, coop; each can be named;
#                 tls_echo: bench/tls_echo.sh, the TLS echo against its C floor
#                 and copas + LuaSec; BENCH_TLS_PIN, BENCH_TLS_N, BENCH_TLS_WARMUP;
#                 ws: bench/ws_bench.sh, the WebSocket echo against its C floor;
#                 http_server: bench/http_server.sh, keep-alive GETs against
#                 the C floor and lua-http, BENCH_HTTP_* there;
#                 http_client: bench/http_client.sh, GETs through nexus.http,
#                 lua-http, copas and a C floor; luv_bridge: nexus.luv.await
#                 against a plain luv callback)
#                 (chan is two tables: ping-pong, chan_try; echo is two:
#                 echo_latency, echo_throughput, each can be named)
#   LUAJIT        the interpreter (default luajit)
#   CC            C compiler for the C baselines (default cc)
#   BENCH_SPAWN_N, BENCH_SLEEPERS_N, BENCH_PARKED_N  problem sizes
#                 (defaults 200000, 100000, 100000)
#   BENCH_CHAN_N, BENCH_CHAN_TRY_N  chan round trips, try pairs
#                 (defaults 1000000, 10000000)
#   BENCH_WORLD_N dispatches / with_world calls per world run (default 10000000)
#   BENCH_BYTES_N byte-channel messages (default 1000000)
#   BENCH_POOL_N  detached spawns per pool run (default 200000)
#   BENCH_SIGNAL_N SIGTERMs per signal run, busy child processes (default 7)
#   echo: BENCH_ECHO_N (latency round trips, 100000), BENCH_ECHO_WARMUP
#                 (untimed round trips first, 10000), BENCH_ECHO_CONNS (50),
#                 BENCH_ECHO_DEPTH (messages in flight per connection, 16),
#                 BENCH_ECHO_SECS (timed throughput window, 5),
#                 BENCH_ECHO_WARMUP_SECS (untimed first, 1),
#                 BENCH_ECHO_LAT_PIN, BENCH_ECHO_TP_PIN: CPUs of server and
#                 load generator as "SERVER:LOADGEN" for taskset -c, "-" for
#                 unpinned (defaults 0:0 and 0:0, see docs/BENCHMARKS.md)
# Output: the tables on stdout; raw results in $NEXUS_BUILD/bench/results.txt
# and the tables as Markdown in $NEXUS_BUILD/bench/results.md.
set -u

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
BENCH_RUNS=${BENCH_RUNS:-5}
BENCH_ONLY=${BENCH_ONLY:-spawn,sleepers,parked,pool,chan,world,bytes,signal,compose,tls_echo,ws,http_server,http_client,luv_bridge,echo}
LUAJIT=${LUAJIT:-luajit}
CC=${CC:-cc}
RUN_TIMEOUT=${BENCH_TIMEOUT:-120}

OUT=$NEXUS_BUILD/bench
RESULTS=$OUT/results.txt

# --- one echo measurement ------------------------------------------------

# echo_alive PID: the process runs (a dead child stays a zombie until
# waited for, and kill -0 still finds it).
echo_alive() {
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st%% *}" != Z ]
}
# echo_stop: SIGTERM to the server, SIGKILL if it is still there after 2 s
# (a server that hangs in its shutdown must not turn a finished
# measurement into a time-out).
echo_stop() {
  local i
  kill "$echo_pid" 2>/dev/null
  for ((i = 0; i < 40; i++)); do
    echo_alive "$echo_pid" || break
    sleep 0.05
  done
  kill -9 "$echo_pid" 2>/dev/null
  wait "$echo_pid" 2>/dev/null
}
echo_server_says() { grep -v '^[[:space:]]*$' "$OUT/echo_server.err" | head -n 3 | tr '\n' ' '; }

# run.sh --echo-one MODE SERVER_CMD...: start the server (SERVER_CMD 0, so
# it binds a free port) pinned per BENCH_ECHO_*_PIN, wait for its
# "listening <port>" line, run the load generator against it with the
# server's pid (for its CPU time), print the load generator's RESULT line,
# kill the server. run_workload runs this as one measurement.
echo_one() {
  local mode=$1 pin spin gpin args port rc i
  shift
  if [ "$mode" = latency ]; then
    pin=${BENCH_ECHO_LAT_PIN:-0:0}
    args="-n ${BENCH_ECHO_N:-100000} -w ${BENCH_ECHO_WARMUP:-10000}"
  else
    pin=${BENCH_ECHO_TP_PIN:-0:0}
    args="-c ${BENCH_ECHO_CONNS:-50} -d ${BENCH_ECHO_DEPTH:-16}"
    args="$args -s ${BENCH_ECHO_SECS:-5} -W ${BENCH_ECHO_WARMUP_SECS:-1}"
  fi
  spin=(); gpin=()
  [ "${pin%%:*}" != - ] && spin=(taskset -c "${pin%%:*}")
  [ "${pin#*:}" != - ] && gpin=(taskset -c "${pin#*:}")
  local sout=$OUT/echo_server.out serr=$OUT/echo_server.err
  # Emptied here, not by the redirection below: that one happens in the
  # forked child, and until it does the poll would read the previous
  # measurement's "listening" line (a dead server's port).
  : >"$sout"; : >"$serr"
  "${spin[@]}" "$@" 0 >>"$sout" 2>>"$serr" &   # taskset execs: $! is the server
  echo_pid=$!   # global: the EXIT trap runs after this function returned
  trap echo_stop EXIT
  port=""
  for ((i = 0; i < 200; i++)); do   # 10 s
    port=$(sed -n 's/^listening \([0-9][0-9]*\)$/\1/p' "$sout" | head -n 1)
    [ -n "$port" ] && break
    if ! echo_alive "$echo_pid"; then
      echo "server exited before listening: $(echo_server_says)" >&2
      return 1
    fi
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "server printed no 'listening <port>' line within 10 s" >&2
    return 1
  fi
  "${gpin[@]}" "$OUT/echo_loadgen" "$mode" -p "$port" -P "$echo_pid" $args
  rc=$?
  if ! echo_alive "$echo_pid"; then
    echo "server died during the run: $(echo_server_says)" >&2
    return 1
  fi
  [ $rc -ne 0 ] && [ -s "$serr" ] && echo "server's stderr: $(echo_server_says)" >&2
  return $rc
}
if [ "${1:-}" = --echo-one ]; then
  shift
  echo_one "$@"
  exit
fi

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
copas_why=$(lua_loads copas)
luahttp_why=$(lua_loads http.websocket)
copas_tls_why=$copas_why
[ -z "$copas_tls_why" ] && copas_tls_why=$(lua_loads ssl)

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

# The echo workload: the load generator and the two C servers, compiled
# like the sleepers baseline; nexus needs its TCP layer (nexus.tcp).
echo_gen_why="" echo_epoll_why="" echo_uv_why=""
if wanted echo || wanted echo_latency || wanted echo_throughput; then
  if ! err=$($CC -O2 -o "$OUT/echo_loadgen" "$ROOT/bench/echo_loadgen.c" 2>&1); then
    echo_gen_why="cc echo_loadgen.c failed: $(printf '%s\n' "$err" | head -n 1)"
  fi
  if ! err=$($CC -O2 -o "$OUT/echo_epoll" "$ROOT/bench/echo_epoll.c" 2>&1); then
    echo_epoll_why="cc echo_epoll.c failed: $(printf '%s\n' "$err" | head -n 1)"
  fi
  if ! flags=$(pkg-config --cflags --libs libuv 2>&1); then
    echo_uv_why="pkg-config libuv failed: $(printf '%s\n' "$flags" | head -n 1)"
  elif ! err=$($CC -O2 -o "$OUT/echo_uv" "$ROOT/bench/echo_uv.c" $flags 2>&1); then
    echo_uv_why="cc echo_uv.c failed: $(printf '%s\n' "$err" | head -n 1)"
  fi
  # without the load generator nothing of the workload can run
  if [ -n "$echo_gen_why" ]; then
    echo_epoll_why=$echo_gen_why echo_uv_why=$echo_gen_why
  fi
  echo_luv_why=${echo_gen_why:-$luv_why}
  echo_cqueues_why=${echo_gen_why:-$cqueues_why}
  echo_copas_why=${echo_gen_why:-$copas_why}
  echo_nexus_why=${echo_gen_why:-$nexus_why}
  if [ -z "$echo_nexus_why" ] &&
     ! err=$("$LUAJIT" -e "local t = require('nexus').tcp
       if not (type(t) == 'table' and t.listen) then
         error('nexus has no TCP layer (nexus.tcp.listen) in this build', 0)
       end" 2>&1); then
    echo_nexus_why=$(printf '%s\n' "$err" | head -n 1 | sed 's/^[^:]*: //')
  fi
fi

# The HTTP server workload (bench/http_server.sh builds its programs): the
# C floor needs http_parser's header and libuv, lua-http its server module,
# nexus its HTTP server (nexus.http.listen).
http_floor_why="" http_nexus_why=$nexus_cmd_why luahttp_why=""
if wanted http_server; then
  if ! flags=$(pkg-config --cflags --libs libuv 2>&1); then
    http_floor_why="pkg-config libuv failed: $(printf '%s\n' "$flags" | head -n 1)"
  elif ! printf '#include <http_parser.h>\n' | $CC -E - >/dev/null 2>&1; then
    http_floor_why="http_parser.h not found (Debian: libhttp-parser-dev)"
  fi
  luahttp_why=$(lua_loads http.server)
  if [ -z "$http_nexus_why" ] &&
     ! err=$("$LUAJIT" -e "local h = require('nexus').http
       if not (type(h) == 'table' and h.listen) then
         error('nexus has no HTTP server (nexus.http.listen) in this build', 0)
       end" 2>&1); then
    http_nexus_why=$(printf '%s\n' "$err" | head -n 1 | sed 's/^[^:]*: //')
  fi
fi

# --- the implementations ------------------------------------------------
# Per workload: "impl|why-not-variable|command". The first is the reference.

impls_spawn=(
  "coro-loop||$LUAJIT $ROOT/bench/spawn_coro.lua"
  "coro-alive||$LUAJIT $ROOT/bench/spawn_coro_alive.lua"
  "coro-alive-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/spawn_coro_alive.lua"
  "lua-sched||$LUAJIT $ROOT/bench/spawn_sched.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/spawn_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/spawn_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/spawn_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/spawn_nexus.lua"
  "nexus-closure|nexus_why|$LUAJIT $ROOT/bench/spawn_nexus_closure.lua"
)
impls_sleepers=(
  "c-libuv|uv_c_why|$UV_C"
  "luv|luv_why|$LUAJIT $ROOT/bench/sleepers_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/sleepers_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/sleepers_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/sleepers_nexus.lua"
  "nexus-closure|nexus_why|$LUAJIT $ROOT/bench/sleepers_nexus_closure.lua"
  "lua-floor||$LUAJIT $ROOT/bench/sleepers_floor.lua"
)
impls_parked=(
  "coro||$LUAJIT $ROOT/bench/parked_coro.lua"
  "lua-sched||$LUAJIT $ROOT/bench/parked_sched.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/parked_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/parked_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/parked_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/parked_nexus.lua"
  "nexus-token|nexus_why|env BENCH_PARKED_ON=token $LUAJIT $ROOT/bench/parked_nexus.lua"
)
impls_chan=(
  "lua-chan||$LUAJIT $ROOT/bench/chan_pingpong_lua.lua"
  "coro||$LUAJIT $ROOT/bench/chan_pingpong_coro.lua"
  "luv|luv_why|$LUAJIT $ROOT/bench/chan_pingpong_luv.lua"
  "luv-drain|luv_why|env BENCH_LUV_DRAIN=1 $LUAJIT $ROOT/bench/chan_pingpong_luv.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/chan_pingpong_cqueues.lua"
  "nexus-yield|nexus_why|$LUAJIT $ROOT/bench/chan_pingpong_yield.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/chan_pingpong_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/chan_pingpong_nexus.lua"
)
impls_pool=(
  "spawn|nexus_why|$LUAJIT $ROOT/bench/pool_spawn.lua"
  "pooled|nexus_why|env BENCH_POOL_MODE=pooled $LUAJIT $ROOT/bench/pool_spawn.lua"
  "pooled-cmd|nexus_cmd_why|env BENCH_POOL_MODE=pooled $NEXUS_BUILD/bin/nexus $ROOT/bench/pool_spawn.lua"
)
# Composing tasks (issue 14): select over two channels against the plain
# ping-pong, group spawn+next against spawn+join, and the cooperative
# budget's cost on the ping-pong (0 = off).
impls_select=(
  "nexus-chan|nexus_why|$LUAJIT $ROOT/bench/chan_pingpong_nexus.lua"
  "nexus-select|nexus_why|$LUAJIT $ROOT/bench/select_pingpong_nexus.lua"
  "nexus-select-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/select_pingpong_nexus.lua"
)
impls_group=(
  "spawn-join|nexus_why|$LUAJIT $ROOT/bench/spawn_nexus.lua"
  "group-next|nexus_why|$LUAJIT $ROOT/bench/group_nexus.lua"
  "group-next-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/group_nexus.lua"
)
impls_sem=(
  "lua-sched||$LUAJIT $ROOT/bench/sem_lua.lua"
  "cqueues|cqueues_why|$LUAJIT $ROOT/bench/sem_cqueues.lua"
  "nexus|nexus_why|$LUAJIT $ROOT/bench/sem_nexus.lua"
  "nexus-cmd|nexus_cmd_why|$NEXUS_BUILD/bin/nexus $ROOT/bench/sem_nexus.lua"
)
impls_tls_echo=(
  "c-floor||bash $ROOT/bench/tls_echo.sh --one c-floor"
  "copas|copas_tls_why|bash $ROOT/bench/tls_echo.sh --one copas"
  "nexus|nexus_cmd_why|bash $ROOT/bench/tls_echo.sh --one nexus"
)
impls_ws=(
  "c-floor||bash $ROOT/bench/ws_bench.sh --one c-floor"
  "nexus|nexus_cmd_why|bash $ROOT/bench/ws_bench.sh --one nexus"
  "nexus-zerocopy|nexus_cmd_why|bash $ROOT/bench/ws_bench.sh --one nexus-zerocopy"
  "lua-http|luahttp_why|bash $ROOT/bench/ws_bench.sh --one lua-http"
)
impls_http_server=(
  "c-floor|http_floor_why|bash $ROOT/bench/http_server.sh --one c-floor"
  "luahttp|luahttp_why|bash $ROOT/bench/http_server.sh --one luahttp"
  "nexus|http_nexus_why|bash $ROOT/bench/http_server.sh --one nexus"
  "nexus-tcp|nexus_cmd_why|bash $ROOT/bench/http_server.sh --one nexus-tcp"
)
# HTTP client (issue 16): bench/http_client.sh starts the C server pinned
# to CPU 1 and runs one client on CPU 0 (BENCH_HTTP_* in that script).
lua_http_why=$(lua_loads http.client)
socket_http_why=$copas_why
[ -z "$socket_http_why" ] && socket_http_why=$(lua_loads socket.http)
impls_http_client=(
  "c-floor||bash $ROOT/bench/http_client.sh --one c-floor"
  "nexus|nexus_cmd_why|bash $ROOT/bench/http_client.sh --one nexus"
  "lua-http|lua_http_why|bash $ROOT/bench/http_client.sh --one lua-http"
  "copas|socket_http_why|bash $ROOT/bench/http_client.sh --one copas"
)
# nexus.luv.await against a plain luv callback, the same op (issue 16).
impls_luv_bridge=()
for op in stat timer idle; do
  impls_luv_bridge+=(
    "cb-$op|nexus_why|$LUAJIT $ROOT/bench/luv_bridge.lua cb-$op"
    "await-$op|nexus_why|$LUAJIT $ROOT/bench/luv_bridge.lua await-$op"
    "luv-$op|luv_why|$LUAJIT $ROOT/bench/luv_bridge.lua luv-$op"
  )
done
impls_coop=(
  "coop-off|nexus_why|env BENCH_COOP=0 $LUAJIT $ROOT/bench/chan_pingpong_nexus.lua"
  "coop-128|nexus_why|env BENCH_COOP=128 $LUAJIT $ROOT/bench/chan_pingpong_nexus.lua"
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

impls_signal=(
  "cmd-spinner|nexus_cmd_why|$LUAJIT $ROOT/bench/signal_exit.lua spinner"
  "cmd-pingpong|nexus_cmd_why|$LUAJIT $ROOT/bench/signal_exit.lua pingpong"
  "luajit-runtime|nexus_why|$LUAJIT $ROOT/bench/signal_exit.lua runtime"
)

ECHO_ONE="bash $ROOT/bench/run.sh --echo-one"
impls_echo_latency=(
  "c-libuv|echo_uv_why|$ECHO_ONE latency $OUT/echo_uv"
  "c-epoll|echo_epoll_why|$ECHO_ONE latency $OUT/echo_epoll"
  "luv|echo_luv_why|$ECHO_ONE latency $LUAJIT $ROOT/bench/echo_luv.lua"
  "cqueues|echo_cqueues_why|$ECHO_ONE latency $LUAJIT $ROOT/bench/echo_cqueues.lua"
  "copas|echo_copas_why|$ECHO_ONE latency $LUAJIT $ROOT/bench/echo_copas.lua"
  "nexus|echo_nexus_why|$ECHO_ONE latency $LUAJIT $ROOT/bench/echo_nexus.lua"
  "nexus-cmd|echo_nexus_why|$ECHO_ONE latency $NEXUS_BUILD/bin/nexus $ROOT/bench/echo_nexus.lua"
)
impls_echo_throughput=()
for spec in "${impls_echo_latency[@]}"; do
  impls_echo_throughput+=("${spec/--echo-one latency/--echo-one throughput}")
done

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
for w in spawn sleepers parked pool world bytes signal; do
  wanted "$w" && run_workload "$w"
done
wanted chan && { run_workload chan; run_workload chan_try; }
for w in select group sem coop; do
  { wanted compose || wanted "$w"; } && run_workload "$w"
done
wanted tls_echo && run_workload tls_echo
wanted ws && run_workload ws
wanted http_server && run_workload http_server
wanted http_client && run_workload http_client
wanted luv_bridge && run_workload luv_bridge
for w in echo_latency echo_throughput; do
  { wanted echo || wanted "$w"; } && run_workload "$w"
done

"$LUAJIT" "$ROOT/bench/report.lua" "$RESULTS" "$OUT/results.md"
