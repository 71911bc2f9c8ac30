-- bench/echo_nexus.lua PORT: the echo server on nexus (API.md,
-- Networking): an accept loop in the root task and one task per
-- connection, each reading whatever has arrived (stream:read(65536)) and
-- writing it back (stream:write, which suspends only under backpressure).
-- TCP_NODELAY on every accepted connection (stream:set_nodelay), as every
-- server of the benchmark does. Prints "listening <port>" once ready
-- (PORT 0 = any free port). Runs under `luajit` (require) and under the
-- `nexus` command alike: it calls nexus.run itself.
local nexus = require "nexus"
local port = tonumber(arg[1]) or 0

local function session(s)
  s:set_nodelay(true)
  while true do
    local data = s:read(65536)
    if not data or not s:write(data) then break end
  end
  s:close()
end

-- BENCH_COOP=n serves on a runtime built with coop_budget(n) (0: off),
-- to measure what the cooperative budget costs.
local run = nexus.run
local coop = tonumber(os.getenv("BENCH_COOP") or "")
if coop then
  run = function(fn)
    local rt = nexus.runtime.builder():signal_handlers(true):coop_budget(coop):build()
    rt:block_on(fn)
  end
end

run(function()
  -- BENCH_TLS_CERT / BENCH_TLS_KEY: the same server over TLS (the TLS
  -- echo benchmark, bench/tls_loadgen.c)
  local cert, key = os.getenv("BENCH_TLS_CERT"), os.getenv("BENCH_TLS_KEY")
  local ln = assert(nexus.tcp.listen("127.0.0.1", port, { backlog = 511,
    tls = cert and { cert_file = cert, key_file = key } or nil }))
  -- local_addr(): "ip:port" (and, in this implementation, ip and port too)
  local addr, _, bound = ln:local_addr()
  bound = tonumber(bound) or tonumber(tostring(addr):match(":(%d+)$"))
  io.stdout:write("listening ", assert(bound, "no port in local_addr()"), "\n")
  io.stdout:flush()
  while true do
    local s, err = ln:accept()
    if not s then error("accept: " .. tostring(err)) end
    nexus.spawn(session, s)
  end
end)
