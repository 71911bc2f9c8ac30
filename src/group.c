/* group.c - task groups: membership, completion order, the one waiter
 * of next(), and aborting the members of a dropped group (see group.h).
 * The Lua side (lua/nexus/group.lua) keeps the members' handles by id. */
#include "group.h"
#include "cancel.h"

#include <stddef.h>

#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>

#define NX_GROUP_MT "nexus.group"

/* The group's userdata. Checked by size and tag, as handles are: the
 * metatable check (luaL_testudata) looks the name up in the registry on
 * every call, a fifth of a member's cost. */
#define NX_GROUP_MAGIC 0x6e78677270u     /* "nxgrp" */
typedef struct nx_gbox { nx_group *g; uint64_t magic; } nx_gbox;

static nx_gbox *nx_test_gbox(lua_State *L, int idx) {
  nx_gbox *b = lua_touserdata(L, idx);
  if (!b || lua_objlen(L, idx) != sizeof *b || b->magic != NX_GROUP_MAGIC) return NULL;
  return b;
}

nx_group *nx_group_check_open(lua_State *L, int idx, const char *fname) {
  nx_gbox *b = nx_test_gbox(L, idx);
  if (!b) luaL_error(L, "%s: expected a group", fname);
  if (!b->g) luaL_error(L, "%s: the group is closed", fname);
  return b->g;
}

static nx_group *nx_check_group(lua_State *L, const char *fname) {
  nx_gbox *b = nx_test_gbox(L, 1);
  if (!b) luaL_error(L, "%s: expected a group", fname);
  if (!b->g) luaL_error(L, "%s: the group is closed", fname);
  return b->g;
}

static void nx_group_free(nx_group *g) {
  free(g->done);
  free(g);
}

/* Frees g once nothing refers to it: its Lua object gone, no member
 * left (they point at the sink), not queued for a kill, and its watch
 * withdrawn from its token (whose queue would point at it). */
static void nx_group_maybe_free(nx_group *g) {
  if (!g->dropped || g->live || g->in_kills) return;
  if (g->watch.state == NX_WAITING) nx_task_cancel_wait(NULL, &g->watch);
  nx_group_free(g);
}

void nx_group_watch_fired(nx_rt *rt, nx_task *watch) {
  nx_group *g = (nx_group *)((char *)watch - offsetof(nx_group, watch));
  watch->state = NX_FREE;
  if (g->in_kills || !g->live) return;
  g->next_kill = rt->kills;
  g->in_kills = 1;
  rt->kills = g;
}

/* The task waiting in next(). */
static nx_task **nx_group_waiter(nx_group *g) { return &g->waiter; }

static void nx_group_wake(nx_rt *rt, nx_group *g) {
  nx_task *w = *nx_group_waiter(g);
  if (!w) return;
  *nx_group_waiter(g) = NULL;
  nx_task_wake(rt, w, NX_WAKE_OK);
}

static int nx_group_push(nx_group *g, uint64_t id) {
  if (g->dn == g->dcap) {
    uint32_t cap = g->dcap ? g->dcap * 2 : 16;
    uint64_t *v = malloc(cap * sizeof *v);
    if (!v) return -1;
    for (uint32_t i = 0; i < g->dn; i++) v[i] = g->done[(g->dhead + i) & (g->dcap - 1)];
    free(g->done);
    g->done = v;
    g->dhead = 0;
    g->dcap = cap;
  }
  g->done[(g->dhead + g->dn++) & (g->dcap - 1)] = id;
  return 0;
}

void nx_group_ended(nx_rt *rt, nx_task *sink, nx_task *member) {
  nx_group *g = (nx_group *)sink;
  g->live--;
  if (g->dropped) {
    nx_group_maybe_free(g);
    return;
  }
  if (nx_group_push(g, member->slot) != 0) {
    /* Losing a member's outcome silently is worse than stopping. */
    fputs("nexus: out of memory in a task group\n", stderr);
    abort();
  }
  nx_group_wake(rt, g);
}

/* Aborts every member of g (walks the runtime's tasks: rare, and the
 * members are not listed anywhere else). */
static void nx_group_abort_members(nx_rt *rt, lua_State *L, nx_group *g) {
  for (uint32_t s = 0; s < rt->used && g->live; s++) {
    nx_task *t = nx_task_at(rt, s);
    if (nx_joiner(t) == &g->sink && t->state != NX_DONE && t->state != NX_FREE)
      nx_task_abort(rt, L, t);
  }
}

