-- nexus --workers N: N worker processes run the script (worker_id,
-- worker_count), a listener's connections spread over them (SO_REUSEPORT
-- by default), a worker that dies is restarted and logged, SIGTERM stops
-- them all with no orphans, SIGHUP restarts them gracefully, and the
-- workers die with a killed master.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

local function free_port()
  local r = H.sh("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'")
  return tonumber(r.out:match("%d+"))
end

-- A server: each worker answers "worker <id>/<count> <pid>" on every
-- connection; worker 0 exits with status 3 at its first start if CRASH
-- names a file that does not exist yet (it creates it).
local SERVER = [[
local nexus = require "nexus"
local id, n = nexus.worker_id(), nexus.worker_count()
local crash = os.getenv("CRASH")
if crash and id == 0 and not io.open(crash) then
  io.open(crash, "w"):close()
  os.exit(3)
end
local ln = assert(nexus.tcp.listen("127.0.0.1", tonumber(arg[1])))
print(("ready %d/%d"):format(id, n))
io.stdout:flush()
nexus.spawn(function()
  while true do
    local s = ln:accept()
    if not s then return end
    s:write(("worker %d/%d\n"):format(id, n))
    s:close()
  end
end)
nexus.shutdown_signal():wait()
ln:close()
print("bye " .. id)
]]

-- Runs the master in the background with a shell snippet `body` that
-- talks to it ($PID: the master's pid, $PORT, $LOG: its stdout, $ERR:
-- its stderr); returns the shell's result.
local function with_master(nworkers, body, env)
  local port = free_port()
  local script = H.tmpfile(SERVER)
  local log, err = os.tmpname(), os.tmpname()
  -- The shell and its tools (ps hangs under an ASan LD_PRELOAD) run
  -- without the sanitizer build's preload; the nexus command keeps it.
  local preload = os.getenv("LD_PRELOAD")
  local cmd = ([[
    %s %s %s --workers %d %s %d >%s 2>%s &
    PID=$!; PORT=%d; LOG=%s; ERR=%s
    ready() { for i in $(seq 1 200); do [ "$(grep -c '^ready' $LOG)" -ge "$1" ] && return 0; sleep 0.05; done; return 1; }
    ask() { exec 3<>/dev/tcp/127.0.0.1/$PORT && read -r line <&3 && echo "$line"; exec 3<&-; }
    kids() { ps -o pid= --ppid $PID | tr -d ' '; }
    %s
  ]]):format(preload and ("LD_PRELOAD=" .. H.q(preload)) or "", env or "", H.q(H.nexus_bin()),
    nworkers, H.q(script), port, log, err, port, log, err, body)
  local r = H.sh("env -u LD_PRELOAD bash -c " .. H.q(cmd))
  local f = io.open(log); r.log = f and f:read("*a") or ""; if f then f:close() end
  f = io.open(err); r.master_err = f and f:read("*a") or ""; if f then f:close() end
  os.remove(log); os.remove(err)
  return r
end

describe("nexus --workers", function()
  it("runs N workers that share a listener; SIGTERM stops them all, no orphans", function()
    local r = with_master(2, [[
      ready 2 || { echo "not ready"; kill -9 $PID; exit 1; }
      K=$(kids)
      for i in $(seq 1 40); do ask; done | sort | uniq -c | awk '{print "seen", $2, $3}'
      kill -TERM $PID; wait $PID; echo "master exit $?"
      for k in $K; do [ -e /proc/$k ] && echo "orphan $k"; done; true
    ]])
    assert.are.equal(0, r.rc, r.err .. r.master_err)
    assert.matches("seen worker 0/2", r.out)
    assert.matches("seen worker 1/2", r.out)
    assert.matches("master exit 0", r.out)
    assert.is_nil(r.out:match("orphan"))
    assert.matches("bye 0", r.log)
    assert.matches("bye 1", r.log)
  end)

  it("restarts a worker that dies, and logs it", function()
    local marker = os.tmpname()
    os.remove(marker)
    local r = with_master(2, [[
      ready 2 || { echo "not ready"; cat $ERR; kill -9 $PID; exit 1; }
      kill -TERM $PID; wait $PID; echo "master exit $?"
    ]], "CRASH=" .. H.q(marker))
    os.remove(marker)
    assert.are.equal(0, r.rc, r.out .. r.master_err)
    assert.matches("nexus: master %d+: worker 0 %(pid %d+%) exited with status 3; restarting it in 0.1 s", r.master_err)
    assert.matches("ready 0/2", r.log)
    assert.matches("master exit 1", r.out)   -- a worker failed once
  end)

  it("SIGHUP starts new workers and drains the old ones", function()
    local r = with_master(2, [[
      ready 2 || { echo "not ready"; kill -9 $PID; exit 1; }
      OLD=$(kids)
      kill -HUP $PID
      ready 4 || { echo "no new workers"; kill -9 $PID; exit 1; }
      for i in $(seq 1 50); do n=0; for k in $OLD; do [ -e /proc/$k ] && n=$((n+1)); done; [ $n = 0 ] && break; sleep 0.05; done
      for k in $OLD; do [ -e /proc/$k ] && echo "old still there $k"; done
      NEW=$(kids); [ -n "$NEW" ] && [ "$NEW" != "$OLD" ] && echo "new workers"
      ask
      kill -TERM $PID; wait $PID; echo "master exit $?"
    ]])
    assert.are.equal(0, r.rc, r.out .. r.master_err)
    assert.matches("new workers", r.out)
    assert.is_nil(r.out:match("old still there"))
    assert.matches("worker %d/2", r.out)
    assert.matches("master exit 0", r.out)
    assert.matches("SIGHUP: starting new workers", r.master_err)
  end)

  it("workers die with a master killed by SIGKILL", function()
    local r = with_master(2, [[
      ready 2 || { echo "not ready"; kill -9 $PID; exit 1; }
      K=$(kids)
      kill -KILL $PID; wait $PID 2>/dev/null
      for i in $(seq 1 100); do n=0; for k in $K; do [ -e /proc/$k ] && n=$((n+1)); done; [ $n = 0 ] && break; sleep 0.05; done
      for k in $K; do [ -e /proc/$k ] && { echo "orphan $k"; kill -9 $k; }; done; echo done
    ]])
    assert.are.equal(0, r.rc, r.out)
    assert.is_nil(r.out:match("orphan"))
  end)

  it("rejects a bad worker count; worker_id is nil and worker_count 1 without it", function()
    for _, bad in ipairs({ "0", "x", "2000", "" }) do
      local r = H.run_nexus({ "--workers", bad, "-e", "print(1)" })
      assert.are.equal(1, r.rc)
      assert.matches("nexus: %-%-workers: expected a number of workers in 1..1024, got '" .. bad .. "'", r.err)
    end
    local r = H.run_nexus({ "--workers" })
    assert.are.equal(1, r.rc)
    assert.matches("'%-%-workers' needs a number", r.err)
    r = H.run_nexus({ "-e", "local n = require 'nexus'; print(n.worker_id(), n.worker_count())" })
    assert.are.equal(0, r.rc, r.err)
    assert.are.equal("nil\t1\n", r.out)
  end)
end)
