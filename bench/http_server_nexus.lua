-- bench/http_server_nexus.lua PORT: the HTTP server benchmark's nexus
-- server, nexus.http.listen (API.md, HTTP) as a user writes it: the
-- handler gets each request (in a task of its own; keep-alive and the
-- parsing are the server's) and returns 200, content-type text/plain and
-- "Hello, World!" for GET /, 404 for anything else. The body is a string,
-- so the server sends it with its Content-Length. Prints "listening
-- <port>" once ready (PORT 0 = any free port). Runs under the nexus
-- command and under luajit alike: it calls nexus.run itself.
local nexus = require "nexus"
local port = tonumber(arg[1]) or 0

local function handler(req)
  if req.method == "GET" and req.path == "/" then
    return 200, { ["content-type"] = "text/plain" }, "Hello, World!"
  end
  return 404, { ["content-type"] = "text/plain" }, "not found\n"
end

nexus.run(function()
  local srv = assert(nexus.http.listen("127.0.0.1", port, handler))
  -- local_addr(): "ip:port" (or ip and port as further values)
  local addr, _, bound = srv:local_addr()
  bound = tonumber(bound) or tonumber(tostring(addr):match(":(%d+)$"))
  io.stdout:write("listening ", assert(bound, "no port in local_addr()"), "\n")
  io.stdout:flush()
  while true do nexus.sleep(3600) end   -- the server runs in its own tasks
end)
