-- Regressions of the network layer's input checks:
-- * a NUL byte inside a host string silently truncated it:
--   dns.resolve("localhost\0.example.com") resolved localhost, and
--   tcp.connect("127.0.0.1\0.attacker.example", p) connected; the same in
--   listen and udp:send_to. Such strings are rejected with a clear error;
-- * read_line(max) rejected a CRLF line whose content is exactly max bytes
--   (the "\r" counted against max);
-- * argument errors printed impossible ranges: s:read(0) said
--   "max must be an integer in 1..0" (an (int) cast of 2^52).
local nexus = require "nexus"

local function errof(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return err
end

-- A connected pair on 127.0.0.1; the server side writes the chunks, each
-- after a short pause, then closes.
local function pair(chunks)
  local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
  local _, _, port = ln:local_addr()
  nexus.spawn(function()
    local c = ln:accept()
    for _, chunk in ipairs(chunks) do
      c:write(chunk)
      nexus.sleep(0.01)
    end
    nexus.sleep(0.05)
    c:close()
    ln:close()
  end)
  return assert(nexus.tcp.connect("127.0.0.1", port))
end

describe("regress: network input checks", function()
  describe("a NUL byte inside a host string is rejected", function()
    local cases = {
      { "nexus.dns.resolve: name contains a NUL byte", function() return nexus.dns.resolve("localhost\0.example.com") end },
      { "nexus.tcp.connect: host contains a NUL byte", function() return nexus.tcp.connect("127.0.0.1\0.attacker.example", 9) end },
      { "nexus.tcp.connect: host contains a NUL byte", function() return nexus.tcp.connect("localhost\0.attacker.example", 9) end },
      { "nexus.tcp.listen: host contains a NUL byte", function() return nexus.tcp.listen("127.0.0.1\0x", 0) end },
      { "nexus.udp.bind: host contains a NUL byte", function() return nexus.udp.bind("127.0.0.1\0x", 0) end },
      { "udp:send_to: host contains a NUL byte", function(u) return u:send_to("x", "127.0.0.1\0.evil", 9) end },
      { "udp:connect: host contains a NUL byte", function(u) return u:connect("127.0.0.1\0.evil", 9) end },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        nexus.run(function()
          local u = assert(nexus.udp.bind("127.0.0.1", 0))
          assert.are.equal(c[1], errof(c[2], u))
          u:close()
        end)
      end)
    end

    it("the same host without the NUL still works", function()
      nexus.run(function()
        assert.is_truthy(nexus.dns.resolve("localhost")[1])
        local ln = assert(nexus.tcp.listen("127.0.0.1", 0))
        ln:close()
      end)
    end)
  end)

  describe("read_line(max) and CRLF", function()
    it("takes a CRLF line of exactly max bytes, rejects max + 1", function()
      nexus.run(function()
        local s = pair({ "abcd\r\n", "abcde\r\n" })
        assert.are.equal("abcd", s:read_line(4))
        assert.are.same({ nil, "too long" }, { s:read_line(4) })
        assert.are.equal("abcde", s:read_line(5))   -- still buffered
        s:close()
      end)
    end)

    it("an LF line of max + 1 bytes is still too long", function()
      nexus.run(function()
        local s = pair({ "abcd\n", "abcde\n" })
        assert.are.equal("abcd", s:read_line(4))
        assert.are.same({ nil, "too long" }, { s:read_line(4) })
        assert.are.equal("abcde", s:read_line(5))
        s:close()
      end)
    end)

    it("a CRLF line of max bytes whose LF comes in a later read", function()
      nexus.run(function()
        local s = pair({ "abcd\r", "\n", "wxyz\r", "\nrest\n" })
        assert.are.equal("abcd", s:read_line(4))
        assert.are.equal("wxyz", s:read_line(4))
        assert.are.equal("rest", s:read_line(4))
        s:close()
      end)
    end)
  end)

  describe("argument errors print the real range", function()
    it("s:read(0) names 1..2^52", function()
      nexus.run(function()
        local s = pair({ "x" })
        assert.are.equal("stream:read: max must be an integer in 1..4503599627370496, got 0", errof(s.read, s, 0))
        assert.are.equal("stream:read_line: max must be an integer in 1..4503599627370496, got 0",
          errof(s.read_line, s, 0))
        s:close()
      end)
    end)
  end)
end)
