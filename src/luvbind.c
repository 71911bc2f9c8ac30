/* luvbind.c - luv (the libuv binding the Lua ecosystem builds on) opened
 * on a nexus runtime's own loop, as Neovim's executor does: luv_set_loop
 * and luv_set_callback before luaopen_luv. One loop, one poller: luv's
 * handles and nexus's are polled by the same uv_run.
 *
 * luv is loaded with dlopen from the path Lua's package.cpath finds for
 * "luv" (Debian's lua-luv, or a luarocks one), so nexus does not depend
 * on it until a script asks for nexus.luv. A luv callback runs on a
 * thread of the runtime's own; an error in one is kept and raised by the
 * executor at its next safe point (block_on / nexus.run raise it), never
 * an exit (luv's default callback exits on some errors).
 */
#include "luvbind.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>

typedef int (*nx_luv_pcall_fn)(lua_State *L, int nargs, int nresults, int flags);
typedef void (*nx_luv_set_loop_fn)(lua_State *L, uv_loop_t *loop);
typedef void (*nx_luv_set_callback_fn)(lua_State *L, nx_luv_pcall_fn pcall);

#define NX_LUV_THREAD "nexus.luv.thread"   /* registry: luv's callbacks run here */
#define NX_LUV_ERROR "nexus.luv.error"     /* registry: the first callback error */

/* The runtime luv is bound to (one per Lua state: luv keeps one context
 * per state). */
static nx_rt *nx_luv_rt;
static uint64_t nx_luv_serial;

static int nx_luv_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* luv_CFpcall: calls the function below nargs values; on an error keeps
 * it for the executor and asks the loop to stop. */
static int nx_luv_pcall(lua_State *L, int nargs, int nresults, int flags) {
  (void)flags;
  int base = lua_gettop(L) - nargs;            /* the function */
  lua_pushcfunction(L, nx_luv_traceback);
  lua_insert(L, base);
  int rc = lua_pcall(L, nargs, nresults, base);
  lua_remove(L, base);
  if (rc == 0) return nresults == LUA_MULTRET ? lua_gettop(L) - base + 1 : nresults;
  lua_getfield(L, LUA_REGISTRYINDEX, NX_LUV_ERROR);
  if (lua_isnil(L, -1)) {                      /* the first error wins */
    lua_pushfstring(L, "nexus.luv: error in a luv callback: %s", lua_tostring(L, -2));
    lua_setfield(L, LUA_REGISTRYINDEX, NX_LUV_ERROR);
  }
  lua_pop(L, 2);
  nx_rt *rt = nx_luv_rt;
  if (rt && nx_rt_of(nx_luv_serial) == rt) {
    rt->ext_error = 1;
    uv_stop(&rt->loop);
  }
  return -rc;
}

/* The executor, at a safe point: raises the luv callback's error. */
void nx_luv_raise(nx_rt *rt, lua_State *L) {
  rt->ext_error = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, NX_LUV_ERROR);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NX_LUV_ERROR);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return;
  }
  if (rt->report_errors) {         /* on_task_error("report") */
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    fflush(stderr);
    lua_pop(L, 1);
    return;
  }
  lua_error(L);
}

static nx_rt *nx_luv_check_rt(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (!rt) luaL_error(L, "nexus.luv: not inside a nexus runtime (require it from a task)");
  return rt;
}

/* core.luv_open(path): luv's module table, bound to the current runtime's
 * loop (the same table again later); raises if luv cannot be loaded. */
static int l_luv_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  nx_rt *rt = nx_luv_check_rt(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.luv.module");
  if (!lua_isnil(L, -1)) {
    if (nx_rt_of(nx_luv_serial) != nx_luv_rt)
      return luaL_error(L, "nexus.luv: luv was bound to a runtime that is gone");
    if (rt != nx_luv_rt)
      return luaL_error(L, "nexus.luv: luv is bound to another runtime (one per Lua state: the first "
                        "that required nexus.luv)");
    return 1;
  }
  lua_pop(L, 1);
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) return luaL_error(L, "nexus.luv: cannot load luv (%s): %s", path, dlerror());
  nx_luv_set_loop_fn set_loop = (nx_luv_set_loop_fn)dlsym(h, "luv_set_loop");
  nx_luv_set_callback_fn set_callback = (nx_luv_set_callback_fn)dlsym(h, "luv_set_callback");
  lua_CFunction open = (lua_CFunction)dlsym(h, "luaopen_luv");
  if (!set_loop || !set_callback || !open)
    return luaL_error(L, "nexus.luv: %s is not a luv with luv_set_loop/luv_set_callback", path);
  /* luv keeps the state it was given for its callbacks: a thread of our
   * own, anchored, never a task's coroutine (which may be suspended or
   * gone when a callback comes). */
  lua_State *T = lua_newthread(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NX_LUV_THREAD);
  set_loop(T, &rt->loop);
  set_callback(T, nx_luv_pcall);
  lua_pushcfunction(T, open);
  lua_call(T, 0, 1);
  lua_xmove(T, L, 1);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, "nexus.luv.module");
  nx_luv_rt = rt;
  nx_luv_serial = rt->serial;
  return 1;
}

/* core.luv_driving(): true while the runtime luv is bound to is driving
 * its loop (then uv.run is refused). */
static int l_luv_driving(lua_State *L) {
  nx_rt *rt = nx_luv_rt;
  lua_pushboolean(L, rt && nx_rt_of(nx_luv_serial) == rt && rt->driving);
  return 1;
}

static const luaL_Reg nx_luv_funcs[] = {
  {"luv_open", l_luv_open}, {"luv_driving", l_luv_driving}, {NULL, NULL},
};

void nx_luv_open(lua_State *L) { luaL_register(L, NULL, nx_luv_funcs); }
