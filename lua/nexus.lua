-- nexus: an async runtime for LuaJIT. The executor, timers and reactor are
-- C (libuv); tasks are coroutines. See docs/ and shared API contract.
local core = require "nexus.core"
local runtime = require "nexus.runtime"
local task = require "nexus.task"
local time = require "nexus.time"
local channel = require "nexus.channel"
local cancel = require "nexus.cancel"
local shutdown = require "nexus.shutdown"
local world = require "nexus.world"
local tcp = require "nexus.tcp"
local udp = require "nexus.udp"
local dns = require "nexus.dns"
local thread = require "nexus.thread"
local sel = require "nexus.select"
local group = require "nexus.group"
local introspect = require "nexus.introspect"

local M = {
  version = core.version,
  runtime = runtime,
  run = runtime.run,
  spawn = task.spawn,
  spawn_pooled = task.spawn_pooled,
  try_claim = task.try_claim,
  current = task.current,
  yield = task.yield,
  channel = channel,
  cancel_token = cancel.token,
  shutdown_signal = shutdown.signal,
  shutdown_handle = shutdown.handle,
  world = world,
  world_ctx = world.ctx,
  res = world.res,
  res_mut = world.res_mut,
  tcp = tcp,
  udp = udp,
  dns = dns,
  thread = thread,
  select = sel.select,
  try_select = sel.try_select,
  sleep_op = sel.sleep_op,
  deadline_op = sel.deadline_op,
  group = group.group,
  luv = { await = require("nexus.bridge").await },   -- require "nexus.luv" for luv itself
  http = require "nexus.http",
  process = require "nexus.process",
  websocket = require "nexus.websocket",
  tasks = introspect.tasks,
  dump = introspect.dump,
  scope = group.scope,
}

-- nexus --workers N: this process's worker number (0..N-1, nil without
-- --workers) and N (1 without --workers).
local worker_id = tonumber(os.getenv("NEXUS_WORKER_ID") or "")
local worker_count = tonumber(os.getenv("NEXUS_WORKER_COUNT") or "") or 1
function M.worker_id() return worker_id end
function M.worker_count() return worker_count end

for k, v in pairs(time) do M[k] = v end
-- semaphore, oneshot, watch, broadcast, event
for k, v in pairs(require "nexus.sync") do M[k] = v end

-- Byte and cross-thread channels: fields of nexus.channel.
if M.channel == nil then M.channel = {} end
M.channel.bytes = require("nexus.bytes").new
M.channel.mpsc = require("nexus.mpsc").new

return M
