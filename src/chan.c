/* chan.c - the local channel's accounting and waits (see chan.h). */
#include "chan.h"
#include "select.h"

#include <stdlib.h>

#include <lua.h>

nx_chan *nx_chan_new(uint32_t cap) {
  if (cap == 0) return NULL;
  nx_chan *ch = calloc(1, sizeof *ch);
  if (!ch) return NULL;
  ch->cap = cap;
  ch->hand = -1;
  nx_waitq_init(&ch->sendq);
  return ch;
}

static void nx_chan_free(nx_chan *ch) {
  nx_waitq_free(&ch->sendq);
  free(ch);
}

static inline void nx_chan_unref(nx_chan *ch) {
  if (--ch->refs == 0) nx_chan_free(ch);
}

/* head and len are below cap: a compare wraps the ring index (a `%`
 * is an integer division, tens of cycles, on every send and recv). */
static uint32_t nx_chan_tail(const nx_chan *ch) {
  uint32_t i = ch->head + ch->len;
  return i >= ch->cap ? i - ch->cap : i;
}

/* Wakes the waiting receiver, if any: it calls recv again and sees what
 * changed (a value, or the channel closed). */
static void nx_chan_wake_rx(nx_chan *ch) {
  nx_task *r = ch->rx;
  if (!r) return;
  ch->rx = NULL;
  nx_task_wake(ch->rt, r, NX_WAKE_OK);
  nx_chan_unref(ch);
}

/* Values queued and slots reserved: a hand counts as queued. */
static uint32_t nx_chan_taken(const nx_chan *ch) {
  return ch->len + ch->granted + (ch->hand >= 0);
}

/* The handed value goes back to the front of the ring (just before head). */
static void nx_chan_unhand(nx_chan *ch) {
  ch->head = (uint32_t)ch->hand;
  ch->len++;
  ch->hand = -1;
}

/* Wakes the first waiting sender with a reserved slot, if room allows. */
static void nx_chan_grant_next(nx_chan *ch) {
  while (nx_chan_taken(ch) < ch->cap) {
    nx_task *t = nx_waitq_pop(&ch->sendq);
    if (!t) return;
    ch->granted++;
    nx_task_grant(ch->rt, t);
  }
}

/* A reserved slot comes back (a granted sender that will not send): to
 * the next waiting sender; and if it was the last send the sending side
 * still owed (every sender closed), the waiting receiver wakes to see
 * "closed". */
static void nx_chan_give_back(nx_chan *ch) {
  ch->granted--;
  if (!ch->rx_closed) nx_chan_grant_next(ch);
  if (ch->tx_closed && ch->granted == 0 && ch->len == 0 && ch->rx) {
    nx_task *r = ch->rx;
    ch->rx = NULL;
    nx_task_wake(ch->rt, r, NX_WAKE_OK);
    ch->refs--;           /* the receiver's; the caller's reference outlives it */
  }
}

/* A queued sender was aborted or timed out; a granted one (READY) passes
 * its grant on, and if it was the last send the sending side still owed
 * (every sender closed), the waiting receiver wakes to see "closed".
 * Either way it drops its reference. */
static void nx_chan_tx_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_chan *ch = t->wobj;
  if (t->state == NX_READY) {
    nx_chan_give_back(ch);
  } else {
    nx_waitq_cancelled(&ch->sendq);
  }
  t->wobj = NULL;
  nx_chan_unref(ch);
}

static void nx_chan_rx_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nx_chan *ch = t->wobj;
  if (ch->rx == t) ch->rx = NULL;
  t->wobj = NULL;
  nx_chan_unref(ch);
}

/* The runtime check: waiters of one channel all live in one runtime. */
static inline __attribute__((always_inline)) nx_task *nx_chan_task(nx_chan *ch, int *rc) {
  nx_rt *rt = nx_cur_rt;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (!t) {
    *rc = NX_E_NOTASK;
    return NULL;
  }
  if (ch->rt && (ch->rt != rt || ch->rt_serial != rt->serial) &&
      (ch->rx || ch->sendq.live || ch->granted)) {
    *rc = NX_CH_OTHER_RT;
    return NULL;
  }
  ch->rt = rt;
  ch->rt_serial = rt->serial;
  return t;
}

