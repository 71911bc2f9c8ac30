-- Regress: range errors of the network calls' integer arguments
-- (nx_net_optint in src/net.c) printed impossible messages.
-- * The bounds: s:read(0) said "max must be an integer in 1..0" (an (int)
--   cast of 2^52); fixed in 6773a46, checked again here for every bound
--   above 2^31 and for the small ones.
-- * The value: an integral value was printed with %.14g, so s:read(2^52 + 1)
--   said "must be an integer in 1..4503599627370496, got 4.5035996273705e+15",
--   a value that reads as inside the range.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"

local MAXREAD = "4503599627370496"   -- 2^52

describe("regress: range errors of network arguments", function()
  local cases = {
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got 0", function(c) c:read(0) end },
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got 4503599627370497",
      function(c) c:read(2 ^ 52 + 1) end },
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got 9007199254740992",
      function(c) c:read(2 ^ 53) end },
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got -9007199254740992",
      function(c) c:read(-2 ^ 53) end },
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got 1.5", function(c) c:read(1.5) end },
    { "stream:read: max must be an integer in 1.." .. MAXREAD .. ", got 1e+300", function(c) c:read(1e300) end },
    { "stream:read_exactly: n must be an integer in 0.." .. MAXREAD .. ", got 4503599627370497",
      function(c) c:read_exactly(2 ^ 52 + 1) end },
    { "stream:read_line: max must be an integer in 1.." .. MAXREAD .. ", got 0", function(c) c:read_line(0) end },
    { "stream:read_until: max must be an integer in 1.." .. MAXREAD .. ", got 4503599627370497",
      function(c) c:read_until("\n", 2 ^ 52 + 1) end },
    { "stream:set_keepalive: delay must be an integer in 1..1048576, got 2147483648",
      function(c) c:set_keepalive(true, 2 ^ 31) end },
    { "nexus.tcp.listen: read_high_water must be an integer in 1..1099511627776, got 2199023255552",
      function() nexus.tcp.listen("127.0.0.1", 0, { read_high_water = 2 ^ 41 }) end },
    { "nexus.tcp.listen: backlog must be an integer in 1..65536, got 131072",
      function() nexus.tcp.listen("127.0.0.1", 0, { backlog = 2 ^ 17 }) end },
    { "nexus.udp.bind: send_high_water must be an integer in 1..1073741824, got 2147483648",
      function() nexus.udp.bind("127.0.0.1", 0, { send_high_water = 2 ^ 31 }) end },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local e = nexus.run(function()
        local c, s, ln = N.pair()
        local e = H.errof(case[2], c)
        c:close(); s:close(); ln:close()
        return e
      end)
      assert.are.equal(case[1], e)
    end)
  end
end)
