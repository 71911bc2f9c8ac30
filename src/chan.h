/* chan.h - the local channel: bounded, many senders, one receiver.
 *
 * The values are Lua values and stay in a Lua table (the ring buffer of
 * the Lua wrapper); this C record does the accounting and the waiting:
 * which ring index a send writes and a recv reads, the FIFO queue of
 * senders waiting for room, the one waiting receiver, the close state.
 * A send or recv is one FFI call returning an index or a status.
 *
 * Hand-off: a send that finds the receiver waiting on an empty channel
 * takes the value's slot off the ring for it (ch->hand) as it wakes it;
 * the receiver's Lua wrapper, once resumed, takes the value from there
 * with no second call into C. Until then the value is still the
 * channel's first, for everyone: it counts in len() and against the
 * capacity, any recv takes it first (another task's try_recv; the next
 * recv when the woken receiver was aborted), and a sender that must wait
 * for room puts it back in the ring first, so that taking it never needs
 * to grant room (the wrapper then finds no hand and calls recv). The
 * receiver still goes through the ready queue: no task runs out of turn.
 *
 * Fairness: when room frees up while senders wait, it is granted to the
 * first of them (nx_task_grant): a newcomer cannot overtake a waiting
 * sender, and a granted sender that is aborted before it runs passes its
 * grant on. The record is reference-counted: the Lua wrapper holds one
 * reference and every task queued on it or holding a grant holds one,
 * so a collected channel never leaves a task pointing at freed memory.
 */
#ifndef NX_CHAN_H
#define NX_CHAN_H

#include <stdint.h>

#include "rt.h"
#include "waitq.h"

/* Statuses (an index >= 0 means "go ahead at this ring index"). */
enum {
  NX_CH_FULL = -3,      /* try_send: no room */
  NX_CH_EMPTY = -4,     /* try_recv: nothing queued */
  NX_CH_CLOSED = -5,
  NX_CH_WAIT = -6,      /* a wait was registered: yield, then call again */
  NX_CH_BUSY = -7,      /* another task is already receiving */
  NX_CH_OTHER_RT = -8   /* the channel belongs to another runtime */
};

typedef struct nx_chan {
  /* Read by the Lua wrapper through the FFI: keep in step with channel.lua. */
  uint32_t cap, len, head;     /* values in the ring: [head, head + len) */
  uint32_t senders;            /* open sender objects */
  uint8_t rx_closed, tx_closed;
  int32_t hand;                /* the ring index of a value handed to the woken
                                  receiver (just before head, outside len), or -1 */
  /* Private. */
  uint32_t granted;            /* slots reserved for woken senders */
  uint32_t refs;
  nx_task *rx;                 /* the waiting receiver, or NULL */
  nx_rt *rt;                   /* the runtime of its waiters, once any */
  uint64_t rt_serial;
  nx_waitq sendq;               /* waiting senders, each with its end's id */
  uint32_t end_ids;             /* the last end id given */
} nx_chan;

/* An end: a sender object or the receiver. Its Lua wrapper frees it when
 * collected, which closes it if it was still open. */
typedef struct nx_chan_end {
  nx_chan *ch;
  uint8_t closed;
  uint32_t id;                  /* tells its waiting sends apart (tx_close) */
} nx_chan_end;

nx_chan *nx_chan_new(uint32_t cap);          /* no reference yet */
int nx_chan_send(nx_chan_end *e, int wait);    /* through sender e */
int nx_chan_recv(nx_chan *ch, int wait);
nx_chan_end *nx_chan_tx_new(nx_chan *ch);
nx_chan_end *nx_chan_rx_new(nx_chan *ch);
void nx_chan_tx_close(nx_chan_end *e);
void nx_chan_rx_close(nx_chan_end *e);
void nx_chan_tx_free(nx_chan_end *e);
void nx_chan_rx_free(nx_chan_end *e);

struct lua_State;
void nx_chan_open(struct lua_State *L);     /* core.chan_api */

#endif
