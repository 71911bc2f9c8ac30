-- bench/soak.lua: the soak run (make soak; not in CI). For SOAK_SECONDS
-- (default 600) one process keeps a mixed load going and samples its RSS
-- and open descriptors every SOAK_SAMPLE seconds (default 10):
--
--   echo      an echo server on 127.0.0.1 and SOAK_CONNS (20) clients, each
--             sending lines of random length and checking the echo, and
--             reconnecting every 200 round trips (connect/close churn)
--   channels  a local channel, a byte channel and an mpsc channel, each
--             with a producer and a consumer checking order
--   timers    200 tasks sleeping 1-20 ms, again and again
--   spawn     every 10 ms, 50 tasks that sleep; half are aborted, the
--             other half joined
--   runtimes  between the 1-second slices the main runtime runs in, five
--             runtimes are created, run 20 tasks and a channel of each
--             kind, and closed
--
-- The main runtime is driven one second at a time (rt:block_on), its
-- tasks parked in between. A wrong echo or an out-of-order value stops the
-- run with an error. At the end it prints the samples and a verdict: RSS
-- from the 60 s mark (after warm-up) to the end must grow by less than 10 %
-- and the descriptor count must not grow; the exit status is 1 otherwise.
local nexus = require "nexus"
local ffi = require "ffi"
pcall(ffi.cdef, "int fcntl(int fd, int cmd, ...);")

local SECONDS = tonumber(os.getenv("SOAK_SECONDS")) or 600
local SAMPLE = tonumber(os.getenv("SOAK_SAMPLE")) or 10
local CONNS = tonumber(os.getenv("SOAK_CONNS")) or 20
local WARMUP = math.min(60, SECONDS / 4)

local function rss_kb()
  local f = assert(io.open("/proc/self/status"))
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function fds()
  local n = 0
  for fd = 0, 4095 do
    if ffi.C.fcntl(fd, 1) ~= -1 then n = n + 1 end
  end
  return n
end

local count = { echo = 0, conns = 0, chan = 0, bytes = 0, mpsc = 0, sleeps = 0, spawned = 0, aborted = 0, runtimes = 0 }
local rnd = math.random
math.randomseed(42)

local function fail(fmt, ...) error("soak: " .. fmt:format(...), 0) end

---------------------------------------------------------------- workloads

local function echo_server(ln)
  while true do
    local s = ln:accept()
    if not s then return end
    nexus.spawn(function()
      while true do
        local line = s:read_line()
        if not line then break end
        if not s:write(line .. "\n") then break end
      end
      s:close()
    end)
  end
end

