/* lmodule.c - luaopen_nexus_core: the Lua binding of the runtime.
 *
 * Setup and anything that moves Lua values (spawn, join results, block_on)
 * uses the classic Lua C API. Hot, value-free operations (clock, sleep
 * registration, timeout levels, taking a result join finds already in the
 * tasks table, which Lua then reads) are plain C functions handed to the FFI
 * as a table of function pointers (nx_api): a module opened by `require`
 * is loaded privately, so ffi.C could not find them by name.
 */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "nexus.h"
#include "net.h"
#include "rt.h"
#include "chan.h"
#include "cancel.h"
#include "shutdown.h"
#include "world.h"
#include "bchan.h"
#include "mpsc.h"
#include "select.h"
#include "sync.h"
#include "group.h"
#include "introspect.h"
#include "luvbind.h"
#include "http.h"
#include "process.h"
#include "ws.h"
#include "httpd.h"

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

/* A task handle: one per task (the weak slot -> handle table finds it
 * again for nexus.current()), with no finalizer. join/result consume it
 * (as ngx.thread.wait and fiber:join do): the outcome is handed over and
 * the task's slot can come back. It does not keep its runtime's memory
 * alive: it names the runtime by serial and the record by slot, and every
 * use looks both up (nx_rt_of) instead of holding pointers. 24 bytes, not
 * 32: with LuaJIT's 48-byte userdata header that is an 80-byte block
 * instead of 96, and a spawn burst pays for every byte in page faults and
 * GC work (16-20 ns less per spawn+join in bench/spawn_nexus.lua). */
typedef struct nx_handle {
  uint64_t id;
  uint64_t rt_serial; /* with id, names the task across runtimes */
  uint32_t slot;      /* its record in that runtime */
  uint8_t taken;      /* NX_H_JOINED or NX_H_CLOSED once the record is gone */
  uint8_t end;        /* outcome, once taken */
  uint16_t magic;     /* NX_HANDLE_MAGIC: see nx_test_handle */
} nx_handle;

#define NX_HANDLE_MAGIC 0x6e78u
enum { NX_H_JOINED = 1, NX_H_CLOSED = 2 };   /* taken: consumed; its runtime went */

/* The handle's outcome was handed over (join/result): the handle keeps
 * how it ended, the record is swept at the next sweep. */
static nx_task *nx_hand_over(nx_handle *h, nx_task *t) {
  h->end = t->end;
  h->taken = NX_H_JOINED;
  t->flags |= NX_F_CONSUMED;
  return t;
}

#define NX_UV_TASK_MT lua_upvalueindex(1)      /* the handle metatable */

typedef struct nx_rtbox { nx_rt *rt; } nx_rtbox;

/* ---- FFI entry points: act on the running task of the current runtime ---- */

static double api_event_time(void) { return nx_cur_rt ? nx_cur_rt->event_time : nx_now(); }
static int api_in_task(void) { return nx_cur_rt && nx_cur_rt->cur; }
static int api_sleep_until(double d) { return nx_cur_rt ? nx_wait_sleep(nx_cur_rt, d) : NX_E_NOTASK; }
static int api_dl_push(double d) { return nx_cur_rt ? nx_dl_push(nx_cur_rt, d) : NX_E_NOTASK; }
static int api_dl_state(int lvl) { return nx_cur_rt ? nx_dl_state(nx_cur_rt, lvl) : NX_E_NOTASK; }
static void api_dl_pop(int lvl) { if (nx_cur_rt) nx_dl_pop(nx_cur_rt, lvl); }
static void api_cancel_wait(void) {
  nx_rt *rt = nx_cur_rt;
  if (rt && rt->cur) nx_task_cancel_wait(rt, rt->cur);
}

/* Set while nexus.world may have the World borrowed (with_world): then
 * core.suspend asks Lua (util.refuse) before yielding. */
static NX_TLS int nx_borrow_hint;
static void api_set_borrowing(int on) { nx_borrow_hint = on; }

/* join's and result's fast path, called through the FFI with a value
 * the Lua side checked is a handle (its metatable): a task of the current
 * runtime that ended with 0 or 1 result, kept in its tasks-table slot
 * (nx_keep_result). Consumes the handle and returns slot + 1, the index of
 * the result in that table (core.cur.tasks: the current runtime's), or -1
 * when there is none; 0 when the general path (core.join) must decide. */
static int api_join_take(void *p) {
  nx_handle *h = p;
  nx_rt *rt = nx_cur_rt;
  if (h->taken || !rt || h->rt_serial != rt->serial) return 0;
  nx_task *t = nx_task_at(rt, h->slot);
  if (!(t->flags & NX_F_KEPT) || t->id != h->id) return 0;
  nx_hand_over(h, t);
  return t->nargs ? (int)t->slot + 1 : -1;
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
  void (*set_borrowing)(int);
  int (*join_take)(void *);
} nx_api;

static const nx_api nx_api_table = {
  nx_now, api_event_time, api_in_task, api_sleep_until,
  api_dl_push, api_dl_state, api_dl_pop, api_cancel_wait, api_set_borrowing,
  api_join_take,
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
  nx_rt *rt = b->rt;
  rt->ctl = lua_newthread(L);                    /* holds the tables below */
  lua_checkstack(rt->ctl, 8);
  rt->ctl_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);                               /* NX_CTL_TASKS: slot -> coroutine */
  lua_xmove(L, rt->ctl, 1);
  lua_newtable(L);                               /* NX_CTL_HANDLES: slot -> handle, weak */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_xmove(L, rt->ctl, 1);
  lua_newtable(L);                               /* NX_CTL_ARGS: slot -> argument */
  lua_xmove(L, rt->ctl, 1);
  lua_newtable(L);                               /* NX_CTL_NAMES: slot -> h:name() */
  lua_xmove(L, rt->ctl, 1);
  lua_newtable(L);                               /* NX_CTL_NAMEIDS: slot -> its task's id */
  lua_xmove(L, rt->ctl, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.runtimes");   /* serial -> runtime, weak */
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (int)(uint32_t)rt->serial);   /* by its slot, reused */
  lua_pop(L, 1);
  return 1;
}

