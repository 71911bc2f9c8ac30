-- nexus.cli: the `nexus` command. Runs a script's main chunk in a
-- coroutine; the first time it suspends or spawns, that coroutine becomes
-- the root task of an implicit runtime driven until every task is done.
local core = require "nexus.core"
local runtime = require "nexus.runtime"

local M = {}

local usage = [=[
usage: nexus [options] [script [args...]]
  -e chunk   run the string 'chunk' (before the script, if one is given)
  -          run the script read from standard input
  --workers N  run N worker processes of the script (a master restarts,
             signals and waits for them; see docs/workers.md)
  -v         print version information and exit
  -h         print this help and exit
  --         stop handling options
A script runs as the root task of a nexus runtime: it may call nexus.sleep,
nexus.spawn and the other suspending functions at top level.
]=]

-- The error as text. An error object whose __tostring raises (or
-- returns a non-string) must not hide the error: its type is shown, with
-- what went wrong in __tostring.
local function errmsg(e)
  if type(e) == "string" then return e end
  if type(e) == "number" then return tostring(e) end
  local mt = getmetatable(e)
  if type(mt) == "table" and mt.__tostring ~= nil then
    local ok, s = pcall(tostring, e)
    if ok and type(s) == "string" then return s end
    return ("(error object is a %s value; its __tostring failed: %s)"):format(
      type(e), ok and "it returned a " .. type(s) or type(s) == "string" and s or "(" .. type(s) .. ")")
  end
  return "(error object is a " .. type(e) .. " value)"
end

local function report(e)
  io.stdout:flush()
  io.stderr:write("nexus: ", errmsg(e), "\n")
  io.stderr:flush()
end

-- Adds a traceback to string errors that do not carry one yet.
local function with_traceback(co, e)
  if type(e) == "string" and not e:find("\nstack traceback:", 1, true) then
    return debug.traceback(co, e)
  end
  return e
end

local function parse(argv, argc)
  local o = { chunks = {} }
  local i = 1
  while i < argc do
    local a = argv[i]
    if a == "--" then i = i + 1; break
    elseif a == "-e" then
      if not argv[i + 1] then return nil, "'-e' needs an argument" end
      o.chunks[#o.chunks + 1] = argv[i + 1]
      i = i + 2
    elseif a == "-v" then o.version = true; i = i + 1
    elseif a == "-h" or a == "--help" then o.help = true; i = i + 1
    elseif a == "-" then break
    elseif a:sub(1, 1) == "-" then return nil, "unrecognized option '" .. a .. "'"
    else break end
  end
  o.script_index = i
  o.script = argv[i]
  return o
end

local function load_main(o, argv, argc)
  local fns = {}
  for k, c in ipairs(o.chunks) do
    local f, err = loadstring(c, "=(command line)")
    if not f then return nil, err end
    fns[k] = f
  end
  local args = {}
  if o.script then
    -- `arg` as luajit sets it: arg[0] the script, negatives the command.
    local a = {}
    for k = 0, argc - 1 do a[k - o.script_index] = argv[k] end
    _G.arg = a
    for k = o.script_index + 1, argc - 1 do args[#args + 1] = argv[k] end
    local f, err
    if o.script == "-" then
      f, err = loadstring(io.stdin:read("*a"), "=stdin")
    else
      f, err = loadfile(o.script)
    end
    if not f then return nil, err end
    fns[#fns + 1] = f
  else
    _G.arg = { [0] = argv[0] }
  end
  local n = #fns
  if n == 1 then return fns[1], args end
  return function(...)
    for k = 1, n - 1 do fns[k]() end
    return fns[n](...)
  end, args
end

function M.main(argv, argc)
  local o, err = parse(argv, argc)
  if not o then
    io.stderr:write("nexus: ", err, "\n", usage)
    return 1
  end
  if o.help then io.stdout:write(usage); return 0 end
  if o.version then
    io.stdout:write(("nexus %s (%s, libuv %s)\n"):format(core.version, jit.version, core.uv_version))
    return 0
  end
  if not o.script and #o.chunks == 0 then
    io.stderr:write(usage)
    return 1
  end
  local main, args = load_main(o, argv, argc)
  if not main then report(args); return 1 end

  runtime._command = true
  local co = coroutine.create(main)
  runtime._set_pending(co)
  local ok, e = coroutine.resume(co, unpack(args))
  local imp = runtime._implicit()
  local dead = coroutine.status(co) == "dead"
  -- A bare coroutine.yield() at top level, before any nexus call: it acts
  -- as nexus.yield(), so the chunk becomes the root task and goes on.
  if ok and not dead and not imp then imp = runtime._adopt_yielded(co) end
  runtime._set_pending(nil)
  if not ok then
    if imp then imp.rt:close() end
    -- A runtime of the script's own was interrupted by a signal no task
    -- waited for: exit as the signal asks, as the implicit runtime does.
    local signo = core.last_interrupt()
    if signo ~= 0 and errmsg(e):find("interrupted by", 1, true) then return 128 + signo end
    report(with_traceback(co, e))
    return 1
  end
  if not imp then return 0 end
  -- pcall's result, then the driver's: true, ... | false, err
  local dok, ok, derr = pcall(imp.rt._adopted_drive, imp.rt, imp.root, dead)
  imp.rt:close()
  if not dok then report(ok); return 1 end
  if not ok then
    local signo = core.last_interrupt()
    if signo ~= 0 and errmsg(derr):find("interrupted by", 1, true) then return 128 + signo end
    report(derr)
    return 1
  end
  return 0
end

return M