void nx_group_kill(nx_rt *rt, lua_State *L) {
  nx_group *g;
  while ((g = rt->kills)) {
    rt->kills = g->next_kill;
    g->next_kill = NULL;
    nx_group_abort_members(rt, L, g);
    g->in_kills = 0;
    /* A member running now (it dropped its own group) ends at its next
     * yield; a dropped group goes with its last member. */
    nx_group_maybe_free(g);
  }
}

/* ---- Lua functions (core.group_*) ---- */

static int l_group_new(lua_State *L) {
  nx_gbox *b = lua_newuserdata(L, sizeof *b);
  b->magic = NX_GROUP_MAGIC;
  b->g = calloc(1, sizeof(nx_group));
  if (!b->g) return luaL_error(L, "nexus.group: out of memory");
  b->g->sink.kind = NX_KIND_GROUP;
  b->g->sink.state = NX_DONE;      /* never runs, never waits */
  b->g->watch.kind = NX_KIND_WATCH;
  b->g->watch.state = NX_FREE;
  luaL_getmetatable(L, NX_GROUP_MT);
  lua_setmetatable(L, -2);
  lua_newtable(L);                 /* its environment: id -> member's handle */
  lua_setfenv(L, -2);
  return 1;
}

/* t (its handle at hidx) joins g; members table at midx. */
void nx_group_adopt(lua_State *L, nx_group *g, nx_task *t, int midx, int hidx) {
  nx_rt *rt = nx_cur_rt;
  if (nx_joiner(t)) luaL_error(L, "group:spawn: task %s has a joiner already", NX_ID(t->id));
  if (!nx_task_ext(t)) luaL_error(L, "group:spawn: out of memory");
  if (g->rt && g->live && (g->rt != rt || g->rt_serial != rt->serial))
    luaL_error(L, "group:spawn: the group's tasks belong to another runtime");
  g->rt = rt;
  g->rt_serial = rt->serial;
  nx_task_xp(t)->joiner = &g->sink;
  g->members++;
  g->live++;
  lua_pushvalue(L, hidx);            /* by slot: the array part, and a member's */
  lua_rawseti(L, midx, (int)t->slot + 1);   /* slot is not reused before next() */
}

/* core.group_add(g, h): h's task joins the group; returns h. */
static int l_group_add(lua_State *L) {
  nx_group *g = nx_check_group(L, "group:spawn");
  nx_rt *rt;
  nx_task *t = nx_lua_handle_task(L, 2, &rt);
  if (!t || t->state == NX_DONE) return luaL_error(L, "group:spawn: the task ended already");
  lua_settop(L, 2);
  lua_getfenv(L, 1);
  nx_group_adopt(L, g, t, 3, 2);
  lua_settop(L, 2);
  return 1;
}

static void nx_group_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_group *g = t->wobj;
  if (*nx_group_waiter(g) == t) *nx_group_waiter(g) = NULL;
}

/* core.group_next(g, wait): the handle of the next member to have ended |
 * nil when the group is empty | false when none has ended yet (with
 * wait, the running task now waits for one) | -1: another task waits. */
void nx_group_next_push(lua_State *L, int wait) {
  nx_group *g = nx_check_group(L, "group:next");
  if (g->dn) {
    int key = (int)g->done[g->dhead] + 1;
    g->dhead = (g->dhead + 1) & (g->dcap - 1);
    g->dn--;
    g->members--;
    lua_getfenv(L, 1);
    lua_rawgeti(L, -1, key);
    lua_pushnil(L);
    lua_rawseti(L, -3, key);
    lua_replace(L, -2);
    return;
  }
  if (g->members == 0) {
    lua_pushnil(L);
    return;
  }
  if (wait) {
    nx_rt *rt = nx_cur_rt;
    nx_task *t = rt ? nx_running(rt) : NULL;
    if (!t) {
      luaL_error(L, "group:next: not inside a nexus task");
      return;
    }
    nx_task **w = nx_group_waiter(g);
    if (*w && *w != t) {
      lua_pushinteger(L, -1);
      return;
    }
    if (g->rt != rt || g->rt_serial != rt->serial) {
      luaL_error(L, "group:next: the group's tasks belong to another runtime");
      return;
    }
    *w = t;
    nx_wait(rt, nx_group_cancel, g);
  }
  lua_pushboolean(L, 0);
}