static inline __attribute__((always_inline)) int nx_chan_push(nx_chan *ch) {
  uint32_t i = nx_chan_tail(ch);
  nx_task *r = ch->rx;
  if (!r) {
    ch->len++;
    return (int)i;
  }
  if (ch->len == 0 && !r->kind && ch->sendq.live == 0) {   /* hand-off (chan.h); a select's proxy polls recv */
    ch->hand = (int32_t)i;
    ch->head = i + 1 == ch->cap ? 0 : i + 1;
  } else {
    ch->len++;
  }
  ch->rx = NULL;
  nx_task_wake(ch->rt, r, NX_WAKE_OK);
  nx_chan_unref(ch);
  return (int)i;
}

/* Returns the ring index to store the value at, or a status. */
int nx_chan_send(nx_chan_end *e, int wait) {
  nx_chan *ch = e->ch;
  nx_rt *rt = nx_cur_rt;
  nx_task *cur = rt && ch->granted ? rt->cur : NULL;   /* no grant: no granted sender */
  if (cur && cur->wobj == ch && cur->cancel == nx_chan_tx_cancel) {
    /* The grant of a woken sender: its slot was reserved. */
    cur->wobj = NULL;
    cur->cancel = NULL;
    if (e->closed) {                    /* its sender was closed meanwhile */
      nx_chan_give_back(ch);
      nx_chan_unref(ch);
      return NX_CH_CLOSED;
    }
    ch->granted--;
    nx_chan_unref(ch);
    if (ch->rx_closed) return NX_CH_CLOSED;
    return nx_chan_push(ch);
  }
  if (e->closed || ch->rx_closed) return NX_CH_CLOSED;
  if (nx_chan_taken(ch) < ch->cap && ch->sendq.live == 0) {
    if (wait && nx_coop_spend(rt)) return NX_CH_WAIT;    /* yields once, then retries */
    return nx_chan_push(ch);
  }
  if (!wait) return NX_CH_FULL;
  int rc;
  nx_task *t = nx_chan_task(ch, &rc);
  if (!t) return rc;
  if (ch->hand >= 0) nx_chan_unhand(ch);   /* its taker must grant the room (chan.h) */
  nx_wait_task(rt, t, nx_chan_tx_cancel, ch);   /* first: the entry records its wseq */
  if (nx_waitq_push_arg(&ch->sendq, t, e->id) != 0) {
    t->cancel = NULL;
    nx_task_cancel_wait(rt, t);
    return NX_E_NOMEM;
  }
  ch->refs++;
  return NX_CH_WAIT;
}

/* Returns the ring index to take the value from (the caller clears it),
 * or a status. */
int nx_chan_recv(nx_chan *ch, int wait) {
  if (ch->hand >= 0) {                        /* the first value, handed: whoever receives takes it */
    if (wait && nx_coop_spend(nx_cur_rt)) return NX_CH_WAIT;
    uint32_t i = (uint32_t)ch->hand;
    ch->hand = -1;
    if (ch->sendq.live && !ch->rx_closed) nx_chan_grant_next(ch);   /* none waits while a hand is out */
    return (int)i;
  }
  if (ch->len) {
    if (wait && nx_coop_spend(nx_cur_rt)) return NX_CH_WAIT;   /* yields once, then retries */
    uint32_t i = ch->head;
    ch->head = i + 1 == ch->cap ? 0 : i + 1;
    ch->len--;
    if (ch->sendq.live && !ch->rx_closed) nx_chan_grant_next(ch);
    return (int)i;
  }
  if (ch->rx_closed || (ch->tx_closed && ch->granted == 0)) return NX_CH_CLOSED;
  if (!wait) return NX_CH_EMPTY;
  int rc;
  nx_task *t = nx_chan_task(ch, &rc);
  if (!t) return rc;
  if (ch->rx && ch->rx != t) return NX_CH_BUSY;
  ch->rx = t;
  nx_wait_task(ch->rt, t, nx_chan_rx_cancel, ch);
  ch->refs++;
  return NX_CH_WAIT;
}

static nx_chan_end *nx_chan_end_new(nx_chan *ch) {
  nx_chan_end *e = malloc(sizeof *e);
  if (!e) return NULL;
  e->ch = ch;
  e->closed = 0;
  e->id = ++ch->end_ids;
  ch->refs++;
  return e;
}

