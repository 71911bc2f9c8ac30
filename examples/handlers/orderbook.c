/* orderbook.c - see orderbook.h. Plain C, no allocation, no nexus symbol:
 * the World is reached through the inline functions of nexus.h. */
#include "orderbook.h"

#include <math.h>
#include <string.h>

static uint32_t ob_depth(const ob_config *cfg) {
  return cfg->depth == 0 || cfg->depth > OB_DEPTH ? OB_DEPTH : cfg->depth;
}

/* Is a better than b on this side? */
static int ob_better(uint32_t side, double a, double b) { return side == OB_BID ? a > b : a < b; }

static int ob_valid(const ob_book *book, const ob_config *cfg, const ob_tick *t, double px) {
  if (t->side != OB_BID && t->side != OB_ASK) return 0;
  if (t->seq <= book->last_seq) return 0;
  if (!(t->px > 0) || !isfinite(t->px)) return 0;
  if (!(t->qty >= 0) || t->qty > cfg->max_qty) return 0;
  if (fabs(t->px - px) > 1e-9 * cfg->tick_size) return 0;       /* off the grid */
  if (t->qty > 0) {                                               /* would cross */
    if (t->side == OB_BID && book->nask && px >= book->ask[0].px) return 0;
    if (t->side == OB_ASK && book->nbid && px <= book->bid[0].px) return 0;
  }
  return 1;
}

static void ob_set_level(ob_level *lv, uint32_t *n, uint32_t cap, uint32_t side, double px, double qty) {
  uint32_t i = 0;
  while (i < *n && ob_better(side, lv[i].px, px)) i++;
  if (i < *n && lv[i].px == px) {                                 /* the level exists */
    if (qty > 0) {
      lv[i].qty = qty;
    } else {
      memmove(&lv[i], &lv[i + 1], (*n - i - 1) * sizeof *lv);
      (*n)--;
    }
    return;
  }
  if (qty == 0 || i >= cap) return;                               /* nothing, or worst of a full side */
  if (*n == cap) (*n)--;                                          /* the worst level makes room */
  memmove(&lv[i + 1], &lv[i], (*n - i) * sizeof *lv);
  lv[i].px = px;
  lv[i].qty = qty;
  (*n)++;
}

void ob_on_tick(ob_book *book, const ob_config *cfg, const ob_tick *t) {
  double px = floor(t->px / cfg->tick_size + 0.5) * cfg->tick_size;
  if (!ob_valid(book, cfg, t, px)) {
    book->rejected++;
    return;
  }
  if (t->side == OB_BID)
    ob_set_level(book->bid, &book->nbid, ob_depth(cfg), OB_BID, px, t->qty);
  else
    ob_set_level(book->ask, &book->nask, ob_depth(cfg), OB_ASK, px, t->qty);
  book->mid = book->nbid && book->nask ? (book->bid[0].px + book->ask[0].px) / 2 : 0;
  book->updates++;
  book->last_seq = t->seq;
}

void ob_touch(ob_book *book, const ob_config *cfg, const ob_tick *t) {
  (void)cfg;
  book->updates++;
  book->last_seq = t->seq;
}

ob_book *ob_find_book(nexus_world *w) { return nexus_world_resource(w, "Book"); }

uint64_t ob_stamp(nexus_world *w, ob_tick *t) { return t->seq = nexus_world_next_sequence(w); }

size_t ob_sizeof(int which) {
  switch (which) {
  case 0: return sizeof(ob_book);
  case 1: return sizeof(ob_config);
  case 2: return sizeof(ob_tick);
  default: return 0;
  }
}