/* The runtime goes: each handle still alive keeps how its task ended
 * (rt:close() ended every task), so tostring(h) still tells it. Such a
 * task is a zombie (its slot is kept while its handle lives) that join
 * did not consume. */
static void nx_stamp_handles(nx_rt *rt) {
  lua_State *ctl = rt->ctl;
  for (uint32_t i = 0; i < rt->nzomb; i++) {
    uint32_t s = rt->zomb[i];
    nx_task *t = nx_task_at(rt, s);
    if (t->state != NX_DONE || (t->flags & NX_F_CONSUMED)) continue;
    lua_rawgeti(ctl, NX_CTL_HANDLES, (int)s + 1);
    nx_handle *h = lua_touserdata(ctl, -1);
    if (h && !h->taken && h->id == t->id) {
      h->end = t->end;
      h->taken = NX_H_CLOSED;
    }
    lua_pop(ctl, 1);
  }
}

static int l_rt_gc(lua_State *L) {
  nx_rtbox *b = luaL_checkudata(L, 1, NX_RT_MT);
  if (b->rt) {
    nx_rt *rt = b->rt;
    b->rt = NULL;
    nx_rt_close(rt, L);
    nx_stamp_handles(rt);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->ctl_ref);
    rt->ctl_ref = LUA_NOREF;
    rt->ctl = NULL;
    nx_rt_unref(rt);
  }
  return 0;
}

static int l_rt_close(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:close");
  if (rt->driving) return nx_error(L, "rt:close: cannot close a runtime from inside its own tasks");
  nx_rt_close(rt, L);
  return 0;
}

/* rt:_config(tasks_per_cycle, event_interval, report_errors) */
static int l_rt_config(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:_config");
  rt->tasks_per_cycle = (uint32_t)luaL_checkinteger(L, 2);
  rt->event_interval = (uint32_t)luaL_checkinteger(L, 3);
  rt->report_errors = (uint8_t)lua_toboolean(L, 4);
  rt->coop = (uint32_t)luaL_optinteger(L, 5, 128);
  rt->slow_resume = luaL_optnumber(L, 6, 0);
  return 0;
}

#define NX_STAT(name, v) (lua_pushnumber(L, (lua_Number)(v)), lua_setfield(L, -2, name))
static int l_rt_stats(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:stats");
  lua_createtable(L, 0, 20);
  NX_STAT("tasks_alive", rt->alive);
  NX_STAT("spawned", rt->st.spawned);
  NX_STAT("deferred", rt->st.deferred);
  NX_STAT("resumes", rt->st.resumes);
  NX_STAT("coop_yields", rt->st.coop_yields);
  NX_STAT("slow_resumes", rt->st.slow_resumes);
  NX_STAT("cycles", rt->st.cycles);
  NX_STAT("timers", nx_heap_live(&rt->heap));
  NX_STAT("timers_fired", rt->st.timers_fired);
  NX_STAT("io_polls", rt->st.polls);
  NX_STAT("parks", rt->st.parks);
  NX_STAT("ready", rt->qn);
  NX_STAT("task_errors", rt->st.errors);
  NX_STAT("task_slots", rt->nslots);
  NX_STAT("sweeps", rt->st.sweeps);
  NX_STAT("pool_size", rt->pool_size);
  NX_STAT("pool_free", rt->npool_free);
  lua_pushboolean(L, rt->closed);
  lua_setfield(L, -2, "closed");
  return 1;
}

/* ---- tasks ---- */

/* Makes the userdata on top of L (h) the handle of t. Allocates nothing,
 * so a GC step (and a finalizer that raises in it) cannot come between
 * the task and its handle. */
static void nx_bind_handle(lua_State *L, nx_handle *h, nx_rt *rt, nx_task *t) {
  h->id = t->id;
  h->rt_serial = rt->serial;
  h->slot = t->slot;
  h->taken = 0;
  h->end = 0;
  h->magic = NX_HANDLE_MAGIC;
  lua_pushvalue(L, NX_UV_TASK_MT);
  lua_setmetatable(L, -2);
  if (t->flags & NX_F_POOLED) return;   /* its slot is reused: no canonical handle */
  lua_pushvalue(L, -1);
  nx_ctl_set(rt, L, NX_CTL_HANDLES, t->slot);
}

static void nx_push_handle(lua_State *L, nx_rt *rt, nx_task *t) {
  nx_bind_handle(L, lua_newuserdata(L, sizeof(nx_handle)), rt, t);
}

/* A full userdata of a handle's size carrying the handle's tag. Checking
 * the metatable (push it, compare, pop) costs four API calls on every
 * join; this is two. A userdata of another library would have to be 32
 * bytes long with these two bytes at this place to pass: an accident that
 * does not happen (code that means harm has the FFI anyway). */
static nx_handle *nx_test_handle(lua_State *L, int idx) {
  nx_handle *h = lua_touserdata(L, idx);
  if (!h || lua_objlen(L, idx) != sizeof *h || h->magic != NX_HANDLE_MAGIC) return NULL;
  return h;
}

static nx_handle *nx_check_handle(lua_State *L, int idx, const char *fname) {
  nx_handle *h = nx_test_handle(L, idx);
  if (!h) nx_error(L, "%s: expected a task handle, got %s", fname, luaL_typename(L, idx));
  return h;
}

/* The handle's task record, or NULL once it is gone: consumed by join,
 * reused by another pooled task (the id tells), or freed with its runtime
 * (nx_rt_of finds no runtime of that serial). Sets *rtp to its runtime. */
static nx_task *nx_handle_task(const nx_handle *h, nx_rt **rtp) {
  nx_rt *rt = h->taken ? NULL : nx_rt_of(h->rt_serial);
  if (!rt) return NULL;
  nx_task *t = nx_task_at(rt, h->slot);
  if (t->id != h->id || t->state == NX_FREE) return NULL;
  if (rtp) *rtp = rt;
  return t;
}

nx_task *nx_lua_handle_task(lua_State *L, int idx, nx_rt **rtp) {
  nx_handle *h = nx_test_handle(L, idx);
  return h ? nx_handle_task(h, rtp) : NULL;
}

