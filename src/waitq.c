/* waitq.c - FIFO queues of waiting tasks with O(1) lazy cancel. */
#include "waitq.h"

#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define NX_WQ_EXT 0x80000000u

void nx_waitq_init(nx_waitq *q) { memset(q, 0, sizeof *q); }

void nx_waitq_free(nx_waitq *q) {
  free(q->v);
  free(q->args);
  free(q->ext);
  nx_waitq_init(q);
}

/* No entry left: nothing names an ext index any more. */
static void nx_wq_empty(nx_waitq *q) {
  q->head = q->n = 0;
  q->next_ext = q->ext_free = 0;
}

static nx_task *nx_wq_task(const nx_waitq *q, uint32_t ref) {
  return ref & NX_WQ_EXT ? q->ext[ref & ~NX_WQ_EXT] : nx_task_at(q->rt, ref);
}

static void nx_wq_release(nx_waitq *q, uint32_t ref) {
  if (!(ref & NX_WQ_EXT)) return;
  uint32_t i = ref & ~NX_WQ_EXT;
  q->ext[i] = (nx_task *)(uintptr_t)q->ext_free;
  q->ext_free = i + 1;
}

static int nx_wq_live(const nx_waitq *q, const nx_wqent *e) {
  const nx_task *t = nx_wq_task(q, e->ref);
  return t->wseq == e->seq && t->state == NX_WAITING;
}

/* Rebuilds the ring with only live entries, doubling it if still full. */
static int nx_wq_compact(nx_waitq *q) {
  uint32_t cap = q->cap ? q->cap : 8;
  if (q->live * 2 >= cap) cap *= 2;
  nx_wqent *v = malloc(cap * sizeof *v);
  uint32_t *args = q->args ? malloc(cap * sizeof *args) : NULL;
  if (!v || (q->args && !args)) {
    free(v);
    free(args);
    return -1;
  }
  uint32_t k = 0;
  for (uint32_t i = 0; i < q->n; i++) {
    uint32_t j = (q->head + i) & (q->cap - 1);
    nx_wqent *e = &q->v[j];
    if (!nx_wq_live(q, e)) {
      nx_wq_release(q, e->ref);
      continue;
    }
    if (args) args[k] = q->args[j];
    v[k++] = *e;
  }
  free(q->v);
  free(q->args);
  q->v = v;
  q->args = args;
  q->head = 0;
  q->n = k;
  q->cap = cap;
  q->live = k;
  return 0;
}

/* t's ref: its slot when it is a task of the queue's runtime. */
static int nx_wq_ref(nx_waitq *q, nx_task *t, uint32_t *ref) {
  nx_rt *rt = nx_cur_rt;
  if (!t->kind && rt && t->slot < rt->used && nx_task_at(rt, t->slot) == t) {
    if (q->n == 0) q->rt = rt;
    if (q->rt == rt) {
      *ref = t->slot;
      return 0;
    }
  }
  uint32_t i;
  if (q->ext_free) {
    i = q->ext_free - 1;
    q->ext_free = (uint32_t)(uintptr_t)q->ext[i];
  } else {
    if (q->next_ext == q->ext_cap) {
      uint32_t cap = q->ext_cap ? q->ext_cap * 2 : 4;
      nx_task **ext = realloc(q->ext, cap * sizeof *ext);
      if (!ext) return -1;
      q->ext = ext;
      q->ext_cap = cap;
    }
    i = q->next_ext++;
  }
  q->ext[i] = t;
  *ref = NX_WQ_EXT | i;
  return 0;
}

int nx_waitq_push_arg(nx_waitq *q, nx_task *t, uint32_t arg) {
  if (q->n == q->cap && nx_wq_compact(q) != 0) return -1;
  if (arg && !q->args && !(q->args = calloc(q->cap, sizeof *q->args))) return -1;
  uint32_t ref;
  if (nx_wq_ref(q, t, &ref) != 0) return -1;
  uint32_t j = (q->head + q->n++) & (q->cap - 1);
  q->v[j].ref = ref;
  q->v[j].seq = t->wseq;
  if (q->args) q->args[j] = arg;
  q->live++;
  return 0;
}

int nx_waitq_push(nx_waitq *q, nx_task *t) { return nx_waitq_push_arg(q, t, 0); }

void nx_waitq_wake_arg(nx_waitq *q, uint32_t arg, void (*wake)(void *ctx, nx_task *t), void *ctx) {
  for (uint32_t i = 0; i < q->n && q->live; i++) {
    uint32_t j = (q->head + i) & (q->cap - 1);
    nx_wqent *e = &q->v[j];
    if ((q->args ? q->args[j] : 0) != arg || !nx_wq_live(q, e)) continue;
    wake(ctx, nx_wq_task(q, e->ref));   /* its wseq moves: the entry is stale now */
    nx_waitq_cancelled(q);
  }
}

nx_task *nx_waitq_pop(nx_waitq *q) {
  while (q->n) {
    nx_wqent e = q->v[q->head];
    q->head = (q->head + 1) & (q->cap - 1);
    q->n--;
    int live = nx_wq_live(q, &e);
    nx_task *t = nx_wq_task(q, e.ref);
    nx_wq_release(q, e.ref);
    if (live) {
      if (--q->live == 0) nx_wq_empty(q);
      return t;
    }
  }
  q->live = 0;
  nx_wq_empty(q);
  return NULL;
}

/* Once no entry is live the rest are all stale: drop them now. Their tasks
 * may belong to a runtime that is then closed and freed, and the queue
 * (a channel's) may go on in another runtime: a stale entry kept until the
 * next pop or compaction would be read after its task's memory is gone. */
void nx_waitq_cancelled(nx_waitq *q) {
  if (q->live && --q->live == 0) nx_wq_empty(q);
}
