-- The README's example runs under the nexus command and prints what its
-- comments say.
local H = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "helpers.lua")

describe("README example", function()
  it("runs under the nexus command: a group's outcomes, a select, a timeout", function()
    local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../"
    local f = assert(io.open(root .. "README.md"))
    local text = f:read("*a")
    f:close()
    local code = assert(text:match("```lua\n(%-%- nexus example%.lua.-)```"), "no example in README.md")
    local r = H.nexus_script(code)
    assert.are.equal(0, r.rc, r.err)
    local lines = {}
    for l in r.out:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert.are.same({
      "fetch 1\ttrue\t10",
      "fetch 2\ttrue\t20",
      "fetch 3\tfalse\t" .. lines[3]:match("\t(%S+:6: fetch 3 failed)$"),
      "fetch 4\ttrue\t40",
      "1\tlate",
      "nil\ttimeout",
    }, lines)
  end)
end)
