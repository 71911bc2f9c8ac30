/* rt.c - the executor: task records, ready queue, waits, the loop. */
#include "rt.h"
#include "bchan.h"
#include "cancel.h"
#include "select.h"
#include "group.h"
#include "introspect.h"
#include "luvbind.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

NX_TLS nx_rt *nx_cur_rt;

/* Live runtimes by serial: objects that outlive their runtime (task
 * handles) check here instead of keeping its memory alive. A serial is a
 * slot of this table (low 32 bits) and that slot's generation (high 32):
 * a closed runtime's slot is reused with the next generation, so the table
 * is as long as the most runtimes ever alive at once (not one entry per
 * runtime ever made), and an old serial never finds the new runtime. */
typedef struct nx_rtslot {
  nx_rt *rt;
  uint32_t gen;
  uint32_t next_free;           /* while free: the next free slot, or UINT32_MAX */
} nx_rtslot;
static NX_TLS nx_rtslot *nx_rts;
static NX_TLS uint32_t nx_nrts, nx_rts_cap, nx_rts_free;   /* nx_rts_free: a free slot + 1, or 0 */

nx_rt *nx_rt_of(uint64_t serial) {
  uint32_t i = (uint32_t)serial;
  return i < nx_nrts && nx_rts[i].gen == (uint32_t)(serial >> 32) ? nx_rts[i].rt : NULL;
}

uint32_t nx_rt_slots(uint32_t *live) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < nx_nrts; i++) n += nx_rts[i].rt != NULL;
  *live = n;
  return nx_nrts;
}

static int nx_rt_register(nx_rt *rt) {
  uint32_t i;
  if (nx_rts_free) {
    i = nx_rts_free - 1;
    nx_rts_free = nx_rts[i].next_free == UINT32_MAX ? 0 : nx_rts[i].next_free + 1;
  } else {
    if (nx_nrts == nx_rts_cap) {
      uint32_t n = nx_rts_cap ? nx_rts_cap * 2 : 16;
      nx_rtslot *v = realloc(nx_rts, n * sizeof *v);
      if (!v) return -1;
      nx_rts = v;
      nx_rts_cap = n;
    }
    i = nx_nrts++;
    nx_rts[i].gen = 0;
  }
  nx_rts[i].rt = rt;
  rt->serial = (uint64_t)nx_rts[i].gen << 32 | i;
  return 0;
}

static void nx_rt_unregister(nx_rt *rt) {
  nx_rtslot *s = &nx_rts[(uint32_t)rt->serial];
  s->rt = NULL;
  s->gen++;
  s->next_free = nx_rts_free ? nx_rts_free - 1 : UINT32_MAX;
  nx_rts_free = (uint32_t)rt->serial + 1;
}

/* Only wakes the loop. When it fires before the poll (its deadline passed
 * between arming it and uv_run's own clock update), uv_stop keeps that
 * poll from blocking: it would otherwise wait with no timer left. */
static void nx_timer_cb(uv_timer_t *h) { uv_stop(h->loop); }
static void nx_poke_cb(uv_idle_t *h) { (void)h; }

