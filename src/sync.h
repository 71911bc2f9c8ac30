/* sync.h - semaphore, oneshot, watch, broadcast, event.
 *
 * As with the channels (chan.h), values are Lua values and stay in Lua
 * tables of the wrappers (lua/nexus/sync.lua); these C records keep the
 * counts, versions, sequence numbers and the waiting tasks. Every waiting
 * operation is one FFI call returning a status: NX_SY_OK (done), or
 * NX_SY_WAIT after registering a wait of the running task (the wrapper
 * yields, then calls again), or another status. The same entry points
 * serve nexus.select: while an op is polled, its proxy is the running
 * task and registers as an ordinary waiter.
 *
 * Semaphore. Waiters queue first in, first out with the number of
 * permits they ask; a release serves the queue from its head while the
 * head fits (a big request at the head holds back smaller ones behind
 * it). A served waiter gets a grant (nx_task_grant): its permits are
 * reserved, and if it is aborted or its select op loses before it runs,
 * they pass on. Permits are held by tasks: each holder has a record
 * (task, count) and a drop guard (cancel.h) of the task on the
 * semaphore's private token `end`. A task that ends holding permits fires
 * its guard, which cancels `end`: every waiting task is registered on
 * `end` as well as on the semaphore (the token's waiter entry and the
 * semaphore's share the task's wait sequence, so the first to end the
 * wait makes the other stale), so they all wake and call again; the
 * first call into the semaphore after that returns the ended holders'
 * permits (their guards say which: guard->task is NULL) and makes `end`
 * usable again. That is how permits come back at a task's end with no
 * hook in the executor.
 */
#ifndef NX_SYNC_H
#define NX_SYNC_H

#include <stdint.h>

#include <lua.h>

#include "rt.h"
#include "waitq.h"

/* Statuses (besides NX_OK, NX_E_NOTASK, NX_E_NOMEM of rt.h). */
enum {
  NX_SY_OK = 0,
  NX_SY_CLOSED = -5,
  NX_SY_WAIT = -6,       /* a wait was registered: yield, then call again */
  NX_SY_BUSY = -7,       /* another task is already receiving */
  NX_SY_OTHER_RT = -8,   /* the object has waiters in another runtime */
  NX_SY_NONE = -9,       /* a try_ call: not now */
  NX_SY_TOOBIG = -10,    /* more permits asked than the semaphore has */
  NX_SY_NOTHELD = -11,   /* more permits released than the task holds */
  NX_SY_LAGGED = -12     /* broadcast: the subscriber skipped `missed` values */
};

struct nx_token;
struct nx_guard;

/* ---- semaphore ---- */

typedef struct nx_sem_wait { nx_task *t; uint32_t seq; int64_t n; } nx_sem_wait;
typedef struct nx_sem_grant { nx_task *t; int64_t n; } nx_sem_grant;
typedef struct nx_sem_hold { nx_task *t; struct nx_guard *g; int64_t n; } nx_sem_hold;

typedef struct nx_sem {
  /* Read by the Lua wrapper through the FFI: keep in step with sync.lua. */
  double total;                  /* permits it was made with, plus add_permits */
  uint8_t closed;
  /* Private. */
  int64_t avail;                 /* free, not reserved for a grant */
  uint32_t refs;                 /* the Lua object, each waiter, each grant */
  uint32_t nwait, ngr;           /* waits registered; grants not taken */
  struct nx_token *end;          /* cancelled when a holder ends */
  nx_sem_wait *q;                /* FIFO ring of waiters, lazily cancelled */
  uint32_t qhead, qn, qcap, qlive;
  nx_sem_grant *gr;              /* granted, not yet run */
  uint32_t grcap;
  nx_sem_hold *h;                /* holders, open addressing by task */
  uint32_t hn, hcap;
  nx_rt *rt;                     /* the runtime of its waiters, once any */
  uint64_t rt_serial;
} nx_sem;

/* ---- oneshot ---- */

enum { NX_ONCE_EMPTY, NX_ONCE_SENT, NX_ONCE_TAKEN };

typedef struct nx_once {
  uint8_t state, tx_closed, rx_closed;    /* read by the Lua wrapper */
  uint32_t refs;                          /* tx, rx, a waiting receiver */
  nx_task *rx;
  nx_rt *rt;
  uint64_t rt_serial;
} nx_once;

/* ---- watch ---- */

typedef struct nx_watch {
  double version;                /* read by the Lua wrapper */
  uint8_t closed;
  uint32_t refs;                 /* the Lua object, each waiter */
  nx_waitq waiters;
  nx_rt *rt;
  uint64_t rt_serial;
} nx_watch;

/* ---- broadcast ---- */

typedef struct nx_bcast {
  uint32_t cap, subs;            /* read by the Lua wrapper */
  uint8_t closed;
  uint32_t *rem;                 /* per ring slot: subscribers yet to read it */
  /* Private. */
  uint64_t tail;                 /* values sent */
  uint32_t refs;                 /* the Lua object, each subscriber */
  nx_waitq waiters;              /* tasks in sub:recv, each t->wobj its sub */
  nx_rt *rt;
  uint64_t rt_serial;
} nx_bcast;

typedef struct nx_bsub {
  double missed;                 /* set with NX_SY_LAGGED; read by the wrapper */
  uint8_t closed;
  /* Private. */
  uint64_t next;                 /* sequence number of the next value to read */
  nx_bcast *bc;
  nx_task *waiter;
  uint32_t refs;                 /* the Lua object, a waiting task */
} nx_bsub;

/* ---- event ---- */

typedef struct nx_event {
  uint8_t set;                   /* read by the Lua wrapper */
  uint32_t gen;                  /* bumps at each set of a clear event */
  uint32_t refs;                 /* the Lua object, each waiter */
  nx_waitq waiters;
  nx_rt *rt;
  uint64_t rt_serial;
} nx_event;

void nx_sync_open(lua_State *L);   /* core.sync_api */

#endif
