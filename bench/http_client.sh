#!/usr/bin/env bash
# bench/http_client.sh: the HTTP client benchmark (issue 16): GETs of a
# 1 KiB body from a local keep-alive server (bench/http_server_fixed.c, C
# on epoll, pinned to CPU 1), INFLIGHT at a time, the client pinned to
# CPU 0. Each client reports requests/s and its own CPU (utime + stime,
# getrusage) per request over the timed part (bench/http_count.lua).
#   bash bench/http_client.sh --one CLIENT   one RESULT line (make bench's http_client)
#   bash bench/http_client.sh [RUNS]         every client, interleaved, RUNS rounds
# Clients: c-floor (bench/http_client_uv.c: libcurl multi on libuv, curl's
# multi-uv shape), nexus (nexus.http under the nexus command), lua-http
# (lua-http's client on cqueues), copas (LuaSocket's socket.http in copas).
# Environment: BENCH_HTTP_N (10000 timed GETs), BENCH_HTTP_INFLIGHT (100),
# BENCH_HTTP_WARMUP (1000 untimed GETs first), BENCH_HTTP_PIN
# ("SERVER:CLIENT" CPUs for taskset -c, default 1:0; "-" = unpinned).
# The programs are built once into $NEXUS_BUILD/bench/http.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
OUT=$NEXUS_BUILD/bench/http
LUAJIT=${LUAJIT:-luajit}
N=${BENCH_HTTP_N:-10000}
INFLIGHT=${BENCH_HTTP_INFLIGHT:-100}
WARMUP=${BENCH_HTTP_WARMUP:-1000}
PIN=${BENCH_HTTP_PIN:-1:0}
mkdir -p "$OUT" || exit 1
export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"
if [ ! -x "$OUT/http_server_fixed" ] || [ "$ROOT/bench/http_server_fixed.c" -nt "$OUT/http_server_fixed" ]; then
  cc -O2 -o "$OUT/http_server_fixed" "$ROOT/bench/http_server_fixed.c" || exit 1
fi
if [ ! -x "$OUT/http_client_uv" ] || [ "$ROOT/bench/http_client_uv.c" -nt "$OUT/http_client_uv" ]; then
  cc -O2 -o "$OUT/http_client_uv" "$ROOT/bench/http_client_uv.c" \
    $(pkg-config --cflags --libs libuv libcurl) || exit 1
fi

spin=(); cpin=()
[ "${PIN%%:*}" != - ] && spin=(taskset -c "${PIN%%:*}")
[ "${PIN#*:}" != - ] && cpin=(taskset -c "${PIN#*:}")

one() { # client
  local port= i pid cmd
  case $1 in
    c-floor) cmd=("$OUT/http_client_uv") ;;
    nexus) cmd=("$NEXUS_BUILD/bin/nexus" "$ROOT/bench/http_client_nexus.lua") ;;
    lua-http) cmd=("$LUAJIT" "$ROOT/bench/http_client_luahttp.lua") ;;
    copas) cmd=("$LUAJIT" "$ROOT/bench/http_client_copas.lua") ;;
    *) echo "http_client.sh: unknown client $1" >&2; return 1 ;;
  esac
  : >"$OUT/srv.out"
  "${spin[@]}" "$OUT/http_server_fixed" 0 >"$OUT/srv.out" 2>"$OUT/srv.err" &
  pid=$!
  for i in $(seq 1 200); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  local rc=1
  if [ -n "$port" ]; then
    "${cpin[@]}" "${cmd[@]}" "http://127.0.0.1:$port/bench" "$N" "$INFLIGHT" "$WARMUP"
    rc=$?
  else
    echo "http_client.sh: the server printed no listening line: $(head -n 3 "$OUT/srv.err")" >&2
  fi
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  [ -n "${BENCH_HTTP_VERBOSE:-}" ] && echo "server: $(cat "$OUT/srv.err")" >&2
  return $rc
}

if [ "${1:-}" = --one ]; then
  one "$2"
  exit
fi
for ((r = 1; r <= ${1:-3}; r++)); do
  for c in c-floor nexus lua-http copas; do
    printf '%s ' "$c"; one "$c"
  done
done
