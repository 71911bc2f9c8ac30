-- nexus.cancel: cancellation tokens and drop guards. The tree and the
-- waiters live in C (src/cancel.c); a token object holds one reference.
local ffi = require "ffi"
local core = require "nexus.core"
local util = require "nexus.util"
local sel = require "nexus.select"

ffi.cdef [[
typedef struct nx_token { uint8_t cancelled; } nx_token;
typedef struct nx_guard { uint8_t armed; } nx_guard;
typedef struct nx_cancel_api {
  nx_token *(*token_new)(nx_token *);
  void (*token_unref)(nx_token *);
  void (*cancel)(nx_token *);
  int (*wait)(nx_token *);
  int (*guard_new)(nx_token *, nx_guard **);
  nx_token *(*disarm)(nx_guard *);
  void (*guard_unref)(nx_guard *);
} nx_cancel_api;
]]

local C = ffi.cast("const nx_cancel_api *", core.cancel_api)
local c_new, c_unref, c_cancel, c_wait = C.token_new, C.token_unref, C.cancel, C.wait
local c_guard_new, c_disarm, c_guard_unref = C.guard_new, C.disarm, C.guard_unref
local ffi_gc, ffi_istype = ffi.gc, ffi.istype
local setmetatable, error, getmetatable, type = setmetatable, error, getmetatable, type
local no_task, argerror = util.no_task, util.argerror
local suspend = util.suspend
local guard_out = ffi.new("nx_guard *[1]")

local NX_AGAIN, E_NOTASK, E_NOMEM = 1, -1, -2

local M = {}
local Token = {}
Token.__index = Token
local Guard = {}
Guard.__index = Guard

local function wrap(p, fname)
  if p == nil then error(fname .. ": out of memory", 3) end
  return setmetatable({ p = ffi_gc(p, c_unref) }, Token)
end

-- nexus.cancel_token(): a new root token.
function M.token() return wrap(c_new(nil), "nexus.cancel_token") end

local function check(self, fname)
  if getmetatable(self) ~= Token then
    argerror(fname, "expected a cancel token, got " .. type(self), 2)
  end
  return self.p
end

-- Cancelled with its parent, never the reverse.
function Token:child() return wrap(c_new(check(self, "token:child")), "token:child") end

-- Idempotent; wakes every waiter of this token and of its subtree.
function Token:cancel() c_cancel(check(self, "token:cancel")) end

function Token:is_cancelled() return check(self, "token:is_cancelled").cancelled ~= 0 end

-- (suspends) until cancelled; any number of waiters.
function Token:cancelled()
  local p = check(self, "token:cancelled")
  local rc = c_wait(p)
  while rc ~= 0 do
    if rc == NX_AGAIN then
      suspend("token:cancelled")
    elseif rc == E_NOTASK then
      no_task("token:cancelled", rc)
    elseif rc == E_NOMEM then
      error("token:cancelled: out of memory", 2)
    else
      error("token:cancelled: the token has waiters in another runtime", 2)
    end
    rc = c_wait(p)
  end
end

local CancelledOp = sel.class("token cancelled")
function CancelledOp.poll(op)
  local rc = c_wait(op.p)
  if rc == 0 then return true end
  if rc == NX_AGAIN then return false end
  if rc == E_NOMEM then return nil, "out of memory" end
  if rc == E_NOTASK then return nil, "not inside a nexus task" end
  return nil, "the token has waiters in another runtime"
end
function CancelledOp.take() return true end

-- An op for nexus.select: true once the token is cancelled.
function Token:cancelled_op()
  local p = check(self, "token:cancelled_op")
  return sel.op(CancelledOp, { token = self, p = p }, "token:cancelled_op")
end

-- Cancels this token when the task that made the guard ends (returns,
-- errors or is aborted), unless disarmed.
function Token:drop_guard()
  local p = check(self, "token:drop_guard")
  local rc = c_guard_new(p, guard_out)
  if rc == E_NOTASK then
    no_task("token:drop_guard", rc)
    rc = c_guard_new(p, guard_out)
  end
  if rc == E_NOTASK then error("token:drop_guard: not inside a nexus task", 2) end
  if rc ~= 0 then error("token:drop_guard: out of memory", 2) end
  return setmetatable({ g = ffi_gc(guard_out[0], c_guard_unref), token = self }, Guard)
end

function Token:__tostring()
  return "nexus.cancel_token(" .. (self.p.cancelled ~= 0 and "cancelled" or "active") .. ")"
end

local function check_guard(self, fname)
  if getmetatable(self) ~= Guard then
    argerror(fname, "expected a drop guard, got " .. type(self), 2)
  end
  return self.g
end

-- Disarms the guard; returns its token.
function Guard:disarm()
  local g = check_guard(self, "guard:disarm")
  if g.armed ~= 0 then
    c_unref(c_disarm(g))   -- disarm hands a reference we do not need
  end
  return self.token
end

function Guard:is_armed() return check_guard(self, "guard:is_armed").armed ~= 0 end
function Guard:__tostring()
  return "nexus.drop_guard(" .. (self.g.armed ~= 0 and "armed" or "disarmed") .. ")"
end

return M