nx_chan_end *nx_chan_tx_new(nx_chan *ch) {
  nx_chan_end *e = nx_chan_end_new(ch);
  if (e) ch->senders++;
  return e;
}

nx_chan_end *nx_chan_rx_new(nx_chan *ch) { return nx_chan_end_new(ch); }

/* One sender object closed (or was collected): the last one closes the
 * sending side, and a waiting receiver wakes to see it. */
/* A send waiting through a sender that is closed gives up: it wakes and
 * finds its sender closed (nil, "closed"). */
static void nx_chan_wake_sender(void *ctx, nx_task *t) {
  nx_chan *ch = ctx;
  nx_task_wake(ch->rt, t, NX_WAKE_OK);
  ch->refs--;               /* its reference; the closing end still holds one */
}

void nx_chan_tx_close(nx_chan_end *e) {
  if (e->closed) return;
  e->closed = 1;
  nx_chan *ch = e->ch;
  if (ch->sendq.live) nx_waitq_wake_arg(&ch->sendq, e->id, nx_chan_wake_sender, ch);
  if (--ch->senders > 0) return;
  ch->tx_closed = 1;
  nx_chan_wake_rx(ch);
}

/* The receiver is gone: waiting senders wake to see "closed"; the Lua
 * wrapper drops the queued values. A task waiting in recv (rx:close
 * called from another task) wakes to see "closed" too. */
void nx_chan_rx_close(nx_chan_end *e) {
  if (e->closed) return;
  e->closed = 1;
  nx_chan *ch = e->ch;
  ch->rx_closed = 1;
  ch->len = 0;
  ch->hand = -1;
  nx_chan_wake_rx(ch);
  nx_task *t;
  while ((t = nx_waitq_pop(&ch->sendq))) {
    ch->granted++;          /* woken as granted: it sees "closed" */
    nx_task_grant(ch->rt, t);
  }
}

void nx_chan_tx_free(nx_chan_end *e) {
  nx_chan_tx_close(e);
  nx_chan_unref(e->ch);
  free(e);
}

void nx_chan_rx_free(nx_chan_end *e) {
  nx_chan_rx_close(e);
  nx_chan_unref(e->ch);
  free(e);
}

/* ---- select's C ops (select.h): one call per poll ---- */

static int32_t nx_chan_cpoll_map(int r) {
  if (r >= 0 || r == NX_CH_CLOSED) return r;      /* done: an index, or closed */
  if (r == NX_CH_WAIT) return NX_SEL_WAITING;
  return NX_SEL_FAULT_MAX + r;
}

static int32_t nx_chan_recv_cpoll(void *ch) { return nx_chan_cpoll_map(nx_chan_recv(ch, 1)); }

static int32_t nx_chan_send_cpoll(void *end) { return nx_chan_cpoll_map(nx_chan_send(end, 1)); }

/* ---- the FFI face (lua/nexus/channel.lua declares the same layout) ---- */

typedef struct nx_chan_api {
  nx_chan *(*create)(uint32_t);
  int (*send)(nx_chan_end *, int);
  int (*recv)(nx_chan *, int);
  nx_chan_end *(*tx_new)(nx_chan *);
  nx_chan_end *(*rx_new)(nx_chan *);
  void (*tx_close)(nx_chan_end *);
  void (*rx_close)(nx_chan_end *);
  void (*tx_free)(nx_chan_end *);
  void (*rx_free)(nx_chan_end *);
  nx_sel_cpoll recv_cpoll;
  nx_sel_cpoll send_cpoll;
} nx_chan_api;

static const nx_chan_api nx_chan_api_table = {
  nx_chan_new, nx_chan_send, nx_chan_recv, nx_chan_tx_new, nx_chan_rx_new,
  nx_chan_tx_close, nx_chan_rx_close, nx_chan_tx_free, nx_chan_rx_free,
  nx_chan_recv_cpoll, nx_chan_send_cpoll,
};

void nx_chan_open(lua_State *L) {
  nx_wait_kind(nx_chan_rx_cancel, "channel recv", NULL);
  nx_wait_kind(nx_chan_tx_cancel, "channel send", NULL);
  lua_pushlightuserdata(L, (void *)&nx_chan_api_table);
  lua_setfield(L, -2, "chan_api");
}