static int nx_handle_done(const nx_handle *h) {
  nx_task *t = nx_handle_task(h, NULL);
  return !t || t->state == NX_DONE;
}

/* How the task ended, or -1 when nothing tells any more: a pooled task's
 * record was reused (a pooled record keeps its last end until then). */
static int nx_handle_end(const nx_handle *h) {
  nx_task *t = nx_handle_task(h, NULL);
  if (t) return t->end;
  if (h->taken) return h->end;
  nx_rt *rt = nx_rt_of(h->rt_serial);
  if (rt) {
    t = nx_task_at(rt, h->slot);
    if ((t->flags & NX_F_POOLED) && t->id == h->id) return t->end;
  }
  return -1;
}

/* The outcome was handed over: the coroutine holding it can go (unless
 * block_on still reads it), and the slot at the next sweep. */
static void nx_consume(lua_State *L, nx_rt *rt, nx_handle *h, nx_task *t) {
  nx_hand_over(h, t);
  if (!nx_task_holds(t) && !(t->flags & NX_F_FATAL)) nx_task_drop_co(rt, L, t);
}

/* Creates a ready task running the function at fidx with the values above
 * it as arguments; pops them. */
static nx_task *nx_spawn_top(lua_State *L, nx_rt *rt, int fidx, const char *fname) {
  int nargs = lua_gettop(L) - fidx;
  if (nargs > 65534) nx_error(L, "%s: too many arguments (%d)", fname, nargs);
  /* The coroutine first, on L, and the record after: the GC step this
   * allocation may run calls finalizers on L, and one may call nexus
   * (spawn there takes a record of its own; on ctl it would find the
   * tables away from their fixed indices). */
  lua_State *co = lua_newthread(L);
  nx_task *t = nx_task_new(rt, L);
  if (!t) nx_error(L, "%s: out of memory", fname);
  nx_ctl_set(rt, L, NX_CTL_TASKS, t->slot);
  t->co = co;
  t->nargs = (uint16_t)nargs;
  lua_xmove(L, co, nargs + 1);
  nx_task_ready(rt, t);
  return t;
}

/* Pushes util's Lua function registered as core.set_hook(name, fn); raises
 * a clear error if nexus.util never registered it (nexus.core used alone). */
static void nx_push_hook(lua_State *L, const char *name, const char *fname) {
  lua_getfield(L, LUA_REGISTRYINDEX, name);
  if (lua_type(L, -1) != LUA_TFUNCTION)
    nx_error(L, "%s: nexus.core is missing its Lua side (require \"nexus\")", fname);
}

/* No runtime is running: util.no_task(fname, -1) adopts the script's main
 * chunk as a root task (the nexus command) or raises "not inside a nexus
 * task" (at the caller of the C function, as if a Lua wrapper had). */
static nx_rt *nx_no_task(lua_State *L, const char *fname) {
  int top = lua_gettop(L);
  nx_push_hook(L, "nexus.no_task", fname);
  lua_pushstring(L, fname);
  lua_pushinteger(L, NX_E_NOTASK);
  lua_call(L, 2, 0);
  lua_settop(L, top);
  if (!nx_cur_rt) nx_error(L, "%s: not inside a nexus task", fname);
  return nx_cur_rt;
}

/* nexus.spawn(fn, ...) -> handle. It is this C function itself: a Lua
 * wrapper would add a vararg frame to every spawn. */
/* Spawns the function at base with the values above it as arguments;
 * leaves the new handle at base (the function and arguments are gone).
 * Returns the task. */
static nx_task *nx_spawn_at(lua_State *L, nx_rt *rt, int base, const char *fname) {
  if (lua_type(L, base) != LUA_TFUNCTION)
    nx_error(L, "%s: expected a function, got %s", fname, luaL_typename(L, base));
  if (!rt) rt = nx_no_task(L, fname);
  int nargs = lua_gettop(L) - base;
  /* Every allocation before the task exists: a GC step they run may call
   * a finalizer that raises, and a spawn that raises must have made no
   * task (else it would run while its spawner saw an error). */
  nx_handle *h = lua_newuserdata(L, sizeof *h);
  lua_insert(L, base);
  nx_task *t;
  if (nargs <= 1 && rt->qn >= NX_DEFER_AT) {   /* its coroutine is made when it first runs */
    if (!(t = nx_task_new(rt, L))) nx_error(L, "%s: out of memory", fname);
    nx_task_defer(rt, L, t, nargs);
  } else {
    t = nx_spawn_top(L, rt, base + 1, fname);
  }
  nx_bind_handle(L, h, rt, t);
  return t;
}

static int l_spawn(lua_State *L) {
  nx_spawn_at(L, nx_cur_rt, 1, "nexus.spawn");
  return 1;
}

/* core.group_spawn(g, fn, ...): spawns a member in one call (spawn +
 * group_add: a group's spawn costs about what a spawn does). */
static int l_group_spawn(lua_State *L) {
  nx_group *g = nx_group_check_open(L, 1, "group:spawn");
  lua_getfenv(L, 1);               /* the members table takes the group's place */
  lua_replace(L, 1);
  nx_task *t = nx_spawn_at(L, nx_cur_rt, 2, "group:spawn");
  nx_group_adopt(L, g, t, 1, 2);
  lua_settop(L, 2);
  return 1;
}

static int l_current(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (!rt || !rt->cur) return 0;
  lua_rawgeti(rt->ctl, NX_CTL_HANDLES, (int)rt->cur->slot + 1);
  lua_xmove(rt->ctl, L, 1);
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  nx_push_handle(L, rt, rt->cur);
  return 1;
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
  nx_rt *rt;
  nx_task *t = nx_handle_task(h, &rt);
  if (!t) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int self = t == rt->cur;
  lua_pushboolean(L, nx_task_abort(rt, L, t));
  lua_pushboolean(L, self);
  return 2;
}

static const char *const nx_state_names[] = { "free", "ready", "running", "waiting", "done" };

