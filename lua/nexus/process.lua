-- nexus.process: child processes with their stdin, stdout and stderr as
-- nexus streams (src/process.c on uv_spawn; the pipes are tcp.c's
-- streams, so read_line, read_exactly, write with backpressure, time-outs
-- and select ops work on them). See docs/process.md.
local core = require "nexus.core"
local util = require "nexus.util"

local c_spawn, c_wait, c_kill, c_pid = core.process_spawn, core.process_wait, core.process_kill, core.process_pid
local type, pairs, ipairs, tostring, setmetatable, getmetatable = type, pairs, ipairs, tostring, setmetatable, getmetatable
local suspend, argerror = util.suspend, util.argerror

local M = {}
local P = {}
P.__index = P

local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, TERM = 15, CONT = 18, STOP = 19 }
local NAMES = {}
for k, v in pairs(SIGNALS) do NAMES[v] = "SIG" .. k end

local MODES = { pipe = "p", inherit = "i", ignore = "n" }
local OPTS = { env = true, cwd = true, stdin = true, stdout = true, stderr = true }

-- nexus.process.spawn(cmd, args, opts) -> p | nil, err (the command could
-- not be started: "no such file or directory", ...). cmd is looked up on
-- PATH. opts: env (a table: the child's whole environment; default: this
-- process's), cwd, stdin/stdout/stderr ("pipe" default, "inherit", "ignore").
function M.spawn(cmd, args, opts)
  local fname = "nexus.process.spawn"
  if type(cmd) ~= "string" or cmd == "" then argerror(fname, "expected a command string, got " .. type(cmd)) end
  if args == nil then args = {} end
  if type(args) ~= "table" then argerror(fname, "args must be a table of strings, got " .. type(args)) end
  for i, a in ipairs(args) do
    if type(a) ~= "string" and type(a) ~= "number" then
      argerror(fname, "args[" .. i .. "] must be a string, got " .. type(a))
    end
    args[i] = tostring(a)
  end
  opts = opts or {}
  if type(opts) ~= "table" then argerror(fname, "options must be a table, got " .. type(opts)) end
  for k in pairs(opts) do
    if not OPTS[k] then argerror(fname, "unknown option '" .. tostring(k) .. "'") end
  end
  local env = opts.env
  if env ~= nil then
    if type(env) ~= "table" then argerror(fname, "env must be a table, got " .. type(env)) end
    for k, v in pairs(env) do
      if type(k) ~= "string" or k:find("[=%z]") or k == "" then argerror(fname, "bad environment variable name " .. tostring(k)) end
      if type(v) ~= "string" and type(v) ~= "number" then argerror(fname, "env." .. k .. " must be a string, got " .. type(v)) end
    end
  end
  if opts.cwd ~= nil and type(opts.cwd) ~= "string" then argerror(fname, "cwd must be a string, got " .. type(opts.cwd)) end
  local modes = ""
  for _, k in ipairs({ "stdin", "stdout", "stderr" }) do
    local m = opts[k] or "pipe"
    if not MODES[m] then argerror(fname, k .. " must be \"pipe\", \"inherit\" or \"ignore\", got " .. tostring(m)) end
    modes = modes .. MODES[m]
  end
  local h, a, b, c = c_spawn(cmd, args, env, opts.cwd, modes)
  if not h then return nil, a end
  return setmetatable({ h = h, stdin = a or nil, stdout = b or nil, stderr = c or nil }, P)
end

local function check(self, fname)
  if getmetatable(self) ~= P then argerror(fname, "expected a process", 2) end
  return self.h
end

-- (suspends) the exit code | nil, "signal", "SIGTERM" (killed by a signal)
function P:wait()
  local h = check(self, "process:wait")
  local a, b, c = c_wait(h)
  while a == false do
    suspend("process:wait")
    a, b, c = c_wait(h)
  end
  if a == nil then return nil, b, NAMES[c] or ("signal " .. c) end
  return a
end

-- Sends a signal ("TERM" default, "KILL", "INT", ... or a number): true |
-- false when it has exited already | nil, err.
function P:kill(sig)
  local h = check(self, "process:kill")
  local n = sig == nil and 15 or SIGNALS[type(sig) == "string" and sig:gsub("^SIG", "") or ""] or sig
  if type(n) ~= "number" or n ~= math.floor(n) or n < 1 or n > 64 then
    argerror("process:kill", "unknown signal " .. tostring(sig))
  end
  return c_kill(h, n)
end

function P:pid() return c_pid(check(self, "process:pid")) end

function P:__tostring() return "nexus.process(" .. tostring(c_pid(self.h)) .. ")" end

return M
