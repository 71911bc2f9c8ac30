-- bench/http_server_luahttp.lua PORT: the HTTP server benchmark's Lua
-- peer, lua-http's server (Debian's lua-http 0.4) on cqueues. lua-http
-- runs a coroutine per connection and one per request (stream), reads the
-- request head with stream:get_headers() and writes the response with
-- write_headers + write_chunk. GET / is answered with 200, content-type
-- text/plain and "Hello, World!" (with its content-length, so that the
-- body is not chunked: the load generator wants Content-Length); anything
-- else with 404. Keep-alive and pipelining are lua-http's. Prints
-- "listening <port>" once ready (PORT 0 = any free port). Run by luajit.
local http_server = require "http.server"
local http_headers = require "http.headers"

local port = tonumber(arg[1]) or 0
local body = "Hello, World!"
local missing = "not found\n"

local function onstream(_, stream)
  local req = stream:get_headers()
  if not req then return end
  local h = http_headers.new()
  if req:get(":method") == "GET" and req:get(":path") == "/" then
    h:append(":status", "200")
    h:append("content-type", "text/plain")
    h:append("content-length", tostring(#body))
    stream:write_headers(h, false)
    stream:write_chunk(body, true)
  else
    h:append(":status", "404")
    h:append("content-type", "text/plain")
    h:append("content-length", tostring(#missing))
    stream:write_headers(h, false)
    stream:write_chunk(missing, true)
  end
end

local srv = assert(http_server.listen {
  host = "127.0.0.1", port = port, tls = false, reuseaddr = true,
  onstream = onstream,
  -- the default raises, which would end the server at the first
  -- connection the load generator drops at its end
  onerror = function(_, _, op, err)
    io.stderr:write("http_server_luahttp: ", tostring(op), ": ", tostring(err), "\n")
  end,
})
assert(srv:listen())
local _, _, bound = srv:localname()
io.stdout:write("listening ", assert(tonumber(bound), "no port in localname()"), "\n")
io.stdout:flush()
assert(srv:loop())
