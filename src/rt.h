/* rt.h - the runtime: task table, ready queue, executor loop.
 *
 * A task is a Lua coroutine plus this C record. It waits on exactly one
 * thing at a time: the wait is registered here (cancel callback + object)
 * before the coroutine yields, and released through that one callback by
 * a wake, an abort or a timeout. A wake of a task that is no longer
 * waiting is stale and ignored.
 */
#ifndef NX_RT_H
#define NX_RT_H

#include <stdint.h>
#include <uv.h>
#include <lua.h>

#include "timer.h"

typedef struct nx_task nx_task;
typedef struct nx_rt nx_rt;
typedef struct nx_deadline nx_deadline;
typedef void (*nx_cancel_fn)(nx_rt *rt, nx_task *t);

enum { NX_FREE, NX_READY, NX_RUNNING, NX_WAITING, NX_DONE };          /* state */
enum { NX_END_OK, NX_END_ERROR, NX_END_ABORTED };                       /* end */
enum { NX_TM_SLEEP = 1, NX_TM_DEADLINE };                               /* timer kind */
enum { NX_DL_PENDING, NX_DL_EXPIRED, NX_DL_CANCELLED };                 /* deadline */
enum { NX_WAKE_OK = 0, NX_WAKE_TIMEOUT = 1 };                           /* wake code */
enum { NX_KIND_TASK = 0, NX_KIND_PROXY = 1, NX_KIND_GROUP = 2, NX_KIND_WATCH = 3 };  /* kind */

/* Status codes of the FFI entry points; < 0 are programming errors.
 * The convention of every suspending operation (as lua-resty-core's):
 * the C entry point returns NX_OK when it completed, NX_AGAIN when it
 * registered a wait of the running task (the Lua wrapper then yields and,
 * once resumed, calls the entry point again), or an error code. */
enum {
  NX_OK = 0,
  NX_AGAIN = 1,         /* wait registered: yield, then try again */
  NX_E_NOTASK = -1,     /* not inside a nexus task */
  NX_E_NOMEM = -2,
  NX_E_OTHER_RT = -3    /* the object has waiters in another runtime */
};

/* task flags */
#define NX_F_ROOT     0x01u   /* block_on's root: its end is observed */
#define NX_F_ABORTED  0x02u   /* abort requested while it was running */
#define NX_F_REPORTED 0x04u   /* error printed under on_task_error("report") */
#define NX_F_FATAL    0x08u   /* error stopped the runtime */
#define NX_F_ZOMBIE   0x10u   /* ended; in the zombie list until swept */
#define NX_F_CONSUMED 0x20u   /* its outcome was handed over by join */
#define NX_F_POOLED   0x40u   /* a task-pool record: reused, never freed */
#define NX_F_KEPT     0x80u   /* ended with 0 or 1 result (nargs says which), kept
                                 in its tasks-table slot; its coroutine is gone */

struct nx_deadline {            /* one level of nexus.timeout in a task */
  nx_timer tm;                  /* first: the heap hands back nx_timer* */
  nx_task *task;
  lua_State *co;                /* the coroutine running the timed function */
  nx_deadline *prev;            /* next outer level */
  uint8_t state;
};

/* What few tasks use, kept out of the record: allocated at a slot's
 * first need (a join waiting on it, a timeout, a drop guard, a byte
 * channel claim) and kept with the slot for its next tasks. */
typedef struct nx_task_x {
  nx_task *joiner;              /* the one task waiting in join/result */
  nx_deadline *dl;              /* innermost timeout level */
  struct nx_guard *guards;      /* drop guards to fire when it ends (cancel.h) */
  struct nexus_bclaim *claims;  /* byte-channel claims it holds (bchan.c) */
  uint32_t ndl;                 /* timeout levels */
  uint16_t holds;               /* C-side holds (block_on's root) */
} nx_task_x;

/* 64 bytes: a parked task costs this besides its coroutine. Its x part
 * is not here: a page of records keeps the x pointers of its 256 slots in
 * one array, made when one of them first needs an x (nx_task_xp). */
