/* select.h - nexus.select: one task waiting on several operations.
 *
 * The executor's rule is one wait per task. A select keeps it: the task
 * registers one wait (nx_sel_cancel) and each op gets a stand-in task
 * record, its proxy (kind NX_KIND_PROXY), that the components (channels,
 * tokens, timers, sockets...) see as an ordinary waiting task. While an op
 * is polled the proxy is the runtime's current task, so the component's
 * own "try, else register" entry point runs unchanged. A proxy's wake or
 * grant marks it fired and readies its owner; when the owner runs, the
 * first fired op in argument order is polled again and, if it completes,
 * wins. Every other proxy is then withdrawn through its component's
 * cancel callback: a waiting one is unlinked, a granted one passes its
 * grant on. So a losing op has no effect.
 *
 * Proxies live in op objects that a script reuses across selects, and
 * their memory is never given back to malloc (a free list per thread):
 * a component's wait queue may still hold a stale entry naming a proxy,
 * and reads its wseq, which only grows.
 */
#ifndef NX_SELECT_H
#define NX_SELECT_H

#include "rt.h"

typedef struct nx_selop nx_selop;
/* A C op: polled in one call (api_sel_cpoll) with no Lua in between.
 * Returns what the component's entry point returned: the op's result
 * when it completed (>= NX_SEL_DONE_MIN), NX_SEL_WAITING when it
 * registered its wait, or below NX_SEL_FAULT_MAX a fault. */
typedef int32_t (*nx_sel_cpoll)(void *obj);
enum { NX_SEL_WAITING = -1000, NX_SEL_FAULT_MAX = -2000 };

struct nx_selop {
  nx_task px;                   /* first: the components' view of the op */
  nx_task_x *x;                 /* right after it: px's x part (nx_task_xslot) */
  nx_task *owner;               /* the task whose select it is in, or NULL */
  nx_selop *next;               /* the owner's other ops */
  uint32_t index;               /* 1-based position in that select */
  int32_t res;                  /* a C op's result (read by the Lua side) */
  nx_sel_cpoll cpoll;           /* a C op's poll, or NULL */
  void *cobj;                   /* its object */
};

/* Statuses of the entry points (besides NX_OK, NX_E_NOTASK). */
enum {
  NX_SEL_E_STATE = -20,         /* no select of the running task is open */
  NX_SEL_E_INUSE = -21,         /* the op is in another task's select */
  NX_SEL_E_TWICE = -22,         /* the op is twice in this select */
  NX_SEL_E_BUSY = -23,          /* the task has a wait registered already */
  NX_SEL_COOP = -24             /* the budget is spent: yield once, then begin again */
};

void nx_sel_fired(nx_rt *rt, nx_task *px);     /* from nx_task_ready */
void nx_sel_open(lua_State *L);

#endif
