#!/usr/bin/env bash
# bench/ws_bench.sh: the WebSocket echo benchmark (issue 15): CONNS (50)
# connections each keeping DEPTH (16) masked 64-byte binary messages in
# flight to an echo server; messages/s and the server's CPU per message
# (utime + stime from /proc/PID/stat over the timed window). Servers:
#   c-floor         bench/ws_uv.c: wslay over libuv, the handshake by hand
#   nexus           bench/ws_nexus.lua: nexus.websocket, ws:recv + ws:send
#   nexus-zerocopy  the same with ws:recv_into(byte channel) + ws:send(m)
#   lua-http        bench/ws_luahttp.lua: lua-http's websocket on cqueues
# Server on CPU 0, load generator (bench/ws_loadgen.c) on CPU 1.
#   bash bench/ws_bench.sh --one NAME   one RESULT line (make bench's ws)
#   bash bench/ws_bench.sh [RUNS]       all, interleaved, RUNS rounds (3)
# Environment: NEXUS_BUILD (./build), LUAJIT (luajit), BENCH_WS_CONNS (50),
# BENCH_WS_DEPTH (16), BENCH_WS_SECS (5), BENCH_WS_WARMUP_SECS (1),
# BENCH_WS_PIN ("SERVER:LOADGEN" CPUs for taskset -c, default 0:1).
# The C programs are built once into $NEXUS_BUILD/bench/ws.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
LUAJIT=${LUAJIT:-luajit}
OUT=$NEXUS_BUILD/bench/ws
mkdir -p "$OUT" || exit 1
export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;;" LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"
if [ ! -x "$OUT/ws_loadgen" ] || [ "$ROOT/bench/ws_loadgen.c" -nt "$OUT/ws_loadgen" ]; then
  cc -O2 -o "$OUT/ws_loadgen" "$ROOT/bench/ws_loadgen.c" -lcrypto || exit 1
fi
if [ ! -x "$OUT/ws_uv" ] || [ "$ROOT/bench/ws_uv.c" -nt "$OUT/ws_uv" ]; then
  cc -O2 -o "$OUT/ws_uv" "$ROOT/bench/ws_uv.c" $(pkg-config --cflags --libs libuv) -lwslay -lcrypto || exit 1
fi
PIN=${BENCH_WS_PIN:-0:1}

one() { # name
  local port= i pid
  case $1 in
    c-floor) set -- "$OUT/ws_uv" 0 ;;
    nexus) set -- "$NEXUS_BUILD/bin/nexus" "$ROOT/bench/ws_nexus.lua" 0 string ;;
    nexus-zerocopy) set -- "$NEXUS_BUILD/bin/nexus" "$ROOT/bench/ws_nexus.lua" 0 zerocopy ;;
    lua-http) set -- "$LUAJIT" "$ROOT/bench/ws_luahttp.lua" 0 ;;
    *) echo "ws_bench.sh: unknown server $1" >&2; return 1 ;;
  esac
  : >"$OUT/srv.out"
  taskset -c "${PIN%%:*}" "$@" >"$OUT/srv.out" 2>&1 &   # taskset execs: $! is the server
  pid=$!
  for i in $(seq 1 200); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  local rc=1
  if [ -n "$port" ]; then
    taskset -c "${PIN#*:}" "$OUT/ws_loadgen" -p "$port" -P "$pid" -c "${BENCH_WS_CONNS:-50}" \
      -d "${BENCH_WS_DEPTH:-16}" -s "${BENCH_WS_SECS:-5}" -W "${BENCH_WS_WARMUP_SECS:-1}"
    rc=$?
    [ $rc -ne 0 ] && echo "ws_bench.sh: $1's output: $(head -n 3 "$OUT/srv.out" | tr '\n' ' ')" >&2
  else
    echo "ws_bench.sh: $1 printed no listening line: $(head -n 3 "$OUT/srv.out" | tr '\n' ' ')" >&2
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  return $rc
}

if [ "${1:-}" = --one ]; then
  one "$2"
  exit
fi
for ((r = 1; r <= ${1:-3}; r++)); do
  for s in c-floor nexus nexus-zerocopy lua-http; do
    printf '%s ' "$s"; one "$s"
  done
done