local function echo_client(port)
  while true do
    local s, err = nexus.tcp.connect("127.0.0.1", port)
    if not s then fail("connect: %s", tostring(err)) end
    count.conns = count.conns + 1
    for _ = 1, 200 do
      local msg = string.rep(string.char(97 + rnd(0, 25)), rnd(1, 200))
      assert(s:write(msg .. "\n"))
      local back, e = s:read_line()
      if back ~= msg then fail("echo: sent %d bytes, got %s", #msg, back and #back .. " bytes" or tostring(e)) end
      count.echo = count.echo + 1
    end
    s:close()
  end
end

local function channel_pair(kind)
  local tx, rx
  if kind == "chan" then tx, rx = nexus.channel(16)
  elseif kind == "bytes" then tx, rx = nexus.channel.bytes(256)
  else tx, rx = nexus.channel.mpsc(16) end
  nexus.spawn(function()
    local i = 0
    while true do
      i = i + 1
      local v = kind == "bytes" and tostring(i) or i
      assert(tx:send(v))
      if i % 64 == 0 then nexus.sleep(0.001) end
    end
  end)
  nexus.spawn(function()
    local expect = 0
    while true do
      local v
      if kind == "bytes" then
        local m = assert(rx:recv())
        v = tonumber(m:string())
        m:release()
      else
        v = assert(rx:recv())
      end
      expect = expect + 1
      if v ~= expect then fail("%s: got %s, expected %d", kind, tostring(v), expect) end
      count[kind] = count[kind] + 1
    end
  end)
end

local function sleeper()
  while true do
    nexus.sleep(rnd(1, 20) * 0.001)
    count.sleeps = count.sleeps + 1
  end
end

local function spawner()
  while true do
    local hs = {}
    for i = 1, 50 do
      hs[i] = nexus.spawn(function() nexus.sleep(rnd(0, 5) * 0.001); return i end)
    end
    count.spawned = count.spawned + 50
    for i = 1, 50, 2 do
      if hs[i]:abort() then count.aborted = count.aborted + 1 end
    end
    for i = 2, 50, 2 do
      if hs[i]:join() ~= i then fail("spawn: task %d returned another value", i) end
    end
    nexus.sleep(0.01)
  end
end

-- A short-lived runtime: a few tasks and a channel, then closed.
local function one_runtime()
  local rt = nexus.runtime.new()
  local sum = rt:block_on(function()
    local tx, rx = nexus.channel(4)
    for i = 1, 20 do nexus.spawn(function() tx:send(i) end) end
    local s = 0
    for _ = 1, 20 do s = s + rx:recv() end
    -- the other kinds too: each must let its runtime go when dropped
    local btx, brx = nexus.channel.bytes(64)
    local mtx, mrx = nexus.channel.mpsc(4)
    nexus.spawn(function() btx:send("7"); mtx:send(3) end)
    local m = brx:recv()
    s = s + tonumber(m:string()) + mrx:recv() - 10
    m:release()
    nexus.spawn(function() nexus.sleep(60) end)   -- left alive: closed with it
    return s
  end)
  if sum ~= 210 then fail("runtime: sum %d", sum) end
  rt:close()
  count.runtimes = count.runtimes + 1
end

---------------------------------------------------------------- the run

local rt = nexus.runtime.new()
local port
rt:block_on(function()
  local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
  port = select(3, ln:local_addr())
  nexus.spawn(echo_server, ln)
  for _ = 1, CONNS do nexus.spawn(echo_client, port) end
  for _, k in ipairs({ "chan", "bytes", "mpsc" }) do channel_pair(k) end
  for _ = 1, 200 do nexus.spawn(sleeper) end
  nexus.spawn(spawner)
end)

local samples = {}
local t0 = nexus.now()
local next_sample = 0
io.stdout:write(("soak: %d s, sampling every %d s (pid %d)\n"):format(SECONDS, SAMPLE,
  tonumber(io.open("/proc/self/stat"):read("*l"):match("^(%d+)"))))
io.stdout:write("  elapsed_s  rss_kb  fds  echo  conns  chan  bytes  mpsc  sleeps  spawned  aborted  runtimes\n")
while true do
  local elapsed = nexus.now() - t0
  if elapsed >= next_sample then
    collectgarbage()
    local s = { t = elapsed, rss = rss_kb(), fds = fds() }
    samples[#samples + 1] = s
    io.stdout:write(("  %9.0f  %6d  %3d  %4d  %5d  %4d  %5d  %4d  %6d  %7d  %7d  %8d\n"):format(
      elapsed, s.rss, s.fds, count.echo, count.conns, count.chan, count.bytes, count.mpsc,
      count.sleeps, count.spawned, count.aborted, count.runtimes))
    io.stdout:flush()
    next_sample = next_sample + SAMPLE
  end
  if elapsed >= SECONDS then break end
  rt:block_on(function() nexus.sleep(math.min(1, SECONDS - elapsed)) end)
  for _ = 1, 5 do one_runtime() end
end
rt:close()

-- Verdict: from the first sample at or after the warm-up to the last.
local base
for _, s in ipairs(samples) do
  if s.t >= WARMUP then base = s; break end
end
local last = samples[#samples]
base = base or samples[1]
local growth = (last.rss - base.rss) / base.rss
local ok = growth < 0.10 and last.fds <= base.fds
io.stdout:write(("soak: RSS %d kB at %.0f s, %d kB at %.0f s (%+.1f %%); fds %d -> %d: %s\n"):format(
  base.rss, base.t, last.rss, last.t, growth * 100, base.fds, last.fds, ok and "flat" or "NOT FLAT"))
os.exit(ok and 0 or 1)
