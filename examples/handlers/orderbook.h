/* orderbook.h - a small C handler library for nexus: a price-level order
 * book updated by market-data ticks (examples/market_data.lua drives it).
 *
 * Handlers follow nexus's convention (include/nexus.h): the World's
 * resources first, in the order the Lua side names them, then the event.
 * The Lua side declares the same types and functions with ffi.cdef
 * (examples/handlers/orderbook.lua): keep the two in step.
 */
#ifndef ORDERBOOK_H
#define ORDERBOOK_H

#include <stddef.h>
#include <stdint.h>

#include <nexus.h>

#define OB_DEPTH 8              /* levels a side can hold at most */

enum { OB_BID = 0, OB_ASK = 1 };

typedef struct ob_level {
  double px, qty;
} ob_level;

/* The "Book" resource. */
typedef struct ob_book {
  ob_level bid[OB_DEPTH];       /* best (highest) first */
  ob_level ask[OB_DEPTH];       /* best (lowest) first */
  uint32_t nbid, nask;
  double mid;                   /* (best bid + best ask) / 2; 0 while a side is empty */
  uint64_t updates;             /* ticks applied */
  uint64_t rejected;            /* ticks refused (see ob_on_tick) */
  uint64_t last_seq;            /* sequence of the last tick applied */
} ob_book;

/* The "Config" resource (read-only for the handler). */
typedef struct ob_config {
  double tick_size;             /* prices are multiples of it (> 0) */
  double max_qty;               /* larger quantities are refused */
  uint32_t depth;               /* levels kept per side: 1..OB_DEPTH (0: OB_DEPTH) */
} ob_config;

/* The event: set the quantity at one price level (qty 0 removes it). */
typedef struct ob_tick {
  uint64_t seq;                 /* increasing; a tick not after last_seq is stale */
  double px, qty;
  uint32_t side;                /* OB_BID or OB_ASK */
} ob_tick;

/* The handler. Refuses (counts in book->rejected, book unchanged) a tick
 * with a bad side, a stale seq, a price that is not positive or not on
 * the tick grid, a quantity that is negative or above max_qty, or a price
 * that would cross the other side. Otherwise applies it: a new level is
 * inserted in price order (when the side is full, the worst level makes
 * room, or the tick is applied without effect if it is the worst). */
void ob_on_tick(ob_book *book, const ob_config *cfg, const ob_tick *t);

/* The cheapest handler of the same shape: counts the tick. For measuring
 * the cost of a dispatch itself. */
void ob_touch(ob_book *book, const ob_config *cfg, const ob_tick *t);

/* C code holding the World: looks the book up by name (NULL if absent). */
ob_book *ob_find_book(nexus_world *w);

/* Stamps t with the World's next sequence number and returns it. */
uint64_t ob_stamp(nexus_world *w, ob_tick *t);

/* sizeof of ob_book (0), ob_config (1), ob_tick (2): lets the Lua side
 * check that its ffi.cdef matches this header. */
size_t ob_sizeof(int which);

#endif
