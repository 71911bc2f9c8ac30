/* timer.c - monotonic clock and binary min-heap of timer nodes. */
#include "timer.h"
#include "nexus.h"

#include <stdlib.h>
#include <time.h>

double nx_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void nx_heap_init(nx_heap *h) { h->v = 0; h->n = h->cap = 0; }

void nx_heap_free(nx_heap *h) {
  for (uint32_t i = 0; i < h->n; i++) h->v[i]->idx = NX_TIMER_NONE;
  free(h->v);
  nx_heap_init(h);
}

static inline void nx_heap_set(nx_heap *h, uint32_t i, nx_timer *t) {
  h->v[i] = t;
  t->idx = i;
}

static void nx_heap_up(nx_heap *h, uint32_t i) {
  nx_timer *t = h->v[i];
  while (i > 0) {
    uint32_t p = (i - 1) / 2;
    if (h->v[p]->deadline <= t->deadline) break;
    nx_heap_set(h, i, h->v[p]);
    i = p;
  }
  nx_heap_set(h, i, t);
}

static void nx_heap_down(nx_heap *h, uint32_t i) {
  nx_timer *t = h->v[i];
  for (;;) {
    uint32_t c = 2 * i + 1;
    if (c >= h->n) break;
    if (c + 1 < h->n && h->v[c + 1]->deadline < h->v[c]->deadline) c++;
    if (t->deadline <= h->v[c]->deadline) break;
    nx_heap_set(h, i, h->v[c]);
    i = c;
  }
  nx_heap_set(h, i, t);
}

int nx_heap_push(nx_heap *h, nx_timer *t) {
  if (h->n == h->cap) {
    uint32_t cap = h->cap ? h->cap * 2 : 64;
    nx_timer **v = realloc(h->v, cap * sizeof *v);
    if (!v) return -1;
    h->v = v;
    h->cap = cap;
  }
  nx_heap_set(h, h->n++, t);
  nx_heap_up(h, t->idx);
  return 0;
}

void nx_heap_remove(nx_heap *h, nx_timer *t) {
  uint32_t i = t->idx;
  if (i == NX_TIMER_NONE) return;
  t->idx = NX_TIMER_NONE;
  nx_timer *last = h->v[--h->n];
  if (last == t) return;
  nx_heap_set(h, i, last);
  /* The moved node may belong above or below its new place. */
  if (i > 0 && h->v[(i - 1) / 2]->deadline > last->deadline) nx_heap_up(h, i);
  else nx_heap_down(h, i);
}

double nexus_now(void) { return nx_now(); }