static int l_h_tostring(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:__tostring");
  const char *st;
  if (nx_handle_done(h)) {
    int e = nx_handle_end(h);
    st = e == NX_END_OK ? "finished" : e == NX_END_ERROR ? "failed" : e == NX_END_ABORTED ? "aborted" : "ended";
  } else {
    st = nx_state_names[nx_handle_task(h, NULL)->state];
  }
  lua_pushfstring(L, "nexus.task(%s, %s)", NX_ID(h->id), st);
  return 1;
}

static int l_h_eq(lua_State *L) {
  nx_handle *a = nx_test_handle(L, 1), *b = nx_test_handle(L, 2);
  lua_pushboolean(L, a && b && a->id == b->id && a->rt_serial == b->rt_serial);
  return 1;
}

/* The current task becomes the waiter of h's unfinished task; returns
 * the wait sentinel (core.WAIT): the Lua wrapper yields, then calls again. */
static int nx_join_wait(lua_State *L, nx_rt *rt, nx_task *t, const char *fname) {
  if (nx_cur_rt != rt || !rt->cur) {
    if (nx_cur_rt && nx_cur_rt->cur)
      return nx_error(L, "%s: the task belongs to another runtime", fname);
    return nx_error(L, "%s: not inside a nexus task", fname);
  }
  if (t == rt->cur) return nx_error(L, "%s: a task cannot join itself", fname);
  if (nx_joiner(t) && nx_joiner(t)->kind == NX_KIND_GROUP)
    return nx_error(L, "%s: task %s belongs to a group: its group's next() or wait() gives its outcome",
                    fname, NX_ID(t->id));
  if (nx_joiner(t)) return nx_error(L, "%s: task %s is already being joined by another task", fname, NX_ID(t->id));
  if (nx_wait_join(rt, t) != NX_OK) return nx_error(L, "%s: cannot wait here", fname);
  lua_pushlightuserdata(L, (void *)&nx_api_table);
  return 1;
}

/* Pushes a finished task's results (no status): moved when nx_consume
 * drops the coroutine right after, copied when block_on still reads it. */
static int nx_push_results(lua_State *L, nx_rt *rt, nx_task *t) {
  if (t->flags & NX_F_KEPT) {                    /* nx_keep_result */
    if (!t->nargs) return 0;
    lua_rawgeti(rt->ctl, NX_CTL_TASKS, (int)t->slot + 1);
    lua_xmove(rt->ctl, L, 1);
    return 1;
  }
  lua_State *co = t->co;
  int n = lua_gettop(co);
  luaL_checkstack(L, n + 1, "too many results");
  if (nx_task_holds(t) || (t->flags & NX_F_FATAL)) {
    lua_checkstack(co, n);
    for (int i = 1; i <= n; i++) lua_pushvalue(co, i);
  }
  lua_xmove(co, L, n);
  return n;
}

/* core.join_end(h, pcall_style): consumes the handle of a finished task.
 * pcall_style: true, ... | false, err, traceback; else the values, or
 * raises the task's error value. */
static int nx_join_wait(lua_State *L, nx_rt *rt, nx_task *t, const char *fname);