nx_rt *nx_rt_new(void) {
  nx_rt *rt = calloc(1, sizeof *rt);
  if (!rt) return NULL;
  if (uv_loop_init(&rt->loop) != 0) goto fail;
  uv_timer_init(&rt->loop, &rt->timer);
  uv_idle_init(&rt->loop, &rt->poke);
  nx_heap_init(&rt->heap);
  rt->qcap = 256;
  rt->q = malloc(rt->qcap * sizeof *rt->q);
  if (!rt->q) goto fail_loop;
  rt->ctl_ref = LUA_NOREF;
  rt->owned.next = rt->owned.prev = &rt->owned;
  rt->refs = 1;
  rt->tasks_per_cycle = 64;
  rt->sweep_at = 256;
  rt->event_interval = 61;
  rt->next_id = 1;
  rt->event_time = nx_now();
  rt->epoch = rt->event_time;
  rt->coop = 128;
  if (nx_rt_register(rt) != 0) goto fail_q;
  return rt;
fail_q:
  free(rt->q);
fail_loop:
  uv_close((uv_handle_t *)&rt->timer, NULL);
  uv_close((uv_handle_t *)&rt->poke, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  uv_loop_close(&rt->loop);
fail:
  free(rt);
  return NULL;
}

/* ---- task slots ---- */

_Static_assert(sizeof(nx_task) == 64, "a task record is 64 bytes (rt.h)");


/* Adds a page of records. The arrays grow geometrically (a burst of
 * 200,000 spawns must not realloc them per page) and the records are set
 * up one at a time as nx_take_slot first hands them out. */
static int nx_grow_slots(nx_rt *rt) {
  if (rt->npages == rt->pcap) {
    uint32_t cap = rt->pcap ? rt->pcap * 2 : 4;
    nx_task **pages = realloc(rt->pages, cap * sizeof *pages);
    if (!pages) return -1;
    rt->pages = pages;
    rt->pcap = cap;
  }
  /* Not calloc: a record is initialised when first taken. */
  char *mem = malloc(NX_PAGE_HDR + NX_PAGE_SIZE * sizeof(nx_task));
  if (!mem) return -1;
  *(nx_task_x ***)(void *)mem = NULL;            /* no x part yet */
  rt->pages[rt->npages++] = (nx_task *)(void *)(mem + NX_PAGE_HDR);
  rt->nslots += NX_PAGE_SIZE;
  return 0;
}

/* A free record: the last one released, else the next never used (low
 * slots first, so the Lua arrays indexed by slot stay dense). */
static nx_task *nx_take_slot(nx_rt *rt) {
  if (rt->free_head) {
    nx_task *t = nx_task_at(rt, rt->free_head - 1);
    rt->free_head = (uint32_t)(uintptr_t)t->wobj;
    t->wobj = NULL;
    return t;
  }
  if (rt->used == rt->nslots && nx_grow_slots(rt) != 0) return NULL;
  nx_task *t = nx_task_at(rt, rt->used);
  t->slot = rt->used++;
  t->state = NX_FREE;
  t->flags = 0;
  t->co = NULL;
  t->tm.armed = 0;
  t->qseq = t->wseq = 0;
  t->kind = NX_KIND_TASK;
  return t;
}

/* Drops the coroutine (and the outcome it holds) of an ended task, or
 * the function and argument of one that never started. */
void nx_task_drop_co(nx_rt *rt, lua_State *L, nx_task *t) {
  (void)L;
  int unstarted = nx_task_unstarted(t);
  if (unstarted && t->nargs) nx_ctl_clear(rt, NX_CTL_ARGS, t->slot);
  if (t->co || (t->flags & NX_F_KEPT) || unstarted) nx_ctl_clear(rt, NX_CTL_TASKS, t->slot);
  t->co = NULL;
}

/* Why a spawn behind a backlog defers the coroutine: a new coroutine is
 * a 100-byte state plus a 47-slot stack, about 500 bytes the kernel must
 * fault in, and every live one is a stack the GC traverses. A task that
 * has not run needs none of it, so in a burst of spawns each costs a
 * table slot or two, and nx_task_start makes the coroutine when the task
 * first runs (for a short task it is garbage again soon, and its memory
 * is reused). Behind a short queue the task runs within a cycle or two
 * and the deferral would only add API calls (about 75 ns a task in
 * bench/pool_spawn.lua), hence NX_DEFER_AT. Only 0 or 1 argument is
 * deferred: more would need a table per task. */
void nx_task_defer(nx_rt *rt, lua_State *L, nx_task *t, int nargs) {
  rt->st.deferred++;
  t->nargs = (uint16_t)nargs;
  if (nargs) nx_ctl_set(rt, L, NX_CTL_ARGS, t->slot);
  nx_ctl_set(rt, L, NX_CTL_TASKS, t->slot);
  nx_task_ready(rt, t);
}

/* A deferred task's first run: its coroutine, with the function and the
 * argument on its stack, takes the function's place in the tasks table. */
static lua_State *nx_task_start(nx_rt *rt, lua_State *L, nx_task *t) {
  lua_State *ctl = rt->ctl;
  int key = (int)t->slot + 1;
  /* Made on L, not on ctl: the GC step an allocation may run calls
   * finalizers on the allocating thread, and a finalizer's nexus calls
   * (a spawn) use ctl's stack at fixed indices. Such a finalizer may also
   * have ended t (an abort): then there is nothing to start. */
  rt->starting = t;
  lua_State *co = lua_newthread(L);
  rt->starting = NULL;
  if (t->state != NX_READY) {
    lua_pop(L, 1);
    return NULL;
  }
  lua_xmove(L, ctl, 1);
  lua_rawgeti(ctl, NX_CTL_TASKS, key);
  if (t->nargs) {
    lua_rawgeti(ctl, NX_CTL_ARGS, key);
    nx_ctl_clear(rt, NX_CTL_ARGS, t->slot);
  }
  lua_xmove(ctl, co, 1 + t->nargs);
  lua_rawseti(ctl, NX_CTL_TASKS, key);
  t->co = co;
  return co;
}

/* Handles have no finalizer: an ended task waits in the zombie list, and
 * its slot comes back once its outcome was consumed or its handle is gone
 * from the weak slot -> handle table. Sweeping costs one table read per
 * ended task, a finalizer call per handle would cost far more. */
static void nx_zombie(nx_rt *rt, nx_task *t) {
  if (rt->nzomb == rt->zcap) {
    uint32_t cap = rt->zcap ? rt->zcap * 2 : 256;
    uint32_t *z = realloc(rt->zomb, cap * sizeof *z);
    if (!z) return;              /* keeps the record: a leak, not a crash */
    rt->zomb = z;
    rt->zcap = cap;
  }
  t->flags |= NX_F_ZOMBIE;
  rt->zomb[rt->nzomb++] = t->slot;
}

static void nx_sweep(nx_rt *rt, lua_State *L) {
  (void)L;
  lua_State *ctl = rt->ctl;
  uint32_t keep = 0;
  rt->st.sweeps++;
  for (uint32_t i = 0; i < rt->nzomb; i++) {
    uint32_t slot = rt->zomb[i];
    nx_task *t = nx_task_at(rt, slot);
    if (!(t->flags & NX_F_CONSUMED)) {
      lua_rawgeti(ctl, NX_CTL_HANDLES, (int)slot + 1);
      int alive = !lua_isnil(ctl, -1);
      lua_pop(ctl, 1);
      if (alive) {
        rt->zomb[keep++] = slot;
        continue;
      }
    }
    nx_ctl_clear(rt, NX_CTL_TASKS, slot);      /* the coroutine */
    nx_ctl_clear(rt, NX_CTL_HANDLES, slot);    /* a consumed handle */
    t->co = NULL;
    t->flags = 0;
    t->state = NX_FREE;
    t->wobj = (void *)(uintptr_t)rt->free_head;   /* a free record links the next */
    rt->free_head = slot + 1;
  }
  rt->nzomb = keep;
}

/* Takes a free record; the caller anchors the coroutine in the tasks table. */
static void nx_task_init(nx_rt *rt, nx_task *t) {
  t->id = rt->next_id++;
  t->state = NX_RUNNING;   /* not queued yet: the caller readies it */
  t->end = NX_END_OK;
  t->nargs = 0;
  t->cancel = NULL;
  t->wobj = NULL;
  nx_task_x *x = nx_task_xp(t);
  if (x) memset(x, 0, sizeof *x);
  t->kind = NX_KIND_TASK;
  rt->alive++;
  rt->st.spawned++;
}

/* Takes a free record; the caller anchors the coroutine in the tasks table. */
nx_task *nx_task_new(nx_rt *rt, lua_State *L) {
  /* Sweep when the zombies have doubled since the last sweep: a sweep that
   * finds the handles still alive (not yet collected) must not run again
   * at every spawn, which would make spawning quadratic. */
  if (rt->nzomb >= rt->sweep_at) {
    nx_sweep(rt, L);
    rt->sweep_at = rt->nzomb * 2 > 256 ? rt->nzomb * 2 : 256;
  }
  nx_task *t = nx_take_slot(rt);
  if (!t) return NULL;
  t->co = NULL;
  t->flags = 0;
  nx_task_init(rt, t);
  return t;
}

/* ---- the task pool (spawn_pooled) ----
 *
 * Pool records are task slots set aside for good, each with a coroutine
 * anchored at its slot in the tasks table. A pooled task has no handle:
 * when it ends its outcome is dropped and, if it returned normally, its
 * coroutine (status 0 again, so lua_resume calls a new function on it) and
 * its record go back to the pool. One that failed or was aborted gets a
 * fresh coroutine: only that path allocates. */

static int nx_pool_thread(nx_rt *rt, lua_State *L, nx_task *t) {
  t->co = lua_newthread(L);
  nx_ctl_set(rt, L, NX_CTL_TASKS, t->slot);
  return 0;
}

static int nx_pool_add(nx_rt *rt, lua_State *L) {
  uint32_t *pf = realloc(rt->pool_free, (rt->pool_size + 1) * sizeof *pf);
  if (!pf) return -1;
  rt->pool_free = pf;
  nx_task *t = nx_take_slot(rt);
  if (!t) return -1;
  t->flags = NX_F_POOLED;
  t->state = NX_FREE;
  nx_pool_thread(rt, L, t);
  rt->pool_size++;
  rt->pool_free[rt->npool_free++] = t->slot;
  return 0;
}

int nx_pool_config(nx_rt *rt, lua_State *L, uint32_t n, int bounded) {
  rt->pool_bounded = (uint8_t)bounded;
  rt->pool_on = 1;
  while (rt->pool_size < n)
    if (nx_pool_add(rt, L) != 0) return -1;
  return 0;
}

/* A pool record for a claim or a spawn: NX_OK, NX_E_NOMEM, or
 * NX_POOL_NONE / NX_POOL_FULL. */
int nx_pool_take(nx_rt *rt, lua_State *L, nx_task **out) {
  if (!rt->pool_on) return NX_POOL_NONE;
  if (rt->npool_free == 0) {
    if (rt->pool_bounded) return NX_POOL_FULL;
    if (nx_pool_add(rt, L) != 0) return NX_E_NOMEM;
  }
  *out = nx_task_at(rt, rt->pool_free[--rt->npool_free]);
  return NX_OK;
}

void nx_pool_give(nx_rt *rt, nx_task *t) {
  t->state = NX_FREE;
  t->flags = NX_F_POOLED;
  rt->pool_free[rt->npool_free++] = t->slot;
}

/* Starts a taken pool record: the function and its arguments are the
 * top nargs + 1 values of L. */
void nx_pool_start(nx_rt *rt, lua_State *L, nx_task *t, int nargs) {
  nx_task_init(rt, t);
  t->flags = NX_F_POOLED;
  t->nargs = (uint16_t)nargs;
  lua_xmove(L, t->co, nargs + 1);
  nx_task_ready(rt, t);
}

static void nx_pool_recycle(nx_rt *rt, lua_State *L, nx_task *t) {
  if (rt->closed) {                    /* going away: nothing to reuse */
    nx_task_drop_co(rt, L, t);
    t->state = NX_FREE;
    return;
  }
  if (t->co && t->end == NX_END_OK && lua_status(t->co) == 0) lua_settop(t->co, 0);
  else nx_pool_thread(rt, L, t);
  nx_pool_give(rt, t);
}

/* A task that returned 0 or 1 value: the value replaces its coroutine in
 * the tasks table, and the coroutine (a stack of ~45 slots) can go now.
 * join then takes the value through the FFI and a table read, which the
 * JIT compiles, where a C function would cost a trace exit (task.lua). */
static void nx_keep_result(nx_rt *rt, nx_task *t) {
  lua_State *co = t->co;
  int n = lua_gettop(co);
  if (n > 1 || t->end != NX_END_OK || (t->flags & NX_F_ROOT)) return;
  if (n == 1) {
    lua_xmove(co, rt->ctl, 1);
    lua_rawseti(rt->ctl, NX_CTL_TASKS, (int)t->slot + 1);
  } else {
    nx_ctl_clear(rt, NX_CTL_TASKS, t->slot);
  }
  t->co = NULL;
  t->nargs = (uint16_t)n;
  t->flags |= NX_F_KEPT;
}

void nx_task_ended(nx_rt *rt, lua_State *L, nx_task *t) {
  if (nx_task_holds(t) || (t->flags & (NX_F_FATAL | NX_F_ZOMBIE))) return;
  if (t->flags & NX_F_POOLED) {
    nx_pool_recycle(rt, L, t);
    return;
  }
  if (t->flags & NX_F_CONSUMED) nx_task_drop_co(rt, L, t);
  else if (t->co) nx_keep_result(rt, t);
  nx_zombie(rt, t);
}

void nx_task_unhold(nx_rt *rt, lua_State *L, nx_task *t) {
  nx_task_x *x = nx_task_xp(t);
  assert(x && x->holds > 0);
  if (--x->holds == 0 && t->state == NX_DONE) nx_task_ended(rt, L, t);
}

/* ---- ready queue ---- */

static int nx_q_resize(nx_rt *rt, uint32_t cap) {
  nx_qent *q = malloc(cap * sizeof *q);
  if (!q) return -1;
  for (uint32_t i = 0; i < rt->qn; i++) q[i] = rt->q[(rt->qhead + i) & (rt->qcap - 1)];
  free(rt->q);
  rt->q = q;
  rt->qhead = 0;
  rt->qcap = cap;
  return 0;
}

static int nx_q_grow(nx_rt *rt) { return nx_q_resize(rt, rt->qcap * 2); }

/* A burst of spawns grows the ring to hold them all (100,000 tasks: 1 MB);
 * once it has drained to an eighth, it shrinks to twice what it holds, so
 * the burst's memory goes back (a ring that size is mmap'ed: to the
 * system). The eighth keeps a queue that hovers near a power of two from
 * resizing back and forth. */
#define NX_Q_KEEP 4096
static void nx_q_shrink(nx_rt *rt) {
  uint32_t cap = rt->qcap;
  while (cap > NX_Q_KEEP && rt->qn < cap / 8) cap /= 2;
  if (cap < rt->qcap) (void)nx_q_resize(rt, cap);   /* no memory: keep the big one */
}

const char *(*nx_task_name_hook)(nx_rt *rt, nx_task *t);

void nx_task_ready_slow(nx_rt *rt, nx_task *t) {
  if (t->kind) {              /* a stand-in record: its owner hears of it */
    t->state = NX_READY;
    if (t->kind == NX_KIND_PROXY) nx_sel_fired(rt, t);   /* a select op */
    else nx_group_watch_fired(rt, t);                    /* a scope's token */
    return;
  }
  if (rt->qn == rt->qcap && nx_q_grow(rt) != 0) {
    /* Out of memory with a task to run: losing it silently is worse. */
    fputs("nexus: out of memory growing the ready queue\n", stderr);
    abort();
  }
  nx_task_ready(rt, t);
}

static nx_task *nx_q_pop(nx_rt *rt) {
  while (rt->qn) {
    nx_qent e = rt->q[rt->qhead];
    rt->qhead = (rt->qhead + 1) & (rt->qcap - 1);
    rt->qn--;
    nx_task *t = nx_task_at(rt, e.slot);
    if (t->qseq == e.seq && t->state == NX_READY) return t;
  }
  return NULL;
}

/* ---- waits ---- */

void nx_task_grant(nx_rt *rt, nx_task *t) {
  if (t->state != NX_WAITING) return;
  t->wseq++;
  nx_task_ready(rt, t);
}

void nx_task_cancel_wait(nx_rt *rt, nx_task *t) {
  t->wseq++;
  if (t->cancel) {
    nx_cancel_fn fn = t->cancel;
    t->cancel = NULL;
    fn(rt, t);
  }
  t->wobj = NULL;
  if (t->state == NX_WAITING) t->state = NX_RUNNING;
  else if (t->state == NX_READY) t->qseq++;   /* drop its queue entry */
}

static void nx_sleep_cancel(nx_rt *rt, nx_task *t) { nx_timer_disarm(&rt->heap, &t->tm); }

int nx_wait_sleep(nx_rt *rt, double deadline) {
  nx_task *t = nx_running(rt);
  if (!t) return NX_E_NOTASK;
  t->tm.kind = NX_TM_SLEEP;
  if (nx_timer_arm(&rt->heap, &t->tm, deadline) != 0) return NX_E_NOMEM;
  return nx_wait(rt, nx_sleep_cancel, NULL);
}

nx_task_x *nx_task_ext(nx_task *t) {
  nx_task_x **x;
  if (t->kind) {
    if (!(x = nx_task_xslot(t))) return NULL;    /* a group's sink or watch */
  } else {
    nx_task_x ***pxs = nx_page_xs(t);
    if (!*pxs && !(*pxs = calloc(NX_PAGE_SIZE, sizeof **pxs))) return NULL;
    x = &(*pxs)[t->slot & (NX_PAGE_SIZE - 1)];
  }
  if (!*x) *x = calloc(1, sizeof **x);
  return *x;
}

static void nx_join_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_task *target = t->wobj;
  if (target && nx_joiner(target) == t) nx_task_xp(target)->joiner = NULL;
}

