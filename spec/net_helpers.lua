-- Helpers shared by the network specs: connected pairs inside a task,
-- descriptor counts, background processes.
--
--   local N = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "net_helpers.lua")
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
local M = {}

-- Inside a task: a listener on 127.0.0.1 (or host), a client stream and
-- the server's end of the same connection.
function M.pair(lopts, copts, host)
  local nexus = require "nexus"
  host = host or "127.0.0.1"
  local ln = assert(nexus.tcp.listen(host, 0, lopts))
  local _, _, port = ln:local_addr()
  local h = nexus.spawn(function() return ln:accept() end)
  local c = assert(nexus.tcp.connect(host, port, copts))
  local s, peer = h:join()
  assert(s, peer)
  return c, s, ln, peer
end

-- Open descriptors of this process.
function M.fds()
  local n = 0
  local p = assert(io.popen("ls /proc/" .. M.pid() .. "/fd"))
  for _ in p:lines() do n = n + 1 end
  p:close()
  return n - 1   -- the ls pipe's own descriptor
end

-- This process's pid (the parent of a shell started from here).
local pid
function M.pid()
  if not pid then
    local f = assert(io.open("/proc/self/stat"))
    pid = f:read("*l"):match("^(%d+)")
    f:close()
  end
  return pid
end

-- Starts cmd (a shell command line) in the background with its stdout on
-- a pipe; returns { pid = n, pipe = p }. The shell prints its pid, runs
-- pre (a command such as "ulimit -n 20000") if given, then execs cmd, so
-- pid is cmd's own.
function M.spawn(cmd, pre)
  local p = assert(io.popen("sh -c " .. H.q("echo $$; " .. (pre and pre .. " && " or "") .. "exec " .. cmd), "r"))
  local pid = tonumber(p:read("*l"))
  return { pid = pid, pipe = p }
end

-- Reads stdout lines of a background process until one matches pattern;
-- returns its captures (or nil at end of output).
function M.expect(proc, pattern)
  for line in proc.pipe:lines() do
    local a, b = line:match(pattern)
    if a then return a, b end
  end
end

function M.kill(proc, sig)
  os.execute(("kill -%s %d 2>/dev/null"):format(sig or "TERM", proc.pid))
end

-- Waits for a background process to end; returns its remaining stdout.
function M.finish(proc)
  local rest = proc.pipe:read("*a")
  proc.pipe:close()
  return rest
end

-- The nexus command and the environment for running examples.
function M.nexus(args)
  return H.q(H.nexus_bin()) .. " " .. args
end

-- n bytes, deterministic per seed, numbered in blocks so that a lost,
-- repeated or reordered piece shows.
function M.blob(n, seed)
  local t, x = {}, seed or 12345
  for i = 1, 1024 do
    x = (x * 1103515245 + 12345) % 2147483648
    t[i] = string.char(x % 256)
  end
  local base = table.concat(t)
  local parts, got, i = {}, 0, 0
  while got < n do
    i = i + 1
    local part = ("%08x"):format(i) .. base:sub(1 + i % 64, 504 + i % 64)
    parts[i] = part
    got = got + #part
  end
  return table.concat(parts):sub(1, n)
end

return M
