-- bench/echo_cqueues.lua PORT: the echo server on cqueues (lua-cqueues):
-- an accept loop and one coroutine per connection (cq:wrap), each reading
-- whatever has arrived (up to 64 KiB, format "-65536") and writing it back
-- with output buffering off (mode "bn"), so every write goes out at once.
-- TCP_NODELAY on every accepted connection. Prints "listening <port>" once
-- ready (PORT 0 = any free port).
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local cq = cqueues.new()
local srv = socket.listen { host = "127.0.0.1", port = tonumber(arg[1]) or 0,
                            backlog = 511 }
assert(srv:listen())
local _, _, port = srv:localname()
io.stdout:write("listening ", port, "\n")
io.stdout:flush()

-- Errors come back as nil, code instead of being raised (the default
-- handler raises on ECONNRESET, which the load generator causes when it
-- closes its connections with echoes still in flight).
local function return_error(_, _, why) return why end

local function session(con)
  con:setmode("bn", "bn")
  con:onerror(return_error)
  while true do
    local data = con:read("-65536")
    if not data then break end
    if not con:write(data) then break end
  end
  con:close()
end

cq:wrap(function()
  -- nodelay must be asked for here: the listener's options do not carry
  -- over to the sockets it accepts
  local accept_opts = { nodelay = true }
  for con in srv:clients(accept_opts) do cq:wrap(session, con) end
end)
assert(cq:loop())
