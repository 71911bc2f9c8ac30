/* sync.c - semaphore, oneshot, watch, broadcast, event (see sync.h). */
#include "sync.h"

#include <stdlib.h>

#include "cancel.h"
#include "select.h"

/* The running task (a select op's proxy while the op is polled) that is
 * to wait on an object bound to *brt: the waiters of one object all live
 * in one runtime (`busy`: it has some now). Binds the object. */
static nx_task *sy_task(nx_rt **brt, uint64_t *bser, int busy, int *rc) {
  nx_rt *rt = nx_cur_rt;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (!t) {
    *rc = NX_E_NOTASK;
    return NULL;
  }
  if (*brt && (*brt != rt || *bser != rt->serial) && busy) {
    *rc = NX_SY_OTHER_RT;
    return NULL;
  }
  *brt = rt;
  *bser = rt->serial;
  return t;
}

/* ================================================================ semaphore */

static void sem_cancel(nx_rt *rt, nx_task *t);

/* The task that holds what the running record takes: a select op's proxy
 * takes permits for the task whose select it is in. */
static nx_task *sem_holder(nx_task *cur) {
  return cur->kind == NX_KIND_PROXY ? ((nx_selop *)cur)->owner : cur;
}

static void sem_unref(nx_sem *s) {
  if (--s->refs > 0) return;
  nx_token_unref(s->end);
  free(s->q);
  free(s->gr);
  free(s->h);
  free(s);
}

/* ---- the waiters: waitq.c's ring with lazy cancel, plus the permits asked */

static int sq_live(const nx_sem_wait *e) {
  return e->t->wseq == e->seq && e->t->state == NX_WAITING;
}

/* Rebuilds the ring with only live entries, doubling it if still full. */
static int sq_compact(nx_sem *s) {
  uint32_t cap = s->qcap ? s->qcap : 8;
  if (s->qlive * 2 >= cap) cap *= 2;
  nx_sem_wait *v = malloc(cap * sizeof *v);
  if (!v) return -1;
  uint32_t k = 0;
  for (uint32_t i = 0; i < s->qn; i++) {
    nx_sem_wait *e = &s->q[(s->qhead + i) & (s->qcap - 1)];
    if (sq_live(e)) v[k++] = *e;
  }
  free(s->q);
  s->q = v;
  s->qhead = 0;
  s->qn = k;
  s->qcap = cap;
  s->qlive = k;
  return 0;
}

/* The first waiter still waiting (stale entries before it are dropped). */
static nx_sem_wait *sq_front(nx_sem *s) {
  while (s->qn) {
    nx_sem_wait *e = &s->q[s->qhead];
    if (sq_live(e)) return e;
    s->qhead = (s->qhead + 1) & (s->qcap - 1);
    s->qn--;
  }
  s->qhead = s->qlive = 0;
  return NULL;
}

static void sq_pop(nx_sem *s) {               /* the live front entry */
  s->qhead = (s->qhead + 1) & (s->qcap - 1);
  s->qn--;
  if (--s->qlive == 0) s->qhead = s->qn = 0;
}

/* A waiter's entry went stale. With none live, the rest are dropped at
 * once (they may name tasks of a runtime about to be freed). */
static void sq_cancelled(nx_sem *s) {
  if (s->qlive && --s->qlive == 0) s->qhead = s->qn = 0;
}

/* ---- grants: served waiters that have not run yet */

static int gr_reserve(nx_sem *s, uint32_t need) {
  if (s->grcap >= need) return 0;
  uint32_t cap = s->grcap ? s->grcap * 2 : 4;
  while (cap < need) cap *= 2;
  nx_sem_grant *v = realloc(s->gr, cap * sizeof *v);
  if (!v) return -1;
  s->gr = v;
  s->grcap = cap;
  return 0;
}

static int64_t gr_take(nx_sem *s, nx_task *t) {
  for (uint32_t i = 0; i < s->ngr; i++) {
    if (s->gr[i].t == t) {
      int64_t n = s->gr[i].n;
      s->gr[i] = s->gr[--s->ngr];
      return n;
    }
  }
  return 0;
}

/* ---- holders: open addressing by task, linear probing */

static uint32_t ho_slot(const nx_task *t, uint32_t mask) {
  uint64_t x = (uint64_t)(uintptr_t)t;
  x ^= x >> 29;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 32;
  return (uint32_t)x & mask;
}