/* The join of the handle at hidx; its results are pushed on top. */
static int nx_join_at(lua_State *L, int hidx, int pcall_style) {
  const char *fname = pcall_style ? "handle:result" : "handle:join";
  nx_handle *h = nx_check_handle(L, hidx, fname);
  if (h->taken == NX_H_JOINED) return nx_error(L, "%s: task %s was already joined", fname, NX_ID(h->id));
  nx_rt *rt = nx_rt_of(h->rt_serial);
  if (!rt) return nx_error(L, "%s: the runtime of task %s is gone", fname, NX_ID(h->id));
  nx_task *t = nx_task_at(rt, h->slot);
  if (t->flags & NX_F_POOLED)
    return nx_error(L, "%s: task %s is a pooled task (spawn_pooled): its outcome is not kept",
                    fname, NX_ID(h->id));
  /* The sweep keeps the slot of an unjoined task while its handle lives,
   * so this cannot fail; it guards against joining a stranger if it did. */
  if (t->id != h->id) return nx_error(L, "%s: task %s is gone", fname, NX_ID(h->id));
  if (t->state != NX_DONE) return nx_join_wait(L, rt, t, fname);
  int n;
  if (t->end == NX_END_OK) {
    if (pcall_style) lua_pushboolean(L, 1);
    n = nx_push_results(L, rt, t) + pcall_style;
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
  nx_consume(L, rt, h, t);
  if (!pcall_style && t->end != NX_END_OK) {
    /* A string error is raised as its traceback string (the message, then
     * the failed task's stack), as the runtime reports an error it stops
     * on: once the joiner fails too, the failed task's stack would
     * otherwise be lost. Any other value is raised as it is. */
    if (h->end == NX_END_ERROR && lua_type(L, -2) != LUA_TSTRING) lua_pop(L, 1);
    return lua_error(L);
  }
  return n;
}

static int l_join(lua_State *L) { return nx_join_at(L, 1, lua_toboolean(L, 2)); }

/* core.group_next_out(g): g:next() in one call: h, true, ... |
 * h, false, err, traceback | nil (empty) | false (the running task now
 * waits) | -1 (another task waits). */
static int l_group_next_out(lua_State *L) {
  nx_group_next_push(L, 1);
  if (lua_type(L, -1) != LUA_TUSERDATA) return 1;
  return 1 + nx_join_at(L, lua_gettop(L), 1);
}

/* core.may_suspend(): 0 when the running coroutine may yield to the
 * executor; 1 when it cannot yield at all (called through a C function);
 * 2 when it is not the task's coroutine (the user's own, inside a task).
 * One call for both checks; core.suspend shares it. */
static int nx_why_not_suspend(lua_State *L) {
  return !lua_isyieldable(L) ? 1 : !(nx_cur_rt && nx_may_suspend(nx_cur_rt, L)) ? 2 : 0;
}

static int l_may_suspend(lua_State *L) {
  lua_pushinteger(L, nx_why_not_suspend(L));
  return 1;
}

/* The refusal path of core.suspend: util.refuse(fname, why, level) builds
 * the message (nexus.world adds its own reason), releases the wait and
 * raises. It returns only when a borrow hint was stale: then yield. */
static int nx_refuse(lua_State *L) {
  int why = nx_why_not_suspend(L);
  int level = (int)luaL_optinteger(L, 2, 4);
  nx_push_hook(L, "nexus.refuse", luaL_optstring(L, 1, "?"));
  lua_pushvalue(L, 1);
  lua_pushinteger(L, why);
  lua_pushinteger(L, level);
  lua_call(L, 3, 0);
  if (why != 0) return nx_error(L, "%s: cannot suspend here", luaL_optstring(L, 1, "?"));
  lua_settop(L, 0);
  return lua_yield(L, 0);
}

/* core.suspend(fname [, level]): yields to the executor, with nothing,
 * once the caller registered a wait; raises "<fname>: cannot suspend ..."
 * when this coroutine cannot (level as error()'s: 1 is util.refuse, 2 this
 * function, 3 its Lua caller; 4 by default).
 *
 * The check and the yield are one C call: from a compiled trace each call
 * out costs a stitch, and this one is on every wait's path. Callers whose
 * wait is their last act tail-call it (`return suspend(fname, 3)`): a C
 * function needs LUA_MINSTACK free slots, and a new coroutine has only
 * about 40, so every frame less on this path is room the task's own code
 * keeps before its first wait has to grow (reallocate) the stack. */
static int l_suspend(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  /* The common case first: the task's own coroutine (not a timed
   * function's, nor one of the user's), able to yield. */
  if (rt && rt->cur && rt->cur->co == L && !nx_borrow_hint && lua_isyieldable(L))
    return lua_yield(L, 0);
  if (!nx_borrow_hint && nx_why_not_suspend(L) == 0) return lua_yield(L, 0);
  if (rt && rt->coop_pending) {   /* only the budget asked: go on instead */
    rt->coop_pending = 0;
    return 0;
  }
  return nx_refuse(L);
}

/* core.set_hook(name, fn): util's Lua functions the C side calls on its
 * rare paths: "refuse" (core.suspend cannot yield), "no_task" (no
 * runtime is running). Kept in the registry as "nexus.<name>". */
static int l_set_hook(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  lua_settop(L, 2);
  lua_pushfstring(L, "nexus.%s", name);
  lua_insert(L, 2);
  lua_settable(L, LUA_REGISTRYINDEX);
  return 0;
}

/* core.dl_bind(level, co): co runs the function timed by that level. */
static int l_dl_bind(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  int level = (int)luaL_checkinteger(L, 1);
  lua_State *co = lua_tothread(L, 2);
  if (!rt || !rt->cur || level < 1 || (uint32_t)level > nx_task_ndl(rt->cur) || !co)
    return nx_error(L, "nexus.timeout: no timeout level %d in this task", level);
  nx_deadline *d = nx_task_dl(rt->cur);
  for (uint32_t n = nx_task_ndl(rt->cur); n > (uint32_t)level; n--) d = d->prev;
  d->co = co;
  return 0;
}

/* ---- driving ---- */

/* Returns true, root's results | false, err. It does not raise: the Lua
 * wrapper does (see runtime.lua), so no error unwinds through the C frame
 * that drove lua_resume. For a string error, err is the traceback string
 * (it begins with the message); any other value is passed as it is. */
static int nx_push_error(lua_State *L, nx_task *t) {
  lua_State *co = t->co;
  lua_pushboolean(L, 0);
  lua_pushvalue(co, lua_type(co, -2) == LUA_TSTRING ? -1 : -2);
  lua_xmove(co, L, 1);
  return 2;
}

static const char *nx_signame(int signo) {
  return signo == 2 ? "SIGINT" : signo == 15 ? "SIGTERM" : "a signal";
}

static _Thread_local int nx_last_interrupt;   /* for the nexus command's exit status */

static int nx_finish_drive(lua_State *L, nx_rt *rt, nx_task *root, int stop, const char *fname) {
  int n;
  if (stop == NX_STOP_INTERRUPT) {
    int signo = rt->interrupted;
    rt->interrupted = 0;
    nx_last_interrupt = signo;
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "%s: interrupted by %s (signal %d): no task was waiting on the shutdown signal",
                    fname, nx_signame(signo), signo);
    n = 2;
  } else if (stop == NX_STOP_RAISED) {     /* the raised value is on top */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    n = 2;
  } else if (stop == NX_STOP_FATAL) {
    nx_task *t = rt->fatal;
    rt->fatal = NULL;
    n = nx_push_error(L, t);      /* onto L before the task's record may go */
    t->flags &= ~NX_F_FATAL;
    nx_task_ended(rt, L, t);
  } else if (!root) {             /* quiesce: idle, out of time, or stuck */
    if (stop == NX_STOP_DONE) {
      lua_pushboolean(L, 1);
      return 1;
    }
    lua_pushnil(L);
    lua_pushstring(L, stop == NX_STOP_TIMEOUT ? "timeout" : "deadlock");
    return 2;
  } else if (stop == NX_STOP_DEADLOCK) {
    lua_pushboolean(L, 0);
    /* Waiting on the shutdown signal with no handlers is the likely cause. */
    lua_pushfstring(L, "%s: deadlock: %d task(s) wait on something nothing can complete%s:",
                    fname, (int)rt->alive,
                    rt->sd_waiter && !rt->sd ? " (one waits on the shutdown signal, but the runtime has "
                    "no signal handlers: build it with :signal_handlers(true), or trigger a shutdown "
                    "handle)" : "");
    nx_push_waiting_list(L, rt);
    lua_concat(L, 2);
    n = 2;
  } else if (root->end == NX_END_ERROR) {
    n = nx_push_error(L, root);
  } else if (root->end == NX_END_ABORTED) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "%s: the root task was aborted", fname);
    n = 2;
  } else {
    lua_pushboolean(L, 1);
    n = nx_push_results(L, rt, root) + 1;
  }
  if (root) {
    /* A drive that stopped before its root ended (deadlock, a task error,
     * a signal) leaves no root behind: parked, it would take a value or
     * a single-waiter slot in a later block_on. */
    if (root->state != NX_DONE && nx_task_abort(rt, L, root)) rt->st.aborted++;
    nx_task_unhold(rt, L, root);
  }
  return n;
}

