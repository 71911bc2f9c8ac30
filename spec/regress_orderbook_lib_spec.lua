-- Regress: examples/handlers/orderbook.lua never found the library built
-- where its own message says to build it. Its candidate list began with
-- os.getenv("NEXUS_ORDERBOOK_LIB"), nil when the variable is unset, and
-- ipairs stopped at that nil before the other candidates.
--
-- This follows the message word for word: in a copy of examples/ (the
-- checkout stays clean), with NEXUS_ORDERBOOK_LIB unset, run
-- examples/market_data.lua without the library, take the build commands
-- from its error, run them against a temporary install of nexus, and run
-- the example again.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local H = dofile(dir .. "helpers.lua")
local q = H.q

local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local function build_dir()
  local b = os.getenv("NEXUS_BUILD")
  if b and b ~= "" then return b end
  return ROOT .. "/build"
end

-- The tools run without the sanitizer runtimes of nexus's own build.
local CLEAN = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS "
local UNSET = "env -u NEXUS_ORDERBOOK_LIB "

local function must(cmd)
  local r = H.sh(cmd)
  if r.rc ~= 0 then error(("command failed (%s):\n%s\n%s%s"):format(tostring(r.rc), cmd, r.out, r.err), 2) end
  return r
end

describe("regress: orderbook.lua finds the library built where its message says", function()
  local tmp, prefix, copy
  local built = false

  setup(function()
    tmp = must("mktemp -d " .. q((os.getenv("TMPDIR") or "/tmp") .. "/nexus-oblib.XXXXXX")).out:gsub("%s+$", "")
    prefix = tmp .. "/prefix"
    copy = tmp .. "/copy"
    must(CLEAN .. "cmake --install " .. q(build_dir()) .. " --prefix " .. q(prefix))
    must(("mkdir -p %s/examples/handlers && cp %s/examples/market_data.lua %s/examples/"
      .. " && tar -C %s/examples/handlers --exclude=./build -cf - . | tar -C %s/examples/handlers -xf -")
      :format(q(copy), q(ROOT), q(copy), q(ROOT), q(copy)))
  end)

  teardown(function()
    if tmp and tmp:match("/nexus%-oblib%.") then H.sh("rm -rf " .. q(tmp)) end
  end)

  -- path ob.load() picks, run from the copy's root like the example
  local function load_path(env)
    local r = H.sh(("cd %s && %sluajit -e %s"):format(q(copy), env,
      q('local ob = dofile("examples/handlers/orderbook.lua") local _, p = ob.load() print(p)')))
    assert.are.equal(0, r.rc, r.err)
    return (r.out:gsub("%s+$", ""))
  end

  it("without the library: the message says how to build it; those commands build it", function()
    local r = H.sh(("cd %s && %sluajit examples/market_data.lua 10"):format(q(copy), UNSET))
    assert.are_not.equal(0, r.rc)
    assert.truthy(r.err:find("orderbook: liborderbook.so not found", 1, true), r.err)
    local cmds = {}
    for cmd in r.err:gmatch("\n%s+(cmake [^\n]*)") do
      cmds[#cmds + 1] = (cmd:gsub("<nexus prefix>", function() return q(prefix) end))
    end
    assert.are.equal(2, #cmds, r.err)
    for _, cmd in ipairs(cmds) do must(("cd %s && %s%s"):format(q(copy), CLEAN, cmd)) end
    local f = io.open(copy .. "/examples/handlers/build/liborderbook.so", "rb")
    assert.truthy(f, "the message's commands built no examples/handlers/build/liborderbook.so")
    f:close()
    built = true
  end)

  it("finds it with NEXUS_ORDERBOOK_LIB unset (and set but empty)", function()
    assert(built, "not built")
    assert.are.equal("examples/handlers/build/liborderbook.so", load_path(UNSET))
    assert.are.equal("examples/handlers/build/liborderbook.so", load_path("NEXUS_ORDERBOOK_LIB= "))
  end)

  it("runs examples/market_data.lua with it, under luajit and under the nexus command", function()
    assert(built, "not built")
    for _, runner in ipairs({ "luajit", q(H.nexus_bin()) }) do
      local r = H.sh(("cd %s && %s%s examples/market_data.lua 200"):format(q(copy), UNSET, runner))
      assert.are.equal(0, r.rc, r.err)
      assert.truthy(r.out:find("^200 ticks in %d+ packets through liborderbook%.so"), r.out)
      assert.truthy(r.out:find("books agree: true", 1, true), r.out)
    end
  end)

  it("NEXUS_ORDERBOOK_LIB, when set, still comes first", function()
    assert(built, "not built")
    local other = tmp .. "/other/liborderbook.so"
    must(("mkdir -p %s && cp %s %s"):format(q(tmp .. "/other"), q(copy .. "/examples/handlers/build/liborderbook.so"), q(other)))
    assert.are.equal(other, load_path("NEXUS_ORDERBOOK_LIB=" .. q(other) .. " "))
  end)
end)
