-- The rockspec installs a working nexus: `luarocks make` into a fresh tree
-- from a copy of this checkout, then the installed command and the
-- installed module both run a script.

local function sh(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"::status=$?\""))
  local out = p:read("*a")
  p:close()
  local status = tonumber(out:match("::status=(%d+)%s*$"))
  return status == 0, out:gsub("::status=%d+%s*$", ""), status
end

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- The checkout: busted runs from its root (make test, spec/run.lua).
local function find_root()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/spec/[^/]*$") or "."
  local ok, out = sh("cd " .. q(dir) .. " && pwd")
  assert(ok, out)
  local root = out:gsub("%s+$", "")
  assert(exists(root .. "/rockspec/nexus-scm-1.rockspec"), "no rockspec under " .. root)
  return root
end

-- Run without what the test environment adds: the tree must stand alone,
-- and its build is not sanitized.
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS"
  .. " -u LUA_PATH -u LUA_CPATH -u LUA_INIT"

local SCRIPT = [[
local nexus = require "nexus"
nexus.run(function()
  nexus.sleep(0.01)
  print("ok", nexus.now() > 0)
end)
]]

describe("rockspec", function()
  local tmp, tree, installed, install_log

  setup(function()
    local root = find_root()
    local ok, out = sh("mktemp -d " .. q((os.getenv("TMPDIR") or "/tmp") .. "/nexus-rock.XXXXXX"))
    assert(ok, out)
    tmp = out:gsub("%s+$", "")
    tree = tmp .. "/tree"
    -- Copy the checkout as it is (uncommitted changes included), without
    -- build trees or git metadata.
    ok, out = sh(("mkdir -p %s/src && tar -C %s --exclude=./.git --exclude=./build"
      .. " --exclude=./build-san --exclude='./build-*' --exclude=./build.luarocks"
      .. " -cf - . | tar -C %s/src -xf -"):format(q(tmp), q(root), q(tmp)))
    assert(ok, out)
    local f = assert(io.open(tmp .. "/script.lua", "w"))
    f:write(SCRIPT)
    f:close()
    installed, install_log = sh(("cd %s/src && %s luarocks --lua-version=5.1 --tree=%s"
      .. " make rockspec/nexus-scm-1.rockspec"):format(q(tmp), CLEAN_ENV, q(tree)))
  end)

  teardown(function()
    if tmp and tmp:match("/nexus%-rock%.") then
      sh("rm -rf " .. q(tmp))
    end
  end)

  local function require_installed()
    assert(installed, "luarocks make failed:\n" .. tostring(install_log))
  end

  it("installs with luarocks make", function()
    require_installed()
  end)

  it("puts the module, the Lua files and the command in the tree", function()
    require_installed()
    for _, p in ipairs {
      "/lib/lua/5.1/nexus/core.so",
      "/share/lua/5.1/nexus.lua",
      "/bin/nexus",
    } do
      assert.is_true(exists(tree .. p), "missing " .. tree .. p)
    end
    local ok, out = sh("ls " .. q(tree .. "/share/lua/5.1/nexus") .. "/*.lua")
    assert.is_true(ok, "no nexus/*.lua installed: " .. out)
  end)

  it("core.so does not link libluajit", function()
    require_installed()
    local ok, out = sh("readelf -d " .. q(tree .. "/lib/lua/5.1/nexus/core.so"))
    assert.is_true(ok, out)
    assert.is_nil(out:match("NEEDED[^\n]*luajit"), out)
    assert.is_truthy(out:match("NEEDED[^\n]*libuv"), out)
  end)

  it("runs a script with the installed nexus command", function()
    require_installed()
    local ok, out = sh(("cd %s && %s %s script.lua"):format(q(tmp), CLEAN_ENV, q(tree .. "/bin/nexus")))
    assert.is_true(ok, out)
    assert.are.equal("ok\ttrue\n", out)
  end)

  it("runs a script with luajit and require 'nexus' from the tree", function()
    require_installed()
    local lpath = tree .. "/share/lua/5.1/?.lua;" .. tree .. "/share/lua/5.1/?/init.lua;;"
    local cpath = tree .. "/lib/lua/5.1/?.so;;"
    local ok, out = sh(("cd %s && %s LUA_PATH=%s LUA_CPATH=%s luajit script.lua")
      :format(q(tmp), CLEAN_ENV, q(lpath), q(cpath)))
    assert.is_true(ok, out)
    assert.are.equal("ok\ttrue\n", out)
  end)

  -- Regress: the CMake package and nexus.pc went to <tree>/lib/lua/5.1/
  -- (luarocks deploys the rock's lib/ there), where neither tool looks.
  it("find_package(nexus) works with CMAKE_PREFIX_PATH=<tree>", function()
    require_installed()
    assert.is_true(exists(tree .. "/lib/cmake/nexus/nexusConfig.cmake"), "no nexusConfig.cmake in <tree>/lib/cmake/nexus")
    local src = find_root() .. "/examples/handlers"
    local ok, out = sh(("%s cmake -S %s -B %s -DCMAKE_PREFIX_PATH=%s && %s cmake --build %s")
      :format(CLEAN_ENV, q(src), q(tmp .. "/handlers-build"), q(tree), CLEAN_ENV, q(tmp .. "/handlers-build")))
    assert.is_true(ok, out)
    assert.is_true(exists(tmp .. "/handlers-build/liborderbook.so"), out)
  end)

  it("pkg-config finds nexus with PKG_CONFIG_PATH=<tree>/lib/pkgconfig", function()
    require_installed()
    local ok, out = sh(("%s PKG_CONFIG_PATH=%s pkg-config --cflags nexus"):format(CLEAN_ENV, q(tree .. "/lib/pkgconfig")))
    assert.is_true(ok, out)
    local inc = out:match("%-I(%S+)")
    assert.is_truthy(inc, out)
    assert.is_true(exists(inc .. "/nexus.h"), "no nexus.h in " .. inc)
  end)
end)
