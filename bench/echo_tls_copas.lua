-- bench/echo_tls_copas.lua PORT CERT_FILE KEY_FILE: the TLS echo server
-- on copas + LuaSec, the Lua peer of the TLS echo benchmark
-- (bench/tls_echo.sh): LuaSocket's socket.bind, copas.addserver with one
-- handler coroutine per connection, ssl.wrap on the accepted socket, the
-- handshake, then whatever has arrived (up to 64 KiB) sent back. TCP_NODELAY
-- on every accepted connection. Prints "listening <port>" once ready
-- (PORT 0 = any free port).
--
-- Debian's lua-copas is Copas 1.1.7, which predates copas' own TLS support
-- (copas.wrap(skt, sslparams) and copas.dohandshake came with copas 2.0).
-- So the handshake and the I/O go through LuaSec by hand, the way a copas
-- 1.x user does it: a non-blocking LuaSec socket says "wantread" or
-- "wantwrite" where copas expects "timeout", so a small proxy renames
-- them and copas.receivePartial / copas.send park the coroutine in copas'
-- read or write set as for a plain socket (LuaSocket's select takes any
-- object with getfd and dirty: LuaSec's dirty reports decrypted bytes
-- still buffered, so none is left waiting).
local copas = require "copas"
local socket = require "socket"
local ssl = require "ssl"

local port, cert, key = tonumber(arg[1]) or 0, arg[2], arg[3]
assert(cert and key, "usage: echo_tls_copas.lua PORT CERT_FILE KEY_FILE")
local params = { mode = "server", protocol = "any", certificate = cert, key = key,
                 options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1", "no_tlsv1_1" } }
-- one context for all connections, as copas 2+ does (ssl.wrap with a
-- table would load the files again per connection)
local ctx = assert(ssl.newcontext(params))

local srv = assert(socket.bind("127.0.0.1", port, 511))
local _, bound = srv:getsockname()

local WANT = { wantread = "timeout", wantwrite = "timeout" }

-- The proxy copas sees: LuaSec's wants reported as copas' "timeout".
-- (A "wantwrite" from receive, or a "wantread" from send, would wait in
-- the other set than the one it needs; neither happens in this echo: no
-- renegotiation under TLS 1.3, and 86-byte records never fill the socket.)
local P = {}
P.__index = P
function P:getfd() return self.c:getfd() end
function P:dirty() return self.c:dirty() end
function P:settimeout() return 1 end
function P:close() return self.c:close() end
function P:receive(pat, part)
  local s, err, p = self.c:receive(pat, part)
  return s, WANT[err] or err, p
end
function P:send(data, i, j)
  local n, err, last = self.c:send(data, i, j)
  return n, WANT[err] or err, last
end

-- the handshake as a "receive" that copas retries until it is done
local H = setmetatable({}, { __index = P })
H.__index = H
function H:receive()
  local ok, err = self.c:dohandshake()
  if ok then return "done" end
  return nil, WANT[err] or err, ""
end

local receive, send = copas.receivePartial, copas.send
local function session(skt)
  skt:setoption("tcp-nodelay", true)
  local c = ssl.wrap(skt, ctx)
  if not c then return end
  c:settimeout(0)
  local ok = copas.receive(setmetatable({ c = c }, H))
  if ok then
    local t = setmetatable({ c = c }, P)
    while true do
      local data, err, part = receive(t, 65536)
      data = data or part
      if data and data ~= "" then send(t, data) end
      if err and err ~= "timeout" then break end   -- "closed" or an error
    end
  end
  c:close()
end

copas.addserver(srv, session)
io.stdout:write("listening ", bound, "\n")
io.stdout:flush()
copas.loop()
