/* timer.h - monotonic clock and the runtime's timer heap.
 *
 * One binary min-heap per runtime, keyed by deadline (seconds on the
 * nx_now() clock). A single uv_timer_t, armed for the heap top when the
 * runtime parks, stands in for all of them: a heap node costs 16 bytes of
 * bookkeeping instead of a 150-byte uv_timer_t per sleeping task.
 */
#ifndef NX_TIMER_H
#define NX_TIMER_H

#include <stdint.h>

#define NX_TIMER_NONE UINT32_MAX   /* heap index of a node not in the heap */

typedef struct nx_timer {
  double deadline;                 /* nx_now() seconds */
  uint32_t idx;                    /* position in the heap, or NX_TIMER_NONE */
  uint8_t kind;                    /* owner-defined: what firing means */
} nx_timer;

typedef struct nx_heap {
  nx_timer **v;
  uint32_t n, cap;
} nx_heap;

double nx_now(void);               /* monotonic seconds, fresh clock read */

void nx_heap_init(nx_heap *h);
void nx_heap_free(nx_heap *h);
int nx_heap_push(nx_heap *h, nx_timer *t);   /* 0, or -1 on ENOMEM */
void nx_heap_remove(nx_heap *h, nx_timer *t);
static inline nx_timer *nx_heap_top(const nx_heap *h) { return h->n ? h->v[0] : 0; }
static inline int nx_timer_active(const nx_timer *t) { return t->idx != NX_TIMER_NONE; }

#endif
