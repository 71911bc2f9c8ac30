-- The fuzzer's driver (fuzz/ops.lua) over the seed corpus, under the
-- normal build (no libFuzzer): every seed runs clean, the driver's checks
-- fire on a fault injected on purpose (NEXUS_FUZZ_INJECT: a value lost, a
-- descriptor left open, a waiter never woken), and the corpus generator
-- reproduces the committed corpus.
local dir = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./")
local H = dofile(dir .. "helpers.lua")
local ROOT = (debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$")) or "."

local function corpus()
  local p = io.popen("ls " .. H.q(ROOT .. "/fuzz/corpus"))
  local files = {}
  for name in p:lines() do files[#files + 1] = ROOT .. "/fuzz/corpus/" .. name end
  p:close()
  return files
end

local function replay(env, files)
  local q = {}
  for i, f in ipairs(files) do q[i] = H.q(f) end
  return H.sh(env .. " luajit " .. H.q(ROOT .. "/fuzz/replay.lua") .. " " .. table.concat(q, " "))
end

describe("fuzz driver", function()
  after_each(H.cleanup)

  it("runs every seed of fuzz/corpus without a violation", function()
    local files = corpus()
    assert.is_true(#files >= 40, "only " .. #files .. " seeds")
    local r = replay("", files)
    assert.are.equal(0, r.rc, r.out .. r.err)
    assert.are.equal(#files, H.count(r.out, "\nok ") + (r.out:sub(1, 3) == "ok " and 1 or 0))
  end)

  it("reports a lost value (a fault injected into the driver's own record)", function()
    local r = replay("NEXUS_FUZZ_INJECT=drop", corpus())
    assert.are.equal(1, r.rc, r.out .. r.err)
    assert.matches("fuzz invariant: %a+: value %d+ was sent but never received", r.out)
  end)

  it("reports a descriptor left open", function()
    local files = corpus()
    local r = replay("NEXUS_FUZZ_INJECT=fd", { files[1], files[#files] })
    assert.are.equal(1, r.rc, r.out .. r.err)
    assert.are.equal(2, H.count(r.out, "fuzz invariant: open descriptors: "), r.out)
    assert.matches("open descriptors: %d+ before, %d+ after", r.out)
  end)

  it("reports a waiter that close never wakes", function()
    local r = replay("NEXUS_FUZZ_INJECT=stuck", { corpus()[1] })
    assert.are.equal(1, r.rc, r.out .. r.err)
    assert.matches("fuzz invariant: a token task did not end once every sender was closed", r.out)
  end)

  it("NEXUS_FUZZ_TRACE=1 prints the operations decoded", function()
    local r = replay("NEXUS_FUZZ_TRACE=1", { ROOT .. "/fuzz/corpus/01-chan-produce-consume" })
    assert.are.equal(0, r.rc, r.out .. r.err)
    assert.matches("fuzz: chan capacity 1\n", r.err)
    assert.matches("fuzz: produce +0 7 %(1 tasks%)\nfuzz: consume +0 7 %(2 tasks%)\nfuzz: sleep +1 %(2 tasks%)\n", r.err)
  end)

  it("fuzz/make_corpus.lua writes the committed corpus", function()
    local tmp = H.sh("mktemp -d").out:gsub("%s+$", "")
    local r = H.sh("luajit " .. H.q(ROOT .. "/fuzz/make_corpus.lua") .. " " .. H.q(tmp))
    assert.are.equal(0, r.rc, r.err)
    local d = H.sh("diff -r " .. H.q(tmp) .. " " .. H.q(ROOT .. "/fuzz/corpus"))
    H.sh("rm -rf " .. H.q(tmp))
    assert.are.equal(0, d.rc, d.out)
  end)
end)
