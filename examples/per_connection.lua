-- per_connection.lua: seed pattern 2, a task per connection with
-- cancellation. An accept loop spawns one session per connection, each
-- with a child of a root cancel token; SIGTERM or SIGINT (the shutdown
-- signal) cancels the root, which ends every session and the accept loop,
-- and the program exits 0.
--
--   nexus examples/per_connection.lua [port]
--
-- Prints "listening <port>" when ready. A session echoes each line it
-- reads as "echo: <line>". Then, try: nc 127.0.0.1 <port>, type a line,
-- and kill -TERM the server.
--
-- Gotcha (as in the seed): child() tokens die with their parent, never the
-- reverse; cancel the root to stop the whole subsystem. And a session
-- blocked in read() must be woken: a cancelled session closes its own
-- stream (close wakes the reader with nil, "closed").
local nexus = require "nexus"

local port = tonumber(arg and arg[1]) or 0

local function say(fmt, ...)
  io.stdout:write(fmt:format(...), "\n")
  io.stdout:flush()
end

-- One connection: echo lines until the peer leaves or the token is
-- cancelled, whichever comes first.
local function session(id, stream, token)
  say("session %d: started", id)
  local watcher = nexus.spawn(function()
    token:cancelled()
    stream:close()                 -- wakes the read below
  end)
  local why
  while true do
    local line, err = stream:read_line()
    if not line then
      why = token:is_cancelled() and "cancelled" or err
      break
    end
    if not stream:write("echo: " .. line .. "\n") then
      why = "write failed"
      break
    end
  end
  watcher:abort()
  stream:close()
  say("session %d: ended (%s)", id, why)
end

local root = nexus.cancel_token()
local ln = assert(nexus.tcp.listen("127.0.0.1", port))
local _, _, bound = ln:local_addr()
say("listening %d", bound)

local sessions = {}
local acceptor = nexus.spawn(function()
  while not root:is_cancelled() do
    local stream = ln:accept()
    if not stream then break end   -- the listener was closed: shutting down
    sessions[#sessions + 1] = nexus.spawn(session, #sessions + 1, stream, root:child())
  end
end)

nexus.shutdown_signal():wait()
say("shutdown: cancelling %d session(s)", #sessions)
root:cancel()
ln:close()                          -- wakes the accept loop
acceptor:join()
for _, h in ipairs(sessions) do h:join() end
say("shutdown: every session ended")
