-- require "nexus.luv": the luv module (libuv's Lua binding, Debian's
-- lua-luv), opened on the running nexus runtime's own loop, so luv and
-- every library built on it share nexus's one loop and one poller. See
-- docs/luv.md.
--
-- luv keeps one context per Lua state: it binds to the runtime that first
-- requires nexus.luv (from inside one of its tasks), for good; requiring
-- it from a task of another runtime raises. package.loaded.luv becomes the
-- same module, so require "luv" after this gets the bound one; a luv
-- opened earlier on its own loop cannot be rebound, and raises here.
local core = require "nexus.core"

local ours = debug.getregistry()["nexus.luv.module"]
if not ours and package.loaded.luv ~= nil then
  error("nexus.luv: luv was already loaded on a loop of its own; require \"nexus.luv\" before "
    .. "anything requires \"luv\"", 2)
end

local path = package.searchpath("luv", package.cpath)
if not path then
  error("nexus.luv: luv is not installed (Debian: lua-luv; luarocks: luv)", 2)
end

local uv = core.luv_open(path)
if uv.run ~= nil and not rawget(uv, "_nexus_run") then
  local run = uv.run
  -- uv.run inside a task would run the loop nexus is driving, re-entering
  -- its callbacks out of place: refused while nexus drives.
  uv._nexus_run = run
  uv.run = function(mode)
    if core.luv_driving() then
      error("uv.run: refused while nexus drives the loop (luv's callbacks already run there)", 2)
    end
    return run(mode)
  end
end
uv.await = require("nexus.bridge").await
package.loaded.luv = uv
return uv
