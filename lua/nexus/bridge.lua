-- nexus.bridge: turning a callback API into a suspending call (nexus.luv.await).
local util = require "nexus.util"
local sync = require "nexus.sync"

local pack, unpack, check_fn = util.pack, unpack, util.check_fn

local M = {}

-- (suspends) fn(cb); returns what cb is first called with. A callback
-- that comes after the task was aborted or timed out, or a second call,
-- is ignored.
function M.await(fn)
  check_fn("nexus.luv.await", fn)
  local tx, rx = sync.oneshot()
  local done = false
  fn(function(...)
    if done then return end
    done = true
    tx:send(pack(...))
  end)
  local r, err = rx:recv()
  if r == nil then error("nexus.luv.await: " .. tostring(err), 2) end
  return unpack(r, 1, r.n)
end

return M