static nx_sem_hold *ho_find(nx_sem *s, const nx_task *t) {
  if (!s->hn) return NULL;
  uint32_t mask = s->hcap - 1;
  for (uint32_t i = ho_slot(t, mask);; i = (i + 1) & mask) {
    nx_sem_hold *h = &s->h[i];
    if (h->t == t) return h;
    if (!h->t) return NULL;
  }
}

static nx_sem_hold *ho_put(nx_sem_hold *v, uint32_t cap, nx_task *t) {
  uint32_t mask = cap - 1;
  uint32_t i = ho_slot(t, mask);
  while (v[i].t) i = (i + 1) & mask;
  v[i].t = t;
  return &v[i];
}

static int ho_grow(nx_sem *s) {
  uint32_t cap = s->hcap ? s->hcap * 2 : 8;
  nx_sem_hold *v = calloc(cap, sizeof *v);
  if (!v) return -1;
  for (uint32_t i = 0; i < s->hcap; i++) {
    if (!s->h[i].t) continue;
    nx_sem_hold *h = ho_put(v, cap, s->h[i].t);
    h->g = s->h[i].g;
    h->n = s->h[i].n;
  }
  free(s->h);
  s->h = v;
  s->hcap = cap;
  return 0;
}

/* Removes h, shifting back the entries of its probe run. */
static void ho_remove(nx_sem *s, nx_sem_hold *h) {
  uint32_t mask = s->hcap - 1;
  uint32_t i = (uint32_t)(h - s->h), j = i;
  for (;;) {
    j = (j + 1) & mask;
    if (!s->h[j].t) break;
    uint32_t k = ho_slot(s->h[j].t, mask);
    /* h[j] may fill the hole at i unless its home k lies in (i, j] */
    if (i <= j ? (k <= i || k > j) : (k <= i && k > j)) {
      s->h[i] = s->h[j];
      i = j;
    }
  }
  s->h[i].t = NULL;
  s->h[i].g = NULL;
  s->h[i].n = 0;
  s->hn--;
}

/* Forgets a holder: its guard is disarmed (taken off its task), unless it
 * fired already because the task ended. */
static void ho_drop(nx_sem *s, nx_sem_hold *h) {
  nx_guard *g = h->g;
  ho_remove(s, h);
  if (g->task) nx_token_unref(nx_guard_disarm(g));   /* disarm hands back a reference */
  nx_guard_unref(g);
}

/* t holds n more permits. A new holder gets a guard on s->end; the guard
 * belongs to the running task as nx_guard_new sees it, so t is made the
 * running task for the call (t is a select op's owner, and the op's proxy
 * runs). */
static int ho_add(nx_sem *s, nx_rt *rt, nx_task *t, int64_t n) {
  nx_sem_hold *h = ho_find(s, t);
  if (h) {
    h->n += n;
    return NX_OK;
  }
  if ((s->hn + 1) * 2 > s->hcap && ho_grow(s) != 0) return NX_E_NOMEM;
  nx_guard *g;
  nx_task *was = rt->cur;
  rt->cur = t;
  int rc = nx_guard_new(s->end, &g);
  rt->cur = was;
  if (rc != NX_OK) return rc;
  h = ho_put(s->h, s->hcap, t);
  h->g = g;
  h->n = n;
  s->hn++;
  return NX_OK;
}

/* ---- waking */

/* A waiter's entry in s->end's queue went stale (its wait ended here):
 * what nx_token_wait_cancel would have done. */
static void sem_end_unlink(nx_sem *s) {
  nx_waitq_cancelled(&s->end->waiters);
  nx_token_unref(s->end);
}

/* Grants permits to the waiters at the head of the queue while the head
 * fits. */
static void sem_serve(nx_sem *s) {
  if (s->closed) return;
  nx_sem_wait *e;
  while ((e = sq_front(s)) && e->n <= s->avail) {
    nx_task *t = e->t;
    int64_t n = e->n;
    sq_pop(s);
    s->avail -= n;
    s->gr[s->ngr].t = t;           /* room reserved when it queued */
    s->gr[s->ngr].n = n;
    s->ngr++;
    s->nwait--;
    sem_end_unlink(s);
    nx_task_grant(s->rt, t);
  }
}

