-- Regressions of read_line(max) around its bound (see also
-- regress_net_input_spec.lua, which has the CRLF line of exactly max bytes):
-- * max counts the line's content, so read_line reads up to max + 2 bytes
--   (content, "\r", "\n"). Reading that far made an LF-only line of max + 1
--   bytes wait for one more byte before it was "too long": a peer sending
--   "abcde" (and then nothing) kept read_line(4) waiting, where it used to
--   get nil, "too long" at once. Only a "\r" right after max bytes may wait
--   for its "\n";
-- * the "\r" right after max bytes, its "\n" still on the way: the read
--   waits (no "too long"), and takes the line when the "\n" comes.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"

-- Runs fn(client, server) in a task on a fresh connected pair.
local function with_pair(fn)
  return nexus.run(function()
    local c, s, ln = N.pair()
    local r = fn(c, s)
    c:close(); s:close(); ln:close()
    return r
  end)
end

describe("regress: read_line(max) at its bound", function()
  it("an LF-only line of max + 1 bytes is too long at once, without waiting for more", function()
    local r = with_pair(function(c, s)
      assert(s:write("abcde"))                 -- and nothing more
      local t0 = nexus.now()
      local r = H.pack(nexus.timeout(10, c.read_line, c, 4))
      r.secs = nexus.now() - t0
      r.rest = c:read(100)                     -- the bytes stay buffered
      return r
    end)
    assert.are.same({ n = 3, true, nil, "too long" }, { n = r.n, r[1], r[2], r[3] })
    assert.is_true(r.secs < 5, "waited " .. r.secs .. " s")
    assert.are.equal("abcde", r.rest)
  end)

  it("max bytes and a \"\\r\" wait for the \"\\n\" of a later read, then make the line", function()
    local r = with_pair(function(c, s)
      assert(s:write("abcd\r"))
      nexus.sleep(0.05)                          -- arrived: nothing more to come
      local early = H.pack(nexus.timeout(0.3, c.read_line, c, 4))
      local buffered = c:buffered()
      assert(s:write("\nnext\r\n"))
      return { early = early, buffered = buffered,
               line = H.pack(c:read_line(4)), next = H.pack(c:read_line(4)) }
    end)
    assert.are.same({ n = 2, nil, "timeout" }, r.early, "not too long: the \\n may follow")
    assert.are.equal(5, r.buffered)
    assert.are.same({ n = 1, "abcd" }, r.line)
    assert.are.same({ n = 1, "next" }, r.next)
  end)

  it("max bytes, a \"\\r\" and anything but \"\\n\" is too long, and stays buffered", function()
    local r = with_pair(function(c, s)
      assert(s:write("abcd\rX\n"))
      nexus.sleep(0.05)
      return { H.pack(c:read_line(4)), H.pack(c:read_line(6)) }
    end)
    assert.are.same({ n = 2, nil, "too long" }, r[1])
    assert.are.same({ n = 1, "abcd\rX" }, r[2])
  end)

  it("the bound on LF-only lines is unchanged: max bytes fit, max + 1 do not", function()
    local r = with_pair(function(c, s)
      assert(s:write("abcd\nabcde\n"))
      return { H.pack(c:read_line(4)), H.pack(c:read_line(4)), H.pack(c:read_line(5)) }
    end)
    assert.are.same({ n = 1, "abcd" }, r[1])
    assert.are.same({ n = 2, nil, "too long" }, r[2])
    assert.are.same({ n = 1, "abcde" }, r[3])
  end)

  it("read_until keeps the \"\\r\": it counts against max there", function()
    local r = with_pair(function(c, s)
      assert(s:write("abcd\r\n"))
      return { H.pack(c:read_until("\n", 4)), H.pack(c:read_until("\n", 5)) }
    end)
    assert.are.same({ n = 2, nil, "too long" }, r[1])
    assert.are.same({ n = 1, "abcd\r" }, r[2])
  end)
end)