int nx_wait_join(nx_rt *rt, nx_task *target) {
  nx_task *t = nx_running(rt);
  if (!t) return NX_E_NOTASK;
  nx_task_x *x = nx_task_ext(target);
  if (!x) return NX_E_NOMEM;
  x->joiner = t;
  return nx_wait(rt, nx_join_cancel, target);
}

static void nx_join_describe(nx_task *t, char *buf, size_t n) {
  nx_task *target = t->wobj;
  snprintf(buf, n, "join task %llu", target ? (unsigned long long)target->id : 0ULL);
}

/* ---- what tasks wait on (nexus.tasks) ---- */

#define NX_WAIT_KINDS 64
static struct { nx_cancel_fn fn; const char *what; void (*describe)(nx_task *, char *, size_t); }
  nx_wait_kinds[NX_WAIT_KINDS];
static int nx_nwait_kinds;

void nx_wait_kind(nx_cancel_fn cancel, const char *what, void (*describe)(nx_task *t, char *buf, size_t n)) {
  for (int i = 0; i < nx_nwait_kinds; i++)
    if (nx_wait_kinds[i].fn == cancel) return;
  if (nx_nwait_kinds == NX_WAIT_KINDS) return;
  nx_wait_kinds[nx_nwait_kinds].fn = cancel;
  nx_wait_kinds[nx_nwait_kinds].what = what;
  nx_wait_kinds[nx_nwait_kinds].describe = describe;
  nx_nwait_kinds++;
}

