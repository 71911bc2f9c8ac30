/* select.c - several registrations for one task's wait (see select.h). */
#include "select.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>

#include <lua.h>

/* ---- op records ---- */

_Static_assert(offsetof(nx_selop, x) == sizeof(nx_task), "a proxy's x pointer follows it (rt.h)");

/* Freed ops wait here for reuse (see select.h: never given back). */
static NX_TLS nx_selop *nx_sel_free_list;

static nx_selop *nx_selop_new(void) {
  nx_selop *op = nx_sel_free_list;
  if (op) {
    nx_sel_free_list = op->next;
    op->next = NULL;
    op->cpoll = NULL;
    op->cobj = NULL;
    return op;
  }
  op = calloc(1, sizeof *op);
  if (!op) return NULL;
  op->px.kind = NX_KIND_PROXY;
  op->px.state = NX_FREE;
  return op;
}

/* An op collected while in a select cannot be: its select's frame holds
 * it. If it were, it is left alone rather than reused under its owner. */
static void nx_selop_free(nx_selop *op) {
  if (op->owner) return;
  op->next = nx_sel_free_list;
  nx_sel_free_list = op;
}

/* ---- the owner's list ---- */

static nx_selop *nx_sel_head(nx_task *t) { return (nx_selop *)t->wobj; }

/* Withdraws one op: a waiting proxy is unlinked by its component's cancel
 * callback, a granted one (READY with its cancel kept) passes the grant
 * on; a fired plain wake needs nothing. */
static void nx_sel_drop(nx_rt *rt, nx_selop *op) {
  nx_task *px = &op->px;
  if (px->state == NX_WAITING || (px->state == NX_READY && px->cancel))
    nx_task_cancel_wait(rt, px);
  px->cancel = NULL;
  px->wobj = NULL;
  px->state = NX_FREE;
  op->owner = NULL;
}

static void nx_sel_drop_all(nx_rt *rt, nx_task *t) {
  nx_selop *op = nx_sel_head(t);
  t->wobj = NULL;
  while (op) {
    nx_selop *next = op->next;
    op->next = NULL;
    nx_sel_drop(rt, op);
    op = next;
  }
}

/* The owner's wait is abandoned (abort, timeout, runtime close, an error
 * that ended it): every op goes. */
static void nx_sel_cancel(nx_rt *rt, nx_task *t) {
  nx_sel_drop_all(rt, t);        /* nx_task_cancel_wait clears wobj after this */
}

void nx_sel_fired(nx_rt *rt, nx_task *px) {
  nx_task *t = ((nx_selop *)px)->owner;
  /* While the owner polls (RUNNING) it sees the fired op before parking;
   * once READY it is queued already. */
  if (t && t->state == NX_WAITING && t->cancel == nx_sel_cancel) nx_task_grant(rt, t);
}

/* The first fired op in argument order, or 0. */
static uint32_t nx_sel_first_fired(nx_task *t) {
  uint32_t best = 0;
  for (nx_selop *op = nx_sel_head(t); op; op = op->next)
    if (op->px.state == NX_READY && (!best || op->index < best)) best = op->index;
  return best;
}

/* The running task, if it has a select open. */
static nx_task *nx_sel_task(nx_rt **prt) {
  nx_rt *rt = nx_cur_rt;
  nx_task *t = rt ? rt->cur : NULL;
  if (!t || t->kind || t->cancel != nx_sel_cancel) return NULL;
  *prt = rt;
  return t;
}

/* ---- FFI entry points (lua/nexus/select.lua) ---- */

/* Opens a select for the running task: its one wait is the select's. */
static int api_sel_begin(int coop) {
  nx_rt *rt = nx_cur_rt;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (!t || t->kind) return NX_E_NOTASK;
  if (t->cancel) return NX_SEL_E_BUSY;
  /* A select counts as one operation of the budget: a loop of selects
   * that always find an op ready must let its neighbours run too. */
  if (coop && nx_coop_spend(rt)) return NX_SEL_COOP;
  t->cancel = nx_sel_cancel;
  t->wobj = NULL;
  return NX_OK;
}

/* The op at `index` is polled next: its proxy becomes the current task.
 * An op already in this select at the same index is polled again (it
 * fired); at another index it was passed twice. */
static int api_sel_enter(nx_selop *op, uint32_t index) {
  nx_rt *rt;
  nx_task *t = nx_sel_task(&rt);
  if (!t) return NX_SEL_E_STATE;
  if (op->owner) {
    if (op->owner != t) return NX_SEL_E_INUSE;
    if (op->index != index) return NX_SEL_E_TWICE;
  } else {
    op->owner = t;
    op->index = index;
    op->next = nx_sel_head(t);
    t->wobj = op;
    op->px.id = t->id;
    op->px.slot = t->slot;
  }
  if (op->px.state == NX_WAITING) return NX_SEL_E_STATE;   /* polled while registered */
  op->px.state = NX_RUNNING;
  rt->cur = &op->px;
  return NX_OK;
}