/* Makes rt the current runtime, and its tasks table core.cur.tasks: the
 * table join's fast path reads a kept result from (api_join_take). */
static void nx_set_cur(lua_State *L, nx_rt *rt) {
  nx_cur_rt = rt;
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.cur");
  if (rt) {
    lua_pushvalue(rt->ctl, NX_CTL_TASKS);
    lua_xmove(rt->ctl, L, 1);
  } else {
    lua_pushnil(L);
  }
  lua_setfield(L, -2, "tasks");
  lua_pop(L, 1);
}

typedef struct nx_drive_args {
  nx_rt *rt;
  nx_task *root;
  int all, stop;
  double until;
} nx_drive_args;

static int nx_drive_p(lua_State *L) {
  nx_drive_args *a = lua_touserdata(L, 1);
  lua_pop(L, 1);
  a->stop = nx_rt_drive(a->rt, L, a->root, a->all, a->until);
  return 0;
}

/* The executor runs in a protected call (one per drive, not per task):
 * LuaJIT raises a __gc finalizer's error from the allocation whose GC
 * step ran it, and the executor allocates (a coroutine for a deferred
 * task, a traceback). Such an error stops the drive and is raised by the
 * caller, with the runtime left consistent and not marked running. */
static int nx_drive(lua_State *L, nx_rt *rt, nx_task *root, int all, double until, const char *fname) {
  nx_rt *prev = nx_cur_rt;
  nx_drive_args a = { rt, root, all, NX_STOP_DONE, until };
  nx_set_cur(L, rt);
  rt->driving = 1;
  if (lua_cpcall(L, nx_drive_p, &a) != 0) {
    nx_rt_recover(rt, L);
    a.stop = NX_STOP_RAISED;
  }
  rt->driving = 0;
  nx_set_cur(L, prev);
  return nx_finish_drive(L, rt, root, a.stop, fname);
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
  nx_task_x *x = nx_task_ext(root);
  if (!x) {
    nx_task_abort(rt, L, root);
    return nx_error(L, "%s: out of memory", fname);
  }
  x->holds++;
  lua_settop(L, 4);
  return nx_drive(L, rt, root, all, INFINITY, fname);
}

/* rt:_adopt([co]): the running coroutine (a script's main chunk under the
 * nexus command) becomes this runtime's root task, already running; or
 * co, a coroutine that yielded (the main chunk's bare coroutine.yield):
 * then the caller drives it at once as a task that yielded. */
static int l_rt_adopt(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:_adopt");
  lua_State *co = lua_tothread(L, 2);
  if (nx_cur_rt) return nx_error(L, "rt:_adopt: a runtime is already running");
  if (co) {
    if (lua_status(co) != LUA_YIELD) return nx_error(L, "rt:_adopt: the coroutine has not yielded");
    lua_settop(L, 2);
  } else if (lua_pushthread(L)) {
    return nx_error(L, "rt:_adopt: the main thread cannot be a task");
  }
  nx_task *t = nx_task_new(rt, L);
  nx_task_x *x = t ? nx_task_ext(t) : NULL;
  if (!x) {
    if (t) nx_task_abort(rt, L, t);
    return nx_error(L, "rt:_adopt: out of memory");
  }
  nx_ctl_set(rt, L, NX_CTL_TASKS, t->slot);
  t->co = co ? co : L;
  t->flags |= NX_F_ROOT;
  x->holds++;
  if (!co) {
    rt->cur = t;
    nx_set_cur(L, rt);
  }
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
  nx_set_cur(L, NULL);
  if (finished) {
    lua_settop(root->co, 0);
    nx_task_finish(rt, L, root, NX_FIN_OK);
  } else {
    nx_task_after_yield(rt, L, root);
  }
  lua_settop(L, 0);
  return nx_drive(L, rt, root, 1, INFINITY, "main chunk");
}

/* ---- the task pool ---- */

#define NX_CLAIM_MT "nexus.claim"
typedef struct nx_claim {
  nx_rt *rt;          /* NULL once used or released */
  nx_task *t;
} nx_claim;

static int nx_pool_error(lua_State *L, int rc, const char *fname) {
  if (rc == NX_POOL_NONE)
    return nx_error(L, "%s: this runtime has no task pool (configure one with builder:task_pool(n))", fname);
  if (rc == NX_POOL_FULL)
    return nx_error(L, "%s: the bounded task pool is full (%d tasks)", fname, (int)nx_cur_rt->pool_size);
  return nx_error(L, "%s: out of memory", fname);
}

/* rt:_pool(n, bounded) */
static int l_rt_pool(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "builder:task_pool");
  if (nx_pool_config(rt, L, (uint32_t)luaL_checkinteger(L, 2), lua_toboolean(L, 3)) != 0)
    return nx_error(L, "builder:task_pool: out of memory");
  return 0;
}