void nx_describe_wait(nx_task *t, char *buf, size_t n) {
  if (!t->cancel) {
    snprintf(buf, n, "%s", t->state == NX_WAITING ? "a grant" : "");
    return;
  }
  if (t->cancel == nx_sleep_cancel) {
    snprintf(buf, n, "sleep");
    return;
  }
  if (t->cancel == nx_join_cancel) {
    nx_join_describe(t, buf, n);
    return;
  }
  for (int i = 0; i < nx_nwait_kinds; i++) {
    if (nx_wait_kinds[i].fn != t->cancel) continue;
    if (nx_wait_kinds[i].describe) nx_wait_kinds[i].describe(t, buf, n);
    else snprintf(buf, n, "%s", nx_wait_kinds[i].what);
    return;
  }
  snprintf(buf, n, "something");
}

/* ---- timeout levels ---- */

int nx_dl_push(nx_rt *rt, double deadline) {
  nx_task *t = rt->cur;
  if (!t) return NX_E_NOTASK;
  nx_task_x *x = nx_task_ext(t);
  if (!x) return NX_E_NOMEM;
  nx_deadline *d = rt->dlfree;
  if (d) rt->dlfree = d->prev;
  else if (!(d = malloc(sizeof *d))) return NX_E_NOMEM;
  d->tm.kind = NX_TM_DEADLINE;
  d->tm.armed = 0;
  d->task = t;
  d->co = NULL;
  d->state = NX_DL_PENDING;
  if (nx_timer_arm(&rt->heap, &d->tm, deadline) != 0) {
    d->prev = rt->dlfree;
    rt->dlfree = d;
    return NX_E_NOMEM;
  }
  d->prev = x->dl;
  x->dl = d;
  return (int)++x->ndl;
}