/* A holder ended, so its guard cancelled s->end, which woke every waiter
 * (all are registered there): their entries here are stale and they will
 * call again. Gives the ended holders' permits back and makes s->end
 * ready for the next holder's end. Every entry point calls this first
 * when s->end is cancelled, so nothing reads the stale entries. */
static void sem_fix(nx_sem *s) {
  s->refs -= s->nwait;            /* never the last: the caller holds one */
  s->nwait = 0;
  s->qhead = s->qn = s->qlive = 0;
  for (uint32_t i = 0; s->hn && i < s->hcap;) {
    nx_sem_hold *h = &s->h[i];
    if (h->t && !h->g->task) {
      s->avail += h->n;
      ho_drop(s, h);              /* may shift an unvisited entry into i */
      continue;
    }
    i++;
  }
  s->end->cancelled = 0;
}

#define SEM_FIX(s) do { if ((s)->end->cancelled) sem_fix(s); } while (0)

/* A waiter was aborted, timed out or its select op lost. A granted one
 * (not waiting any more: READY, or running without having called again)
 * passes its permits on; a queued one leaves the queue, and the waiters
 * behind it may fit now. */
static void sem_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_sem *s = t->wobj;
  SEM_FIX(s);
  if (t->state != NX_WAITING) {
    s->avail += gr_take(s, t);
  } else {
    sq_cancelled(s);
    s->nwait--;
    sem_end_unlink(s);
  }
  t->wobj = NULL;
  sem_serve(s);
  sem_unref(s);
}

/* ---- entry points */

static nx_sem *nx_sem_new(double permits) {
  nx_sem *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->end = nx_token_new(NULL);
  if (!s->end) {
    free(s);
    return NULL;
  }
  s->total = permits;
  s->avail = (int64_t)permits;
  s->refs = 1;
  return s;
}

/* The running task takes the permits granted to it. */
static int sem_take_grant(nx_sem *s, nx_rt *rt, nx_task *cur) {
  int64_t n = gr_take(s, cur);
  cur->wobj = NULL;
  cur->cancel = NULL;
  int rc = ho_add(s, rt, sem_holder(cur), n);
  if (rc != NX_OK) {
    s->avail += n;
    sem_serve(s);
  }
  sem_unref(s);                   /* the Lua object's reference remains */
  return rc;
}

/* NX_SY_OK (the permits are the running task's), NX_SY_WAIT (queued),
 * NX_SY_NONE (wait = 0: not now), NX_SY_CLOSED, NX_SY_TOOBIG or an error. */
static int nx_sem_acquire(nx_sem *s, double dn, int wait) {
  SEM_FIX(s);
  nx_rt *rt = nx_cur_rt;
  nx_task *cur = rt ? rt->cur : NULL;
  if (!cur) return NX_E_NOTASK;
  if (cur->wobj == s && cur->cancel == sem_cancel) return sem_take_grant(s, rt, cur);
  if (s->closed) return NX_SY_CLOSED;
  if (dn > s->total) return NX_SY_TOOBIG;
  int64_t n = (int64_t)dn;
  if (n == 0) return NX_SY_OK;
  if (s->qlive == 0 && s->avail >= n) {
    if (wait && nx_coop_spend(rt)) return NX_SY_WAIT;   /* yields once, then retries */
    int rc = ho_add(s, rt, sem_holder(cur), n);
    if (rc != NX_OK) return rc;
    s->avail -= n;
    return NX_SY_OK;
  }
  if (!wait) return NX_SY_NONE;
  int rc;
  nx_task *t = sy_task(&s->rt, &s->rt_serial, s->nwait || s->ngr, &rc);
  if (!t) return rc;
  if ((s->qn == s->qcap && sq_compact(s) != 0) || gr_reserve(s, s->ngr + s->nwait + 1) != 0)
    return NX_E_NOMEM;
  /* Registered on s->end first (the wait is made there, so the token binds
   * its runtime and counts the waiter), then taken over: the task's wait
   * is the semaphore's, and whichever of the two ends it first makes the
   * other's entry stale. */
  rc = nx_token_wait(s->end);
  if (rc != NX_AGAIN) return rc == NX_E_OTHER_RT ? NX_SY_OTHER_RT : rc;
  t->cancel = sem_cancel;
  t->wobj = s;
  nx_sem_wait *e = &s->q[(s->qhead + s->qn++) & (s->qcap - 1)];
  e->t = t;
  e->seq = t->wseq;
  e->n = n;
  s->qlive++;
  s->nwait++;
  s->refs++;
  return NX_SY_WAIT;
}

