-- Run the busted specs under LuaJIT, one process per spec file.
--
-- usage: luajit spec/run.lua [spec files...] [-- busted options...]
--
-- With no file, runs every spec/*_spec.lua. Each file gets its own busted
-- process, so a C crash (or a hang, after NEXUS_SPEC_TIMEOUT seconds,
-- default 300) fails that file only. Busted's own progress goes to stdout;
-- the last line is the summary
--     N passed, N failed[, N skipped]
-- where failed counts failures, errors (also those outside `it`) and files
-- whose process crashed or exited non-zero without reporting a failure.
-- Exits non-zero if anything failed or if no test ran.
--
-- The environment is the caller's: the Makefile sets LUA_PATH, LUA_CPATH,
-- NEXUS_BUILD and NEXUS_BIN (and LD_PRELOAD/ASAN_OPTIONS for SANITIZE).

-- ---------------------------------------------------------------------------
-- Child mode: luajit spec/run.lua --child <result file> <busted args...>
-- Runs busted in this process and writes the counts to <result file>.
-- ---------------------------------------------------------------------------
if arg[1] == "--child" then
  local result_path = arg[2]
  -- --ignore-lua: we already are the interpreter a .busted `lua` names.
  local bargs = { "--ignore-lua" }
  for i = 3, #arg do bargs[#bargs + 1] = arg[i] end
  bargs[0] = arg[0]
  arg = bargs -- busted.runner parses the global `arg`

  local counts
  -- Hook the output handler loader: next to busted's own terminal handler,
  -- subscribe a second (silent) base handler that counts, and save its
  -- counts when busted publishes 'exit'.
  local orig_loader = require "busted.modules.output_handler_loader"
  package.loaded["busted.modules.output_handler_loader"] = function()
    local load = orig_loader()
    return function(busted, output, options)
      load(busted, output, options)
      local counter = require("busted.outputHandlers.base")()
      counter:subscribe(options)
      counts = counter
      busted.subscribe({ "exit" }, function()
        local f = assert(io.open(result_path, "w"))
        f:write(("%d %d %d %d\n"):format(counter.successesCount,
          counter.failuresCount, counter.errorsCount, counter.pendingsCount))
        f:close()
        return nil, true
      end)
    end
  end

  -- busted's exit() raises a bare error() under Lua 5.1 when tests fail
  -- and we are not "standalone"; the counts are already written then.
  local ok, err = pcall(require "busted.runner", { standalone = false })
  if not ok and err ~= nil then
    io.stderr:write("spec/run.lua: busted: ", tostring(err), "\n")
    os.exit(1, true)
  end
  local bad = counts and (counts.failuresCount + counts.errorsCount) or 1
  io.stdout:flush()
  -- Close the state (true): __gc finalizers run, and a crash there shows.
  os.exit(bad == 0 and 0 or 1, true)
end

-- ---------------------------------------------------------------------------
-- Parent mode.
-- ---------------------------------------------------------------------------
local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function readcmd(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("*a")
  p:close()
  return s
end

-- LuaJIT's os.execute returns the raw wait status (5.1 semantics); newer
-- builds with 5.2 compatibility return true/false, "exit"/"signal", code.
local function execute(cmd)
  local a, how, code = os.execute(cmd)
  if type(a) == "number" then
    if a % 256 ~= 0 then return "signal", a % 128 end
    return "exit", math.floor(a / 256)
  end
  return how or "exit", code or (a and 0 or 1)
end

local self = arg[0]
local luajit = os.getenv("NEXUS_LUAJIT") or "luajit"
-- NEXUS_VALGRIND=1 (make test VALGRIND=1, make valgrind): each spec
-- process runs under valgrind's memcheck; an error it reports fails the
-- file (exit 99). valgrind/host.supp holds the suppressions (system
-- libraries only). Processes a spec starts itself are not traced unless
-- NEXUS_VALGRIND_OPTS (more valgrind options, as shell words) says
-- --trace-children=yes.
local valgrind = os.getenv("NEXUS_VALGRIND") == "1"
local timeout = tonumber(os.getenv("NEXUS_SPEC_TIMEOUT")) or (valgrind and 1500 or 300)

local files, extra = {}, {}
do
  local i, rest = 1, false
  while arg[i] do
    if rest then extra[#extra + 1] = arg[i]
    elseif arg[i] == "--" then rest = true
    else files[#files + 1] = arg[i] end
    i = i + 1
  end
end
if #files == 0 then
  local dir = self:match("^(.*)/[^/]*$") or "."
  for f in readcmd("ls -1 " .. shquote(dir) .. "/*_spec.lua 2>/dev/null"):gmatch("[^\n]+") do
    files[#files + 1] = f
  end
  table.sort(files)
end

local has_timeout
do
  local how, code = execute("command -v timeout >/dev/null 2>&1")
  has_timeout = how == "exit" and code == 0
end

local total = { passed = 0, failed = 0, skipped = 0 }
local bad_files = {}

for _, file in ipairs(files) do
  io.stdout:write("==> ", file, "\n")
  io.stdout:flush()
  local result = os.tmpname()
  os.remove(result)
  local cmd = {}
  if has_timeout then
    cmd[#cmd + 1] = ("timeout -k 10 %d"):format(timeout)
  end
  if valgrind then
    cmd[#cmd + 1] = "valgrind --tool=memcheck --error-exitcode=99 --leak-check=no -q"
    cmd[#cmd + 1] = "--suppressions=" .. shquote((self:match("^(.*)/[^/]*$") or ".") .. "/../valgrind/host.supp")
    cmd[#cmd + 1] = os.getenv("NEXUS_VALGRIND_OPTS")
  end
  cmd[#cmd + 1] = shquote(luajit) .. " " .. shquote(self) .. " --child " .. shquote(result)
  for _, a in ipairs(extra) do cmd[#cmd + 1] = shquote(a) end
  cmd[#cmd + 1] = shquote(file)
  local how, code = execute(table.concat(cmd, " "))
  if how == "exit" and code > 128 and code < 128 + 65 then
    how, code = "signal", code - 128 -- the shell's report of a signal
  end

  local f = io.open(result)
  local line = f and f:read("*l")
  if f then f:close() end
  os.remove(result)
  local s, fl, e, p = (line or ""):match("^(%d+) (%d+) (%d+) (%d+)$")
  s, fl, e, p = tonumber(s), tonumber(fl), tonumber(e), tonumber(p)

  local why
  if not s then
    why = how == "signal" and ("killed by signal " .. code)
      or (code == 124 and has_timeout) and ("timed out after " .. timeout .. "s")
      or ("exited with status " .. code .. " before busted finished")
    s, fl, e, p = 0, 1, 0, 0
  elseif how ~= "exit" or code ~= 0 then
    if fl + e == 0 then
      why = how == "signal" and ("killed by signal " .. code .. " after its tests")
        or (valgrind and code == 99) and "valgrind reported errors (see above)"
        or ("exited with status " .. code .. " after its tests passed")
      fl = fl + 1
    end
  end
  if why then
    io.stdout:write("\n", file, ": ", why, " (counted as failed)\n")
  end
  total.passed = total.passed + s
  total.failed = total.failed + fl + e
  total.skipped = total.skipped + p
  if fl + e > 0 then bad_files[#bad_files + 1] = file end
  io.stdout:flush()
end

io.stdout:write("\n")
if #files == 0 then
  io.stdout:write("no spec files found\n")
end
if #bad_files > 0 then
  io.stdout:write("failing spec files:\n")
  for _, f in ipairs(bad_files) do io.stdout:write("  ", f, "\n") end
end
local summary = ("%d passed, %d failed"):format(total.passed, total.failed)
if total.skipped > 0 then
  summary = summary .. (", %d skipped"):format(total.skipped)
end
io.stdout:write(summary, "\n")
io.stdout:flush()
os.exit((total.failed == 0 and total.passed > 0) and 0 or 1)