struct nx_task {
  nx_timer tm;                  /* first: sleep timer, NX_TM_SLEEP (10 bytes, packed) */
  uint8_t state, end, flags;
  uint8_t kind;                 /* NX_KIND_TASK; a select op's proxy (select.h); a group's sink (group.h) */
  uint16_t nargs;               /* arguments for the first resume (NX_RAN once resumed);
                                   results once KEPT */
  lua_State *co;                /* anchored at rt tasks table [slot] */
  uint64_t id;
  nx_cancel_fn cancel;          /* releases the current wait, or NULL */
  void *wobj;                   /* what it waits on; the next free slot + 1 while free */
  float since;                  /* when its state last changed: event_time - rt->epoch
                                   (seconds; for nexus.tasks()) */
  uint32_t slot;
  uint32_t qseq;                /* bumps on each push: stale queue entries */
  uint32_t wseq;                /* bumps when a wait starts or ends (waitq.h) */
};

/* nargs once the executor has resumed the task (nexus.spawn takes at
 * most 65,534 arguments). */
#define NX_RAN 0xFFFFu

/* A page of task records: the x pointers of its slots (or NULL), then the
 * records; rt->pages points at the records. */
#define NX_PAGE_BITS 8
#define NX_PAGE_SIZE (1u << NX_PAGE_BITS)
#define NX_PAGE_HDR 16
static inline nx_task_x ***nx_page_xs(const nx_task *t) {
  return (nx_task_x ***)(void *)((char *)(uintptr_t)(t - (t->slot & (NX_PAGE_SIZE - 1))) - NX_PAGE_HDR);
}
/* Where t's x pointer is, or NULL. A select op's proxy (not in a page)
 * keeps its own right after its record (select.h); a group's sink and
 * watch have none. */
static inline nx_task_x **nx_task_xslot(const nx_task *t) {
  if (t->kind) return t->kind == NX_KIND_PROXY ? (nx_task_x **)(void *)(uintptr_t)(t + 1) : NULL;
  nx_task_x **xs = *nx_page_xs(t);
  return xs ? &xs[t->slot & (NX_PAGE_SIZE - 1)] : NULL;
}
/* The x part of t, or NULL. */
static inline nx_task_x *nx_task_xp(const nx_task *t) {
  nx_task_x **x = nx_task_xslot(t);
  return x ? *x : NULL;
}

/* The task's x part, made at first need; NULL on ENOMEM. */
nx_task_x *nx_task_ext(nx_task *t);
static inline nx_task *nx_joiner(const nx_task *t) { nx_task_x *x = nx_task_xp(t); return x ? x->joiner : NULL; }
static inline nx_deadline *nx_task_dl(const nx_task *t) { nx_task_x *x = nx_task_xp(t); return x ? x->dl : NULL; }
static inline uint32_t nx_task_ndl(const nx_task *t) { nx_task_x *x = nx_task_xp(t); return x ? x->ndl : 0; }
/* Only a root task (block_on's, an adopted main chunk) is ever held. */
static inline uint32_t nx_task_holds(const nx_task *t) {
  nx_task_x *x = (t->flags & NX_F_ROOT) ? nx_task_xp(t) : NULL;
  return x ? x->holds : 0;
}

/* Ready-queue entry: 8 bytes, so a burst of spawns costs little memory. */
typedef struct nx_qent { uint32_t slot, seq; } nx_qent;

/* Something a runtime owns besides its tasks (a socket, a signal handle,
 * an async handle): nx_rt_close calls close() on each, before running the
 * loop one last time so that their uv_close callbacks run. */
typedef struct nx_owned nx_owned;
struct nx_owned {
  nx_owned *next, *prev;
  void (*close)(nx_rt *rt, nx_owned *o);
};

