#!/usr/bin/env bash
# bench/tls_echo.sh: the TLS echo benchmark (issue 15): one TLS connection,
# 64-byte round trips, p50 latency and server CPU per round trip, for the
# C floor (bench/echo_tls_uv.c: libuv + OpenSSL memory BIOs) and nexus
# (bench/echo_nexus.lua with BENCH_TLS_CERT/KEY), interleaved, RUNS rounds.
# Server on CPU 0, load generator (bench/tls_loadgen.c) on CPU 1.
#   NEXUS_BUILD=build bash bench/tls_echo.sh [RUNS]
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
RUNS=${1:-3}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;;" LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"
cc -O2 -o "$OUT/tls_loadgen" "$ROOT/bench/tls_loadgen.c" -lssl -lcrypto || exit 1
cc -O2 -o "$OUT/echo_tls_uv" "$ROOT/bench/echo_tls_uv.c" $(pkg-config --cflags --libs libuv) -lssl -lcrypto || exit 1
( cd "$OUT" && openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 \
    -subj /CN=127.0.0.1 2>/dev/null ) || exit 1
run_one() { # name cmd...
  local name=$1 port= i; shift
  "$@" >"$OUT/srv.out" 2>&1 &
  local pid=$!
  for i in $(seq 1 200); do
    port=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  printf '%s ' "$name"
  taskset -c 1 "$OUT/tls_loadgen" -p "$port" -P "$pid" -n 30000 -w 5000 || cat "$OUT/srv.out"
  kill "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
}
for ((r = 1; r <= RUNS; r++)); do
  run_one c-floor taskset -c 0 "$OUT/echo_tls_uv" 0 "$OUT/cert.pem" "$OUT/key.pem"
  run_one nexus env BENCH_TLS_CERT="$OUT/cert.pem" BENCH_TLS_KEY="$OUT/key.pem" \
    taskset -c 0 "$NEXUS_BUILD/bin/nexus" "$ROOT/bench/echo_nexus.lua" 0
done