/* core.spawn_pooled(fn, ...) -> true, or nothing when no runtime runs. */
static int l_spawn_pooled(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return nx_error(L, "nexus.spawn_pooled: expected a function, got %s", luaL_typename(L, 1));
  if (!rt) return 0;
  int nargs = lua_gettop(L) - 1;
  if (nargs > 65534) return nx_error(L, "nexus.spawn_pooled: too many arguments (%d)", nargs);
  nx_task *t;
  int rc = nx_pool_take(rt, L, &t);
  if (rc != NX_OK) return nx_pool_error(L, rc, "nexus.spawn_pooled");
  nx_pool_start(rt, L, t, nargs);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.try_claim() -> claim | false (bounded pool full) | nothing (no runtime) */
static int l_try_claim(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  if (!rt) return 0;
  nx_task *t;
  int rc = nx_pool_take(rt, L, &t);
  if (rc == NX_POOL_FULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc != NX_OK) return nx_pool_error(L, rc, "nexus.try_claim");
  nx_claim *c = lua_newuserdata(L, sizeof *c);
  c->rt = rt;
  c->t = t;
  nx_rt_ref(rt);
  luaL_getmetatable(L, NX_CLAIM_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static void nx_claim_drop(nx_claim *c) {
  nx_rt *rt = c->rt;
  c->rt = NULL;
  if (!rt->closed) nx_pool_give(rt, c->t);
  nx_rt_unref(rt);
}

/* claim:spawn(fn, ...) */
static int l_claim_spawn(lua_State *L) {
  nx_claim *c = luaL_checkudata(L, 1, NX_CLAIM_MT);
  if (!c->rt) return nx_error(L, "claim:spawn: the claim was already used or released");
  if (lua_type(L, 2) != LUA_TFUNCTION)
    return nx_error(L, "claim:spawn: expected a function, got %s", luaL_typename(L, 2));
  nx_rt *rt = c->rt;
  if (rt->closed) return nx_error(L, "claim:spawn: the runtime is closed");
  int nargs = lua_gettop(L) - 2;
  if (nargs > 65534) return nx_error(L, "claim:spawn: too many arguments (%d)", nargs);
  c->rt = NULL;
  nx_pool_start(rt, L, c->t, nargs);
  nx_rt_unref(rt);
  return 0;
}

static int l_claim_release(lua_State *L) {
  nx_claim *c = luaL_checkudata(L, 1, NX_CLAIM_MT);
  if (c->rt) nx_claim_drop(c);
  return 0;
}

static int l_claim_tostring(lua_State *L) {
  nx_claim *c = luaL_checkudata(L, 1, NX_CLAIM_MT);
  lua_pushstring(L, c->rt ? "nexus.claim(held)" : "nexus.claim(used)");
  return 1;
}

/* ---- shutdown ---- */

/* rt:_quiesce(secs) for rt:shutdown_quiesce: drives the tasks still alive
 * until none is (true), or secs pass (nil, "timeout"), or all that are left
 * wait on what nothing can complete (nil, "deadlock"); false, err when a
 * task error or a signal stops the runtime (the Lua wrapper raises it). */
static int l_rt_quiesce(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:shutdown_quiesce");
  if (lua_type(L, 2) != LUA_TNUMBER)
    return nx_error(L, "rt:shutdown_quiesce: secs must be a number, got %s", luaL_typename(L, 2));
  double secs = lua_tonumber(L, 2);
  nx_check_not_in_task(L, "rt:shutdown_quiesce");
  if (rt->driving) return nx_error(L, "rt:shutdown_quiesce: the runtime is already running");
  if (secs != secs || secs < 0)
    return nx_error(L, "rt:shutdown_quiesce: secs must be a non-negative number");
  lua_settop(L, 0);
  return nx_drive(L, rt, NULL, 1, nx_now() + secs, "rt:shutdown_quiesce");
}

/* rt:_signals(): installs the SIGINT/SIGTERM handlers. */
static int l_rt_signals(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "builder:signal_handlers");
  int rc = nx_sd_install(rt);
  if (rc != 0) return nx_error(L, "builder:signal_handlers: %s", uv_strerror(rc));
  return 0;
}

static int l_rt_trigger(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "shutdown_handle:trigger");
  if (!rt->closed) nx_sd_trigger(rt, 0);
  else rt->shut = 1;
  return 0;
}

/* rt:_sd_state() -> shut, signo */
static int l_rt_sd_state(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:shutdown");
  lua_pushboolean(L, rt->shut);
  lua_pushinteger(L, rt->signo);
  return 2;
}

/* rt:_sd_wait(fname) -> 0 (shut down) | 1 (yield, then call again); raises. */
static int l_rt_sd_wait(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "shutdown_signal:wait");
  const char *fname = luaL_checkstring(L, 2);
  if (rt->shut) {
    lua_pushinteger(L, 0);
    return 1;
  }
  if (rt != nx_cur_rt) {
    if (nx_cur_rt && nx_cur_rt->cur) return nx_error(L, "%s: the signal belongs to another runtime", fname);
    lua_pushinteger(L, NX_E_NOTASK);
    return 1;
  }
  int rc = nx_sd_wait(rt);
  if (rc == NX_SD_BUSY)
    return nx_error(L, "%s: another task is already waiting on the shutdown signal "
                    "(it has a single waiter: fan out to several tasks with a cancel token)", fname);
  lua_pushinteger(L, rc);
  return 1;
}

static int l_rt_sd_stats(lua_State *L) {
  nx_rt *rt = nx_check_rt(L, 1, "rt:shutdown_stats");
  int owned = 0;
  for (nx_owned *o = rt->owned.next; o && o != &rt->owned; o = o->next) owned++;
  lua_createtable(L, 0, 6);
  lua_pushboolean(L, rt->shut);
  lua_setfield(L, -2, "shutdown");
  if (rt->signo) {
    lua_pushinteger(L, rt->signo);
    lua_setfield(L, -2, "signal");
  }
  NX_STAT("aborted_tasks", rt->st.aborted);
  NX_STAT("tasks_alive", rt->alive);
  NX_STAT("open_handles", owned - (rt->sd ? 1 : 0));
  lua_pushboolean(L, rt->sd != NULL);
  lua_setfield(L, -2, "signal_handlers");
  return 1;
}

/* core.current_runtime(): the runtime object being driven, or nothing. */
static int l_current_runtime(lua_State *L) {
  if (!nx_cur_rt) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.runtimes");
  lua_rawgeti(L, -1, (int)(uint32_t)nx_cur_rt->serial);
  return 1;
}

/* core._runtime_slots() -> length, live: how long the serial -> runtime
 * table is (the most runtimes alive at once in this thread), and how many
 * runtime structs it holds now (not yet freed), for the specs. */
static int l_runtime_slots(lua_State *L) {
  uint32_t live;
  lua_pushinteger(L, (lua_Integer)nx_rt_slots(&live));
  lua_pushinteger(L, (lua_Integer)live);
  return 2;
}

/* core.last_interrupt(): the signal that last interrupted a runtime, or 0. */
static int l_last_interrupt(lua_State *L) {
  lua_pushinteger(L, nx_last_interrupt);
  return 1;
}

/* ---- module ---- */

static int l_rt_sigquit(lua_State *L);

/* rt:_next_id(n): the id the next task gets (specs: ids past 2^31). */
static int l_rt_next_id(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:_next_id");
  rt->next_id = (uint64_t)luaL_checknumber(L, 2);
  return 0;
}