static int nx_sem_release(nx_sem *s, double dn) {
  SEM_FIX(s);
  nx_rt *rt = nx_cur_rt;
  nx_task *cur = rt ? rt->cur : NULL;
  if (!cur) return NX_E_NOTASK;
  int64_t n = (int64_t)dn;
  if (n == 0) return NX_SY_OK;
  nx_sem_hold *h = ho_find(s, sem_holder(cur));
  if (!h || h->n < n) return NX_SY_NOTHELD;
  if ((h->n -= n) == 0) ho_drop(s, h);
  s->avail += n;
  sem_serve(s);
  return NX_SY_OK;
}

static double nx_sem_available(nx_sem *s) {
  SEM_FIX(s);
  return (double)s->avail;
}

/* Permits the running task holds; -1 outside a task. */
static double nx_sem_held(nx_sem *s) {
  SEM_FIX(s);
  nx_rt *rt = nx_cur_rt;
  nx_task *cur = rt ? rt->cur : NULL;
  if (!cur) return -1;
  nx_sem_hold *h = ho_find(s, sem_holder(cur));
  return h ? (double)h->n : 0;
}

static void nx_sem_add(nx_sem *s, double dn) {
  SEM_FIX(s);
  s->total += dn;
  s->avail += (int64_t)dn;
  sem_serve(s);
}

/* Waiters wake and see "closed"; grants made before stand. */
static void nx_sem_close(nx_sem *s) {
  SEM_FIX(s);
  s->closed = 1;
  nx_sem_wait *e;
  while ((e = sq_front(s))) {
    nx_task *t = e->t;
    sq_pop(s);
    s->nwait--;
    s->refs--;
    sem_end_unlink(s);
    nx_task_wake(s->rt, t, NX_WAKE_OK);
  }
}

/* The Lua object was collected: no task can release any more, so the
 * holders' guards go. */
static void nx_sem_free(nx_sem *s) {
  nx_sem_close(s);
  for (uint32_t i = 0; i < s->hcap; i++) {
    nx_guard *g = s->h[i].g;
    if (!s->h[i].t) continue;
    if (g->task) nx_token_unref(nx_guard_disarm(g));
    nx_guard_unref(g);
    s->h[i].t = NULL;
  }
  s->hn = 0;
  sem_unref(s);
}

/* ================================================================ oneshot */

static void once_unref(nx_once *o) {
  if (--o->refs == 0) free(o);
}

static void once_wake(nx_once *o) {
  nx_task *r = o->rx;
  if (!r) return;
  o->rx = NULL;
  nx_task_wake(o->rt, r, NX_WAKE_OK);
  o->refs--;                      /* the receiver's; the calling end holds one */
}

static void once_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_once *o = t->wobj;
  if (o->rx == t) o->rx = NULL;
  t->wobj = NULL;
  once_unref(o);
}

static nx_once *nx_once_new(void) {
  nx_once *o = calloc(1, sizeof *o);
  if (o) o->refs = 2;
  return o;
}

/* The wrapper checked that nothing was sent and tx is open. */
static int nx_once_send(nx_once *o) {
  if (o->rx_closed) return NX_SY_CLOSED;
  o->state = NX_ONCE_SENT;
  once_wake(o);
  return NX_SY_OK;
}

/* NX_SY_OK: take the value (it is taken now); CLOSED; WAIT; NONE. */
static int nx_once_recv(nx_once *o, int wait) {
  if (o->state == NX_ONCE_SENT && !o->rx_closed) {
    if (wait && nx_coop_spend(nx_cur_rt)) return NX_SY_WAIT;
    o->state = NX_ONCE_TAKEN;
    return NX_SY_OK;
  }
  if (o->state == NX_ONCE_TAKEN || o->tx_closed || o->rx_closed) return NX_SY_CLOSED;
  if (!wait) return NX_SY_NONE;
  int rc;
  nx_task *t = sy_task(&o->rt, &o->rt_serial, o->rx != NULL, &rc);
  if (!t) return rc;
  if (o->rx && o->rx != t) return NX_SY_BUSY;
  nx_wait(o->rt, once_cancel, o);
  o->rx = t;
  o->refs++;
  return NX_SY_WAIT;
}

