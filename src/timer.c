/* timer.c - monotonic clock and the 4-ary timer heap with lazy deletion. */
#include "timer.h"
#include "nexus.h"

#include <stdlib.h>
#include <time.h>

double nx_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double nexus_now(void) { return nx_now(); }

void nx_heap_init(nx_heap *h) {
  h->v = 0;
  h->n = h->cap = h->stale = 0;
}

void nx_heap_free(nx_heap *h) {
  for (uint32_t i = 0; i < h->n; i++) h->v[i].t->armed = 0;
  free(h->v);
  nx_heap_init(h);
}

static inline int nx_live(const nx_hent *e) { return e->t->armed && e->t->deadline == e->deadline; }

static void nx_up(nx_heap *h, uint32_t i) {
  nx_hent e = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 4;
    if (h->v[p].deadline <= e.deadline) break;
    h->v[i] = h->v[p];
    i = p;
  }
  h->v[i] = e;
}

static void nx_down(nx_heap *h, uint32_t i) {
  nx_hent e = h->v[i];
  for (;;) {
    uint32_t c = 4 * i + 1, m = c;
    if (c >= h->n) break;
    uint32_t end = c + 4 < h->n ? c + 4 : h->n;
    for (uint32_t k = c + 1; k < end; k++)
      if (h->v[k].deadline < h->v[m].deadline) m = k;
    if (e.deadline <= h->v[m].deadline) break;
    h->v[i] = h->v[m];
    i = m;
  }
  h->v[i] = e;
}

static void nx_pop_top(nx_heap *h) {
  h->v[0] = h->v[--h->n];
  if (h->n > 1) nx_down(h, 0);
}

/* Drops every stale entry and rebuilds the heap: O(n). */
static void nx_compact(nx_heap *h) {
  uint32_t n = 0;
  for (uint32_t i = 0; i < h->n; i++)
    if (nx_live(&h->v[i])) h->v[n++] = h->v[i];
  h->n = n;
  h->stale = 0;
  for (uint32_t i = n / 4 + 1; i-- > 0;)
    if (i < n) nx_down(h, i);
}

int nx_timer_arm(nx_heap *h, nx_timer *t, double deadline) {
  if (t->armed) nx_timer_disarm(h, t);
  if (h->n == h->cap) {
    if (h->stale > h->n / 2) {
      nx_compact(h);
    } else {
      uint32_t cap = h->cap ? h->cap * 2 : 64;
      nx_hent *v = realloc(h->v, cap * sizeof *v);
      if (!v) return -1;
      h->v = v;
      h->cap = cap;
    }
  }
  t->deadline = deadline;
  t->armed = 1;
  h->v[h->n].deadline = deadline;
  h->v[h->n].t = t;
  nx_up(h, h->n++);
  return 0;
}

void nx_timer_disarm(nx_heap *h, nx_timer *t) {
  if (!t->armed) return;
  t->armed = 0;
  h->stale++;
  if (h->stale > 1024 && h->stale > h->n / 2) nx_compact(h);
}

nx_timer *nx_heap_peek(nx_heap *h) {
  while (h->n) {
    if (nx_live(&h->v[0])) return h->v[0].t;
    nx_pop_top(h);
    /* A node re-armed at the deadline it was cancelled at has two live-
     * looking entries; compaction may then have uncounted one of them. */
    if (h->stale) h->stale--;
  }
  return 0;
}

nx_timer *nx_heap_pop_due(nx_heap *h, double now) {
  nx_timer *t = nx_heap_peek(h);
  if (!t || t->deadline > now) return 0;
  nx_pop_top(h);
  t->armed = 0;
  return t;
}
