/* bchan.h - byte channel: a ring of variable-length messages.
 *
 * The public face (claim, commit, abort, recv, release) is in nexus.h.
 * This header adds what the Lua binding uses: creation, sender and
 * receiver counts, and the suspending forms of claim and recv that follow
 * the wait API of rt.h (NX_OK, NX_AGAIN after nx_wait, NX_E_NOTASK).
 */
#ifndef NX_BCHAN_H
#define NX_BCHAN_H

#include <stdint.h>
#include <lua.h>

#include "nexus.h"
#include "rt.h"

/* Statuses of the suspending forms besides NX_OK, NX_AGAIN, NX_E_NOTASK,
 * NEXUS_EPIPE (closed) and NEXUS_EINVAL. */
enum {
  NX_B_HELD = -101,      /* recv: the previous message was not released */
  NX_B_RXBUSY = -102,    /* recv: another task is already receiving */
  NX_B_OTHERRT = -103    /* a task of another runtime waits on the channel */
};

/* State bits of nx_bchan_state. */
enum {
  NX_B_RXCLOSED = 1,     /* the receiver closed or was collected */
  NX_B_TXCLOSED = 2,     /* every sender closed, no claim outstanding */
  NX_B_DRAINED = 4       /* nothing left to receive */
};

struct nexus_bchan {
  uint8_t *buf;
  uint32_t size;          /* ring bytes: capacity rounded up to 8, plus a header */
  uint32_t capacity;      /* largest message, as asked */
  uint32_t rd, wr, used;  /* oldest record, next free byte, bytes in records */
  uint32_t nready;        /* committed, not yet received */
  uint32_t nclaims;       /* claimed, not yet committed or aborted */
  uint32_t senders;       /* open Lua senders */
  uint32_t refs;          /* Lua handles, outstanding claims, the held message, C refs */
  uint8_t rx_closed, held;
  nx_rt *rt;              /* runtime of its waiters, bound at the first wait */
  nx_task *rx_task;       /* the receiver, waiting for a message */
  nexus_bclaim *wq_head, *wq_tail;   /* claims waiting for room, FIFO */
};

nexus_bchan *nx_bchan_new(uint32_t capacity);    /* one sender, one receiver */
void nx_bchan_tx_add(nexus_bchan *ch);           /* another sender */
void nx_bchan_tx_close(nexus_bchan *ch);         /* a sender closed (keeps its ref) */
void nx_bchan_tx_drop(nexus_bchan *ch);          /* an open sender collected */
void nx_bchan_rx_close(nexus_bchan *ch);         /* rx:close() */
void nx_bchan_rx_drop(nexus_bchan *ch);          /* the receiver collected */
/* wait = 0: the try forms (NEXUS_EAGAIN instead of a wait). */
int nx_bchan_claim_wait(nexus_bchan *ch, uint32_t n, nexus_bclaim *c, int wait);
int nx_bchan_recv_wait(nexus_bchan *ch, nexus_bmsg *m, int wait);
int nx_bchan_state(const nexus_bchan *ch);
void nx_bchan_claim_gc(nexus_bclaim *c);         /* finalizer of a Lua claim object */
/* A sender object closed: the claims of waits made through it (Lua keeps
 * the list) give up: each one still waiting is unlinked and its task woken
 * (it then finds the claim idle and returns nil, "closed"). */
void nx_bchan_claim_close(nexus_bclaim *c);
/* A task ended (rt.c): claims it holds uncommitted are aborted if it was
 * aborted or failed (its room comes back at once, not at the next GC);
 * after a normal return they stay claimed, with no owner. */
void nx_bchan_task_ended(nx_task *t);
void nx_bchan_msg_gc(nexus_bmsg *m);             /* finalizer of a Lua message object */

void nx_bchan_open(lua_State *L);

#endif
