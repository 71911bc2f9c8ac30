/* cancel.c - cancellation tokens and drop guards (see cancel.h). */
#include "cancel.h"

#include <stdlib.h>

#include <lua.h>

nx_token *nx_token_new(nx_token *parent) {
  nx_token *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->refs = 1;
  nx_waitq_init(&t->waiters);
  if (parent) {
    t->parent = parent;
    parent->refs++;
    t->next = parent->child;
    if (parent->child) parent->child->prev = t;
    parent->child = t;
    t->cancelled = parent->cancelled;   /* a child of a cancelled token is born cancelled */
  }
  return t;
}

void nx_token_unref(nx_token *t) {
  while (t && --t->refs == 0) {
    nx_token *parent = t->parent;
    /* Children outlive it only through their own references: detach them. */
    for (nx_token *c = t->child; c; c = c->next) c->parent = NULL;
    if (parent) {
      if (t->prev) t->prev->next = t->next;
      else parent->child = t->next;
      if (t->next) t->next->prev = t->prev;
    }
    nx_waitq_free(&t->waiters);
    if (t->rt) nx_rt_unref(t->rt);
    free(t);
    t = parent;              /* drop the reference it held on its parent */
  }
}

static void nx_token_wake_all(nx_token *t) {
  nx_task *w;
  while ((w = nx_waitq_pop(&t->waiters))) {
    nx_task_wake(t->rt, w, NX_WAKE_OK);
    t->refs--;               /* the waiter's reference; t is still referenced by the walk's caller */
  }
}

/* Cancels t and its subtree: a pre-order walk over child/next links,
 * climbing back by parent, never above t. Already cancelled subtrees are
 * skipped: their children were cancelled with them. */
void nx_token_cancel(nx_token *t) {
  if (t->cancelled) return;
  t->refs++;                 /* waiters' references drop during the walk */
  nx_token *n = t;
  for (;;) {
    n->cancelled = 1;
    nx_token_wake_all(n);
    nx_token *c = n->child;
    while (c && c->cancelled) c = c->next;
    if (c) { n = c; continue; }
    while (n != t) {
      nx_token *s = n->next;
      while (s && s->cancelled) s = s->next;
      if (s) { n = s; break; }
      n = n->parent;
    }
    if (n == t) break;
  }
  nx_token_unref(t);
}

static void nx_token_wait_cancel(nx_rt *rt, nx_task *task) {
  (void)rt;
  nx_token *t = task->wobj;
  nx_waitq_cancelled(&t->waiters);
  task->wobj = NULL;
  nx_token_unref(t);
}

/* The queue points at task records of t->rt, stale entries included (an
 * aborted waiter's entry stays until popped): the token keeps that
 * runtime's struct alive (nx_rt_ref), and drops the entries before it
 * moves to another runtime, which it may only do with no live waiter. */
static void nx_token_bind(nx_token *t, nx_rt *rt) {
  nx_waitq_free(&t->waiters);         /* all stale: none is live */
  if (t->rt) nx_rt_unref(t->rt);
  nx_rt_ref(rt);
  t->rt = rt;
}

int nx_token_wait(nx_token *t) {
  if (t->cancelled) return NX_OK;
  nx_rt *rt = nx_cur_rt;
  nx_task *task = rt ? nx_running(rt) : NULL;
  if (!task) return NX_E_NOTASK;
  if (t->rt != rt) {
    if (t->waiters.live) return NX_E_OTHER_RT;
    nx_token_bind(t, rt);
  }
  nx_wait(rt, nx_token_wait_cancel, t);
  if (nx_waitq_push(&t->waiters, task) != 0) {
    task->cancel = NULL;
    nx_task_cancel_wait(rt, task);
    return NX_E_NOMEM;
  }
  t->refs++;
  return NX_AGAIN;
}

/* ---- drop guards ---- */

int nx_guard_new(nx_token *t, nx_guard **out) {
  nx_rt *rt = nx_cur_rt;
  nx_task *task = rt ? rt->cur : NULL;
  if (!task) return NX_E_NOTASK;
  nx_task_x *x = nx_task_ext(task);
  if (!x) return NX_E_NOMEM;
  nx_guard *g = malloc(sizeof *g);
  if (!g) return NX_E_NOMEM;
  g->armed = 1;
  g->refs = 2;
  g->tok = t;
  t->refs++;
  g->task = task;
  g->next = x->guards;
  x->guards = g;
  *out = g;
  return NX_OK;
}

static void nx_guard_free(nx_guard *g) {
  nx_token_unref(g->tok);
  free(g);
}

void nx_guard_unref(nx_guard *g) {
  if (--g->refs == 0) nx_guard_free(g);
}

/* Disarms g and returns its token (the caller takes a reference). */
nx_token *nx_guard_disarm(nx_guard *g) {
  g->armed = 0;
  nx_task *task = g->task;
  if (task) {
    for (nx_guard **p = &nx_task_xp(task)->guards; *p; p = &(*p)->next) {
      if (*p == g) {
        *p = g->next;
        break;
      }
    }
    g->task = NULL;
    nx_guard_unref(g);
  }
  g->tok->refs++;
  return g->tok;
}

void nx_guards_fire(nx_task *task) {
  nx_task_x *x = nx_task_xp(task);
  nx_guard *g = x->guards;
  x->guards = NULL;
  while (g) {
    nx_guard *next = g->next;
    g->task = NULL;
    if (g->armed) {
      g->armed = 0;
      nx_token_cancel(g->tok);
    }
    nx_guard_unref(g);
    g = next;
  }
}

/* ---- the FFI face (lua/nexus/cancel.lua declares the same layout) ---- */

typedef struct nx_cancel_api {
  nx_token *(*token_new)(nx_token *);
  void (*token_unref)(nx_token *);
  void (*cancel)(nx_token *);
  int (*wait)(nx_token *);
  int (*guard_new)(nx_token *, nx_guard **);
  nx_token *(*disarm)(nx_guard *);
  void (*guard_unref)(nx_guard *);
} nx_cancel_api;

static const nx_cancel_api nx_cancel_api_table = {
  nx_token_new, nx_token_unref, nx_token_cancel, nx_token_wait,
  nx_guard_new, nx_guard_disarm, nx_guard_unref,
};

void nx_cancel_open(lua_State *L) {
  nx_wait_kind(nx_token_wait_cancel, "token cancelled", NULL);
  lua_pushlightuserdata(L, (void *)&nx_cancel_api_table);
  lua_setfield(L, -2, "cancel_api");
}