/* True when L is a coroutine nexus drives for the running task: the
 * task's own, or one running a timed function. A yield from any other
 * (a coroutine.wrap of the user's) would go to the user's code instead. */
int nx_may_suspend(nx_rt *rt, lua_State *L) {
  nx_task *t = rt->cur;
  if (!t) return 0;
  if (L == t->co) return 1;
  for (nx_deadline *d = nx_task_dl(t); d; d = d->prev)
    if (d->co == L) return 1;
  return 0;
}

static nx_deadline *nx_dl_at(nx_task *t, int level) {
  nx_deadline *d = nx_task_dl(t);
  for (uint32_t n = nx_task_ndl(t); d && n > (uint32_t)level; n--) d = d->prev;
  return d;
}

int nx_dl_state(nx_rt *rt, int level) {
  nx_task *t = rt->cur;
  if (!t || level < 1 || (uint32_t)level > nx_task_ndl(t)) return NX_E_NOTASK;
  return nx_dl_at(t, level)->state;
}

/* Pops `level` and every deeper one (an abandoned inner timeout). */
static void nx_dl_pop_task(nx_rt *rt, nx_task *t, uint32_t level) {
  nx_task_x *x = nx_task_xp(t);
  if (!x) return;
  while (x->ndl >= level && x->dl) {
    nx_deadline *d = x->dl;
    x->dl = d->prev;
    x->ndl--;
    nx_timer_disarm(&rt->heap, &d->tm);
    d->prev = rt->dlfree;
    rt->dlfree = d;
  }
}

void nx_dl_pop(nx_rt *rt, int level) {
  if (rt->cur && level >= 1) nx_dl_pop_task(rt, rt->cur, (uint32_t)level);
}

static void nx_fire_deadline(nx_rt *rt, nx_deadline *d) {
  nx_task *t = d->task;
  if (t->state == NX_WAITING) {
    nx_task_cancel_wait(rt, t);
    d->state = NX_DL_CANCELLED;
    t->state = NX_WAITING;   /* so the wake below is not stale */
    nx_task_wake(rt, t, NX_WAKE_TIMEOUT);
  } else {
    d->state = NX_DL_EXPIRED;   /* its wait already completed: keep the result */
  }
}

