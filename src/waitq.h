/* waitq.h - FIFO queues of waiting tasks, for channels, tokens, sockets.
 *
 * An entry is {task, the task's wait sequence}. A task's wseq changes each
 * time a wait of it starts or ends, so an entry whose wait was cancelled
 * (abort, timeout) is stale and skipped: cancelling is O(1), which matters
 * when 10,000 waiters go at once. Stale entries are compacted away once
 * they outnumber the live ones, and dropped at once when none is live.
 *
 * An entry is 8 bytes: a task of the queue's runtime (q->rt) by its slot.
 * A record not in that runtime's pages (a select's proxy, a group's watch,
 * a task of another runtime) is named by an index into q->ext instead.
 * The queue takes the pushing task's runtime when it holds no entry; with
 * live entries there is always one runtime behind them, which outlives
 * them (closing it cancels every wait).
 */
#ifndef NX_WAITQ_H
#define NX_WAITQ_H

#include <stdint.h>

typedef struct nx_task nx_task;
typedef struct nx_rt nx_rt;
typedef struct nx_wqent { uint32_t ref, seq; } nx_wqent;

typedef struct nx_waitq {
  nx_wqent *v;
  uint32_t *args;                /* the component's arg of each entry (same index), once one is given */
  nx_task **ext;                 /* records named by index (NX_WQ_EXT | i); a free one links the next */
  nx_rt *rt;                     /* whose slots the other refs are */
  uint32_t head, n, cap;         /* ring of n entries from head */
  uint32_t live;                 /* entries whose wait is still on */
  uint32_t next_ext, ext_cap;    /* ext: used up to next_ext; its capacity */
  uint32_t ext_free;             /* a free ext index + 1, or 0 */
} nx_waitq;

void nx_waitq_init(nx_waitq *q);
void nx_waitq_free(nx_waitq *q);
/* Appends t, after nx_wait started its wait. 0, or -1 (ENOMEM). */
int nx_waitq_push(nx_waitq *q, nx_task *t);
/* The same with arg recorded (which end of a channel it waits through). */
int nx_waitq_push_arg(nx_waitq *q, nx_task *t, uint32_t arg);
/* Calls wake(ctx, t) for every task still waiting with this arg, in
 * order; the others keep their places. wake must end t's wait (its
 * entry goes stale): the queue counts it gone. */
void nx_waitq_wake_arg(nx_waitq *q, uint32_t arg, void (*wake)(void *ctx, nx_task *t), void *ctx);
/* Removes and returns the first task still waiting, or NULL. */
nx_task *nx_waitq_pop(nx_waitq *q);
/* Call from the wait's cancel callback: t's entry went stale. */
void nx_waitq_cancelled(nx_waitq *q);

#endif