static int l_group_next(lua_State *L) {
  nx_group_next_push(L, lua_toboolean(L, 2));
  return 1;
}

/* core.group_abort(g): aborts every member now. */
static int l_group_abort(lua_State *L) {
  nx_group *g = nx_check_group(L, "group:abort");
  if (g->live && g->rt == nx_rt_of(g->rt_serial)) nx_group_abort_members(g->rt, L, g);
  return 0;
}

static int l_group_len(lua_State *L) {
  nx_gbox *b = nx_test_gbox(L, 1);
  lua_pushinteger(L, b && b->g ? (lua_Integer)b->g->members : 0);
  return 1;
}

/* __gc and core.group_close(g): members still running are aborted by the
 * executor at its next safe point (a finalizer may run in the middle of
 * the executor's own work). */
static int l_group_close(lua_State *L) {
  nx_gbox *b = nx_test_gbox(L, 1);
  if (!b || !b->g) return 0;
  nx_group *g = b->g;
  b->g = NULL;
  g->dropped = 1;
  nx_rt *rt = g->live ? nx_rt_of(g->rt_serial) : NULL;
  if (g->live && rt == g->rt && !g->in_kills) {
    g->next_kill = rt->kills;
    g->in_kills = 1;
    rt->kills = g;
  }
  nx_group_maybe_free(g);
  return 0;
}

/* core.group_watch(g, token_addr): once the token (a nexus.cancel_token's
 * C record, its address as a number: the FFI's pointer made a Lua
 * number, exact below 2^53) is cancelled, the executor aborts the
 * members at its next safe point (at once when the cancel comes from a
 * task's end: its drop guard). true, or false if already cancelled (the
 * members are aborted now). One watch per group. */
static int l_group_watch(lua_State *L) {
  nx_group *g = nx_check_group(L, "group:_watch");
  nx_token *tok = (nx_token *)(uintptr_t)luaL_checknumber(L, 2);
  nx_rt *rt = nx_cur_rt;
  if (!tok || !rt || !rt->cur) return luaL_error(L, "group:_watch: not inside a nexus task");
  if (g->watch.state != NX_FREE) return luaL_error(L, "group:_watch: the group has a watch already");
  nx_task *cur = rt->cur;
  g->watch.state = NX_RUNNING;
  rt->cur = &g->watch;
  int rc = nx_token_wait(tok);
  rt->cur = cur;
  if (rc != NX_AGAIN) g->watch.state = NX_FREE;
  if (rc == NX_OK && g->live && g->rt == rt) nx_group_abort_members(rt, L, g);
  lua_pushboolean(L, rc == NX_AGAIN);
  return 1;
}

/* core.group_ptr(g): the C record as a light userdata, for the FFI's
 * fast path of next (group.lua); nothing while the group is closed. */
static int l_group_ptr(lua_State *L) {
  nx_gbox *b = nx_test_gbox(L, 1);
  if (!b || !b->g) return 0;
  lua_pushlightuserdata(L, b->g);
  return 1;
}

/* FFI: the slot + 1 of the next member that ended (its handle is at that
 * index of the group's members table), or 0 when none has: then the
 * classic path (group_next_out) decides between nil and a wait. */
static int api_group_pop(nx_group *g) {
  if (!g->dn) return 0;
  int key = (int)g->done[g->dhead] + 1;
  g->dhead = (g->dhead + 1) & (g->dcap - 1);
  g->dn--;
  g->members--;
  return key;
}

typedef struct nx_group_api { int (*pop)(nx_group *); } nx_group_api;
static const nx_group_api nx_group_api_table = { api_group_pop };

static const luaL_Reg nx_group_funcs[] = {
  {"group_new", l_group_new}, {"group_add", l_group_add}, {"group_next", l_group_next},
  {"group_abort", l_group_abort}, {"group_len", l_group_len}, {"group_close", l_group_close},
  {"group_watch", l_group_watch}, {"group_ptr", l_group_ptr},
  {NULL, NULL},
};

void nx_group_open(lua_State *L) {
  nx_wait_kind(nx_group_cancel, "group next", NULL);
  luaL_newmetatable(L, NX_GROUP_MT);
  lua_pushcfunction(L, l_group_close);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_register(L, NULL, nx_group_funcs);
  lua_pushlightuserdata(L, (void *)&nx_group_api_table);
  lua_setfield(L, -2, "group_api");
}
