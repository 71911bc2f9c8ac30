-- nexus: an async runtime for LuaJIT. The executor, timers and reactor are
-- C (libuv); tasks are coroutines. See docs/ and shared API contract.
local core = require "nexus.core"
local runtime = require "nexus.runtime"
local task = require "nexus.task"
local time = require "nexus.time"

local M = {
  version = core.version,
  runtime = runtime,
  run = runtime.run,
  spawn = task.spawn,
  current = task.current,
  yield = task.yield,
}

for k, v in pairs(time) do M[k] = v end

-- Byte and cross-thread channels: fields of nexus.channel.
if M.channel == nil then M.channel = {} end
M.channel.bytes = require("nexus.bytes").new
M.channel.mpsc = require("nexus.mpsc").new

return M