/* Back to the owner. A proxy still RUNNING completed without waiting. */
static void api_sel_leave(nx_selop *op) {
  nx_rt *rt = nx_cur_rt;
  if (!rt || rt->cur != &op->px) return;
  rt->cur = op->owner;
  if (op->px.state == NX_RUNNING) op->px.state = NX_FREE;
}

/* Every op registered: the first fired one's index, or 0 after making
 * the task wait (the Lua side then yields). */
static int api_sel_park(void) {
  nx_rt *rt;
  nx_task *t = nx_sel_task(&rt);
  if (!t) return NX_SEL_E_STATE;
  uint32_t k = nx_sel_first_fired(t);
  if (k) return (int)k;
  t->state = NX_WAITING;
  t->wseq++;
  return 0;
}

/* No op completed on this round: withdraw them all, keep the select. */
static void api_sel_reset(void) {
  nx_rt *rt;
  nx_task *t = nx_sel_task(&rt);
  if (t) nx_sel_drop_all(rt, t);
}

/* The select is over (an op won, or it is abandoned): withdraw the rest
 * and end the task's wait. */
static void api_sel_finish(void) {
  nx_rt *rt = nx_cur_rt;
  if (!rt) return;
  if (rt->cur && rt->cur->kind) rt->cur = ((nx_selop *)rt->cur)->owner;   /* an error while polling */
  nx_task *t;
  if (!(t = nx_sel_task(&rt))) return;
  nx_sel_drop_all(rt, t);
  t->cancel = NULL;
  t->wobj = NULL;
  if (t->state == NX_WAITING) t->state = NX_RUNNING;
}

/* A C op: enter, poll, leave in one call. 1 when it completed (its
 * result in op->res), 0 when it registered its wait, or a status < 0
 * (a select status, or the component's fault below NX_SEL_FAULT_MAX). */
static int api_sel_cpoll(nx_selop *op, uint32_t index) {
  int rc = api_sel_enter(op, index);
  if (rc != NX_OK) return rc;
  int32_t r = op->cpoll(op->cobj);
  api_sel_leave(op);
  if (r == NX_SEL_WAITING) return 0;
  if (r <= NX_SEL_FAULT_MAX) return r;
  op->res = r;
  return 1;
}

/* After the task was woken: polls the first fired op if it is a C op.
 * k > 0: op k completed and the select is closed (finish); -k: op k
 * fired and the Lua side polls it (a Lua op, or a C op that faulted:
 * polled again there, it reports its fault); 0: nothing completed, the
 * ops were withdrawn (a new round). */
static int api_sel_resume(void) {
  nx_rt *rt;
  nx_task *t = nx_sel_task(&rt);
  if (!t) return 0;
  uint32_t k = nx_sel_first_fired(t);
  if (!k) {
    nx_sel_drop_all(rt, t);
    return 0;
  }
  nx_selop *op = nx_sel_head(t);
  while (op->index != k) op = op->next;
  if (!op->cpoll) return -(int)k;
  int rc = api_sel_cpoll(op, k);
  if (rc == 1) {
    api_sel_finish();
    return (int)k;
  }
  if (rc < 0) return -(int)k;
  nx_sel_drop_all(rt, t);
  return 0;
}

/* Makes op a C op polling obj with fn (set once, when the op is made). */
static void api_sel_bind(nx_selop *op, nx_sel_cpoll fn, void *obj) {
  op->cpoll = fn;
  op->cobj = obj;
}

static int32_t *api_sel_resp(nx_selop *op) { return &op->res; }

typedef struct nx_sel_api {
  nx_selop *(*op_new)(void);
  void (*op_free)(nx_selop *);
  int (*begin)(int);
  int (*enter)(nx_selop *, uint32_t);
  void (*leave)(nx_selop *);
  int (*park)(void);
  void (*reset)(void);
  void (*finish)(void);
  int (*cpoll)(nx_selop *, uint32_t);
  int (*resume)(void);
  void (*bind)(nx_selop *, nx_sel_cpoll, void *);
  int32_t *(*resp)(nx_selop *);
} nx_sel_api;

static const nx_sel_api nx_sel_api_table = {
  nx_selop_new, nx_selop_free, api_sel_begin, api_sel_enter, api_sel_leave,
  api_sel_park, api_sel_reset, api_sel_finish,
  api_sel_cpoll, api_sel_resume, api_sel_bind, api_sel_resp,
};

/* "select: channel recv | sleep", in argument order. */
static void nx_sel_describe(nx_task *t, char *buf, size_t n) {
  size_t used = (size_t)snprintf(buf, n, "select:");
  for (uint32_t i = 1; used < n; i++) {
    nx_selop *op = nx_sel_head(t);
    while (op && op->index != i) op = op->next;
    if (!op) break;
    char what[96];
    nx_describe_wait(&op->px, what, sizeof what);
    used += (size_t)snprintf(buf + used, n - used, "%s %s", i > 1 ? " |" : "", what);
  }
}

void nx_sel_open(lua_State *L) {
  nx_wait_kind(nx_sel_cancel, "select", nx_sel_describe);
  lua_pushlightuserdata(L, (void *)&nx_sel_api_table);
  lua_setfield(L, -2, "sel_api");
}