static void nx_fire_timers(nx_rt *rt, double now) {
  nx_timer *tm;
  while ((tm = nx_heap_pop_due(&rt->heap, now))) {
    rt->st.timers_fired++;
    void *owner = (char *)tm;     /* tm is the first member of its owner */
    if (tm->kind == NX_TM_SLEEP) {
      nx_task *t = owner;
      t->cancel = NULL;
      nx_task_wake(rt, t, NX_WAKE_OK);
    } else {
      nx_fire_deadline(rt, owner);
    }
  }
}

/* ---- ending tasks ---- */

/* on_task_error("report"): the traceback string begins with the message. */
static void nx_report(nx_task *t) {
  const char *tb = lua_tostring(t->co, -1);
  fprintf(stderr, "nexus: error in task %llu (nobody joined it): %s\n",
          (unsigned long long)t->id, tb ? tb : "?");
  fflush(stderr);
}

/* Leaves [err, traceback] on top of the dead coroutine's stack. */
static void nx_capture_error(lua_State *L, nx_task *t) {
  lua_State *co = t->co;
  lua_checkstack(co, 2);
  const char *msg = lua_tostring(co, -1);
  if (lua_isnil(co, -1)) {
    lua_pop(co, 1);
    lua_pushliteral(co, "(error object is a nil value)");
    msg = lua_tostring(co, -1);
  }
  luaL_traceback(L, co, msg ? msg : "(error object is not a string)", 0);
  lua_xmove(L, co, 1);
}

static void nx_end_common(nx_rt *rt, lua_State *L, nx_task *t) {
  nx_dl_pop_task(rt, t, 1);
  if (t->cancel) nx_task_cancel_wait(rt, t);   /* a wait it never yielded for */
  t->state = NX_DONE;
  rt->alive--;
  nx_task_x *x = nx_task_xp(t);
  if (x && x->guards) nx_guards_fire(t);
  if (x && x->claims) nx_bchan_task_ended(t);
  if (x && x->joiner) {
    nx_task *j = x->joiner;
    x->joiner = NULL;
    if (j->kind == NX_KIND_GROUP) nx_group_ended(rt, j, t);
    else nx_task_wake(rt, j, NX_WAKE_OK);
  }
  /* A scope's task that ends (aborted, say) cancels the scope's token
   * through its drop guard: its children go now, not at the next cycle. */
  if (rt->kills) nx_group_kill(rt, L);
  nx_task_ended(rt, L, t);
}

void nx_task_finish(nx_rt *rt, lua_State *L, nx_task *t, int how) {
  if (how == NX_FIN_OK) {
    t->end = NX_END_OK;
  } else {
    t->end = NX_END_ERROR;
    rt->st.errors++;
    if (how == NX_FIN_RAW) {
      rt->finishing = t;
      nx_capture_error(L, t);
      rt->finishing = NULL;
    }
    if (!nx_joiner(t) && !(t->flags & NX_F_ROOT)) {
      if (rt->report_errors) {
        nx_report(t);
        t->flags |= NX_F_REPORTED;
      } else if (!rt->fatal) {
        t->flags |= NX_F_FATAL;     /* kept until block_on raises it */
        rt->fatal = t;
      }
    }
  }
  nx_end_common(rt, L, t);
}

int nx_task_abort(nx_rt *rt, lua_State *L, nx_task *t) {
  if (t->state == NX_DONE || t->state == NX_FREE) return 0;
  if (t == rt->cur) {            /* ends when it next yields */
    t->flags |= NX_F_ABORTED;
    return 1;
  }
  nx_task_cancel_wait(rt, t);
  t->end = NX_END_ABORTED;
  /* Nothing of it runs again: drop the coroutine now. */
  nx_task_drop_co(rt, L, t);
  nx_end_common(rt, L, t);
  return 1;
}

void nx_task_after_yield(nx_rt *rt, lua_State *L, nx_task *t) {
  /* Values a bare coroutine.yield left; nexus's own waits yield none
   * (lua_gettop is a subtraction, lua_settop a call with checks). */
  if (lua_gettop(t->co)) lua_settop(t->co, 0);
  if (t->flags & NX_F_ABORTED) {
    t->state = NX_RUNNING;
    rt->cur = NULL;
    nx_task_abort(rt, L, t);
    return;
  }
  /* A yield with no wait registered (nexus.yield or a bare
   * coroutine.yield) goes to the back of the queue. */
  if (t->state == NX_RUNNING) nx_task_ready(rt, t);
}

/* ---- the loop ---- */


/* A task's coroutine found neither suspended in a yield to the executor
 * nor fresh: code of the user's resumed it by hand (coroutine.resume or
 * wrap on the coroutine of a task), and it ran, outside its wait, until
 * it ended or yielded to that code. It cannot be trusted to go on: it
 * ends with an error saying so. */
static void nx_hand_resumed(nx_rt *rt, lua_State *L, nx_task *t, lua_State *co) {
  lua_settop(co, 0);
  t->state = NX_RUNNING;
  rt->finishing = t;
  lua_pushfstring(co, "nexus: task %s was resumed outside the runtime (coroutine.resume or "
                  "coroutine.wrap on a task's coroutine): only nexus may resume a task", NX_ID(t->id));
  nx_task_finish(rt, L, t, NX_FIN_RAW);
}

