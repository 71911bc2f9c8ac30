-- join_many.lua: seed pattern 8, spawning and joining many tasks.
-- The handles are joined one after another, but the tasks run
-- concurrently: by the time the first join returns, the rest are done or
-- nearly so. For fan-out with errors, use result() and collect.
local nexus = require "nexus"

local function query(i)
  nexus.sleep(0.01)                -- every query waits at the same time
  return i * 2
end

local t0 = nexus.now()
local handles = {}
for i = 0, 7 do handles[#handles + 1] = nexus.spawn(query, i) end

local total = 0
for _, h in ipairs(handles) do total = total + h:join() end
assert(total == 56, "sum of i*2 for i in 0..7")
print(("total = %d from %d tasks in %.0f ms"):format(total, #handles, (nexus.now() - t0) * 1000))

-- With errors: result() is pcall-style, so one failure does not hide the rest.
local results = {}
for i = 1, 4 do
  results[i] = nexus.spawn(function()
    nexus.sleep(0.001 * i)
    if i == 3 then error("query " .. i .. " failed", 0) end
    return i
  end)
end
for i, h in ipairs(results) do
  local ok, v = h:result()
  print(("query %d: %s %s"):format(i, ok and "ok" or "error", tostring(v)))
end