static const luaL_Reg nx_rt_methods[] = {
  {"_block_on", l_rt_block_on}, {"_adopt", l_rt_adopt}, {"_adopted_drive", l_rt_adopted_drive},
  {"_config", l_rt_config}, {"stats", l_rt_stats}, {"close", l_rt_close},
  {"_quiesce", l_rt_quiesce}, {"shutdown_stats", l_rt_sd_stats}, {"_signals", l_rt_signals},
  {"_trigger", l_rt_trigger}, {"_sd_state", l_rt_sd_state}, {"_sd_wait", l_rt_sd_wait},
  {"_pool", l_rt_pool}, {"_sigquit", l_rt_sigquit}, {"_next_id", l_rt_next_id},
  {NULL, NULL},
};

/* h:name(s) names the task (returns h); h:name() reads it (nil if none,
 * or once the task's record is gone). */
static int l_h_name(lua_State *L) {
  nx_handle *h = nx_check_handle(L, 1, "handle:name");
  nx_rt *rt;
  nx_task *t = nx_handle_task(h, &rt);
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.names");   /* handle -> name, weak keys */
  if (lua_gettop(L) >= 3) {
    if (lua_type(L, 2) != LUA_TSTRING)
      return nx_error(L, "handle:name: expected a string, got %s", luaL_typename(L, 2));
    if (t) nx_task_set_name(L, rt, t, 2);
    lua_pushvalue(L, 1);
    lua_pushvalue(L, 2);
    lua_rawset(L, -3);            /* the handle keeps it once the task is gone */
    lua_settop(L, 1);
    return 1;
  }
  if (t) {
    nx_task_push_name(L, rt, t);
    if (!lua_isnil(L, -1)) return 1;
    lua_pop(L, 1);
  }
  lua_pushvalue(L, 1);
  lua_rawget(L, -2);
  return 1;
}

static int l_rt_sigquit(lua_State *L) {
  nx_rt *rt = nx_check_open_rt(L, 1, "rt:_sigquit");
  lua_pushboolean(L, nx_sigquit_install(rt) == 0);
  return 1;
}

static const luaL_Reg nx_task_methods[] = {
  {"id", l_h_id}, {"is_finished", l_h_finished}, {"name", l_h_name}, {NULL, NULL},
};

static const luaL_Reg nx_funcs[] = {
  {"runtime_new", l_rt_new}, {"spawn", l_spawn}, {"current", l_current},
  {"join", l_join}, {"abort", l_h_abort},
  {"may_suspend", l_may_suspend}, {"suspend", l_suspend}, {"set_hook", l_set_hook},
  {"dl_bind", l_dl_bind},
  {"current_runtime", l_current_runtime}, {"last_interrupt", l_last_interrupt},
  {"_runtime_slots", l_runtime_slots},
  {"spawn_pooled", l_spawn_pooled}, {"try_claim", l_try_claim}, {"group_spawn", l_group_spawn},
  {"group_next_out", l_group_next_out},
  {NULL, NULL},
};

/* Components add their functions to the module table (on top of the
 * stack) through one opener each, declared in their own header. */
typedef void (*nx_opener)(lua_State *L);
static const nx_opener nx_openers[] = {
  nx_chan_open, nx_sel_open, nx_sync_open, nx_group_open, nx_introspect_open, nx_luv_open, nx_http_open, nx_process_open,
  nx_cancel_open,
  nx_world_open,
  nx_bchan_open,
  nx_mpsc_open,
  nx_tcp_open, nx_udp_open, nx_dns_open, nx_thread_open,
  nx_ws_open, nx_httpd_open,
  NULL,
};

int luaopen_nexus_core(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.cur");   /* core.cur: see nx_set_cur */
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "nexus.cur");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "nexus.runtimes");
  lua_newtable(L);                                   /* nexus.names: handle -> name */
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "nexus.names");

  luaL_newmetatable(L, NX_RT_MT);
  lua_pushcfunction(L, l_rt_gc);
  lua_setfield(L, -2, "__gc");
  lua_newtable(L);
  luaL_register(L, NULL, nx_rt_methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  luaL_newmetatable(L, NX_CLAIM_MT);
  lua_pushcfunction(L, l_claim_release);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_claim_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  lua_pushcfunction(L, l_claim_spawn);
  lua_setfield(L, -2, "spawn");
  lua_pushcfunction(L, l_claim_release);
  lua_setfield(L, -2, "release");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);


  /* The task handle metatable (no __gc: see nx_handle). Every function
   * that makes or checks handles gets it as upvalue 1. */
  lua_newtable(L);                                   /* methods */
  luaL_newmetatable(L, NX_TASK_MT);
  lua_pushvalue(L, -2);
  lua_setfield(L, -2, "__index");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_h_tostring, 1);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, l_h_eq, 1);
  lua_setfield(L, -2, "__eq");
  lua_pushvalue(L, -2);                              /* methods */
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, nx_task_methods, 1);
  lua_pop(L, 1);
  /* stack: methods, mt */
  luaL_getmetatable(L, NX_RT_MT);
  lua_getfield(L, -1, "__index");
  lua_pushvalue(L, -3);
  luaL_setfuncs(L, nx_rt_methods, 1);
  lua_pop(L, 2);
  lua_newtable(L);
  lua_pushvalue(L, -2);
  luaL_setfuncs(L, nx_funcs, 1);
  lua_replace(L, -3);                                /* module replaces methods */
  lua_setfield(L, -2, "task_mt");

  lua_pushlightuserdata(L, (void *)&nx_api_table);
  lua_setfield(L, -2, "api");
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.cur");
  lua_setfield(L, -2, "cur");
  lua_pushlightuserdata(L, (void *)&nx_api_table);   /* join's "must wait" */
  lua_setfield(L, -2, "WAIT");
  luaL_getmetatable(L, NX_RT_MT);
  lua_setfield(L, -2, "runtime_mt");
  lua_pushstring(L, NEXUS_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, uv_version_string());
  lua_setfield(L, -2, "uv_version");
  for (const nx_opener *o = nx_openers; *o; o++) (*o)(L);
  return 1;
}
