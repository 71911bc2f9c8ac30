#!/usr/bin/env bash
# bench/http_server.sh: the HTTP server benchmark (issue 16): keep-alive
# HTTP/1.1, CONNS connections each with DEPTH small GETs in flight (50 x 1:
# the next request when the last response is in), a fixed untimed warm-up
# then a timed window; requests/s, latency p50/p99 and the server's CPU per
# request (utime + stime from /proc/PID/stat). Every server answers GET /
# with 200, content-type text/plain and "Hello, World!":
#   c-floor  bench/http_server_uv.c: libuv + http_parser (libhttp-parser-dev)
#   luahttp  bench/http_server_luahttp.lua: lua-http's server on cqueues
#   nexus    bench/http_server_nexus.lua: nexus.http.listen, nexus command
#   nexus-tcp  bench/http_server_nexus_tcp.lua (information): fixed responses
#            written by hand on nexus.tcp streams, no HTTP parsing; what
#            nexus's streams and tasks cost, the floor under nexus.http
# Load generator bench/http_loadgen.c (epoll). Server on CPU 0, load
# generator on CPU 1 (BENCH_HTTP_PIN="SERVER:LOADGEN", "-" = unpinned).
#   bash bench/http_server.sh --one c-floor|luahttp|nexus|nexus-tcp  one RESULT line (make bench's http_server)
#   bash bench/http_server.sh [RUNS]                         all four, interleaved, RUNS rounds (3)
#   bash bench/http_server.sh --callgrind NAME               user-space instructions per request (valgrind)
# Environment: BENCH_HTTP_CONNS (50), BENCH_HTTP_DEPTH (1), BENCH_HTTP_SECS
# (5, timed window), BENCH_HTTP_WARMUP_SECS (1, untimed first),
# BENCH_HTTP_QUIET (0: seconds to wait at most for an idle machine before
# each measurement), NEXUS_BUILD, LUAJIT, CC. The programs are built once
# into $NEXUS_BUILD/bench/http.
set -u
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NEXUS_BUILD=${NEXUS_BUILD:-$ROOT/build}
case $NEXUS_BUILD in /*) ;; *) NEXUS_BUILD=$PWD/$NEXUS_BUILD ;; esac
LUAJIT=${LUAJIT:-luajit}
CC=${CC:-cc}
OUT=$NEXUS_BUILD/bench/http
mkdir -p "$OUT" || exit 1
export LUA_PATH="$ROOT/?.lua;$ROOT/lua/?.lua;$ROOT/lua/?/init.lua;;" LUA_CPATH="$NEXUS_BUILD/lib/?.so;;"

build() { # name source flags...: compile when missing or older than its source
  local name=$1 src=$2
  shift 2
  if [ ! -x "$OUT/$name" ] || [ "$src" -nt "$OUT/$name" ]; then
    $CC -O2 -o "$OUT/$name" "$src" "$@" || { echo "http_server.sh: cc $src failed" >&2; exit 1; }
  fi
}
build http_loadgen "$ROOT/bench/http_loadgen.c"

alive() { # pid: running (a dead child stays a zombie until waited for)
  local st
  st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) && [ "${st%% *}" != Z ]
}
stop() { # SIGTERM, SIGKILL if still there after 2 s
  local i
  [ -n "${srv_pid:-}" ] || return 0
  kill "$srv_pid" 2>/dev/null
  for ((i = 0; i < 40; i++)); do
    alive "$srv_pid" || break
    sleep 0.05
  done
  kill -9 "$srv_pid" 2>/dev/null
  wait "$srv_pid" 2>/dev/null
  srv_pid=
}
says() { grep -v '^[[:space:]]*$' "$OUT/srv.err" | head -n 3 | tr '\n' ' '; }

# quiet: with BENCH_HTTP_QUIET=SECS, wait (at most SECS) until the machine
# was at least 90 % idle over half a second before a measurement: on a
# shared machine another job's burst otherwise lands in one server's run.
quiet() {
  local max=${BENCH_HTTP_QUIET:-0} i a b tot idle k
  for ((i = 0; i < max * 2; i++)); do
    a=($(head -n 1 /proc/stat)); sleep 0.5; b=($(head -n 1 /proc/stat))
    tot=0
    for k in 1 2 3 4 5 6 7 8; do tot=$((tot + b[k] - a[k])); done
    idle=$((b[4] - a[4] + b[5] - a[5]))
    [ $tot -gt 0 ] && [ $((idle * 100 / tot)) -ge 90 ] && return 0
  done
  [ "$max" -gt 0 ] && echo "http_server.sh: the machine stayed busy for ${max} s; measuring anyway" >&2
  return 0
}

one() { # name: one measurement, the load generator's RESULT line
  local pin=${BENCH_HTTP_PIN:-0:1} spin=() gpin=() cmd port= i rc
  [ "${pin%%:*}" != - ] && spin=(taskset -c "${pin%%:*}")
  [ "${pin#*:}" != - ] && gpin=(taskset -c "${pin#*:}")
  case $1 in
    c-floor)
      build http_server_uv "$ROOT/bench/http_server_uv.c" $(pkg-config --cflags --libs libuv) -lhttp_parser
      cmd=("$OUT/http_server_uv") ;;
    luahttp) cmd=("$LUAJIT" "$ROOT/bench/http_server_luahttp.lua") ;;
    nexus) cmd=("$NEXUS_BUILD/bin/nexus" "$ROOT/bench/http_server_nexus.lua") ;;
    nexus-tcp) cmd=("$NEXUS_BUILD/bin/nexus" "$ROOT/bench/http_server_nexus_tcp.lua") ;;
    *) echo "http_server.sh: unknown server $1" >&2; return 1 ;;
  esac
  quiet
  # emptied here: the redirection below happens in the forked child, and
  # until it does the poll would read the last server's port
  : >"$OUT/srv.out"; : >"$OUT/srv.err"
  "${spin[@]}" "${cmd[@]}" 0 >>"$OUT/srv.out" 2>>"$OUT/srv.err" &   # taskset execs: $! is the server
  srv_pid=$!
  trap stop EXIT
  for ((i = 0; i < 200; i++)); do   # 10 s
    port=$(sed -n 's/^listening \([0-9][0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    if ! alive "$srv_pid"; then
      echo "http_server.sh: $1 exited before listening: $(says)" >&2
      stop
      return 1
    fi
    sleep 0.05
  done
  if [ -z "$port" ]; then
    echo "http_server.sh: $1 printed no 'listening <port>' line within 10 s: $(says)" >&2
    stop
    return 1
  fi
  "${gpin[@]}" "$OUT/http_loadgen" -p "$port" -P "$srv_pid" \
    -c "${BENCH_HTTP_CONNS:-50}" -d "${BENCH_HTTP_DEPTH:-1}" \
    -s "${BENCH_HTTP_SECS:-5}" -W "${BENCH_HTTP_WARMUP_SECS:-1}"
  rc=$?
  if ! alive "$srv_pid"; then
    echo "http_server.sh: $1 died during the run: $(says)" >&2
    rc=1
  elif [ $rc -ne 0 ] && [ -s "$OUT/srv.err" ]; then
    echo "http_server.sh: $1's stderr: $(says)" >&2
  fi
  stop
  return $rc
}

# --callgrind NAME: the server under valgrind's callgrind, counters zeroed
# after a warm-up, then BENCH_HTTP_SECS of load (unpinned): user-space
# instructions per request, in all and per object (the interpreter and
# runtime in libluajit, JIT code as ???, the parser, libuv, ...). The
# kernel's share (the same read + write per request for every server here)
# is not counted. Deterministic enough (a few %) to compare changes that
# the CPU-time figures cannot tell apart on a noisy machine.
cg() {
  local name=$1 cmd port= i pid r n f
  case $name in
    c-floor)
      build http_server_uv "$ROOT/bench/http_server_uv.c" $(pkg-config --cflags --libs libuv) -lhttp_parser
      cmd=("$OUT/http_server_uv") ;;
    luahttp) cmd=("$LUAJIT" "$ROOT/bench/http_server_luahttp.lua") ;;
    nexus) cmd=("$NEXUS_BUILD/bin/nexus" "$ROOT/bench/http_server_nexus.lua") ;;
    nexus-tcp) cmd=("$NEXUS_BUILD/bin/nexus" "$ROOT/bench/http_server_nexus_tcp.lua") ;;
    *) echo "http_server.sh: unknown server $name" >&2; return 1 ;;
  esac
  rm -f "$OUT/callgrind.$name".*
  : >"$OUT/srv.out"
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$name.%p" "${cmd[@]}" 0 \
    >>"$OUT/srv.out" 2>"$OUT/srv.err" &
  srv_pid=$!
  trap stop EXIT
  for ((i = 0; i < 600; i++)); do   # 30 s: valgrind starts slowly
    port=$(sed -n 's/^listening \([0-9][0-9]*\)$/\1/p' "$OUT/srv.out" | head -n 1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { echo "http_server.sh: $name under callgrind: no listening line" >&2; stop; return 1; }
  "$OUT/http_loadgen" -p "$port" -s 2 -W 1 >/dev/null || { stop; return 1; }
  callgrind_control -z "$srv_pid" >/dev/null 2>&1
  r=$("$OUT/http_loadgen" -p "$port" -c "${BENCH_HTTP_CONNS:-50}" -d "${BENCH_HTTP_DEPTH:-1}" \
        -s "${BENCH_HTTP_SECS:-5}" -W 0) || { stop; return 1; }
  callgrind_control -d "$srv_pid" >/dev/null 2>&1
  sleep 0.5
  stop
  n=$(printf '%s\n' "$r" | sed -n 's/.* n=\([0-9]*\).*/\1/p')
  f=$(ls -t "$OUT/callgrind.$name".*.1 2>/dev/null | head -n 1)
  [ -n "$n" ] && [ -n "$f" ] || { echo "http_server.sh: no callgrind dump" >&2; return 1; }
  # self cost per object: cost lines count, except the one after calls=
  # (a call's inclusive cost)
  awk -v n="$n" -v name="$name" '
    /^c?ob=/ { o = $0; c = (o ~ /^c/); sub(/^c?ob=/, "", o); id = o; sub(/ .*/, "", id)
               if (o ~ / /) { sub(/^[^ ]* /, "", o); obname[id] = o }
               if (!c) cur = id
               next }
    /^calls=/ { skip = 1; next }
    /^[0-9+*-]/ { if (skip) { skip = 0; next } cost[cur] += $2; tot += $2; next }
    END {
      printf "%s Ir_per_req=%.0f n=%d\n", name, tot / n, n
      for (k in cost) if (cost[k] / n >= 10) {
        o = obname[k]; if (o == "") o = k; sub(/.*\//, "", o)
        printf "  %8.0f  %s\n", cost[k] / n, o
      }
    }' "$f" | { read -r head; echo "$head"; sort -rn; }
  echo "  (callgrind file: $f)"
}

if [ "${1:-}" = --callgrind ]; then
  cg "$2"
  exit
fi
if [ "${1:-}" = --one ]; then
  one "$2"
  exit
fi
for ((r = 1; r <= ${1:-3}; r++)); do
  for s in c-floor luahttp nexus nexus-tcp; do
    printf '%s ' "$s"
    one "$s" || echo
  done
done
