-- bench/http_count.lua: the bookkeeping every client of the HTTP client
-- benchmark shares (bench/http_client.sh): arguments, which request is
-- next, the check of each response, the timed window, the RESULT line.
--   client URL [N [INFLIGHT [WARMUP]]]
-- WARMUP (1000) untimed GETs, then N (10000) timed ones, INFLIGHT (100) at
-- a time; every response must be a 200 with the server's 1024-byte body.
-- CPU is this process's utime + stime (getrusage) over the timed part.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "harness.lua")

local M = {}

function M.new(args)
  local c = {
    url = assert(args[1], "usage: client URL [N [INFLIGHT [WARMUP]]]"),
    n = tonumber(args[2]) or 10000, inflight = tonumber(args[3]) or 100,
    warmup = tonumber(args[4]) or 1000,
    started = 0, finished = 0, failures = 0, first_err = nil,
  }
  c.total = c.n + c.warmup
  c.host, c.port, c.path = c.url:match("^http://([^:/]+):(%d+)(/.*)$")
  c.port = tonumber(c.port)
  if c.warmup == 0 then c.t0, c.cpu0 = H.now(), H.cpu() end
  -- true while a request is to be issued (and counts it as started)
  function c.take()
    if c.started >= c.total then return false end
    c.started = c.started + 1
    return true
  end
  -- one response: its status and body, or nil and the error
  function c.done(status, body)
    if status ~= 200 or type(body) ~= "string" or #body ~= 1024 then
      c.failures = c.failures + 1
      c.first_err = c.first_err or tostring(body)
    end
    c.finished = c.finished + 1
    if c.finished == c.warmup then c.t0, c.cpu0 = H.now(), H.cpu() end
    if c.finished == c.total then c.t1, c.cpu1 = H.now(), H.cpu() end
  end
  function c.report()
    if c.finished ~= c.total or c.failures > 0 then
      error(string.format("%d of %d finished, %d failed (first: %s)", c.finished, c.total,
        c.failures, tostring(c.first_err)), 0)
    end
    H.report({ "req_per_s", "cpu_us_per_req", "n" },
      { req_per_s = c.n / (c.t1 - c.t0), cpu_us_per_req = (c.cpu1 - c.cpu0) / c.n * 1e6, n = c.n })
  end
  return c
end

return M
