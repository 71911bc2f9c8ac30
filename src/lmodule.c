/* lmodule.c - luaopen_nexus_core: the Lua binding of the runtime.
 *
 * Setup and anything that moves Lua values (spawn, join results, block_on)
 * uses the classic Lua C API. Hot, value-free operations (clock, sleep
 * registration, timeout levels) are plain C functions handed to the FFI
 * as a table of function pointers (nx_api): a module opened by `require`
 * is loaded privately, so ffi.C could not find them by name.
 */
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "nexus.h"
#include "rt.h"

#define NX_RT_MT "nexus.runtime"
#define NX_TASK_MT "nexus.task"

/* Raises a message naming the function and the fault, with no position:
 * a position here would point into nexus's own Lua wrappers. */
static int nx_error(lua_State *L, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

typedef struct nx_handle { nx_rt *rt; nx_task *t; uint32_t gen; } nx_handle;
typedef struct nx_rtbox { nx_rt *rt; } nx_rtbox;

/* ---- FFI entry points: act on the running task of the current runtime ---- */

static double api_event_time(void) { return nx_cur_rt ? nx_cur_rt->event_time : nx_now(); }
static int api_in_task(void) { return nx_cur_rt && nx_cur_rt->cur; }
static int api_sleep_until(double d) { return nx_cur_rt ? nx_wait_sleep(nx_cur_rt, d) : NX_E_NOTASK; }
static int api_dl_push(double d) { return nx_cur_rt ? nx_dl_push(nx_cur_rt, d) : NX_E_NOTASK; }
static int api_dl_state(int lvl) { return nx_cur_rt ? nx_dl_state(nx_cur_rt, lvl) : NX_E_NOTASK; }
static void api_dl_pop(int lvl) { if (nx_cur_rt) nx_dl_pop(nx_cur_rt, lvl); }
static int api_wake_code(void) { return (nx_cur_rt && nx_cur_rt->cur) ? nx_cur_rt->cur->wake : 0; }
static void api_cancel_wait(void) {
  nx_rt *rt = nx_cur_rt;
  if (rt && rt->cur) nx_task_cancel_wait(rt, rt->cur);
}

typedef struct nx_api {
  double (*now)(void);
  double (*event_time)(void);
  int (*in_task)(void);
  int (*sleep_until)(double);
  int (*dl_push)(double);
  int (*dl_state)(int);
  void (*dl_pop)(int);
  void (*cancel_wait)(void);
  int (*wake_code)(void);
} nx_api;

static const nx_api nx_api_table = {
  nx_now, api_event_time, api_in_task, api_sleep_until,
  api_dl_push, api_dl_state, api_dl_pop, api_cancel_wait, api_wake_code,
};

/* ---- runtime object ---- */

static nx_rt *nx_check_rt(lua_State *L, int idx, const char *fname) {
  nx_rtbox *b = luaL_testudata(L, idx, NX_RT_MT);
  if (!b) nx_error(L, "%s: expected a nexus runtime, got %s", fname, luaL_typename(L, idx));
  return b->rt;
}

static nx_rt *nx_check_open_rt(lua_State *L, int idx, const char *fname) {
  nx_rt *rt = nx_check_rt(L, idx, fname);
  if (rt->closed) nx_error(L, "%s: the runtime is closed", fname);
  return rt;
}

static int l_rt_new(lua_State *L) {
  nx_rtbox *b = lua_newuserdata(L, sizeof *b);
  b->rt = NULL;
  luaL_getmetatable(L, NX_RT_MT);
  lua_setmetatable(L, -2);
  if (!(b->rt = nx_rt_new())) return nx_error(L, "nexus.runtime: cannot create the event loop");
  lua_newtable(L);
  b->rt->tasks_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 1;
}

static int l_rt_gc(lua_State *L) {
  nx_rtbox *b = luaL_checkudata(L, 1, NX_RT_MT);
  if (b->rt) {
    nx_rt *rt = b->rt;
    b->rt = NULL;
    nx_rt_close(rt, L);
    nx_rt_unref(rt, L);
  }
  return 0;
}

static int l_rt_close(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:close");
  if (rt->driving) return nx_error(L, "rt:close: cannot close a runtime from inside its own tasks");
  nx_rt_close(rt, L);
  return 0;
}

/* rt:_config(tasks_per_cycle, event_interval, report_errors, busy) */
static int l_rt_config(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:_config");
  rt->tasks_per_cycle = (uint32_t)luaL_checkinteger(L, 2);
  rt->event_interval = (uint32_t)luaL_checkinteger(L, 3);
  rt->report_errors = (uint8_t)lua_toboolean(L, 4);
  return 0;
}

#define NX_STAT(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))
static int l_rt_stats(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:stats");
  lua_createtable(L, 0, 12);
  NX_STAT("tasks_alive", rt->alive);
  NX_STAT("spawned", rt->st.spawned);
  NX_STAT("resumes", rt->st.resumes);
  NX_STAT("cycles", rt->st.cycles);
  NX_STAT("timers", rt->heap.n);
  NX_STAT("timers_fired", rt->st.timers_fired);
  NX_STAT("io_polls", rt->st.polls);
  NX_STAT("parks", rt->st.parks);
  NX_STAT("ready", rt->qn);
  NX_STAT("task_errors", rt->st.errors);
  NX_STAT("task_slots", rt->nslots);
  lua_pushboolean(L, rt->closed);
  lua_setfield(L, -2, "closed");
  return 1;
}

/* ---- tasks ---- */

static void nx_push_handle(lua_State *L, nx_rt *rt, nx_task *t) {
  nx_handle *h = lua_newuserdata(L, sizeof *h);
  h->rt = rt;
  h->t = t;
  h->gen = t->gen;
  t->nhandles++;
  rt->refs++;
  luaL_getmetatable(L, NX_TASK_MT);
  lua_setmetatable(L, -2);
}

static nx_handle *nx_check_handle(lua_State *L, int idx, const char *fname) {
  nx_handle *h = luaL_testudata(L, idx, NX_TASK_MT);
  if (!h || !h->t) nx_error(L, "%s: expected a task handle, got %s", fname, luaL_typename(L, idx));
  return h;
}

/* Creates a ready task running the function at fidx with the values above
 * it as arguments; pops them. */
static nx_task *nx_spawn_top(lua_State *L, nx_rt *rt, int fidx, const char *fname) {
  int nargs = lua_gettop(L) - fidx;
  nx_task *t = nx_task_new(rt, L);
  if (!t) nx_error(L, "%s: out of memory", fname);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
  lua_State *co = lua_newthread(L);
  lua_rawseti(L, -2, (int)t->slot + 1);
  lua_pop(L, 1);
  t->co = co;
  t->nargs = nargs;
  lua_xmove(L, co, nargs + 1);
  nx_task_ready(rt, t);
  return t;
}

/* core.spawn(fn, ...) -> handle, or nothing when no runtime is running. */
static int l_spawn(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return nx_error(L, "nexus.spawn: expected a function, got %s", luaL_typename(L, 1));
  if (!rt) return 0;
  nx_task *t = nx_spawn_top(L, rt, 1, "nexus.spawn");
  nx_push_handle(L, rt, t);
  return 1;
}

static int l_current(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (!rt || !rt->cur) return 0;
  nx_push_handle(L, rt, rt->cur);
  return 1;
}

static int l_h_gc(lua_State *L) {
  nx_handle *h = lua_touserdata(L, 1);
  if (h && h->t) {
    nx_task *t = h->t;
    nx_rt *rt = h->rt;
    h->t = NULL;
    nx_task_unhold(rt, L, t);
    nx_rt_unref(rt, L);
  }
  return 0;
}

static int l_h_id(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:id");
  lua_pushnumber(L, (lua_Number)h->t->id);
  return 1;
}

static int l_h_finished(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:is_finished");
  lua_pushboolean(L, h->t->state == NX_DONE);
  return 1;
}

static int l_h_abort(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:abort");
  int self = h->t == h->rt->cur;
  lua_pushboolean(L, nx_task_abort(h->rt, L, h->t));
  lua_pushboolean(L, self);
  return 2;
}

static const char *const nx_state_names[] = { "free", "ready", "running", "waiting", "done" };

static int l_h_tostring(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:__tostring");
  const char *st = nx_state_names[h->t->state];
  if (h->t->state == NX_DONE)
    st = h->t->end == NX_END_OK ? "finished" : h->t->end == NX_END_ERROR ? "failed" : "aborted";
  lua_pushfstring(L, "nexus.task(%d, %s)", (int)h->t->id, st);
  return 1;
}

static int l_h_eq(lua_State *L) {
  nx_handle *a = luaL_testudata(L, 1, NX_TASK_MT), *b = luaL_testudata(L, 2, NX_TASK_MT);
  lua_pushboolean(L, a && b && a->t == b->t && a->gen == b->gen);
  return 1;
}

/* core.join_begin(h, fname) -> true when finished, false when the current
 * task is now registered as its waiter (the caller then yields). */
static int l_join_begin(lua_State *L) {
  const char *fname = luaL_optstring(L, 2, "handle:join");
  nx_handle *h = nx_check_handle(L, 1, fname);
  nx_rt *rt = h->rt;
  nx_task *t = h->t;
  if (t->state == NX_DONE) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (nx_cur_rt != rt || !rt->cur) {
    if (nx_cur_rt && nx_cur_rt->cur)
      return nx_error(L, "%s: the task belongs to another runtime", fname);
    return nx_error(L, "%s: not inside a nexus task", fname);
  }
  if (t == rt->cur) return nx_error(L, "%s: a task cannot join itself", fname);
  if (t->joiner) return nx_error(L, "%s: task %d is already being joined by another task", fname, (int)t->id);
  int rc = nx_wait_join(rt, t);
  if (rc != NX_OK) return nx_error(L, "%s: cannot wait here", fname);
  lua_pushboolean(L, 0);
  return 1;
}

/* Pushes a finished task's outcome. pcall_style: true, ... | false, err;
 * otherwise the values, or raises the error. */
static int nx_push_outcome(lua_State *L, nx_task *t, int pcall_style) {
  if (t->end == NX_END_ABORTED) {
    if (!pcall_style) return nx_error(L, "aborted");
    lua_pushboolean(L, 0);
    lua_pushliteral(L, "aborted");
    return 2;
  }
  lua_State *co = t->co;
  if (t->end == NX_END_ERROR) {
    if (pcall_style) lua_pushboolean(L, 0);
    lua_pushvalue(co, -2);
    lua_xmove(co, L, 1);
    if (!pcall_style) return lua_error(L);
    return 2;
  }
  int n = lua_gettop(co);
  luaL_checkstack(L, n + 1, "too many results");
  if (pcall_style) lua_pushboolean(L, 1);
  lua_checkstack(co, n);
  for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n + pcall_style;
}

static int l_join_end(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:join");
  if (h->t->state != NX_DONE) return nx_error(L, "handle:join: task has not finished");
  return nx_push_outcome(L, h->t, lua_toboolean(L, 2));
}

static int l_h_traceback(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:traceback");
  if (h->t->state != NX_DONE || h->t->end != NX_END_ERROR) return 0;
  lua_pushvalue(h->t->co, -1);
  lua_xmove(h->t->co, L, 1);
  return 1;
}

/* ---- driving ---- */

/* Raises the error that ended t: the traceback string for a string error
 * (it begins with the message), the value itself otherwise. */
static int nx_raise_task_error(lua_State *L, nx_task *t) {
  lua_State *co = t->co;
  lua_pushvalue(co, lua_type(co, -2) == LUA_TSTRING ? -1 : -2);
  lua_xmove(co, L, 1);
  return lua_error(L);
}

static int nx_finish_drive(lua_State *L, nx_rt *rt, nx_task *root, int stop, const char *fname) {
  if (stop == NX_STOP_FATAL) {
    nx_task *t = rt->fatal;
    rt->fatal = NULL;
    t->flags &= ~NX_F_FATAL;
    t->nhandles++;       /* keep its values while raising */
    nx_task_unhold(rt, L, root);
    int top = lua_gettop(L);
    nx_raise_task_error(L, t);
    (void)top;
    return 0;
  }
  if (stop == NX_STOP_DEADLOCK) {
    unsigned waiting = rt->alive;
    nx_task_unhold(rt, L, root);
    return nx_error(L, "%s: deadlock: %d task(s) wait on something nothing can complete",
                      fname, (int)waiting);
  }
  int n;
  if (root->end == NX_END_ERROR) {
    lua_State *co = root->co;
    lua_pushvalue(co, lua_type(co, -2) == LUA_TSTRING ? -1 : -2);
    lua_xmove(co, L, 1);
    nx_task_unhold(rt, L, root);
    return lua_error(L);
  }
  if (root->end == NX_END_ABORTED) {
    nx_task_unhold(rt, L, root);
    return nx_error(L, "%s: the root task was aborted", fname);
  }
  n = nx_push_outcome(L, root, 0);
  nx_task_unhold(rt, L, root);
  return n;
}

/* A previous fatal error raised through lua_error skips the unhold of the
 * task that carried it; this keeps count right: see nx_finish_drive. */
static int nx_drive(lua_State *L, nx_rt *rt, nx_task *root, int all, const char *fname) {
  nx_rt *prev = nx_cur_rt;
  nx_cur_rt = rt;
  rt->driving = 1;
  int stop = nx_rt_drive(rt, L, root, all);
  rt->driving = 0;
  nx_cur_rt = prev;
  return nx_finish_drive(L, rt, root, stop, fname);
}

static void nx_check_not_in_task(lua_State *L, const char *fname) {
  if (nx_cur_rt && nx_cur_rt->cur)
    nx_error(L, "%s: called from inside a running task (it would block the runtime)", fname);
}

/* rt:_block_on(all, busy, fname, fn, ...) */
static int l_rt_block_on(lua_State *L) {
  const char *fname = luaL_checkstring(L, 4);
  nx_rt *rt = nx_check_open_rt(L, 1, fname);
  int all = lua_toboolean(L, 2);
  nx_check_not_in_task(L, fname);
  if (rt->driving) return nx_error(L, "%s: the runtime is already running", fname);
  if (lua_type(L, 5) != LUA_TFUNCTION)
    return nx_error(L, "%s: expected a function, got %s", fname, luaL_typename(L, 5));
  rt->busy = (uint8_t)lua_toboolean(L, 3);
  nx_task *root = nx_spawn_top(L, rt, 5, fname);
  root->flags |= NX_F_ROOT;
  root->nhandles++;
  lua_settop(L, 4);
  return nx_drive(L, rt, root, all, fname);
}

/* rt:_adopt(): the running coroutine (a script's main chunk under the
 * nexus command) becomes this runtime's root task, already running. */
static int l_rt_adopt(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:_adopt");
  if (nx_cur_rt) return nx_error(L, "rt:_adopt: a runtime is already running");
  if (lua_pushthread(L)) return nx_error(L, "rt:_adopt: the main thread cannot be a task");
  nx_task *t = nx_task_new(rt, L);
  if (!t) return nx_error(L, "rt:_adopt: out of memory");
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->tasks_ref);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (int)t->slot + 1);
  lua_pop(L, 2);
  t->co = L;
  t->flags |= NX_F_ROOT;
  t->nhandles++;
  rt->cur = t;
  nx_cur_rt = rt;
  lua_pushlightuserdata(L, t);
  return 1;
}

