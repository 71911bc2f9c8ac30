-- bench/http_client_copas.lua: LuaSocket's socket.http inside copas in the
-- HTTP client benchmark (bench/http_client.sh). This copas (1.1.7, Debian's
-- lua-copas 1.2.0) has no copas.http; socket.http runs in copas threads
-- on copas-wrapped sockets (its `create` option). socket.http sends
-- "Connection: close": a new connection per request, which is how
-- LuaSocket's client works (it has no keep-alive).
--   luajit bench/http_client_copas.lua URL [N [INFLIGHT [WARMUP]]]
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local copas = require "copas"
local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local c = dofile(dir .. "http_count.lua").new({ ... })

-- a LuaSocket TCP object whose blocking calls yield to copas
local function create()
  local s = socket.tcp()
  local w = copas.wrap(s)
  w.settimeout = function() return 1 end
  -- socket.http reads "HTTP/" first, then the rest of the line with it
  -- as the prefix: copas.wrap's receive drops that argument
  w.receive = function(_, pattern, prefix) return copas.receive(s, pattern, prefix) end
  w.connect = function(_, host, port) return copas.connect(s, host, port) end
  w.close = function() return s:close() end
  w.setoption = function(_, ...) return s:setoption(...) end
  return w
end

local function worker()
  while c.take() do
    local parts = {}
    local ok, status = http.request{ url = c.url, sink = ltn12.sink.table(parts), create = create }
    if ok then c.done(status, table.concat(parts)) else c.done(nil, status) end
  end
end
for _ = 1, c.inflight do copas.addthread(worker) end
-- copas.loop never returns in this copas: step until every request is answered
while c.finished < c.total do copas.step(1) end
c.report()