struct nx_rt {
  uv_loop_t loop;
  uv_timer_t timer;             /* armed for the heap top when parking */
  uv_idle_t poke;               /* active only during a non-blocking poll */
  nx_heap heap;
  nx_task **pages;              /* task records in stable pages */
  uint32_t npages, pcap;
  uint32_t nslots, used;        /* records in pages; taken at least once */
  uint32_t free_head;           /* released slots, a stack linked through
                                   their records' wobj: the top's slot + 1, or 0 */
  nx_qent *q;                   /* ready ring, power-of-two capacity */
  uint32_t qhead, qn, qcap;
  nx_task *cur;                 /* running task */
  nx_task *starting, *finishing; /* the executor allocates for them (nx_rt_recover) */
  nx_task *fatal;               /* unobserved error that stops the runtime */
  nx_deadline *dlfree;
  nx_owned owned;               /* list head of what close() must close */
  struct nx_shutdown *sd;       /* signal handlers, if installed */
  nx_task *sd_waiter;           /* the one task waiting on the shutdown signal */
  struct nx_group *kills;       /* dropped groups whose members the executor aborts */
  int signo;                    /* the signal that shut it down, or 0 */
  int interrupted;              /* a signal found no waiter: abort everything */
  uint8_t shut;                 /* shutdown triggered */
  lua_State *ctl;               /* a thread whose stack holds the two tables: */
  int ctl_ref;                  /* its registry ref */
  int refs;                     /* the runtime object, claims, sockets... */
  uint32_t *zomb, nzomb, zcap;  /* ended tasks whose slot may come back */
  uint32_t sweep_at;            /* sweep the zombies when there are this many */
  uint32_t *pool_free, npool_free, pool_size;   /* the task pool */
  uint8_t pool_on, pool_bounded;
  uint32_t tasks_per_cycle, event_interval;
  uint32_t coop;                /* the cooperative budget (0: off) */
  uint32_t coop_left;           /* of the running task's resume */
  uint8_t coop_pending;         /* an operation asked the task to yield once */
  uint8_t dump_asked;           /* SIGQUIT: print the dump at the next safe point */
  uint8_t ext_error;            /* a luv callback failed: raise it (luvbind.c) */
  double slow_resume;           /* report resumes longer than this (0: off) */
  uint8_t report_errors, closed, driving, busy;
  double event_time;
  double epoch;                 /* event_time when it was made */
  float event_rel;              /* event_time - epoch, what a task's since records */
  uint32_t alive;
  uint64_t serial;              /* unique in its thread: tells runtimes apart (nx_rt_of) */
  uint64_t next_id;
  struct {
    uint64_t spawned, deferred, resumes, cycles, polls, parks, timers_fired, errors, aborted, sweeps;
    uint64_t coop_yields, slow_resumes;
  } st;
};

/* The runtime's Lua tables sit at fixed indices of its ctl thread's stack:
 * a task's coroutine and handle are stored and dropped with two API calls
 * (lua_rawgeti of a registry ref would look the ref up in the registry's
 * hash part each time). */
#define NX_CTL_TASKS   1        /* slot + 1 -> coroutine; its function until it
                                   starts; its result once KEPT */
#define NX_CTL_HANDLES 2        /* slot + 1 -> handle, weak */
#define NX_CTL_ARGS    3        /* slot + 1 -> the argument of a task not started */
#define NX_CTL_NAMES   4        /* slot + 1 -> h:name(), valid while ... */
#define NX_CTL_NAMEIDS 5        /* ... slot + 1 -> the id of the task it names */

/* A task id as text, for messages: lua_pushfstring has no 64-bit
 * format, and ids pass 2^31 in a long run. NX_ID(id) gives a buffer of
 * the calling expression's own. */
static inline const char *nx_idstr(uint64_t id, char *buf) {
  char *p = buf + 23;
  *p = '\0';
  do *--p = (char)('0' + id % 10); while ((id /= 10));
  return p;
}
#define NX_ID(id) nx_idstr((id), (char[24]){0})

/* The record of a slot taken at least once (slot < rt->used). */
static inline nx_task *nx_task_at(nx_rt *rt, uint32_t slot) {
  return &rt->pages[slot >> NX_PAGE_BITS][slot & (NX_PAGE_SIZE - 1)];
}

/* Pops the value on top of L into ctl table `tbl` at slot; nil clears it. */
static inline void nx_ctl_set(nx_rt *rt, lua_State *L, int tbl, uint32_t slot) {
  lua_xmove(L, rt->ctl, 1);
  lua_rawseti(rt->ctl, tbl, (int)slot + 1);
}
static inline void nx_ctl_clear(nx_rt *rt, int tbl, uint32_t slot) {
  lua_pushnil(rt->ctl);
  lua_rawseti(rt->ctl, tbl, (int)slot + 1);
}