/* builder:slow_resume_warning: a resume that ran longer than the limit
 * is reported with the task's id, name and where it stopped. */
static void nx_check_slow(nx_rt *rt, nx_task *t, lua_State *co, double t0) {
  double took = nx_now() - t0;
  if (took <= rt->slow_resume) return;
  rt->st.slow_resumes++;
  lua_Debug ar;
  char where[256] = "?";
  for (int level = 0; lua_getstack(co, level, &ar); level++) {
    if (!lua_getinfo(co, "Sl", &ar)) break;
    if (ar.currentline > 0 && ar.source[0] == '@' && !strstr(ar.source, "/nexus/")) {
      snprintf(where, sizeof where, "%s:%d", ar.short_src, ar.currentline);
      break;
    }
  }
  const char *name = nx_task_name_hook ? nx_task_name_hook(rt, t) : NULL;
  fprintf(stderr, "nexus: slow resume: task %llu%s%s%s ran %.1f ms without yielding (limit %.1f ms), now at %s\n",
          (unsigned long long)t->id, name ? " (" : "", name ? name : "", name ? ")" : "",
          took * 1e3, rt->slow_resume * 1e3, where);
  fflush(stderr);
}

static void nx_resume(nx_rt *rt, lua_State *L, nx_task *t) {
  lua_State *co = t->co ? t->co : nx_task_start(rt, L, t);
  if (!co) return;
  int nargs = t->nargs;
  if (nargs == NX_RAN) {
    if (lua_status(co) != LUA_YIELD) {
      nx_hand_resumed(rt, L, t, co);
      return;
    }
    nargs = 0;
  } else {
    t->nargs = NX_RAN;
  }
  t->state = NX_RUNNING;
  rt->cur = t;
  rt->st.resumes++;
  rt->coop_left = rt->coop;
  rt->coop_pending = 0;
  double t0 = rt->slow_resume > 0 ? nx_now() : 0;
  int status = lua_resume(co, nargs);
  rt->cur = NULL;
  if (t0 > 0) nx_check_slow(rt, t, co, t0);
  if (status == LUA_YIELD) {
    /* The common case: it yielded in a wait it registered, nothing left
     * on its stack, not aborted meanwhile. */
    if (t->state == NX_WAITING && !(t->flags & NX_F_ABORTED) && !lua_gettop(co)) return;
    nx_task_after_yield(rt, L, t);
  } else if (t->flags & NX_F_ABORTED) {
    nx_task_abort(rt, L, t);     /* aborted itself, then ended: it was aborted */
  } else {
    nx_task_finish(rt, L, t, status == 0 ? NX_FIN_OK : NX_FIN_RAW);
  }
}

static void nx_run_batch(nx_rt *rt, lua_State *L) {
  for (uint32_t n = 0; n < rt->tasks_per_cycle; n++) {
    nx_task *t = nx_q_pop(rt);
    if (!t) break;
    nx_resume(rt, L, t);
    if (rt->fatal) return;
  }
  if (rt->qcap > NX_Q_KEEP && rt->qn < rt->qcap / 8) nx_q_shrink(rt);
}

/* A non-blocking poll that always polls. uv_run(NOWAIT) returns at once,
 * without even looking at I/O, when no referenced handle is active: and
 * the signal handles are unreferenced while nobody waits on the shutdown
 * signal (so they never keep a finished runtime parked). A busy runtime
 * would then never see SIGTERM. An active idle handle keeps the loop
 * alive for this one turn (and makes its poll timeout 0, as NOWAIT's is). */
static void nx_poll_nowait(nx_rt *rt) {
  uv_idle_start(&rt->poke, nx_poke_cb);
  uv_run(&rt->loop, UV_RUN_NOWAIT);
  uv_idle_stop(&rt->poke);
}

/* Parks in the loop until I/O, the earliest timer or `until`; 0 if
 * nothing can ever wake it (deadlock). */
static int nx_park(nx_rt *rt, double until) {
  nx_timer *top = nx_heap_peek(&rt->heap);
  double at = top && top->deadline < until ? top->deadline : until;
  if (at < INFINITY) {
    /* libuv timers count whole milliseconds from a cached loop time: round
     * up, and the next cycle re-checks with a fresh clock, so a wake-up
     * that comes early only re-arms; a timer never fires early. */
    double ms = ceil((at - nx_now()) * 1000.0);
    if (ms > 1e12) ms = 1e12;                      /* sleep(math.huge) */
    uv_update_time(&rt->loop);
    uv_timer_start(&rt->timer, nx_timer_cb, ms > 0 ? (uint64_t)ms : 0, 0);
  } else {
    uv_timer_stop(&rt->timer);
    if (!uv_loop_alive(&rt->loop)) return 0;
  }
  rt->st.parks++;
  if (rt->busy) nx_poll_nowait(rt);
  else uv_run(&rt->loop, UV_RUN_ONCE);
  return 1;
}

/* Every task ends as aborted: the runtime was interrupted or closes. */
void nx_rt_abort_all(nx_rt *rt, lua_State *L) {
  for (uint32_t s = 0; s < rt->used; s++) {
    nx_task *t = nx_task_at(rt, s);
    if (t->state != NX_FREE && t->state != NX_DONE && nx_task_abort(rt, L, t)) rt->st.aborted++;
  }
}