static void nx_once_tx_close(nx_once *o) {
  if (o->tx_closed) return;
  o->tx_closed = 1;
  once_wake(o);
}

static void nx_once_rx_close(nx_once *o) {
  if (o->rx_closed) return;
  o->rx_closed = 1;
  once_wake(o);
}

static void nx_once_tx_free(nx_once *o) {
  nx_once_tx_close(o);
  once_unref(o);
}

static void nx_once_rx_free(nx_once *o) {
  nx_once_rx_close(o);
  once_unref(o);
}

/* ================================================================ watch */

static void watch_unref(nx_watch *w) {
  if (--w->refs > 0) return;
  nx_waitq_free(&w->waiters);
  free(w);
}

static void watch_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_watch *w = t->wobj;
  nx_waitq_cancelled(&w->waiters);
  t->wobj = NULL;
  watch_unref(w);
}

static void watch_wake_all(nx_watch *w) {
  nx_task *t;
  while ((t = nx_waitq_pop(&w->waiters))) {
    nx_task_wake(w->rt, t, NX_WAKE_OK);
    w->refs--;                    /* the Lua object's remains */
  }
}

static nx_watch *nx_watch_new(void) {
  nx_watch *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  nx_waitq_init(&w->waiters);
  w->refs = 1;
  return w;
}

static void nx_watch_free(nx_watch *w) {
  w->closed = 1;
  watch_wake_all(w);
  watch_unref(w);
}

static void nx_watch_set(nx_watch *w) {
  w->version += 1;
  watch_wake_all(w);
}

/* NX_SY_OK when version > seen; CLOSED; WAIT; NONE. */
static int nx_watch_changed(nx_watch *w, double seen, int wait) {
  if (w->version > seen) return wait && nx_coop_spend(nx_cur_rt) ? NX_SY_WAIT : NX_SY_OK;
  if (w->closed) return NX_SY_CLOSED;
  if (!wait) return NX_SY_NONE;
  int rc;
  nx_task *t = sy_task(&w->rt, &w->rt_serial, w->waiters.live != 0, &rc);
  if (!t) return rc;
  nx_wait(w->rt, watch_cancel, w);
  if (nx_waitq_push(&w->waiters, t) != 0) {
    t->cancel = NULL;
    nx_task_cancel_wait(w->rt, t);
    return NX_E_NOMEM;
  }
  w->refs++;
  return NX_SY_WAIT;
}

static void nx_watch_close(nx_watch *w) {
  w->closed = 1;
  watch_wake_all(w);
}

/* ================================================================ broadcast */

static void bc_unref(nx_bcast *bc) {
  if (--bc->refs > 0) return;
  nx_waitq_free(&bc->waiters);
  free(bc->rem);
  free(bc);
}

static void sub_unref(nx_bsub *s) {
  if (--s->refs > 0) return;
  nx_bcast *bc = s->bc;
  free(s);
  bc_unref(bc);
}

static void sub_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_bsub *s = t->wobj;
  if (s->waiter == t) s->waiter = NULL;
  nx_waitq_cancelled(&s->bc->waiters);
  t->wobj = NULL;
  sub_unref(s);
}

static void bc_wake_all(nx_bcast *bc) {
  nx_task *t;
  while ((t = nx_waitq_pop(&bc->waiters))) {
    nx_bsub *s = t->wobj;
    s->waiter = NULL;
    nx_task_wake(bc->rt, t, NX_WAKE_OK);
    sub_unref(s);                 /* its Lua object's reference remains */
  }
}

static nx_bcast *nx_bc_new(uint32_t cap) {
  if (cap == 0) return NULL;
  nx_bcast *bc = calloc(1, sizeof *bc);
  if (!bc) return NULL;
  bc->rem = calloc(cap, sizeof *bc->rem);
  if (!bc->rem) {
    free(bc);
    return NULL;
  }
  bc->cap = cap;
  bc->refs = 1;
  nx_waitq_init(&bc->waiters);
  return bc;
}

/* The ring index to store the value at; NX_SY_NONE with no subscriber
 * (the value would never be read: not stored); NX_SY_CLOSED. */
static int nx_bc_send(nx_bcast *bc) {
  if (bc->closed) return NX_SY_CLOSED;
  if (bc->subs == 0) return NX_SY_NONE;
  uint32_t i = (uint32_t)(bc->tail % bc->cap);
  bc->rem[i] = bc->subs;
  bc->tail++;
  bc_wake_all(bc);
  return (int)i;
}