/* The runtime being driven on this thread, or NULL. Read on every wait
 * and wake: initial-exec TLS makes that one load instead of a call to
 * __tls_get_addr per read (the module is dlopen'ed, and glibc keeps static
 * TLS room for a few bytes of such modules). */
#define NX_TLS _Thread_local __attribute__((tls_model("initial-exec")))
extern NX_TLS nx_rt *nx_cur_rt;

nx_rt *nx_rt_new(void);
void nx_rt_ref(nx_rt *rt);                       /* keeps the struct (not the loop) */
uint32_t nx_rt_slots(uint32_t *live);            /* length of the serial table; *live: runtimes in it */
nx_rt *nx_rt_of(uint64_t serial);                /* the live runtime of that serial, or NULL */
void nx_rt_unref(nx_rt *rt);                     /* frees at zero refs */
void nx_own(nx_rt *rt, nx_owned *o);             /* closed by nx_rt_close */
void nx_disown(nx_rt *rt, nx_owned *o);
void nx_rt_close(nx_rt *rt, lua_State *L);

nx_task *nx_task_new(nx_rt *rt, lua_State *L);   /* pushes nothing; NULL on ENOMEM */
/* Queues t (a stand-in record tells its owner instead). The common case,
 * a task and room in the ring, is inline: every wake of a channel,
 * token or socket waiter comes through here. */
void nx_task_ready_slow(nx_rt *rt, nx_task *t);
static inline void nx_task_ready(nx_rt *rt, nx_task *t) {
  if (t->kind || rt->qn == rt->qcap) {
    nx_task_ready_slow(rt, t);
    return;
  }
  t->state = NX_READY;
  t->since = rt->event_rel;
  nx_qent *e = &rt->q[(rt->qhead + rt->qn++) & (rt->qcap - 1)];
  e->slot = t->slot;
  e->seq = ++t->qseq;
}
/* The task's name (lmodule.c keeps names), or NULL: for reports. */
extern const char *(*nx_task_name_hook)(nx_rt *rt, nx_task *t);
/* A task has no coroutine until it first runs: the function on top of L
 * (with nargs, 0 or 1, values above it) waits in the tasks table, its
 * argument in the args table. Pops them. */
void nx_task_defer(nx_rt *rt, lua_State *L, nx_task *t, int nargs);
/* nexus.spawn defers when this many tasks are ready already. */
#define NX_DEFER_AT 256
/* Not started yet (and so without a coroutine): see nx_task_defer. */
static inline int nx_task_unstarted(const nx_task *t) {
  return !t->co && t->state != NX_DONE && t->state != NX_FREE;
}

/* The task pool (spawn_pooled, claims). */
enum { NX_POOL_NONE = -10, NX_POOL_FULL = -11 };
int nx_pool_config(nx_rt *rt, lua_State *L, uint32_t n, int bounded);
int nx_pool_take(nx_rt *rt, lua_State *L, nx_task **out);
void nx_pool_give(nx_rt *rt, nx_task *t);                 /* an unused claim */
void nx_pool_start(nx_rt *rt, lua_State *L, nx_task *t, int nargs);
/* Ends t's wait (a stale wake, of a task no longer waiting, is ignored). */
static inline void nx_task_wake(nx_rt *rt, nx_task *t, int code) {
  if (t->state != NX_WAITING) return;
  t->cancel = NULL;
  t->wobj = NULL;
  (void)code;                   /* how it ended is the waiter's to find out (a timeout's level) */
  t->wseq++;
  nx_task_ready(rt, t);
}
/* Ends t's wait with a grant t takes when it runs (a reserved channel
 * slot): t is readied but keeps wobj and cancel, so that if t is aborted
 * before it runs, cancel(rt, t) is called (with t->state == NX_READY) and
 * can pass the grant on. The component recognises the holder by
 * t->wobj/t->cancel and clears both when t takes the grant. */
void nx_task_grant(nx_rt *rt, nx_task *t);
void nx_task_cancel_wait(nx_rt *rt, nx_task *t);
int nx_task_abort(nx_rt *rt, lua_State *L, nx_task *t);
void nx_task_unhold(nx_rt *rt, lua_State *L, nx_task *t);
void nx_task_drop_co(nx_rt *rt, lua_State *L, nx_task *t);
void nx_task_ended(nx_rt *rt, lua_State *L, nx_task *t);   /* after its last hold */
void nx_task_after_yield(nx_rt *rt, lua_State *L, nx_task *t);
/* How a task ended: OK (results on its stack), RAW (a Lua error status
 * from lua_resume: the error value is on top of its stack), ERR (an error
 * with its traceback already on top: [err, traceback]). */
