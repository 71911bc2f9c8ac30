-- The network examples, run with the nexus command: echo_server.lua with
-- echo_client.lua, and kv_server.lua driven by clients from this process.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local N = dofile(dir .. "net_helpers.lua")
local nexus = require "nexus"

local function start(example, env)
  local proc = N.spawn(N.nexus("examples/" .. example .. " 0"), env)
  local port = tonumber((N.expect(proc, "^listening (%d+)$")))
  assert(port, example .. " did not start")
  return proc, port
end

local function stop(proc)
  N.kill(proc)
  N.finish(proc)
end

describe("network examples", function()
  it("echo_server.lua echoes for echo_client.lua: several connections, every byte checked", function()
    local server, port = start("echo_server.lua")
    local r = H.run_nexus({ "examples/echo_client.lua", tostring(port), "300", "100", "8" })
    -- the server lives on after its clients leave
    local r2 = H.run_nexus({ "examples/echo_client.lua", tostring(port), "10", "5000" })
    stop(server)
    assert.are.equal(0, r.rc, r.err)
    assert.truthy(r.out:find("8 connections x 300 round trips of 100 bytes: ok", 1, true), r.out)
    local p50, p99 = r.out:match("round trip p50 ([%d.]+) us, p99 ([%d.]+) us")
    assert.is_true(tonumber(p50) > 0 and tonumber(p50) <= tonumber(p99), r.out)
    assert.are.equal(0, r2.rc, r2.err)
    assert.truthy(r2.out:find("1 connections x 10 round trips of 5000 bytes: ok", 1, true), r2.out)
  end)

  it("echo_client.lua without a port prints its usage and exits 2", function()
    local r = H.run_nexus({ "examples/echo_client.lua" })
    assert.are.equal(2, r.rc)
    assert.truthy(r.err:find("usage: echo_client.lua <port>", 1, true), r.err)
  end)

  it("echo_server.lua ends on SIGTERM", function()
    local server = start("echo_server.lua")
    N.kill(server)
    assert.are.equal("", N.finish(server))
  end)

  describe("kv_server.lua", function()
    local server, port
    setup(function() server, port = start("kv_server.lua", "KV_IDLE=0.5; export KV_IDLE") end)
    teardown(function() stop(server) end)

    -- Sends each request line and reads one reply line per request.
    local function ask(c, ...)
      local out = {}
      for i = 1, select("#", ...) do
        assert(c:write((select(i, ...)) .. "\r\n"))
        out[i] = c:read_line()
      end
      return out
    end

    it("answers SET, GET, DEL and COUNT, shared between connections", function()
      local a, b = nexus.run(function()
        local c1 = assert(nexus.tcp.connect("127.0.0.1", port))
        local c2 = assert(nexus.tcp.connect("127.0.0.1", port))
        local a = ask(c1, "SET lang lua jit", "SET n 1", "GET lang")
        local b = ask(c2, "GET lang", "COUNT", "DEL n", "DEL n", "GET n", "COUNT", "FROB x", "SET onlykey")
        c1:close(); c2:close()
        return a, b
      end)
      assert.are.same({ "OK", "OK", "VALUE lua jit" }, a)
      assert.are.same({ "VALUE lua jit", "COUNT 2", "DELETED", "NOT_FOUND", "NOT_FOUND", "COUNT 1",
                        "ERROR unknown command", "ERROR usage: SET key value" }, b)
    end)

    it("answers pipelined commands in order, even split mid-line across writes", function()
      local got = nexus.run(function()
        local c = assert(nexus.tcp.connect("127.0.0.1", port))
        c:write("SET k1 v1\nSET k2 v2\r\nGET k1\nGE")
        nexus.sleep(0.02)
        c:write("T k2\nQUIT\n")
        local got = {}
        for l in c:lines() do got[#got + 1] = l end
        c:close()
        return got
      end)
      assert.are.same({ "OK", "OK", "VALUE v1", "VALUE v2", "BYE" }, got)
    end)

    it("drops a line that is too long, and a client that stays idle", function()
      local r = nexus.run(function()
        local c = assert(nexus.tcp.connect("127.0.0.1", port))
        c:write(("x"):rep(5000))
        local r = { c:read_line(), H.pack(c:read_line()) }
        c:close()
        local idle = assert(nexus.tcp.connect("127.0.0.1", port))
        local t0 = nexus.now()
        r[3] = H.pack(idle:read_line())
        r[4] = nexus.now() - t0
        idle:close()
        return r
      end)
      assert.are.equal("ERROR line too long", r[1])
      -- the server closed with unread bytes: a reset may follow the reply
      assert.truthy(r[2][2] == "eof" or r[2][2] == "connection reset by peer", r[2][2])
      assert.are.equal("eof", r[3][2])
      assert.is_true(r[4] >= 0.45 and r[4] < 0.5 + H.LATE + 0.5, r[4])
    end)
  end)
end)

-- Seed pattern 2: stopped by a real SIGTERM (spec/proc.lua starts it with
-- the default signal dispositions and reports how it ended).
describe("per_connection.lua", function()
  local P = dofile(dir .. "proc.lua")
  after_each(P.cleanup)

  for _, sig in ipairs({ "TERM", "INT" }) do
    it("SIG" .. sig .. " cancels every live session through the root token; the process exits 0", function()
      local p = P.spawn({ H.nexus_bin(), "examples/per_connection.lua", "0" })
      assert.is_true(p:wait_for("listening ", 30), p:show())
      local port = tonumber(p:out():match("listening (%d+)"))
      local r = nexus.run(function()
        local r = { echoes = {}, after = {} }
        local cs = {}
        for i = 1, 4 do
          cs[i] = assert(nexus.tcp.connect("127.0.0.1", port, { timeout = 5 }))
          cs[i]:write("hello " .. i .. "\n")
          r.echoes[i] = cs[i]:read_line()
        end
        cs[4]:close()                    -- this one ends before the shutdown
        assert(p:wait_for("session 4: ended", 10), p:show())
        p:signal(sig)
        for i = 1, 3 do                  -- the others are closed by the server
          local ok, line, err = nexus.timeout(10, cs[i].read_line, cs[i])
          r.after[i] = ok and (line or err) or "timeout"
          cs[i]:close()
        end
        return r
      end)
      assert.is_truthy(p:wait(30), p:show())
      assert.are.same({ exited = true, code = 0 }, p.status, p:show())
      for i = 1, 4 do assert.are.equal("echo: hello " .. i, r.echoes[i]) end
      for i = 1, 3 do
        assert.truthy(r.after[i] == "eof" or r.after[i] == "connection reset by peer", r.after[i])
      end
      local out = p:out()
      local shutdown_at = out:find("shutdown: cancelling 4 session(s)\n", 1, true)
      assert.is_truthy(shutdown_at, out)
      assert.is_true(out:find("session 4: ended (eof)\n", 1, true) < shutdown_at, out)
      for i = 1, 3 do
        local at = out:find(("session %d: ended (cancelled)\n"):format(i), 1, true)
        assert.is_truthy(at, out)
        assert.is_true(at > shutdown_at, out)
      end
      assert.truthy(out:find("shutdown: every session ended\n$"), out)
      assert.are.equal("", p:err())
    end)
  end
end)