static void nx_bc_close(nx_bcast *bc) {
  bc->closed = 1;
  bc_wake_all(bc);
}

static void nx_bc_free(nx_bcast *bc) {
  nx_bc_close(bc);
  bc_unref(bc);
}

static nx_bsub *nx_sub_new(nx_bcast *bc) {
  nx_bsub *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->bc = bc;
  s->next = bc->tail;
  s->refs = 1;
  bc->refs++;
  bc->subs++;
  return s;
}

/* The subscriber reads no more: the values it had yet to read no longer
 * wait for it (their rem drops; the wrapper clears the slots at 0), and a
 * task waiting in its recv wakes to see "closed". */
static void nx_sub_close(nx_bsub *s) {
  if (s->closed) return;
  s->closed = 1;
  nx_bcast *bc = s->bc;
  bc->subs--;
  uint64_t lo = bc->tail > bc->cap ? bc->tail - bc->cap : 0;
  for (uint64_t q = s->next > lo ? s->next : lo; q < bc->tail; q++) bc->rem[q % bc->cap]--;
  nx_task *t = s->waiter;
  if (t) {
    s->waiter = NULL;
    nx_task_wake(bc->rt, t, NX_WAKE_OK);   /* its entry in bc->waiters goes stale */
    nx_waitq_cancelled(&bc->waiters);
    sub_unref(s);
  }
}

static void nx_sub_free(nx_bsub *s) {
  nx_sub_close(s);
  sub_unref(s);
}

/* A ring index i >= 0 to read (i + cap: the last reader, clear the slot
 * after reading); NX_SY_LAGGED (s->missed values were overwritten: the
 * next read is the oldest kept); NX_SY_CLOSED; WAIT; NONE; BUSY. */
static int nx_sub_recv(nx_bsub *s, int wait) {
  if (s->closed) return NX_SY_CLOSED;
  nx_bcast *bc = s->bc;
  uint64_t lo = bc->tail > bc->cap ? bc->tail - bc->cap : 0;
  if (s->next < lo) {
    s->missed = (double)(lo - s->next);
    s->next = lo;
    return NX_SY_LAGGED;
  }
  if (s->next < bc->tail) {
    if (wait && nx_coop_spend(nx_cur_rt)) return NX_SY_WAIT;
    uint32_t i = (uint32_t)(s->next % bc->cap);
    s->next++;
    return --bc->rem[i] == 0 ? (int)(i + bc->cap) : (int)i;
  }
  if (bc->closed) return NX_SY_CLOSED;
  if (!wait) return NX_SY_NONE;
  int rc;
  nx_task *t = sy_task(&bc->rt, &bc->rt_serial, bc->waiters.live != 0, &rc);
  if (!t) return rc;
  if (s->waiter && s->waiter != t) return NX_SY_BUSY;
  nx_wait(bc->rt, sub_cancel, s);
  if (nx_waitq_push(&bc->waiters, t) != 0) {
    t->cancel = NULL;
    nx_task_cancel_wait(bc->rt, t);
    return NX_E_NOMEM;
  }
  s->waiter = t;
  s->refs++;
  return NX_SY_WAIT;
}

/* Values sent that the subscriber has yet to read (capped at capacity). */
static double nx_sub_len(nx_bsub *s) {
  if (s->closed) return 0;
  nx_bcast *bc = s->bc;
  uint64_t lo = bc->tail > bc->cap ? bc->tail - bc->cap : 0;
  return (double)(bc->tail - (s->next > lo ? s->next : lo));
}

/* ================================================================ event */

static void ev_unref(nx_event *ev) {
  if (--ev->refs > 0) return;
  nx_waitq_free(&ev->waiters);
  free(ev);
}

static void ev_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_event *ev = t->wobj;
  nx_waitq_cancelled(&ev->waiters);
  t->wobj = NULL;
  ev_unref(ev);
}

static nx_event *nx_ev_new(void) {
  nx_event *ev = calloc(1, sizeof *ev);
  if (!ev) return NULL;
  nx_waitq_init(&ev->waiters);
  ev->refs = 1;
  return ev;
}

static void nx_ev_free(nx_event *ev) { ev_unref(ev); }

/* Every waiter is released, even if the event is cleared before it runs
 * (it compares the generation it started with). */
