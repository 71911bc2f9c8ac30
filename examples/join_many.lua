-- join_many.lua: seed pattern 8, spawning and joining many tasks, with a
-- group (nexus.group, tokio's JoinSet).
--
--   nexus examples/join_many.lua        (or luajit examples/join_many.lua)
--
-- The members run concurrently; g:next() hands back each one as it ends,
-- in completion order: h, true, results... or h, false, err, traceback.
-- A member's error belongs to the group: it never stops the runtime, even
-- when the member fails before anyone waits on it (with plain spawn and
-- join, a task that errors while main is still busy elsewhere stops the
-- program under the default on_task_error("abort")). So no pcall per job.
local nexus = require "nexus"

local function query(i)
  nexus.sleep(0.01)                -- every query waits at the same time
  return i * 2
end

nexus.run(function()
  -- Fan out, fan in: the sum does not depend on the order.
  local t0 = nexus.now()
  local g = nexus.group()
  for i = 0, 7 do g:spawn(query, i) end
  local total, count = 0, 0
  while true do
    local h, ok, v = g:next()
    if h == nil then break end     -- the group is empty
    assert(ok, v)
    total, count = total + v, count + 1
  end
  assert(total == 56, "sum of i*2 for i in 0..7")
  print(("total = %d from %d tasks in %.0f ms"):format(total, count, (nexus.now() - t0) * 1000))

  -- With errors: each outcome comes back from next(), failures included.
  -- Completion order depends on timing, so the results are kept by job
  -- number and printed in that order.
  local jobs = nexus.group()
  local number = {}                -- handle -> job number
  for i = 1, 4 do
    local h = jobs:spawn(function()
      nexus.sleep(0.001 * i)
      if i == 3 then error("query " .. i .. " failed", 0) end
      return i
    end)
    number[h] = i
  end
  local results, failed = {}, 0
  while true do
    local h, ok, v = jobs:next()
    if h == nil then break end
    results[number[h]] = { ok = ok, v = v }
    if not ok then failed = failed + 1 end
  end
  for i, r in ipairs(results) do
    print(("query %d: %s %s"):format(i, r.ok and "ok" or "error", tostring(r.v)))
  end
  print(("%d queries, %d failed"):format(#results, failed))
end)
