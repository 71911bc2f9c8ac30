-- nexus.world: the World (named resources; typed ones live in C memory
-- owned by src/world.c), pre-resolved handlers, and the WorldCtx of a
-- running runtime (with_world / with_world_ref).
--
-- Life: the World object holds the C World (ffi.gc frees it). Every
-- pointer handed out (world:resource, world:ptr, a handler's resolved
-- resources) is ffi.gc-tied to a keeper closure that references the World,
-- so the C memory outlives every such pointer (pointer arithmetic on one
-- makes a plain pointer that does not). The World must not hold those
-- pointers itself: the finalizer table would then keep it forever.
local ffi = require "ffi"
local bit = require "bit"
local core = require "nexus.core"
local api = require "nexus.api"
local util = require "nexus.util"
local runtime = require "nexus.runtime"

local type, error, tostring, select, pairs, pcall, setmetatable, getmetatable, loadstring, unpack, rawget =
  type, error, tostring, select, pairs, pcall, setmetatable, getmetatable, loadstring, unpack, rawget
local concat, sort = table.concat, table.sort
local band, rshift = bit.band, bit.rshift
local fcast, fgc, ftypeof, fsizeof, falignof, fnew, fcopy = ffi.cast, ffi.gc, ffi.typeof, ffi.sizeof, ffi.alignof, ffi.new, ffi.copy
local typeinfo = ffi.typeinfo   -- undocumented in LuaJIT 2.1; nil elsewhere
local current_rt = runtime.current
local in_task = api.in_task

ffi.cdef [[
typedef struct nexus_world nexus_world;
typedef struct nx_world_lapi {
  nexus_world *(*create)(void);
  void (*destroy)(nexus_world *w);
  int (*add)(nexus_world *w, const char *name, size_t size, size_t align, void **out);
  void (*seal)(nexus_world *w);
  void *(*resource)(nexus_world *w, const char *name);
  uint64_t (*next_sequence)(nexus_world *w);
  uint64_t (*current_sequence)(const nexus_world *w);
  double (*resumes)(void);
  double (*live)(void);
} nx_world_lapi;
]]

local W = ffi.cast("const nx_world_lapi *", core.world_api)
local w_create, w_destroy, w_add, w_seal = W.create, W.destroy, W.add, W.seal
local w_next, w_cur, w_resumes = W.next_sequence, W.current_sequence, W.resumes
local world_ptr_t = ffi.typeof("nexus_world *")
local out_t = ffi.typeof("void *[1]")

local M = {}

local World, WorldRef, Builder, Handler, Ctx, Res = {}, {}, {}, {}, {}, {}
World.__index, WorldRef.__index, Builder.__index, Handler.__index, Ctx.__index =
  World, WorldRef, Builder, Handler, Ctx

local getinfo = debug.getinfo
local THIS = getinfo(1, "S").source

-- Raises "fname: what" at the first caller outside this file, so the
-- position names the user's line however deep the check ran.
local function raise(fname, what)
  local level = 2
  while true do
    local info = getinfo(level, "S")
    if not info or info.source ~= THIS then break end
    level = level + 1
  end
  error(fname .. ": " .. what, level)
end

-- An ffi error message without the "file:line: " LuaJIT put in front.
local function bare(e)
  e = tostring(e)
  return (e:gsub("^[^:\n]*:%d+: ", ""))
end

local function check_name(fname, name, what)
  if type(name) ~= "string" or name == "" then
    raise(fname, (what or "name") .. " must be a non-empty string, got "
      .. (type(name) == "string" and "\"\"" or type(name)))
  end
end

---------------------------------------------------------------- C types

-- ffi.typeof(fmt, ct) with the ctype's id in a comment, so the first
-- argument names the result: a test runner that memoises ffi.typeof by
-- its first argument (busted does) still gets the right type.
local function derived(fmt, ct)
  return ftypeof(fmt .. " /* " .. tonumber(ct) .. " */", ct)
end

-- A resource's C type: from a C type string (or a ctype object), with the
-- pointer types the World hands out. Raises naming fname.
local function resolve_ctype(fname, name, ctype)
  local ok, ct = pcall(ftypeof, ctype)
  if not ok then
    raise(fname, ("invalid C type %q for resource '%s': %s"):format(tostring(ctype), name, bare(ct)))
  end
  local oks, size = pcall(fsizeof, ct)
  if not oks or not size then
    raise(fname, ("C type %q of resource '%s' has no fixed size (void, a function or a "
      .. "variable-length type)"):format(tostring(ctype), name))
  end
  return ct, size, falignof(ct), derived("$ *", ct), derived("const $ *", ct)
