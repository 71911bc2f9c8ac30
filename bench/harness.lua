-- bench/harness.lua: shared helpers for the nexus benchmarks.
--
-- Every benchmark script is one process that measures one implementation
-- once and prints a single line
--     RESULT key=value key=value ...
-- which bench/run.sh collects and bench/report.lua turns into tables.
-- Values are numbers; a script that fails its own check raises instead.

local ffi = require "ffi"

ffi.cdef [[
typedef struct nxb_timespec { long tv_sec; long tv_nsec; } nxb_timespec;
int clock_gettime(int clk_id, nxb_timespec *tp);
typedef struct nxb_timeval { long tv_sec; long tv_usec; } nxb_timeval;
typedef struct nxb_rusage { nxb_timeval ru_utime, ru_stime; long ru_rest[14]; } nxb_rusage;
int getrusage(int who, nxb_rusage *usage);
]]

local C = ffi.C
local CLOCK_MONOTONIC = 1
local ts = ffi.new("nxb_timespec")

local H = {}

-- Monotonic clock in seconds (CLOCK_MONOTONIC, the clock libuv's
-- uv_hrtime() and cqueues.monotime() read too).
function H.now()
  C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

-- CPU seconds this process has used (user + system: getrusage(RUSAGE_SELF)).
local ru = ffi.new("nxb_rusage")
function H.cpu()
  assert(C.getrusage(0, ru) == 0, "getrusage failed")
  return tonumber(ru.ru_utime.tv_sec) + tonumber(ru.ru_utime.tv_usec) * 1e-6
       + tonumber(ru.ru_stime.tv_sec) + tonumber(ru.ru_stime.tv_usec) * 1e-6
end

-- A field of /proc/self/status in bytes ("VmRSS", "VmHWM", ...).
function H.status_bytes(field)
  local f = assert(io.open("/proc/self/status", "r"))
  local s = f:read("*a")
  f:close()
  local kb = s:match(field .. ":%s*(%d+)%s*kB")
  return kb and tonumber(kb) * 1024 or nil
end

function H.rss() return H.status_bytes("VmRSS") end
function H.hwm() return H.status_bytes("VmHWM") end

-- Lua heap in bytes after two full collections (the second one finishes
-- objects resurrected by finalizers in the first).
function H.lua_heap()
  collectgarbage("collect")
  collectgarbage("collect")
  return collectgarbage("count") * 1024
end

-- The sleep durations shared by every sleepers implementation, C included:
-- MINSTD (Park-Miller) x = x * 48271 mod (2^31 - 1), seed 12345,
-- duration = 1 + x mod 50 milliseconds. Products stay below 2^47, exact in
-- a double. bench/sleepers_uv.c computes the same sequence.
function H.lcg(seed)
  local x = seed or 12345
  return function()
    x = (x * 48271) % 2147483647
    return 1 + x % 50
  end
end

-- Problem size: env var, else the default.
function H.size(var, default)
  local v = os.getenv(var)
  return v and assert(tonumber(v), var .. " must be a number") or default
end

-- Print the RESULT line. `t` is a table of name -> number; order kept by
-- `keys`.
function H.report(keys, t)
  local parts = { "RESULT" }
  for _, k in ipairs(keys) do
    local v = t[k]
    assert(type(v) == "number", "harness.report: " .. k .. " is not a number")
    parts[#parts + 1] = string.format("%s=%.6g", k, v)
  end
  io.stdout:write(table.concat(parts, " "), "\n")
  io.stdout:flush()
end

-- Shared reporting for the three workloads, so every implementation
-- prints the same fields.

-- spawn/join: elapsed seconds for n tasks; sum must equal n*(n+1).
function H.report_spawn(n, elapsed, sum)
  local want = n * (n + 1)
  if sum ~= want then
    error(string.format("spawn: wrong sum %s, want %s", tostring(sum), tostring(want)))
  end
  H.report({ "ns_per_task", "total_ms", "n" },
    { ns_per_task = elapsed / n * 1e9, total_ms = elapsed * 1e3, n = n })
end

-- sleepers: wall seconds from first spawn to last wake, lateness sum in
-- seconds, early-wake count, number woken.
function H.report_sleepers(n, wall, late_sum, early, woken, extra)
  if woken ~= n then
    error(string.format("sleepers: %d of %d tasks woke", woken, n))
  end
  local t = { wall_ms = wall * 1e3, late_ms = late_sum / n * 1e3,
              early = early, hwm_mb = H.hwm() / 1048576, n = n }
  local keys = { "wall_ms", "late_ms", "early", "hwm_mb", "n" }
  for k, v in pairs(extra or {}) do t[k] = v; keys[#keys + 1] = k end
  H.report(keys, t)
end

-- parked: before/after snapshots {lua=, rss=} around n parked tasks.
function H.report_parked(n, before, after)
  local lua = (after.lua - before.lua) / n
  local rss = (after.rss - before.rss) / n
  H.report({ "rss_per_task", "lua_per_task", "n" },
    { rss_per_task = rss, lua_per_task = lua, n = n })
end

-- chan ping-pong: n round trips (2n one-way hops) in elapsed seconds; the
-- values sent were 1..n and came back: sum must be n*(n+1)/2.
function H.report_pingpong(n, elapsed, sum)
  local want = n * (n + 1) / 2
  if sum ~= want then
    error(string.format("chan: wrong sum %s, want %s", tostring(sum), tostring(want)))
  end
  H.report({ "ns_per_hop", "total_ms", "n" },
    { ns_per_hop = elapsed / (2 * n) * 1e9, total_ms = elapsed * 1e3, n = n })
end

-- chan try pair: n try_send + try_recv pairs of the values 1..n.
function H.report_trypair(n, elapsed, sum)
  local want = n * (n + 1) / 2
  if sum ~= want then
    error(string.format("chan_try: wrong sum %s, want %s", tostring(sum), tostring(want)))
  end
  H.report({ "ns_per_pair", "total_ms", "n" },
    { ns_per_pair = elapsed / n * 1e9, total_ms = elapsed * 1e3, n = n })
end

function H.snapshot()
  local lua = H.lua_heap()
  return { lua = lua, rss = H.rss() }
end

return H
