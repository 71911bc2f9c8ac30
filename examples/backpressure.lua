-- backpressure.lua: seed pattern 4, producer/consumer where the bounded
-- channel IS the backpressure (no semaphore). The producer fetches 10,000
-- payloads as fast as it can; the consumer persists them more slowly. Once
-- the producer is `capacity` ahead, tx:send suspends it until the consumer
-- takes one: it is never more than `capacity` ahead, and memory stays
-- bounded whatever the consumer's pace. Runs under `nexus` and `luajit`.
--
-- usage: backpressure.lua [capacity] [items]
local nexus = require "nexus"

local CAPACITY = tonumber(arg and arg[1]) or 32
local ITEMS = tonumber(arg and arg[2]) or 10000

local function fetch(i)
  return string.rep("x", i % 1024)            -- payloads of 0..1023 bytes
end

local persisted_bytes = 0
local function persist(payload, i)
  persisted_bytes = persisted_bytes + #payload
  if i % 100 == 0 then nexus.sleep(0.001) end -- a slow disk, now and then
end

local sent, received, max_lead, waits = 0, 0, 0, 0

-- How far the producer is ahead of the consumer: values it has handed to
-- the channel that the consumer has not taken yet.
local function check_lead()
  local lead = sent - received
  assert(lead <= CAPACITY, ("producer %d ahead, capacity %d"):format(lead, CAPACITY))
  if lead > max_lead then max_lead = lead end
end

nexus.run(function()
  local tx, rx = nexus.channel(CAPACITY)
  local t0 = nexus.now()

  local producer = nexus.spawn(function()
    for i = 1, ITEMS do
      local payload = fetch(i)
      if tx:len() == tx:capacity() then waits = waits + 1 end   -- send will wait
      if not tx:send(payload) then break end                    -- consumer gone
      sent = sent + 1
      check_lead()
    end
    tx:close()
  end)

  local consumer = nexus.spawn(function()
    for payload in rx:iter() do
      received = received + 1
      check_lead()
      persist(payload, received)
    end
  end)

  producer:join()
  consumer:join()
  print(("%d payloads, %d bytes through a channel of %d in %.0f ms")
    :format(received, persisted_bytes, CAPACITY, (nexus.now() - t0) * 1000))
  print(("max lead observed: %d (capacity %d)"):format(max_lead, CAPACITY))
  print(("the producer waited for room %d times"):format(waits))
end)