enum { NX_FIN_OK, NX_FIN_RAW, NX_FIN_ERR };
void nx_task_finish(nx_rt *rt, lua_State *L, nx_task *t, int how);

/* Executor: stop when root is done (and, if all, every task is; with no
 * root, when every task is), or at `until` (nx_now() seconds). */
enum { NX_STOP_DONE, NX_STOP_FATAL, NX_STOP_DEADLOCK, NX_STOP_INTERRUPT, NX_STOP_TIMEOUT,
       NX_STOP_RAISED };
int nx_rt_drive(nx_rt *rt, lua_State *L, nx_task *root, int all, double until);

/* The cooperative budget (builder:coop_budget, tokio's): an operation of
 * the running task that is about to complete without suspending calls
 * this; nonzero means the task has done `coop` such operations since it
 * was resumed, and the operation yields once instead (it registers no
 * wait: the task goes to the back of the ready queue, then retries). A
 * select's proxy never yields here: its op must register or complete. */
static inline int nx_coop_spend(nx_rt *rt) {
  if (!rt || !rt->coop_left || --rt->coop_left) return 0;
  nx_task *t = rt->cur;
  if (!t || t->kind) {
    rt->coop_left = 1;
    return 0;
  }
  rt->coop_pending = 1;
  rt->st.coop_yields++;
  return 1;
}
/* After an error raised through nx_rt_drive (a __gc finalizer that raised
 * in a GC step of one of the executor's own allocations; the error value
 * is on top of L): puts back the task it was starting, and ends the one it
 * was finishing with that error, so the runtime stays consistent. */
void nx_rt_recover(nx_rt *rt, lua_State *L);
void nx_rt_abort_all(nx_rt *rt, lua_State *L);

/* Waits of the current task; each returns an NX_ status.
 *
 * nx_wait is the one way a component (channel, socket, token) suspends the
 * running task: it records obj and cancel, then the Lua wrapper yields.
 * Whoever completes the wait calls nx_task_wake(rt, t, NX_WAKE_OK); the
 * component must then forget t. If the wait is abandoned instead (abort,
 * timeout, runtime close), cancel(rt, t) runs once and must unlink t from
 * obj. Either way exactly one of the two happens. t->wobj is obj until
 * then. Waking a task that no longer waits is ignored (stale). */
/* The running task if it may start a wait, or NULL. */
static inline nx_task *nx_running(nx_rt *rt) {
  nx_task *t = rt->cur;
  return (t && t->state == NX_RUNNING) ? t : NULL;
}
/* For nexus.tasks(): a component names its waits by their cancel
 * callback; describe (optional) writes what obj is ("127.0.0.1:9000"). */
void nx_wait_kind(nx_cancel_fn cancel, const char *what,
                  void (*describe)(nx_task *t, char *buf, size_t n));
void nx_describe_wait(nx_task *t, char *buf, size_t n);
/* nx_wait for t, which the caller has from nx_running(rt). */
static inline void nx_wait_task(nx_rt *rt, nx_task *t, nx_cancel_fn cancel, void *obj) {
  t->since = rt->event_rel;
  t->wobj = obj;
  t->cancel = cancel;
  t->state = NX_WAITING;
  t->wseq++;
}
static inline int nx_wait(nx_rt *rt, nx_cancel_fn cancel, void *obj) {
  nx_task *t = nx_running(rt);
  if (!t) return NX_E_NOTASK;
  nx_wait_task(rt, t, cancel, obj);
  return NX_OK;
}
int nx_wait_sleep(nx_rt *rt, double deadline);
int nx_wait_join(nx_rt *rt, nx_task *target);
int nx_dl_push(nx_rt *rt, double deadline);
int nx_may_suspend(nx_rt *rt, lua_State *L);
int nx_dl_state(nx_rt *rt, int level);
void nx_dl_pop(nx_rt *rt, int level);

#endif
