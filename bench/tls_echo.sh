#!/usr/bin/env bash
# bench/tls_echo.sh: the TLS echo benchmark (issue 15): one TLS connection,
# 64-byte round trips, p50 latency and server CPU per round trip, for the
# C floor (bench/echo_tls_uv.c: libuv + OpenSSL memory BIOs) and nexus
# (bench/echo_nexus.lua with BENCH_TLS_CERT/KEY). Server on CPU 0, load
# generator (bench/tls_loadgen.c) on CPU 1.
#   bash bench/tls_echo.sh --one c-floor|nexus   one RESULT line (make bench's tls_echo)
#   bash bench/tls_echo.sh [RUNS]                 both, interleaved, RUNS rounds
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

one() { # name
  local port= i pid
  case $1 in
    c-floor) taskset -c 0 "$OUT/echo_tls_uv" 0 "$OUT/cert.pem" "$OUT/key.pem" >"$OUT/srv.out" 2>&1 & ;;
    nexus) env BENCH_TLS_CERT="$OUT/cert.pem" BENCH_TLS_KEY="$OUT/key.pem" \
             taskset -c 0 "$NEXUS_BUILD/bin/nexus" "$ROOT/bench/echo_nexus.lua" 0 >"$OUT/srv.out" 2>&1 & ;;
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
    taskset -c 1 "$OUT/tls_loadgen" -p "$port" -P "$pid" -n 30000 -w 5000
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
  printf 'nexus '; one nexus
done
