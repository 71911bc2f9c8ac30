/* introspect.c - task names, nexus.tasks(), nexus.dump(), the deadlock
 * listing and the SIGQUIT dump of the nexus command. Nothing here is on
 * a hot path: names live in two ctl tables, the rest is read on demand. */
#include "introspect.h"
#include "shutdown.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

static const char *const nx_states[] = { "free", "ready", "running", "waiting", "done" };

/* t's name (the names table keeps the string), or NULL. */
static const char *nx_name_of(nx_rt *rt, nx_task *t) {
  lua_rawgeti(rt->ctl, NX_CTL_NAMEIDS, (int)t->slot + 1);
  int same = !lua_isnil(rt->ctl, -1) && lua_tonumber(rt->ctl, -1) == (lua_Number)t->id;
  lua_pop(rt->ctl, 1);
  if (!same) return NULL;
  lua_rawgeti(rt->ctl, NX_CTL_NAMES, (int)t->slot + 1);
  const char *s = lua_tostring(rt->ctl, -1);   /* the table keeps it alive */
  lua_pop(rt->ctl, 1);
  return s;
}

/* Pushes t's name, or nil. */
static void nx_push_name(lua_State *L, nx_rt *rt, nx_task *t) {
  const char *s = nx_name_of(rt, t);
  if (s) lua_pushstring(L, s);
  else lua_pushnil(L);
}

/* h:name(s) (lmodule.c): the name at slot + 1, with the id it belongs to. */
void nx_task_set_name(lua_State *L, nx_rt *rt, nx_task *t, int idx) {
  lua_pushvalue(L, idx);
  nx_ctl_set(rt, L, NX_CTL_NAMES, t->slot);
  lua_pushnumber(L, (lua_Number)t->id);
  nx_ctl_set(rt, L, NX_CTL_NAMEIDS, t->slot);
}

void nx_task_push_name(lua_State *L, nx_rt *rt, nx_task *t) { nx_push_name(L, rt, t); }

/* "file.lua:42": the innermost frame of the task's coroutine outside
 * nexus's own modules (where the user's code waits). */
static void nx_where(lua_State *co, char *buf, size_t n) {
  lua_Debug ar;
  snprintf(buf, n, "?");
  if (!co) return;
  for (int level = 0; lua_getstack(co, level, &ar); level++) {
    if (!lua_getinfo(co, "Sl", &ar)) break;
    if (ar.currentline > 0 && !strstr(ar.source, "/nexus/") && !strstr(ar.source, "nexus.")) {
      snprintf(buf, n, "%s:%d", ar.short_src, ar.currentline);
      return;
    }
  }
}

/* The coroutine a task waits in: a nexus.timeout level's, if any. */
static lua_State *nx_task_co(nx_task *t) {
  nx_deadline *dl = nx_task_dl(t);
  return dl && dl->co ? dl->co : t->co;
}

/* Pushes the table nexus.tasks() gives for t. */
static void nx_push_task(lua_State *L, nx_rt *rt, nx_task *t, int with_tb) {
  char buf[512];
  lua_createtable(L, 0, 8);
  lua_pushnumber(L, (lua_Number)t->id);
  lua_setfield(L, -2, "id");
  nx_push_name(L, rt, t);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, t == rt->cur ? "running" : nx_states[t->state]);
  lua_setfield(L, -2, "state");
  if (t->state == NX_WAITING) {
    nx_describe_wait(t, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "wait");
  }
  lua_pushnumber(L, t == rt->cur ? 0 : rt->event_time - rt->epoch - (double)t->since);
  lua_setfield(L, -2, "since");
  lua_State *co = nx_task_co(t);
  /* A suspended task's coroutine, or the running one (L itself: its
   * stack from the caller of nexus.tasks() down). */
  if (co && (co == L || lua_status(co) == LUA_YIELD)) {
    nx_where(co, buf, sizeof buf);
    lua_pushstring(L, buf);
    lua_setfield(L, -2, "where");
    if (with_tb) {
      luaL_traceback(L, co, NULL, co == L ? 1 : 0);
      lua_setfield(L, -2, "traceback");
    }
  } else {
    lua_pushstring(L, t->co ? "?" : "(not started)");
    lua_setfield(L, -2, "where");
  }
}

