-- Shared helpers for the nexus specs: running code in a subprocess (the
-- nexus command or plain luajit) with stdout, stderr and the exit status
-- captured, temp files, and small timing utilities.
--
-- Load it from a spec with
--   local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")
-- so it works whatever the current directory and package.path are.

local M = {}

-- Timing margins: never early, at most LATE seconds late (noisy machine).
M.LATE = 0.2
-- Float slack for comparisons of times computed from the same clock.
M.EPS = 1e-9

function M.q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, content)
  local f = assert(io.open(path, "wb"))
  f:write(content)
  f:close()
  return path
end

-- Writes content to a fresh temp file; returns its name. The file is
-- removed by M.cleanup().
local tmpfiles = {}
function M.tmpfile(content)
  local name = os.tmpname()
  tmpfiles[#tmpfiles + 1] = name
  if content then M.write_file(name, content) end
  return name
end

function M.cleanup()
  for i = #tmpfiles, 1, -1 do
    os.remove(tmpfiles[i])
    tmpfiles[i] = nil
  end
end

-- Runs a shell command line; returns { out = stdout, err = stderr,
-- rc = exit status }. stdin, if given, is fed from a temp file.
function M.sh(cmd, stdin)
  local out, err = os.tmpname(), os.tmpname()
  local inp
  if stdin then
    inp = os.tmpname()
    M.write_file(inp, stdin)
  end
  local full = "(" .. cmd .. ") >" .. M.q(out) .. " 2>" .. M.q(err)
    .. " <" .. (inp and M.q(inp) or "/dev/null")
  local p = assert(io.popen("sh -c " .. M.q(full .. "; echo \"rc=$?\"")))
  local status = p:read("*a")
  p:close()
  local r = { out = slurp(out), err = slurp(err), rc = tonumber(status:match("rc=(%d+)")) }
  os.remove(out)
  os.remove(err)
  if inp then os.remove(inp) end
  return r
end

-- The nexus command under test.
function M.nexus_bin()
  local bin = os.getenv("NEXUS_BIN")
  if bin and bin ~= "" then return bin end
  local root = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."
  return root .. "/build/bin/nexus"
end

-- Runs the nexus command with the given argument list (strings, quoted
-- here) and optional stdin.
function M.run_nexus(args, stdin)
  local parts = { M.q(M.nexus_bin()) }
  for _, a in ipairs(args or {}) do parts[#parts + 1] = M.q(a) end
  return M.sh(table.concat(parts, " "), stdin)
end

-- Runs a script (source text) with the nexus command: nexus <file> args...
function M.nexus_script(src, ...)
  local file = M.tmpfile(src)
  local args = { file, ... }
  return M.run_nexus(args), file
end

-- Runs a script (source text) under plain luajit, with the caller's
-- LUA_PATH/LUA_CPATH (so require "nexus" finds the tree under test).
function M.luajit_script(src, ...)
  local file = M.tmpfile(src)
  local parts = { "luajit", M.q(file) }
  for _, a in ipairs({ ... }) do parts[#parts + 1] = M.q(a) end
  return M.sh(table.concat(parts, " ")), file
end

-- Runs a script under plain luajit (luajit_script) and also returns a
-- description of how it ended, for assertion messages.
function M.luajit_show(src, ...)
  local r = M.luajit_script(src, ...)
  return r, ("rc %s\n--- stdout\n%s--- stderr\n%s"):format(tostring(r.rc), r.out, r.err)
end

-- Counts plain (non-pattern) occurrences of needle in s.
function M.count(s, needle)
  local n, i = 0, 1
  while true do
    local a, b = s:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

-- pcall that returns only the error (nil when fn did not raise).
function M.errof(fn, ...)
  local ok, e = pcall(fn, ...)
  if ok then return nil end
  return e
end

-- Spins (without yielding) until nexus.now() has advanced by secs.
function M.busy_wait(nexus, secs)
  local untl = nexus.now() + secs
  while nexus.now() < untl do end
end

-- Packs values with their count.
function M.pack(...) return { n = select("#", ...), ... } end

return M
