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

/* A task handle. join/result consume it (as ngx.thread.wait and
 * fiber:join do): the outcome is handed over, the task's slot goes back,
 * and the handle switches to a metatable without __gc, so a joined handle
 * costs the collector no finalizer. Until then it holds the task's record
 * (nhandles) and the runtime (refs). */
typedef struct nx_handle {
  nx_rt *rt;          /* NULL once consumed */
  nx_task *t;         /* NULL once consumed */
  uint64_t id;
  uint32_t rt_serial; /* with id, names the task across runtimes */
  uint8_t end;        /* outcome, once consumed */
} nx_handle;

#define NX_UV_TASK_MT lua_upvalueindex(1)      /* live handles */
#define NX_UV_DONE_MT lua_upvalueindex(2)      /* consumed handles */
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
  NX_STAT("timers", nx_heap_live(&rt->heap));
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
  h->id = t->id;
  h->rt_serial = rt->serial;
  h->end = 0;
  t->nhandles++;
  rt->refs++;
  lua_pushvalue(L, NX_UV_TASK_MT);
  lua_setmetatable(L, -2);
}

/* Type check by metatable identity: no registry lookup by name. */
static nx_handle *nx_test_handle(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  int ok = lua_rawequal(L, -1, NX_UV_TASK_MT) || lua_rawequal(L, -1, NX_UV_DONE_MT);
  lua_pop(L, 1);
  return ok ? lua_touserdata(L, idx) : NULL;
}

static nx_handle *nx_check_handle(lua_State *L, int idx, const char *fname) {
  nx_handle *h = nx_test_handle(L, idx);
  if (!h) nx_error(L, "%s: expected a task handle, got %s", fname, luaL_typename(L, idx));
  return h;
}

static int nx_handle_done(const nx_handle *h) { return !h->t || h->t->state == NX_DONE; }
static int nx_handle_end(const nx_handle *h) { return h->t ? h->t->end : h->end; }

/* Hands the record back: the slot may be reused, the runtime freed. */
static void nx_consume(lua_State *L, int idx, nx_handle *h) {
  nx_task *t = h->t;
  nx_rt *rt = h->rt;
  h->end = t->end;
  h->t = NULL;
  h->rt = NULL;
  nx_task_unhold(rt, L, t);
  nx_rt_unref(rt, L);
  lua_pushvalue(L, NX_UV_DONE_MT);
  lua_setmetatable(L, idx);
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
  if (nargs > 65535) nx_error(L, "%s: too many arguments (%d)", fname, nargs);
  t->nargs = (uint16_t)nargs;
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
    h->rt = NULL;
    nx_task_unhold(rt, L, t);
    nx_rt_unref(rt, L);
  }
  return 0;
}

static int l_h_id(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:id");
  lua_pushnumber(L, (lua_Number)h->id);
  return 1;
}

static int l_h_finished(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:is_finished");
  lua_pushboolean(L, nx_handle_done(h));
  return 1;
}

static int l_h_abort(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:abort");
  if (!h->t) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int self = h->t == h->rt->cur;
  lua_pushboolean(L, nx_task_abort(h->rt, L, h->t));
  lua_pushboolean(L, self);
  return 2;
}

static const char *const nx_state_names[] = { "free", "ready", "running", "waiting", "done" };

static int l_h_tostring(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:__tostring");
  const char *st;
  if (nx_handle_done(h)) {
    int e = nx_handle_end(h);
    st = e == NX_END_OK ? "finished" : e == NX_END_ERROR ? "failed" : "aborted";
  } else {
    st = nx_state_names[h->t->state];
  }
  lua_pushfstring(L, "nexus.task(%d, %s)", (int)h->id, st);
  return 1;
}

static int l_h_eq(lua_State *L) {
  nx_handle *a = nx_test_handle(L, 1), *b = nx_test_handle(L, 2);
  lua_pushboolean(L, a && b && a->id == b->id && a->rt_serial == b->rt_serial);
  return 1;
}

/* The current task becomes the waiter of h's unfinished task; returns
 * the wait sentinel (core.WAIT): the Lua wrapper yields, then calls again. */