static void nx_ev_set(nx_event *ev) {
  if (ev->set) return;
  ev->set = 1;
  ev->gen++;
  nx_task *t;
  while ((t = nx_waitq_pop(&ev->waiters))) {
    nx_task_wake(ev->rt, t, NX_WAKE_OK);
    ev->refs--;
  }
}

static void nx_ev_clear(nx_event *ev) { ev->set = 0; }

/* NX_SY_OK once set, or set since generation `gen`; WAIT. */
static int nx_ev_wait(nx_event *ev, uint32_t gen, int wait) {
  if (ev->set || ev->gen != gen) return wait && nx_coop_spend(nx_cur_rt) ? NX_SY_WAIT : NX_SY_OK;
  if (!wait) return NX_SY_NONE;
  int rc;
  nx_task *t = sy_task(&ev->rt, &ev->rt_serial, ev->waiters.live != 0, &rc);
  if (!t) return rc;
  nx_wait(ev->rt, ev_cancel, ev);
  if (nx_waitq_push(&ev->waiters, t) != 0) {
    t->cancel = NULL;
    nx_task_cancel_wait(ev->rt, t);
    return NX_E_NOMEM;
  }
  ev->refs++;
  return NX_SY_WAIT;
}

/* ================================================================ FFI face */

/* lua/nexus/sync.lua declares the same layout. */
typedef struct nx_sync_api {
  nx_sem *(*sem_new)(double);
  void (*sem_free)(nx_sem *);
  int (*sem_acquire)(nx_sem *, double, int);
  int (*sem_release)(nx_sem *, double);
  double (*sem_available)(nx_sem *);
  double (*sem_held)(nx_sem *);
  void (*sem_add)(nx_sem *, double);
  void (*sem_close)(nx_sem *);
  nx_once *(*once_new)(void);
  int (*once_send)(nx_once *);
  int (*once_recv)(nx_once *, int);
  void (*once_tx_close)(nx_once *);
  void (*once_rx_close)(nx_once *);
  void (*once_tx_free)(nx_once *);
  void (*once_rx_free)(nx_once *);
  nx_watch *(*watch_new)(void);
  void (*watch_free)(nx_watch *);
  void (*watch_set)(nx_watch *);
  int (*watch_changed)(nx_watch *, double, int);
  void (*watch_close)(nx_watch *);
  nx_bcast *(*bc_new)(uint32_t);
  void (*bc_free)(nx_bcast *);
  int (*bc_send)(nx_bcast *);
  void (*bc_close)(nx_bcast *);
  nx_bsub *(*sub_new)(nx_bcast *);
  void (*sub_free)(nx_bsub *);
  void (*sub_close)(nx_bsub *);
  int (*sub_recv)(nx_bsub *, int);
  double (*sub_len)(nx_bsub *);
  nx_event *(*ev_new)(void);
  void (*ev_free)(nx_event *);
  void (*ev_set)(nx_event *);
  void (*ev_clear)(nx_event *);
  int (*ev_wait)(nx_event *, uint32_t, int);
} nx_sync_api;

static const nx_sync_api nx_sync_api_table = {
  nx_sem_new, nx_sem_free, nx_sem_acquire, nx_sem_release, nx_sem_available,
  nx_sem_held, nx_sem_add, nx_sem_close,
  nx_once_new, nx_once_send, nx_once_recv, nx_once_tx_close, nx_once_rx_close,
  nx_once_tx_free, nx_once_rx_free,
  nx_watch_new, nx_watch_free, nx_watch_set, nx_watch_changed, nx_watch_close,
  nx_bc_new, nx_bc_free, nx_bc_send, nx_bc_close, nx_sub_new, nx_sub_free,
  nx_sub_close, nx_sub_recv, nx_sub_len,
  nx_ev_new, nx_ev_free, nx_ev_set, nx_ev_clear, nx_ev_wait,
};

void nx_sync_open(lua_State *L) {
  nx_wait_kind(sem_cancel, "semaphore acquire", NULL);
  nx_wait_kind(once_cancel, "oneshot recv", NULL);
  nx_wait_kind(watch_cancel, "watch changed", NULL);
  nx_wait_kind(sub_cancel, "broadcast recv", NULL);
  nx_wait_kind(ev_cancel, "event wait", NULL);
  lua_pushlightuserdata(L, (void *)&nx_sync_api_table);
  lua_setfield(L, -2, "sync_api");
}