end

local function is_aggregate_ref(v)
  if type(v) ~= "cdata" then return false end
  local s = tostring(ftypeof(v))
  return (s:find("^ctype<struct ") or s:find("^ctype<union ")) and s:find(" &>$") ~= nil
end

local function read_field(obj, k) return obj[k] end
local function write_field(obj, k, v) obj[k] = v end

-- Sets obj's fields from init, checking every key against the C type
-- (ffi.new and table conversions skip unknown keys silently).
local function init_fields(fname, rname, tname, obj, init, path)
  for k, v in pairs(init) do
    if type(k) ~= "string" then
      raise(fname, ("init of resource '%s': key %s is not a field name (%s)"):format(
        rname, tostring(k), tname))
    end
    local ok, cur = pcall(read_field, obj, k)
    if not ok then
      raise(fname, ("init of resource '%s': '%s' is not a field of %s"):format(
        rname, concat(path) .. k, tname))
    end
    if type(v) == "table" and is_aggregate_ref(cur) then
      path[#path + 1] = k .. "."
      init_fields(fname, rname, tname, cur, v, path)
      path[#path] = nil
    else
      local okw, e = pcall(write_field, obj, k, v)
      if not okw then
        raise(fname, ("init of resource '%s': field '%s': %s"):format(
          rname, concat(path) .. k, bare(e)))
      end
    end
  end
end

-- The initial value, in a one-element array (a scalar cdata could not be
-- copied from), built and checked before anything is registered.
local function assign0(arr, v) arr[0] = v end

local function initial_value(fname, name, ctype, ct, init)
  local arr = fnew(derived("$[1]", ct))
  if init == nil then return arr end
  local tname = tostring(ct):match("^ctype<(.*)>$")
  if tname:find("^struct ") or tname:find("^union ") then
    if type(init) ~= "table" then
      raise(fname, ("init of resource '%s' must be a table of field values, got %s"):format(
        name, type(init)))
    end
    init_fields(fname, name, ("%q"):format(tostring(ctype)), arr[0], init, {})
    return arr
  end
  local ok, e = pcall(assign0, arr, init)
  if not ok then
    raise(fname, ("init of resource '%s': %s"):format(name, bare(e)))
  end
  return arr
end

---------------------------------------------------------------- builder

function M.builder()
  local cw = w_create()
  if cw == nil then raise("nexus.world.builder", "out of memory") end
  cw = fgc(cw, w_destroy)
  -- _addr: the same address as another cdata object, for ptr() (casting
  -- _cw to its own type would return _cw itself, and ffi.gc on that
  -- would replace the finalizer that frees the World)
  local world = setmetatable({ _cw = cw, _addr = fcast("void *", cw), _res = {}, _n = 0 }, World)
  -- keeps the World alive as long as a pointer tied to it lives
  world._keeper = function() return world end
  world._ref = setmetatable({ _world = world }, WorldRef)
  return setmetatable({ _world = world }, Builder)
end

local function check_builder(self, fname)
  if getmetatable(self) ~= Builder then
    raise(fname, "expected a World builder (call it as builder:" .. fname:match("[%w_]+$") .. "(...))")
  end
  if self._built then
    raise(fname, "the World is already built: register every resource before build()")
  end
end

local ADD_ERR = { [-2] = "out of memory", [-3] = "name already taken", [-4] = "World sealed",
                  [-5] = "invalid name or alignment" }

local function register(self, fname, name, value, init)
  check_name(fname, name)
  local world = self._world
  if world._res[name] then
    raise(fname, ("a resource named '%s' is already registered (ensure keeps the first)"):format(name))
  end
  if value == nil then
    raise(fname, ("resource '%s' has no value (nil): give a C type and an init table, or a Lua value"):format(name))
  end
  local e
  if type(value) == "string" or (type(value) == "cdata" and tostring(value):find("^ctype<")) then
    local ct, size, align, pt, cpt = resolve_ctype(fname, name, value)
    local v = initial_value(fname, name, value, ct, init)
    local out = out_t()
    local rc = w_add(world._cw, name, size, align, out)
    if rc ~= 0 then raise(fname, ("resource '%s': %s"):format(name, ADD_ERR[rc] or tostring(rc))) end
    fcopy(out[0], v, size)
    e = { name = name, typed = true, ctype = tostring(value), ct = ct, addr = out[0], pt = pt, cpt = cpt }
  else
    if init ~= nil then
      raise(fname, ("resource '%s': a Lua value takes no init (got a %s and a %s)"):format(
        name, type(value), type(init)))
    end
    e = { name = name, typed = false, value = value }
  end
  world._n = world._n + 1
  world._res[name] = e
  return self
end

-- register(name, ctype, init): a typed resource in C memory, zeroed then
-- set from init (a table of field values for a struct or union, or what
-- ffi.new takes otherwise). register(name, value): a plain Lua value.
-- A string second argument is always a C type.
function Builder:register(name, value, init)
  check_builder(self, "builder:register")
  return register(self, "builder:register", name, value, init)
end

-- Idempotent register: keeps what is registered under name already.
function Builder:ensure(name, value, init)
  check_builder(self, "builder:ensure")
  check_name("builder:ensure", name)
  if self._world._res[name] then return self end
  return register(self, "builder:ensure", name, value, init)
end

function Builder:build()
  if getmetatable(self) ~= Builder then raise("builder:build", "expected a World builder") end
  if self._built then raise("builder:build", "already built (a builder makes one World)") end
  self._built = true
  local world = self._world
  w_seal(world._cw)
  return world
end

function Builder:__tostring()
  return ("nexus.world.builder: %d resources%s"):format(self._world._n, self._built and " (built)" or "")
end

---------------------------------------------------------------- the World

local function check_world(self, fname)
  if getmetatable(self) ~= World then
    raise(fname, "expected a World (call it as world:" .. fname:match("[%w_]+$") .. "(...))")
  end
end

local function entry(world, fname, name)
  local e = world._res[name]
  if not e then
    if type(name) ~= "string" then raise(fname, "name must be a string, got " .. type(name)) end
    raise(fname, ("no resource named '%s'"):format(name))
  end
  return e
end

-- addr is a void * cdata, never of ptype: ffi.cast makes a new object.
local function tied(world, ptype, addr)
  return fgc(fcast(ptype, addr), world._keeper)
end

-- The typed resource as a pointer into C memory (T *), or the Lua value.
function World:resource(name)
  check_world(self, "world:resource")
  local e = entry(self, "world:resource", name)
  if e.typed then return tied(self, e.pt, e.addr) end
  return e.value
end

function World:contains(name)
  check_world(self, "world:contains")
  if type(name) ~= "string" then raise("world:contains", "name must be a string, got " .. type(name)) end
  return self._res[name] ~= nil
end

-- Sequence numbers are Lua numbers (exact up to 2^53).
function World:next_sequence()
  check_world(self, "world:next_sequence")
  return tonumber(w_next(self._cw))
end

function World:current_sequence()
  check_world(self, "world:current_sequence")
  return tonumber(w_cur(self._cw))
end

-- The C World (nexus_world *) to hand to C code; see include/nexus.h.
function World:ptr()
  check_world(self, "world:ptr")
  return tied(self, world_ptr_t, self._addr)
end

-- Sorted names of every resource.
function World:names()
  check_world(self, "world:names")
  local t = {}
  for k in pairs(self._res) do t[#t + 1] = k end
  sort(t)
  return t
end

function World:register()
  raise("world:register", "the World is built and sealed: register on the builder, before build()")
end

function World:ensure()
  raise("world:ensure", "the World is built and sealed: ensure on the builder, before build()")
end

function World:__tostring()
  return ("nexus.world: %d resources (%s)"):format(self._n, tostring(self._cw):match("0x%x+") or "?")
end

-- The read-only view with_world_ref passes: typed resources as const T *.
function WorldRef:resource(name)
  local world = rawget(self, "_world")
  if not world then raise("worldref:resource", "expected a World view") end
  local e = entry(world, "worldref:resource", name)
  if e.typed then return tied(world, e.cpt, e.addr) end
  return e.value
end

function WorldRef:contains(name) return World.contains(self._world, name) end
function WorldRef:current_sequence() return World.current_sequence(self._world) end
function WorldRef:names() return World.names(self._world) end
function WorldRef:next_sequence()
  raise("worldref:next_sequence", "the World of with_world_ref is read-only (use with_world)")
end
function WorldRef:handler()
  raise("worldref:handler", "make handlers from the World itself (world:handler), once, outside with_world_ref")
end
function WorldRef:__tostring() return "nexus.worldref: read-only view of " .. tostring(self._world) end

function M.is_world(v) return getmetatable(v) == World end
runtime._is_world = M.is_world

---------------------------------------------------------------- handlers

-- nexus.res(name): read-only (const T *); nexus.res_mut(name): writable.
function M.res(name)
  check_name("nexus.res", name)
  return setmetatable({ name = name, const = true }, Res)
end

function M.res_mut(name)
  check_name("nexus.res_mut", name)
  return setmetatable({ name = name, const = false }, Res)
end

function Res:__tostring()
  return ("nexus.%s(%q)"):format(self.const and "res" or "res_mut", self.name)
end

local CT_PTR, CT_FUNC, CT_ATTRIB, CT_TYPEDEF, CT_FIELD = 2, 6, 8, 7, 9
local CTF_VARARG = 0x00800000

local function ct_kind(info) return rshift(info, 28) end

-- Parameter count of a C function cdata (a function or a pointer to one),
-- from LuaJIT's type table: n, vararg; nil when it cannot be known (no
-- ffi.typeinfo); false when the cdata is not callable.
local function c_arity(fn)
  if not typeinfo then return nil end
  local id = tonumber(ftypeof(fn))
  local t = id and typeinfo(id)
  if not t then return nil end
  if ct_kind(t.info) == CT_PTR then
    for _ = 1, 8 do   -- through attributes and typedefs to the pointee
      t = typeinfo(band(t.info, 0xffff))
      if not t then return nil end
      local k = ct_kind(t.info)
      if k ~= CT_ATTRIB and k ~= CT_TYPEDEF then break end
    end
  end
  if ct_kind(t.info) ~= CT_FUNC then return false end
  local n, sib = 0, t.sib
  while sib do
    local f = typeinfo(sib)
    if not f then return nil end
    if ct_kind(f.info) == CT_FIELD then n = n + 1 end
    sib = f.sib
  end
  return n, band(t.info, CTF_VARARG) ~= 0
end

M._c_arity = c_arity

local function nil_event(h)
  if getmetatable(h) ~= Handler then
    raise("handler:run", "expected a handler (call it as handler:run(event))")
  end
  raise("handler:run", "the event is nil")
end

local MAX_RES = 50   -- a Lua function has at most 60 upvalues

-- One Lua function per handler, compiled for it: fn and each resolved
-- resource are upvalues that never change, so a JIT trace through
-- handler:run folds them to constants and the call is a direct C call.
local function compile(fn, vals, n)
  local names = {}
  for i = 1, n do names[i] = "r" .. i end
  local list = concat(names, ", ")
  local src = ("local fn, nil_event%s = ...\n"
    .. "return function(self, ev)\n"
    .. "  if ev == nil then return nil_event(self) end\n"
    .. "  return fn(%sev)\n"
    .. "end\n"):format(n > 0 and ", " .. list or "", n > 0 and list .. ", " or "")
  local chunk = loadstring(src, "=nexus.world handler")
  return chunk(fn, nil_event, unpack(vals, 1, n))
end

-- world:handler(fn, name_or_res, ...): resolves the names now; run(ev)
-- calls fn(res1, ..., resn, ev). fn: a Lua function, or a C function
-- (cdata) whose parameter count is checked against n + 1 here.
function World:handler(fn, ...)
  check_world(self, "world:handler")
  local n = select("#", ...)
  local tf = type(fn)
  if tf == "cdata" then
    local np, vararg = c_arity(fn)
    if np == false then
      raise("world:handler", "expected a function or a C function, got " .. tostring(ftypeof(fn)))
    end
    if fn == nil then raise("world:handler", "the C function pointer is NULL") end
    if np and ((vararg and np > n + 1) or (not vararg and np ~= n + 1)) then
      raise("world:handler", ("the C function takes %s%d argument%s but the handler passes %d "
        .. "(%d resource%s + the event)"):format(vararg and "at least " or "", np, np == 1 and "" or "s",
        n + 1, n, n == 1 and "" or "s"))
    end
  elseif tf ~= "function" then
    raise("world:handler", "expected a function or a C function, got " .. tf)
  end
  if n > MAX_RES then raise("world:handler", ("too many resources (%d, at most %d)"):format(n, MAX_RES)) end
  local vals, names = {}, {}
  for i = 1, n do
    local spec = select(i, ...)
    local name, const
    if type(spec) == "string" then
      name, const = spec, false
    elseif getmetatable(spec) == Res then
      name, const = spec.name, spec.const
    else
      raise("world:handler", ("resource #%d must be a name or nexus.res/nexus.res_mut, got %s"):format(
        i, type(spec)))
    end
    local e = self._res[name]
    if not e then raise("world:handler", ("no resource named '%s'"):format(name)) end
    vals[i] = e.typed and tied(self, const and e.cpt or e.pt, e.addr) or e.value
    names[i] = const and ("res(" .. name .. ")") or name
  end
  local run = compile(fn, vals, n)
  return setmetatable({ run = run, world = self, fn = fn, _names = concat(names, ", ") }, Handler)
end

function Handler.__call(h, ev) return h.run(h, ev) end

function Handler:__tostring()
  return ("nexus.handler(%s) over %s"):format(self._names, tostring(self.world))
end

---------------------------------------------------------------- WorldCtx

-- The borrow of with_world: which runtime, at which count of task
-- resumes. Code inside fn runs without any task switch, so while the
-- count is unchanged the borrow is live; a changed count means fn
-- suspended (or its task was aborted inside it) and the borrow is stale.
local borrow_rt, borrow_at = nil, -1

local function borrowed()
  return borrow_rt ~= nil and borrow_rt == current_rt() and borrow_at == w_resumes()
end

-- Suspending functions (util.check_yieldable, core.suspend) refuse inside
-- with_world.
util.borrow_reason = function()
  if borrowed() then
    return "cannot suspend inside with_world/with_world_ref (the World is borrowed "
      .. "until the function returns: suspend after it)"
  end
end

-- runtime -> WorldCtx; weak both ways, as a ctx refers to its runtime (a
-- weak-key table marks its values, so the runtime would never go)
local ctxs = setmetatable({}, { __mode = "kv" })

-- WorldCtx::current(): the World of the runtime being driven.
function M.ctx()
  local rt = current_rt()
  if rt == nil or in_task() == 0 then
    raise("nexus.world_ctx", "not inside a nexus runtime (call it from a task)")
  end
  local c = ctxs[rt]
  if c then return c end
  local world = rt:world()
  if world == nil then
    raise("nexus.world_ctx", "this runtime has no World (build it with nexus.runtime.builder(world))")
  end
  c = setmetatable({ rt = rt, world = world, ref = world._ref }, Ctx)
  ctxs[rt] = c
  return c
end

local function bad_borrow(ctx, fn, fname)
  if getmetatable(ctx) ~= Ctx then
    raise(fname, "expected a WorldCtx (call it as ctx:" .. fname:match("[%w_]+$") .. "(fn))")
  end
  if ctx.rt ~= current_rt() or in_task() == 0 then
    raise(fname, "its runtime is not running (call it from a task of the runtime it came from)")
  end
  raise(fname, "expected a function, got " .. type(fn))
end

local function nested(fname)
  raise(fname, "nested with_world/with_world_ref (the World is already borrowed)")
end

local function finish(fname, rt, at, ok, ...)
  if borrow_rt == rt and borrow_at == at then borrow_rt = nil end
  util.set_borrowing(borrow_rt ~= nil)
  if w_resumes() ~= at then
    raise(fname, "the function suspended inside " .. fname
      .. " (coroutine.yield, or an abort of its own task); keep it synchronous")
  end
  if ok then return ... end
  error((...), 0)
end

-- Runs fn(world, ...) synchronously; returns what fn returns.
function Ctx.with_world(ctx, fn, ...)
  if getmetatable(ctx) ~= Ctx or ctx.rt ~= current_rt() or type(fn) ~= "function" then
    bad_borrow(ctx, fn, "ctx:with_world")
  end
  local rt = ctx.rt
  local at = w_resumes()
  if borrow_at == at and borrow_rt == rt then nested("ctx:with_world") end
  borrow_rt, borrow_at = rt, at
  util.set_borrowing(true)
  return finish("ctx:with_world", rt, at, pcall(fn, ctx.world, ...))
end

-- The same with the read-only view (typed resources as const T *).
function Ctx.with_world_ref(ctx, fn, ...)
  if getmetatable(ctx) ~= Ctx or ctx.rt ~= current_rt() or type(fn) ~= "function" then
    bad_borrow(ctx, fn, "ctx:with_world_ref")
  end
  local rt = ctx.rt
  local at = w_resumes()
  if borrow_at == at and borrow_rt == rt then nested("ctx:with_world_ref") end
  borrow_rt, borrow_at = rt, at
  util.set_borrowing(true)
  return finish("ctx:with_world_ref", rt, at, pcall(fn, ctx.ref, ...))
end

function Ctx:__tostring() return "nexus.world_ctx of " .. tostring(self.world) end

-- Worlds alive in the process (C side): for specs and leak checks.
function M._live() return W.live() end

return M