static int nx_join_wait(lua_State *L, nx_handle *h, const char *fname) {
  nx_rt *rt = h->rt;
  nx_task *t = h->t;
  if (nx_cur_rt != rt || !rt->cur) {
    if (nx_cur_rt && nx_cur_rt->cur)
      return nx_error(L, "%s: the task belongs to another runtime", fname);
    return nx_error(L, "%s: not inside a nexus task", fname);
  }
  if (t == rt->cur) return nx_error(L, "%s: a task cannot join itself", fname);
  if (t->joiner) return nx_error(L, "%s: task %d is already being joined by another task", fname, (int)t->id);
  if (nx_wait_join(rt, t) != NX_OK) return nx_error(L, "%s: cannot wait here", fname);
  lua_pushlightuserdata(L, (void *)&nx_api_table);
  return 1;
}

/* Pushes a finished task's results (no status). */
static int nx_push_results(lua_State *L, nx_task *t) {
  lua_State *co = t->co;
  int n = lua_gettop(co);
  luaL_checkstack(L, n + 1, "too many results");
  lua_checkstack(co, n);
  for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  lua_xmove(co, L, n);
  return n;
}

/* core.join_end(h, pcall_style): consumes the handle of a finished task.
 * pcall_style: true, ... | false, err, traceback; else the values, or
 * raises the task's error value. */
static int nx_join_wait(lua_State *L, nx_handle *h, const char *fname);

static int l_join(lua_State *L) {
  int pcall_style = lua_toboolean(L, 2);
  const char *fname = pcall_style ? "handle:result" : "handle:join";
  nx_handle *h = nx_check_handle(L, 1, fname);
  nx_task *t = h->t;
  if (!t) return nx_error(L, "%s: task %d was already joined", fname, (int)h->id);
  if (t->state != NX_DONE) return nx_join_wait(L, h, fname);
  lua_settop(L, 1);
  int n;
  if (t->end == NX_END_OK) {
    if (pcall_style) lua_pushboolean(L, 1);
    n = nx_push_results(L, t) + pcall_style;
  } else if (t->end == NX_END_ERROR) {
    if (pcall_style) lua_pushboolean(L, 0);
    lua_pushvalue(t->co, -2);
    lua_pushvalue(t->co, -2);
    lua_xmove(t->co, L, 2);
    n = 2 + pcall_style;
  } else {
    if (pcall_style) lua_pushboolean(L, 0);
    lua_pushliteral(L, "aborted");
    n = 1 + pcall_style;
  }
  nx_consume(L, 1, h);
  if (!pcall_style && t->end != NX_END_OK) {
    if (h->end == NX_END_ERROR) lua_pop(L, 1);   /* the error value, not the traceback */
    return lua_error(L);
  }
  return n;
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
  n = nx_push_results(L, root);
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
  {"id", l_h_id}, {"is_finished", l_h_finished}, {NULL, NULL},
};

static const luaL_Reg nx_funcs[] = {
  {"runtime_new", l_rt_new}, {"spawn", l_spawn}, {"current", l_current},
  {"join", l_join}, {"abort", l_h_abort},
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

  /* Task handle metatables: live (with __gc) and consumed (without),
   * sharing one method table. Every handle function gets both as
   * upvalues for identity type checks. */
  lua_newtable(L);                                   /* methods */
  luaL_newmetatable(L, NX_TASK_MT);                  /* methods mt */
  lua_newtable(L);                                   /* methods mt done */
  for (int i = 0; i < 2; i++) {
    int mt = lua_gettop(L) - i;
    lua_pushvalue(L, -3);
    lua_setfield(L, mt, "__index");
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_h_tostring, 2);
    lua_setfield(L, mt, "__tostring");
    lua_pushvalue(L, -2);
    lua_pushvalue(L, -2);
    lua_pushcclosure(L, l_h_eq, 2);
    lua_setfield(L, mt, "__eq");
  }
  lua_pushcfunction(L, l_h_gc);
  lua_setfield(L, -3, "__gc");
  lua_pushvalue(L, -3);                              /* methods */
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, nx_task_methods, 2);
  lua_pop(L, 1);
  /* stack: methods, mt, mt_done */
  lua_newtable(L);
  lua_pushvalue(L, -3);
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, nx_funcs, 2);
  lua_replace(L, -4);                                /* module replaces methods */
  lua_setfield(L, -3, "task_done_mt");
  lua_setfield(L, -2, "task_mt");

  lua_pushlightuserdata(L, (void *)&nx_api_table);
  lua_setfield(L, -2, "api");
  lua_pushlightuserdata(L, (void *)&nx_api_table);   /* join's "must wait" */
  lua_setfield(L, -2, "WAIT");
  luaL_getmetatable(L, NX_RT_MT);
  lua_setfield(L, -2, "runtime_mt");
  lua_pushstring(L, NEXUS_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
  return 1;
}
