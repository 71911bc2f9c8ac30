-- Child processes for the specs that send real signals: start a command
-- with stdout and stderr in temp files, wait for a line it prints, signal
-- it, and collect how it ended (exit code, or killed by a signal: the two
-- are told apart, which a shell's $? cannot do).
--
-- The child starts with SIGINT and SIGTERM at their default disposition
-- and unblocked, whatever the shell that started the specs did (a
-- background job of a non-interactive shell ignores SIGINT, and an
-- ignored signal stays ignored across exec).
--
-- Load it with
--   local P = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "proc.lua")
-- and call P.cleanup() in after_each: it kills (SIGKILL) and reaps any
-- child still running, and removes the temp files.
local ffi = require "ffi"

-- Own names for the libc functions (asm labels), so these declarations
-- never clash with a cdef of the code under test. The opaque types are
-- at least as large as glibc's (336, 80 and 128 bytes).
if not pcall(function() return ffi.C.nx_spec_kill end) then
  ffi.cdef [[
  typedef struct { uint64_t opaque[64]; } nx_spec_spawnattr;
  typedef struct { uint64_t opaque[32]; } nx_spec_spawnfa;
  typedef struct { uint64_t opaque[32]; } nx_spec_sigset;
  int nx_spec_fa_init(nx_spec_spawnfa *) __asm__("posix_spawn_file_actions_init");
  int nx_spec_fa_destroy(nx_spec_spawnfa *) __asm__("posix_spawn_file_actions_destroy");
  int nx_spec_fa_addopen(nx_spec_spawnfa *, int, const char *, int, unsigned int)
    __asm__("posix_spawn_file_actions_addopen");
  int nx_spec_attr_init(nx_spec_spawnattr *) __asm__("posix_spawnattr_init");
  int nx_spec_attr_destroy(nx_spec_spawnattr *) __asm__("posix_spawnattr_destroy");
  int nx_spec_attr_setflags(nx_spec_spawnattr *, short) __asm__("posix_spawnattr_setflags");
  int nx_spec_attr_setsigdefault(nx_spec_spawnattr *, const nx_spec_sigset *)
    __asm__("posix_spawnattr_setsigdefault");
  int nx_spec_attr_setsigmask(nx_spec_spawnattr *, const nx_spec_sigset *)
    __asm__("posix_spawnattr_setsigmask");
  int nx_spec_sigemptyset(nx_spec_sigset *) __asm__("sigemptyset");
  int nx_spec_sigaddset(nx_spec_sigset *, int) __asm__("sigaddset");
  int nx_spec_spawnp(int *, const char *, const nx_spec_spawnfa *, const nx_spec_spawnattr *,
                     char *const *, char *const *) __asm__("posix_spawnp");
  int nx_spec_waitpid(int, int *, int) __asm__("waitpid");
  int nx_spec_kill(int, int) __asm__("kill");
  int nx_spec_poll(void *, unsigned long, int) __asm__("poll");
  char *strerror(int);
  extern char **nx_spec_environ __asm__("environ");
  ]]
end
local C = ffi.C

local SIG = { INT = 2, KILL = 9, TERM = 15 }
local SPAWN_SETSIGDEF, SPAWN_SETSIGMASK = 0x04, 0x08   -- glibc
local O_RDONLY, O_WRITE_NEW = 0, 577                    -- O_WRONLY|O_CREAT|O_TRUNC
local WNOHANG = 1

local M = { SIG = SIG }

-- Sleeps ms milliseconds (the spec process is not inside a nexus task).
function M.sleep_ms(ms) C.nx_spec_poll(nil, 0, ms) end

-- nexus.now(): monotonic seconds, usable outside a task.
local monotonic = require("nexus").now

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

local live = {}        -- pid -> proc, until reaped
local files = {}

local Proc = {}
Proc.__index = Proc

