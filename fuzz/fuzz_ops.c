/* fuzz_ops.c - the libFuzzer harness (make fuzz; docs/fuzzing.md).
 *
 * One LuaJIT state for the whole run, with the nexus core linked in (built
 * with the sanitizers and libFuzzer's coverage) and the tree's Lua files;
 * each input goes to fuzz/ops.lua's run(bytes), which decodes it into
 * operations on a fresh runtime and checks the invariants. Any error it
 * raises (an invariant, a task error, a nexus error) becomes abort(), so
 * libFuzzer records the input as a crash.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "nexus.h"

#ifndef NEXUS_SOURCE_DIR
#error "NEXUS_SOURCE_DIR must name the source tree (set by CMakeLists.txt)"
#endif

static lua_State *L;
static int run_ref = LUA_NOREF;

static void nx_fuzz_fail(const char *what) {
  fprintf(stderr, "nexus fuzz: %s: %s\n", what, lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
  fflush(stderr);
  abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  if (!L) abort();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, NEXUS_SOURCE_DIR "/lua/?.lua;" NEXUS_SOURCE_DIR "/lua/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_nexus_core);
  lua_setfield(L, -2, "nexus.core");
  lua_pop(L, 2);
  if (luaL_loadfile(L, NEXUS_SOURCE_DIR "/fuzz/ops.lua") != 0 || lua_pcall(L, 0, 1, 0) != 0)
    nx_fuzz_fail("loading fuzz/ops.lua");
  if (lua_type(L, -1) != LUA_TFUNCTION) nx_fuzz_fail("fuzz/ops.lua did not return a function");
  run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, run_ref);
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, 0) != 0) nx_fuzz_fail("input failed");
  return 0;
}