/* rt:_adopted_drive(root, finished) from the resumer of the adopted
 * coroutine once it yielded (or ended: finished = true). */
static int l_rt_adopted_drive(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:_adopted_drive");
  nx_task *root = lua_touserdata(L, 2);
  int finished = lua_toboolean(L, 3);
  rt->cur = NULL;
  nx_cur_rt = NULL;
  if (finished) {
    lua_settop(root->co, 0);
    nx_task_finish(rt, L, root, 0);
  } else {
    nx_task_after_yield(rt, L, root);
  }
  lua_settop(L, 0);
  return nx_drive(L, rt, root, 1, "nexus");
}

/* ---- module ---- */

static const luaL_Reg nx_rt_methods[] = {
  {"_block_on", l_rt_block_on}, {"_adopt", l_rt_adopt}, {"_adopted_drive", l_rt_adopted_drive},
  {"_config", l_rt_config}, {"stats", l_rt_stats}, {"close", l_rt_close}, {NULL, NULL},
};

static const luaL_Reg nx_task_methods[] = {
  {"id", l_h_id}, {"is_finished", l_h_finished}, {"traceback", l_h_traceback}, {NULL, NULL},
};

static const luaL_Reg nx_funcs[] = {
  {"runtime_new", l_rt_new}, {"spawn", l_spawn}, {"current", l_current},
  {"join_begin", l_join_begin}, {"join_end", l_join_end}, {"abort", l_h_abort},
  {NULL, NULL},
};

int luaopen_nexus_core(lua_State *L) {
  luaL_newmetatable(L, NX_RT_MT);
  lua_pushcfunction(L, l_rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  luaL_register(L, NULL, nx_rt_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, NX_TASK_MT);
  lua_pushcfunction(L, l_h_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_h_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, l_h_eq);
  lua_setfield(L, -2, "__eq");
  lua_newtable(L);
  luaL_register(L, NULL, nx_task_methods);
  lua_setfield(L, -2, "__index");   /* nexus/task.lua adds the suspending methods */
  lua_pop(L, 1);

  lua_newtable(L);
  luaL_register(L, NULL, nx_funcs);
  lua_pushlightuserdata(L, (void *)&nx_api_table);
  lua_setfield(L, -2, "api");
  luaL_getmetatable(L, NX_RT_MT);
  lua_setfield(L, -2, "runtime_mt");
  luaL_getmetatable(L, NX_TASK_MT);
  lua_setfield(L, -2, "task_mt");
  lua_pushstring(L, NEXUS_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
  return 1;
}