-- Starts argv (a list of strings; argv[1] is looked up in PATH). Returns
-- a proc; raises if it cannot start.
function M.spawn(argv)
  local out, err = os.tmpname(), os.tmpname()
  files[#files + 1], files[#files + 2] = out, err
  local cargv = ffi.new("char *[?]", #argv + 1)
  local keep = {}
  for i, a in ipairs(argv) do
    keep[i] = ffi.new("char[?]", #a + 1, a)
    cargv[i - 1] = keep[i]
  end
  cargv[#argv] = nil
  local fa, attr = ffi.new("nx_spec_spawnfa"), ffi.new("nx_spec_spawnattr")
  local def, empty = ffi.new("nx_spec_sigset"), ffi.new("nx_spec_sigset")
  assert(C.nx_spec_fa_init(fa) == 0)
  assert(C.nx_spec_fa_addopen(fa, 0, "/dev/null", O_RDONLY, 0) == 0)
  assert(C.nx_spec_fa_addopen(fa, 1, out, O_WRITE_NEW, 420) == 0)
  assert(C.nx_spec_fa_addopen(fa, 2, err, O_WRITE_NEW, 420) == 0)
  assert(C.nx_spec_attr_init(attr) == 0)
  C.nx_spec_sigemptyset(def)
  C.nx_spec_sigaddset(def, SIG.INT)
  C.nx_spec_sigaddset(def, SIG.TERM)
  C.nx_spec_sigemptyset(empty)
  assert(C.nx_spec_attr_setsigdefault(attr, def) == 0)
  assert(C.nx_spec_attr_setsigmask(attr, empty) == 0)
  assert(C.nx_spec_attr_setflags(attr, SPAWN_SETSIGDEF + SPAWN_SETSIGMASK) == 0)
  local pid = ffi.new("int[1]")
  local rc = C.nx_spec_spawnp(pid, cargv[0], fa, attr, cargv, C.nx_spec_environ)
  C.nx_spec_fa_destroy(fa)
  C.nx_spec_attr_destroy(attr)
  if rc ~= 0 then
    error("proc.spawn: cannot start " .. argv[1] .. ": " .. ffi.string(C.strerror(rc)), 2)
  end
  local p = setmetatable({ pid = pid[0], argv = argv, out_path = out, err_path = err }, Proc)
  live[p.pid] = p
  return p
end

-- Runs a script (source text) with the nexus command under test.
function M.nexus(src, ...)
  local H = M.H
  local file = H.tmpfile(src)
  return M.spawn({ H.nexus_bin(), file, ... })
end

-- Runs a script (source text) under plain luajit, with the caller's
-- LUA_PATH/LUA_CPATH.
function M.luajit(src, ...)
  local file = M.H.tmpfile(src)
  return M.spawn({ os.getenv("NEXUS_LUAJIT") or "luajit", file, ... })
end

function Proc:out() return slurp(self.out_path) end
function Proc:err() return slurp(self.err_path) end

-- Collects the exit status if the child ended: self.status is then
-- { exited = true, code = n } or { signaled = true, signo = n }.
function Proc:poll()
  if self.status then return self.status end
  local st = ffi.new("int[1]")
  local r = C.nx_spec_waitpid(self.pid, st, WNOHANG)
  if r == self.pid then
    local s = st[0]
    if s % 128 == 0 then
      self.status = { exited = true, code = math.floor(s / 256) % 256 }
    else
      self.status = { signaled = true, signo = s % 128 }
    end
    live[self.pid] = nil
  end
  return self.status
end

-- Waits until the child's stdout (or stderr, with stream = "err") holds
-- needle (a plain string), for at most secs. True, or false (timed out, or
-- the child ended without printing it).
function Proc:wait_for(needle, secs, stream)
  local read = stream == "err" and Proc.err or Proc.out
  local deadline = monotonic() + secs
  while true do
    if read(self):find(needle, 1, true) then return true end
    if self:poll() then return read(self):find(needle, 1, true) ~= nil end
    if monotonic() >= deadline then return false end
    M.sleep_ms(10)
  end
end

-- Sends a signal: "INT", "TERM", "KILL" or a number.
function Proc:signal(sig)
  local n = type(sig) == "number" and sig or assert(SIG[sig], "unknown signal")
  assert(C.nx_spec_kill(self.pid, n) == 0, "kill failed")
end

-- Waits for the child to end, for at most secs: its status, or nil.
function Proc:wait(secs)
  local deadline = monotonic() + secs
  while not self:poll() do
    if monotonic() >= deadline then return nil end
    M.sleep_ms(10)
  end
  return self.status
end

-- "exit 0", "exit 143", "killed by signal 15" or "running".
function Proc:how()
  local s = self:poll()
  if not s then return "running" end
  if s.exited then return "exit " .. s.code end
  return "killed by signal " .. s.signo
end

-- Status, stdout and stderr, for assertion messages.
function Proc:show()
  return ("%s: %s\n--- stdout\n%s--- stderr\n%s"):format(
    table.concat(self.argv, " "), self:how(), self:out(), self:err())
end

function M.cleanup()
  for pid, p in pairs(live) do
    C.nx_spec_kill(pid, SIG.KILL)
    p:wait(10)
    live[pid] = nil
  end
  for i = #files, 1, -1 do
    os.remove(files[i])
    files[i] = nil
  end
  if M.H then M.H.cleanup() end
end

-- The shared helpers (temp files, the nexus binary), loaded next to us.
M.H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

return M
