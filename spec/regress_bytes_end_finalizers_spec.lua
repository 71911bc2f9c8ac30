-- Regression (found by the fuzzer's memory use, make fuzz): a byte
-- channel's two ends put their finalizers on pointer cdata of the same
-- value, which the JIT may make one object; the receiver's finalizer was
-- then replaced by the sender's. Once nexus.channel.bytes was compiled, a
-- dropped receiver was never dropped: the channel leaked, and with it the
-- runtime it references (about 11 kB an iteration), and a collected
-- receiver did not close the channel for its senders.
local nexus = require "nexus"
local core = require "nexus.core"

describe("regress: byte channel ends are finalized once JIT-compiled", function()
  it("channels made and dropped in hot loops free their runtimes", function()
    collectgarbage()
    collectgarbage()
    local _, live0 = core._runtime_slots()
    for _ = 1, 300 do
      local rt = nexus.runtime.new()
      rt:block_on(function()
        local tx, rx = nexus.channel.bytes(8)
        assert(tx:send("a"))
        rx:recv():release()
      end)
      rt:close()
    end
    collectgarbage()
    collectgarbage()
    local _, live = core._runtime_slots()
    assert.are.equal(live0, live)
  end)

  it("a receiver dropped in a hot loop closes the channel for its sender", function()
    local open = 0
    for _ = 1, 300 do
      local tx = (function() local t, _ = nexus.channel.bytes(8); return t end)()
      collectgarbage()
      if not tx:is_closed() then open = open + 1 end
      tx:close()
    end
    assert.are.equal(0, open)
  end)
end)