static int nx_stop_now(nx_rt *rt, lua_State *L, nx_task *root, int all) {
  if (rt->fatal) return NX_STOP_FATAL;
  if (rt->interrupted) {
    nx_rt_abort_all(rt, L);
    return NX_STOP_INTERRUPT;
  }
  if (!root) return rt->alive == 0 ? NX_STOP_DONE : -1;
  /* A root that failed or was aborted stops the runtime at once, as an
   * unobserved task error does: its error must not wait behind (or be
   * lost to) tasks that run on or are parked. */
  if (root->state == NX_DONE && (!all || rt->alive == 0 || root->end != NX_END_OK)) return NX_STOP_DONE;
  return -1;
}

/* While tasks stay ready, I/O (and signals) are polled every
 * event_interval cycles, and at least this often in seconds: cycles of
 * slow tasks (64 tasks of 1 ms each make a 64 ms cycle) must not hold off
 * a SIGTERM or a socket for seconds. One compare per cycle (the clock is
 * read anyway). */
#define NX_POLL_GAP 0.01

int nx_rt_drive(nx_rt *rt, lua_State *L, nx_task *root, int all, double until) {
  uint32_t ticks = 0;
  double polled = nx_now();
  int stop;
  for (;;) {
    if (rt->kills) nx_group_kill(rt, L);
    if (rt->dump_asked) nx_dump_now(rt, L);
    if (rt->ext_error) nx_luv_raise(rt, L);
    nx_run_batch(rt, L);
    if ((stop = nx_stop_now(rt, L, root, all)) >= 0) return stop;
    double now = nx_now();
    rt->event_time = now;
    rt->event_rel = (float)(now - rt->epoch);
    rt->st.cycles++;
    nx_fire_timers(rt, now);
    if (now >= until) return NX_STOP_TIMEOUT;
    if (rt->qn) {
      if (++ticks >= rt->event_interval || now - polled >= NX_POLL_GAP) {
        polled = now;
        ticks = 0;
        rt->st.polls++;
        nx_poll_nowait(rt);
      }
      continue;
    }
    ticks = 0;
    polled = now;                 /* parking polls */
    if (!nx_park(rt, until)) return NX_STOP_DEADLOCK;
    if (rt->interrupted && (stop = nx_stop_now(rt, L, root, all)) >= 0) return stop;
  }
}

void nx_rt_recover(nx_rt *rt, lua_State *L) {
  nx_task *t;
  rt->cur = NULL;
  if ((t = rt->starting)) {
    rt->starting = NULL;
    if (t->state == NX_READY) nx_task_ready(rt, t);   /* its queue entry was taken */
  }
  if ((t = rt->finishing)) {
    /* Its coroutine is dead: the raised value becomes its error and its
     * traceback (making a traceback would allocate again). */
    rt->finishing = NULL;
    lua_State *co = t->co;
    lua_settop(co, 0);
    lua_checkstack(co, 2);
    lua_pushvalue(L, -1);
    lua_pushvalue(L, -1);
    lua_xmove(L, co, 2);
    t->state = NX_RUNNING;
    nx_task_finish(rt, L, t, NX_FIN_ERR);
  }
}

/* ---- closing ---- */

void nx_rt_close(nx_rt *rt, lua_State *L) {
  if (rt->closed) return;
  rt->closed = 1;
  nx_rt_abort_all(rt, L);
  if (rt->kills) nx_group_kill(rt, L);
  if (rt->fatal) {
    nx_task *t = rt->fatal;
    rt->fatal = NULL;
    t->flags &= ~NX_F_FATAL;
    nx_task_ended(rt, L, t);
  }
  while (rt->owned.next != &rt->owned) {
    nx_owned *o = rt->owned.next;
    nx_disown(rt, o);
    o->close(rt, o);
  }
  uv_close((uv_handle_t *)&rt->timer, NULL);
  uv_close((uv_handle_t *)&rt->poke, NULL);
  uv_run(&rt->loop, UV_RUN_DEFAULT);
  uv_loop_close(&rt->loop);
  nx_heap_free(&rt->heap);
}

void nx_own(nx_rt *rt, nx_owned *o) {
  o->next = rt->owned.next;
  o->prev = &rt->owned;
  rt->owned.next->prev = o;
  rt->owned.next = o;
}

void nx_disown(nx_rt *rt, nx_owned *o) {
  (void)rt;
  if (!o->next) return;
  o->prev->next = o->next;
  o->next->prev = o->prev;
  o->next = o->prev = NULL;
}

void nx_rt_ref(nx_rt *rt) { rt->refs++; }

/* The runtime object closes the runtime when collected; its keeper (a
 * userdata every handle reaches through its environment) goes when the
 * last handle does. The struct is freed after both. */
void nx_rt_unref(nx_rt *rt) {
  if (--rt->refs > 0) return;
  nx_rt_unregister(rt);
  free(rt->zomb);
  free(rt->pool_free);
  for (uint32_t i = 0; i < rt->npages; i++) {
    nx_task_x **xs = *(nx_task_x ***)(void *)((char *)rt->pages[i] - NX_PAGE_HDR);
    if (xs) {
      for (uint32_t k = 0; k < NX_PAGE_SIZE; k++) free(xs[k]);
      free(xs);
    }
    free((char *)rt->pages[i] - NX_PAGE_HDR);
  }
  free(rt->pages);
  free(rt->q);
  while (rt->dlfree) {
    nx_deadline *d = rt->dlfree;
    rt->dlfree = d->prev;
    free(d);
  }
  free(rt);
}
