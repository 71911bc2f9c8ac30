-- Install from a checkout (offline; builds with CMake):
--   luarocks --lua-version=5.1 make rockspec/nexus-scm-1.rockspec
--   luarocks --lua-version=5.1 --tree=DIR make rockspec/nexus-scm-1.rockspec
-- Installs nexus/core.so in LIBDIR, nexus.lua and nexus/*.lua in LUADIR and
-- the nexus command in BINDIR. The C core needs LuaJIT (headers found by
-- pkg-config, luajit.pc), libuv (libuv.pc), OpenSSL (openssl.pc), wslay
-- (wslay/wslay.h), http_parser (http_parser.h) and libcurl's headers (libcurl.pc: found by CMake;
-- Debian keeps curl.h under the multiarch include directory, where
-- luarocks' header check does not look).
rockspec_format = "3.0"
package = "nexus"
version = "scm-1"
source = {
   url = "git+file:///nexus", -- not fetched by `luarocks make`
}
description = {
   summary = "A single-threaded async runtime for LuaJIT on libuv",
   detailed = [[
nexus runs Lua coroutines as tasks on a C executor over libuv: timers,
channels, cancellation, select, groups, TCP/UDP/DNS, TLS, WebSocket, an
HTTP client and server, processes. Use it with `require "nexus"` from LuaJIT, or run
scripts with the bundled `nexus` command.
]],
}
supported_platforms = { "linux" }
dependencies = {
   "lua == 5.1", -- LuaJIT 2.1
}
external_dependencies = {
   LIBUV = { header = "uv.h" },
   OPENSSL = { header = "openssl/ssl.h" },
   WSLAY = { header = "wslay/wslay.h" },
   HTTP_PARSER = { header = "http_parser.h" },
}
build = {
   type = "cmake",
   variables = {
      CMAKE_BUILD_TYPE = "RelWithDebInfo",
      CMAKE_INSTALL_PREFIX = "$(PREFIX)",
      NEXUS_BINDIR = "$(BINDIR)",
      NEXUS_LIBDIR = "$(LIBDIR)",
      NEXUS_LUADIR = "$(LUADIR)",
      NEXUS_INCLUDEDIR = "$(PREFIX)/include",
      -- Where find_package(nexus) and pkg-config look with the tree as the
      -- prefix (CMAKE_PREFIX_PATH=<tree>, PKG_CONFIG_PATH=<tree>/lib/pkgconfig):
      -- <tree>/lib/cmake/nexus and <tree>/lib/pkgconfig. Under $(LIBDIR)
      -- luarocks would deploy them to <tree>/lib/lua/5.1, where neither
      -- looks. ROCKS_TREE is <tree>/lib/luarocks/rocks-5.1.
      NEXUS_CMAKEDIR = "$(ROCKS_TREE)/../../cmake/nexus",
      NEXUS_PKGCONFIGDIR = "$(ROCKS_TREE)/../../pkgconfig",
   },
}
