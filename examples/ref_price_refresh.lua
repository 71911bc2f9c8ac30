-- ref_price_refresh.lua: seed pattern 6, a bridge for cold-path work.
-- A periodic refresh fetches a reference price from a slow, blocking
-- source (a file read behind a 50 ms blocking wait, standing in for an
-- HTTP GET) on libuv's thread pool with nexus.thread.run, then applies it
-- to the World synchronously inside with_world. A hot-path task keeps
-- ticking on the loop meanwhile: the blocking fetch never stalls it.
--
--   nexus examples/ref_price_refresh.lua [refreshes]
local nexus = require "nexus"

local refreshes = tonumber((...)) or 3
local path = os.tmpname()

-- The "server" side: what the next fetch will read.
local function publish(px)
  local f = assert(io.open(path, "w"))
  f:write(tostring(px))
  f:close()
end

-- Runs on a pool thread, in a fresh Lua state: no upvalues, only its
-- arguments, and it may block as long as it likes.
local function fetch(file, delay_ms)
  local ffi = require "ffi"
  ffi.cdef "int poll(void *fds, unsigned long n, int timeout);"
  ffi.C.poll(nil, 0, delay_ms)               -- the slow network
  local f = io.open(file)
  if not f then return nil end
  local body = f:read("*a")
  f:close()
  return body
end

local world = nexus.world.builder()
  :register("RefPrice", { px = 0, updates = 0 })
  :build()

local rt = nexus.runtime.builder(world):build()
rt:block_on(function()
  local hot_ticks = 0
  local hot = nexus.spawn(function()          -- the hot path
    while true do
      nexus.sleep(0.005)
      hot_ticks = hot_ticks + 1
    end
  end)
  local ctx = nexus.world_ctx()
  local tick = nexus.interval(0.1)
  for i = 1, refreshes do
    tick:tick()
    publish(100 + i * 0.25)
    local before = hot_ticks
    local ok, body = nexus.thread.run(fetch, path, 50)
    local px = ok and tonumber(body) or 0
    -- Synchronous: nothing suspends while the World is borrowed.
    ctx:with_world(function(w)
      local ref = w:resource("RefPrice")
      ref.px, ref.updates = px, ref.updates + 1
    end)
    print(("refresh %d: RefPrice %.2f (the hot path ticked %d times during the fetch)")
      :format(i, px, hot_ticks - before))
  end
  hot:abort()
end)

local ref = world:resource("RefPrice")
print(("%d updates, last %.2f"):format(ref.updates, ref.px))
rt:close()
os.remove(path)
