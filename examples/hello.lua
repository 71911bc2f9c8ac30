-- hello.lua: the demo `make run` runs. Three tasks tick at their own pace
-- while the root task waits for them; a timeout cuts a slow one short.
local nexus = require "nexus"

local t0 = nexus.now()

local function ticker(name, period, n)
  for i = 1, n do
    nexus.sleep(period)
    print(("%-6s tick %d at %3.0f ms"):format(name, i, (nexus.now() - t0) * 1000))
  end
  return name .. " done"
end

local fast = nexus.spawn(ticker, "fast", 0.01, 3)
local slow = nexus.spawn(ticker, "slow", 0.025, 2)

print(fast:join())
print(slow:join())

local ok, err = nexus.timeout(0.02, ticker, "late", 0.05, 1)
print("timeout:", ok, err)
print(("hello from nexus %s in %.0f ms"):format(nexus.version, (nexus.now() - t0) * 1000))
