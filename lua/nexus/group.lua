-- nexus.group (tokio's JoinSet) and nexus.scope (Trio's nursery). The
-- membership and the completion order are C (src/group.c): a member's
-- joiner is its group, so a member's error is the group's to report and
-- never stops the runtime; the members' handles live in the group
-- userdata's environment, by id. Here: argument checks and the waits.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"
local cancel = require "nexus.cancel"

local cjoin, c_spawn = core.join, core.group_spawn
local c_new, c_next, c_abort, c_len, c_close, c_watch =
  core.group_new, core.group_next, core.group_abort, core.group_len, core.group_close, core.group_watch
local c_next_out, c_ptr = core.group_next_out, core.group_ptr
local api = require "nexus.api"
local join_take, cur = api.join_take, core.cur
local getfenv = debug.getfenv

ffi.cdef [[
typedef struct nx_group nx_group;
typedef struct nx_group_api { int (*pop)(nx_group *); } nx_group_api;
]]
local c_pop = ffi.cast("const nx_group_api *", core.group_api).pop
local setmetatable, getmetatable, error, type, pcall, unpack = setmetatable, getmetatable, error, type, pcall, unpack
local suspend, argerror, check_fn, pack = util.suspend, util.argerror, util.check_fn, util.pack

local M = {}
local Group = {}
Group.__index = Group

local function check(self, fname)
  if getmetatable(self) ~= Group then argerror(fname, "expected a group", 2) end
  return self.g
end

-- nexus.group(): an empty group.
-- g: the C group (a userdata); gp: its record for the FFI's fast path
-- of next; members: its environment, slot + 1 -> member's handle.
function M.group()
  local g = c_new()
  return setmetatable({ g = g, gp = ffi.cast("nx_group *", c_ptr(g)), members = getfenv(g) }, Group)
end

-- Spawns fn(...) as a member; returns its handle (h:join() on it raises:
-- the group gives its outcome).
function Group:spawn(fn, ...)
  return c_spawn(check(self, "group:spawn"), fn, ...)
end

-- h, true, ... | h, false, err, traceback for the member that ended.
local function outcome(h) return h, cjoin(h, true) end

-- (suspends) the next member to end, in completion order: h, true, ... |
-- h, false, err, traceback | nil when the group is empty.
-- c_next_out gives the whole outcome in one call: h, true, ... and the
-- rest; a wait (false) or another waiter (-1) take the slow path.
local function next_slow(g, h, ...)
  if h == false then
    suspend("group:next")
    return next_slow(g, c_next_out(g))
  end
  if h == -1 then error("group:next: another task is already waiting on this group", 2) end
  return h, ...
end

-- The fast path: a member already ended, and it returned 0 or 1 value
-- (h:join's fast path, api.join_take): FFI calls only, compiled.
function Group:next()
  local g = check(self, "group:next")
  if not self.closed then
    local k = c_pop(self.gp)
    if k > 0 then
      local members = self.members
      local h = members[k]
      members[k] = nil
      local j = join_take(h)
      if j > 0 then
        local tasks = cur.tasks
        local v = tasks[j]
        tasks[j] = nil
        return h, true, v
      end
      if j < 0 then return h, true end
      return h, cjoin(h, true)
    end
  end
  return next_slow(g, c_next_out(g))
end

-- The error a member's outcome re-raises: a string with the member's
-- traceback (as h:join() does), any other value as it is.
local function raise(err, tb)
  if type(err) == "string" and tb then error(tb, 0) end
  error(err, 0)
end

-- (suspends) until every member has ended. At the first error, aborts
-- the others and re-raises it with the member's traceback. Members that
-- someone aborted are not errors.
function Group:wait()
  check(self, "group:wait")
  while true do
    local h, ok, err, tb = self:next()
    if h == nil then return end
    if not ok and err ~= "aborted" then
      c_abort(self.g)
      raise(err, tb)
    end
  end
end

-- Aborts every member now (their outcomes stay for next(): "aborted").
function Group:abort() c_abort(check(self, "group:abort")) end

-- Members not yet returned by next(), running or ended.
function Group:len() return c_len(self.g) end

-- Aborts the members still running and drops the group; collecting it
-- does the same.
function Group:close()
  if getmetatable(self) ~= Group then argerror("group:close", "expected a group") end
  if self.closed then return end
  self.closed = true
  c_abort(self.g)          -- now: a finalizer leaves it to the executor
  c_close(self.g)
end

function Group:__tostring() return "nexus.group(" .. c_len(self.g) .. ")" end

local NextOp = sel.class("group next")
function NextOp.poll(op)
  local ok, id = pcall(c_next, op.group.g, true)
  if not ok then return nil, id end
  if id == false then return false end
  if id == -1 then return nil, "another task is already waiting on this group" end
  op.id = id
  return true
end
function NextOp.take(op)
  local h = op.id
  if h == nil then return nil end
  op.id = nil
  return outcome(h)
end

-- An op for nexus.select: as g:next(); a losing next takes no member.
function Group:next_op()
  check(self, "group:next_op")
  return sel.op(NextOp, { group = self }, "group:next_op")
end

---------------------------------------------------------------- scopes

local Scope = {}
Scope.__index = Scope

function Scope:spawn(fn, ...)
  if getmetatable(self) ~= Scope then argerror("scope:spawn", "expected a scope") end
  if self.over then argerror("scope:spawn", "the scope has ended") end
  return self.group:spawn(fn, ...)
end

-- Cancelled when the scope ends (normally, by an error, or when the task
-- running the scope is aborted).
function Scope:token() return self.tok end

-- fn runs as the scope's first member, so an error in fn or in any child
-- aborts the others at once.
local function body(s, fn, ...) return fn(s, ...) end

-- (suspends) fn(s, ...)'s results, once fn and every task spawned with
-- s:spawn have ended; the first error aborts the others and is re-raised.
function M.scope(fn, ...)
  check_fn("nexus.scope", fn)
  local g = M.group()
  local tok = cancel.token()
  local guard = tok:drop_guard()       -- an aborted scope task cancels it too
  -- A private token that only the scope task's end cancels (its drop
  -- guard): that aborts the children at once. s:token() is the children's
  -- to watch; cancelling it does not abort them.
  local dead = cancel.token()
  local dead_guard = dead:drop_guard()
  c_watch(g.g, tonumber(ffi.cast("uintptr_t", dead.p)))
  local s = setmetatable({ group = g, tok = tok, over = false, dead = dead }, Scope)
  local main = g:spawn(body, s, fn, ...)
  local results, failure, ftb
  while true do
    local r = pack(g:next())
    local h, ok = r[1], r[2]
    if h == nil then break end
    if h == main and ok then results = r end
    if not ok and r[3] ~= "aborted" and failure == nil then
      failure, ftb = r[3], r[4]
      c_abort(g.g)
    end
  end
  s.over = true
  dead_guard:disarm()
  tok:cancel()
  guard:disarm()
  g:close()
  if failure ~= nil then raise(failure, ftb) end
  if results then return unpack(results, 3, results.n) end
end

return M
