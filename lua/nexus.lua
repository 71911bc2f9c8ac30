-- nexus: an async runtime for LuaJIT. The executor, timers and reactor are
-- C (libuv); tasks are coroutines. See docs/ and shared API contract.
local core = require "nexus.core"
local runtime = require "nexus.runtime"
local task = require "nexus.task"
local time = require "nexus.time"
local world = require "nexus.world"

local M = {
  version = core.version,
  runtime = runtime,
  run = runtime.run,
  spawn = task.spawn,
  current = task.current,
  yield = task.yield,
  world = world,
  world_ctx = world.ctx,
  res = world.res,
  res_mut = world.res_mut,
}

for k, v in pairs(time) do M[k] = v end

return M