static int nx_live(const nx_task *t) { return t->state != NX_FREE && t->state != NX_DONE; }

/* core.tasks(with_traceback): the current runtime's live tasks. */
static int l_tasks(lua_State *L) {
  nx_rt *rt = nx_cur_rt;
  int with_tb = lua_toboolean(L, 1);
  lua_newtable(L);
  if (!rt) return 1;
  int n = 0;
  for (uint32_t s = 0; s < rt->used; s++) {
    nx_task *t = nx_task_at(rt, s);
    if (!nx_live(t)) continue;
    nx_push_task(L, rt, t, with_tb);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

/* Pushes "\n  task 3 "name": waits on channel recv at f.lua:12" lines for
 * the waiting tasks (at most 20), for the deadlock error. */
void nx_push_waiting_list(lua_State *L, nx_rt *rt) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int n = 0, more = 0;
  for (uint32_t s = 0; s < rt->used; s++) {
    nx_task *t = nx_task_at(rt, s);
    if (t->state != NX_WAITING) continue;
    if (n == 20) {
      more++;
      continue;
    }
    char what[256], where[256], line[640];
    nx_describe_wait(t, what, sizeof what);
    lua_State *co = nx_task_co(t);
    if (co && lua_status(co) == LUA_YIELD) nx_where(co, where, sizeof where);
    else snprintf(where, sizeof where, "?");
    const char *name = nx_name_of(rt, t);
    snprintf(line, sizeof line, "\n  task %llu%s%s%s waits on %s at %s", (unsigned long long)t->id,
             name ? " \"" : "", name ? name : "", name ? "\"" : "", what, where);
    luaL_addstring(&b, line);
    n++;
  }
  if (more) {
    char line[64];
    snprintf(line, sizeof line, "\n  ... and %d more", more);
    luaL_addstring(&b, line);
  }
  luaL_pushresult(&b);
}

static const char *nx_name_hook(nx_rt *rt, nx_task *t) { return nx_name_of(rt, t); }

/* ---- SIGQUIT: the dump, and the program goes on ---- */

typedef struct nx_quit {
  nx_owned own;
  uv_signal_t sig;
  nx_rt *rt;
} nx_quit;

static void nx_quit_cb(uv_signal_t *h, int signo) {
  (void)signo;
  nx_quit *q = h->data;
  q->rt->dump_asked = 1;
}

static void nx_quit_closed(uv_handle_t *h) { free(h->data); }

static void nx_quit_close(nx_rt *rt, nx_owned *o) {
  (void)rt;
  nx_quit *q = (nx_quit *)o;
  uv_close((uv_handle_t *)&q->sig, nx_quit_closed);
}

/* rt:_sigquit(): under the nexus command. The handle is unreferenced: it
 * never keeps a finished runtime alive. */
int nx_sigquit_install(nx_rt *rt) {
  nx_quit *q = calloc(1, sizeof *q);
  if (!q) return -1;
  q->rt = rt;
  q->sig.data = q;
  if (uv_signal_init(&rt->loop, &q->sig) != 0 || uv_signal_start(&q->sig, nx_quit_cb, SIGQUIT) != 0) {
    free(q);
    return -1;
  }
  uv_unref((uv_handle_t *)&q->sig);
  q->own.close = nx_quit_close;
  nx_own(rt, &q->own);
  return 0;
}

/* The executor, at a safe point: prints nexus.dump() (the Lua function
 * kept in the registry by nexus.introspect) to stderr. */
void nx_dump_now(nx_rt *rt, lua_State *L) {
  rt->dump_asked = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "nexus.dump");
  if (lua_pcall(L, 0, 1, 0) == 0 && lua_isstring(L, -1)) {
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
  } else {
    fprintf(stderr, "nexus: SIGQUIT: the dump failed: %s\n", lua_tostring(L, -1));
  }
  fflush(stderr);
  lua_pop(L, 1);
}

static const luaL_Reg nx_introspect_funcs[] = {
  {"tasks", l_tasks},
  {NULL, NULL},
};

void nx_introspect_open(lua_State *L) {
  nx_task_name_hook = nx_name_hook;
  nx_shutdown_names();
  luaL_register(L, NULL, nx_introspect_funcs);
}
