/* waitq.c - FIFO queues of waiting tasks with O(1) lazy cancel. */
#include "waitq.h"

#include <stdlib.h>

#include "rt.h"

void nx_waitq_init(nx_waitq *q) {
  q->v = NULL;
  q->head = q->n = q->cap = q->live = 0;
}

void nx_waitq_free(nx_waitq *q) {
  free(q->v);
  nx_waitq_init(q);
}

static int nx_wq_live(const nx_wqent *e) {
  return e->t->wseq == e->seq && e->t->state == NX_WAITING;
}

/* Rebuilds the ring with only live entries, doubling it if still full. */
static int nx_wq_compact(nx_waitq *q) {
  uint32_t cap = q->cap ? q->cap : 8;
  if (q->live * 2 >= cap) cap *= 2;
  nx_wqent *v = malloc(cap * sizeof *v);
  if (!v) return -1;
  uint32_t k = 0;
  for (uint32_t i = 0; i < q->n; i++) {
    nx_wqent *e = &q->v[(q->head + i) & (q->cap - 1)];
    if (nx_wq_live(e)) v[k++] = *e;
  }
  free(q->v);
  q->v = v;
  q->head = 0;
  q->n = k;
  q->cap = cap;
  q->live = k;
  return 0;
}

int nx_waitq_push_arg(nx_waitq *q, nx_task *t, uint32_t arg) {
  if (q->n == q->cap && nx_wq_compact(q) != 0) return -1;
  nx_wqent *e = &q->v[(q->head + q->n++) & (q->cap - 1)];
  e->t = t;
  e->seq = t->wseq;
  e->arg = arg;
  q->live++;
  return 0;
}

int nx_waitq_push(nx_waitq *q, nx_task *t) { return nx_waitq_push_arg(q, t, 0); }

void nx_waitq_wake_arg(nx_waitq *q, uint32_t arg, void (*wake)(void *ctx, nx_task *t), void *ctx) {
  for (uint32_t i = 0; i < q->n && q->live; i++) {
    nx_wqent *e = &q->v[(q->head + i) & (q->cap - 1)];
    if (e->arg != arg || !nx_wq_live(e)) continue;
    wake(ctx, e->t);                /* its wseq moves: the entry is stale now */
    nx_waitq_cancelled(q);
  }
}

nx_task *nx_waitq_pop(nx_waitq *q) {
  while (q->n) {
    nx_wqent e = q->v[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    if (nx_wq_live(&e)) {
      if (--q->live == 0) q->head = q->n = 0;
      return e.t;
    }
  }
  q->live = 0;
  return NULL;
}

/* Once no entry is live the rest are all stale: drop them now. Their tasks
 * may belong to a runtime that is then closed and freed, and the queue
 * (a channel's) may go on in another runtime: a stale entry kept until the
 * next pop or compaction would be read after its task's memory is gone. */
void nx_waitq_cancelled(nx_waitq *q) {
  if (q->live && --q->live == 0) q->head = q->n = 0;
}
