#!/usr/bin/env bash
# bench/tls_echo.sh: the TLS echo benchmark (issue 15): one TLS connection,
# 64-byte round trips, p50 latency and server CPU per round trip, for the
# C floor (bench/echo_tls_uv.c: libuv + OpenSSL memory BIOs), the Lua peer
# (bench/echo_tls_copas.lua: copas + LuaSec) and nexus
# (bench/echo_nexus.lua with BENCH_TLS_CERT/KEY). Load generator:
# bench/tls_loadgen.c. Server and load generator both on CPU 0 by default
# (BENCH_TLS_PIN=SERVER:LOADGEN for taskset -c, "-" = unpinned), as the
# plain echo's latency table does: on this 2-vCPU VM a wake-up across vCPUs
# costs tens of us and would be most of what is measured (docs/BENCHMARKS.md).
#   bash bench/tls_echo.sh --one c-floor|copas|nexus   one RESULT line (make bench's tls_echo)
#   bash bench/tls_echo.sh [RUNS]                 all three, interleaved, RUNS rounds
# BENCH_TLS_N, BENCH_TLS_WARMUP: timed and untimed round trips (100000, 10000, as the plain echo).
# The programs and a certificate are made once into $NEXUS_BUILD/bench/tls.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
OUT=$NEXUS_BUILD/bench/tls
mkdir -p "$OUT" || exit 1
export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;;" LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"
if [ ! -x "$OUT/tls_loadgen" ] || [ "$ROOT/bench/tls_loadgen.c" -nt "$OUT/tls_loadgen" ]; then
  cc -O2 -o "$OUT/tls_loadgen" "$ROOT/bench/tls_loadgen.c" -lssl -lcrypto || exit 1
fi
if [ ! -x "$OUT/echo_tls_uv" ] || [ "$ROOT/bench/echo_tls_uv.c" -nt "$OUT/echo_tls_uv" ]; then
  cc -O2 -o "$OUT/echo_tls_uv" "$ROOT/bench/echo_tls_uv.c" $(pkg-config --cflags --libs libuv) -lssl -lcrypto || exit 1
fi
if [ ! -s "$OUT/cert.pem" ]; then
  ( cd "$OUT" && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 30 \
      -subj /CN=127.0.0.1 2>/dev/null ) || exit 1
fi

PIN=${BENCH_TLS_PIN:-0:0}
SPIN=() GPIN=()
[ "${PIN%%:*}" != - ] && SPIN=(taskset -c "${PIN%%:*}")
[ "${PIN#*:}" != - ] && GPIN=(taskset -c "${PIN#*:}")

one() { # name
  local port= i pid
  # emptied here: the redirection below happens in the forked child, and
  # until it does the poll would find the previous server's port
  : >"$OUT/srv.out"
  case $1 in
    c-floor) "${SPIN[@]}" "$OUT/echo_tls_uv" 0 "$OUT/cert.pem" "$OUT/key.pem" >"$OUT/srv.out" 2>&1 & ;;
    nexus) env BENCH_TLS_CERT="$OUT/cert.pem" BENCH_TLS_KEY="$OUT/key.pem" \
             "${SPIN[@]}" "$NEXUS_BUILD/bin/nexus" "$ROOT/bench/echo_nexus.lua" 0 >"$OUT/srv.out" 2>&1 & ;;
    copas) "${SPIN[@]}" "${LUAJIT:-luajit}" "$ROOT/bench/echo_tls_copas.lua" 0 "$OUT/cert.pem" "$OUT/key.pem" \
             >"$OUT/srv.out" 2>&1 & ;;
    *) echo "tls_echo.sh: unknown server $1" >&2; return 1 ;;
  esac
  pid=$!
  for i in $(seq 1 200); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  local rc=1
  if [ -n "$port" ]; then
    "${GPIN[@]}" "$OUT/tls_loadgen" -p "$port" -P "$pid" -n "${BENCH_TLS_N:-100000}" -w "${BENCH_TLS_WARMUP:-10000}"
    rc=$?
  else
    echo "tls_echo.sh: $1 printed no listening line: $(head -n 3 "$OUT/srv.out")" >&2
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
  printf 'c-floor '; one c-floor
  printf 'copas '; one copas
  printf 'nexus '; one nexus
done
