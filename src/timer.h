/* timer.h - monotonic clock and the runtime's timer heap.
 *
 * One 4-ary min-heap per runtime of {deadline, node} entries (16 bytes, so
 * the four children of a node share one cache line and sifting never
 * touches the nodes). A single uv_timer_t, armed for the heap top when the
 * runtime parks, stands in for all of them.
 *
 * Cancelling is lazy: it disarms the node and leaves its entry, which is
 * skipped when it reaches the top (an entry is live while its node is armed
 * with the same deadline). Stale entries are compacted away once they
 * outnumber the live ones, so memory stays bounded by the armed timers.
 */
#ifndef NX_TIMER_H
#define NX_TIMER_H

#include <stdint.h>

/* Packed (10 bytes, no tail padding): a task record puts its own small
 * fields right after it. x86-64 loads an unaligned double at full speed. */
typedef struct __attribute__((packed)) nx_timer {
  double deadline;                 /* nx_now() seconds */
  uint8_t armed;
  uint8_t kind;                    /* owner-defined: what firing means */
} nx_timer;

typedef struct nx_hent { double deadline; nx_timer *t; } nx_hent;

typedef struct nx_heap {
  nx_hent *v;
  uint32_t n, cap;
  uint32_t stale;                  /* entries whose node was disarmed */
} nx_heap;

double nx_now(void);               /* monotonic seconds, fresh clock read */

void nx_heap_init(nx_heap *h);
void nx_heap_free(nx_heap *h);
int nx_timer_arm(nx_heap *h, nx_timer *t, double deadline);   /* 0, or -1 on ENOMEM */
void nx_timer_disarm(nx_heap *h, nx_timer *t);
/* The earliest armed timer, or NULL; drops stale entries on the way. */
nx_timer *nx_heap_peek(nx_heap *h);
/* Pops and disarms the earliest timer if it is due at `now`. */
nx_timer *nx_heap_pop_due(nx_heap *h, double now);
static inline uint32_t nx_heap_live(const nx_heap *h) { return h->n > h->stale ? h->n - h->stale : 0; }

#endif
