/* bchan.c - byte channel: a ring of variable-length messages.
 *
 * The ring holds records [header | payload rounded up to 8]. A header is
 * { len, kind }: CLAIMED (room handed to a producer), READY (committed),
 * SKIP (aborted, or padding up to the end of the ring when a claim did not
 * fit there and went to the start). Records stay in claim order; the
 * receiver takes the record at rd once it is READY, skipping SKIP records,
 * so a message never wraps and never moves. When the ring is empty both
 * ends go back to 0, so the largest message fits again.
 *
 * Producers that find no room wait in a FIFO of their claim objects (the
 * claim is the wait node: nothing is allocated to wait). Room freed by the
 * receiver is handed over in order: the first waiter gets its record
 * reserved and is granted (nx_task_grant), a smaller claim behind it never
 * overtakes it. A granted task aborted before it runs gives the room back
 * through its cancel callback.
 */
#include "bchan.h"

#include <assert.h>
#include <stdlib.h>

#include <lauxlib.h>

enum { BC_IDLE, BC_WAITING, BC_GRANTED, BC_CLAIMED };   /* claim state */
enum { BM_IDLE, BM_HELD };                              /* message state */
enum { K_CLAIMED = 1, K_READY, K_SKIP };                /* record kind */

typedef struct bc_hdr { uint32_t len, kind; } bc_hdr;

#define BC_HDR 8u
#define BC_NONE UINT32_MAX

static uint32_t bc_rec(uint32_t n) { return BC_HDR + ((n + 7u) & ~7u); }
static bc_hdr *bc_at(const nexus_bchan *ch, uint32_t off) { return (bc_hdr *)(ch->buf + off); }

/* ---- lifetime ---- */

nexus_bchan *nx_bchan_new(uint32_t capacity) {
  if (capacity == 0 || capacity > (1u << 30)) return NULL;
  nexus_bchan *ch = calloc(1, sizeof *ch);
  if (!ch) return NULL;
  ch->capacity = capacity;
  ch->size = bc_rec(capacity);           /* the largest message fits in an empty ring */
  ch->buf = malloc(ch->size);
  if (!ch->buf) {
    free(ch);
    return NULL;
  }
  ch->senders = 1;
  ch->refs = 2;                          /* the first sender and the receiver */
  if (nx_cur_rt) {
    ch->rt = nx_cur_rt;
    nx_rt_ref(ch->rt);
  }
  return ch;
}

void nexus_bchan_ref(nexus_bchan *ch) { ch->refs++; }

void nexus_bchan_unref(nexus_bchan *ch) {
  assert(ch->refs > 0);
  if (--ch->refs > 0) return;
  assert(!ch->wq_head && !ch->rx_task);
  if (ch->rt) nx_rt_unref(ch->rt);
  free(ch->buf);
  free(ch);
}

/* Waits need the channel tied to one runtime: the first waiting task's.
 * A closed runtime has no waiters left, so another may take over. */
static int bc_bind(nexus_bchan *ch, nx_rt *rt) {
  if (ch->rt == rt) return 0;
  if (ch->rt && !ch->rt->closed) return NX_B_OTHERRT;
  if (ch->rt) nx_rt_unref(ch->rt);
  ch->rt = rt;
  nx_rt_ref(rt);
  return 0;
}

static int bc_other_rt(const nexus_bchan *ch, const nx_rt *rt) {
  return rt && ch->rt && ch->rt != rt && !ch->rt->closed;
}

/* ---- claims held by tasks ----
 *
 * A claim a task got (claim_wait) is linked into the task's list (next_,
 * prev_ are free once a claim is no longer waiting; task_ names the
 * holder), so that aborting the task gives its room back at once: the
 * claim object is reachable from the dead coroutine only until a GC. */

/* t's x part exists: nx_bchan_claim_wait made it before claiming. */
static void bc_hold(nexus_bclaim *c, nx_task *t) {
  nx_task_x *x = nx_task_xp(t);
  c->task_ = t;
  c->prev_ = NULL;
  c->next_ = x->claims;
  if (x->claims) x->claims->prev_ = c;
  x->claims = c;
}

static void bc_unhold(nexus_bclaim *c) {
  nx_task *t = c->task_;
  if (!t) return;
  if (c->prev_) c->prev_->next_ = c->next_;
  else nx_task_xp(t)->claims = c->next_;
  if (c->next_) c->next_->prev_ = c->prev_;
  c->next_ = c->prev_ = NULL;
  c->task_ = NULL;
}

void nx_bchan_task_ended(nx_task *t) {
  nexus_bclaim *c;
  int drop = t->end != NX_END_OK;
  while ((c = nx_task_xp(t)->claims)) {
    bc_unhold(c);
    if (drop && c->st_ == BC_CLAIMED) nexus_bchan_abort(c);
  }
}

/* A granted task took its grant: its wait is over. */
static void bc_taken(nx_task *t, nexus_bclaim *c) {
  if (t && t->wobj == c) {
    t->cancel = NULL;
    t->wobj = NULL;
  }
}

/* ---- the ring ---- */

/* Offset where a record of rec bytes fits contiguously, or BC_NONE. */
static uint32_t bc_fit(nexus_bchan *ch, uint32_t rec) {
  if (ch->used == 0) ch->rd = ch->wr = 0;
  if (ch->used == ch->size) return BC_NONE;
  uint32_t rd = ch->rd, wr = ch->wr;
  if (wr >= rd) {                        /* free: [wr, size) then [0, rd) */
    if (ch->size - wr >= rec) return wr;
    return rd >= rec ? 0 : BC_NONE;
  }
  return rd - wr >= rec ? wr : BC_NONE;  /* free: [wr, rd) */
}

static void bc_reserve(nexus_bchan *ch, nexus_bclaim *c, uint32_t off, uint32_t n) {
  if (off != ch->wr) {                   /* wrapped: pad the tail of the ring */
    bc_hdr *pad = bc_at(ch, ch->wr);
    pad->len = ch->size - ch->wr - BC_HDR;
    pad->kind = K_SKIP;
    ch->used += ch->size - ch->wr;
  }
  uint32_t rec = bc_rec(n);
  bc_hdr *h = bc_at(ch, off);
  h->len = n;
  h->kind = K_CLAIMED;
  ch->used += rec;
  ch->wr = off + rec == ch->size ? 0 : off + rec;
  ch->nclaims++;
  ch->refs++;                            /* a claim keeps the channel */
  c->ptr = ch->buf + off + BC_HDR;
  c->len = n;
  c->off_ = off;
  c->ch_ = ch;
}

static void bc_clear_claim(nexus_bclaim *c) {
  c->ptr = NULL;
  c->len = 0;
  c->st_ = BC_IDLE;
  c->ch_ = NULL;
  c->task_ = NULL;
}

/* Frees SKIP records at the head. */
static void bc_reclaim(nexus_bchan *ch) {
  while (ch->used && !ch->held) {
    bc_hdr *h = bc_at(ch, ch->rd);
    if (h->kind != K_SKIP) break;
    uint32_t rec = bc_rec(h->len);
    ch->used -= rec;
    ch->rd = ch->rd + rec == ch->size ? 0 : ch->rd + rec;
  }
  if (ch->used == 0) ch->rd = ch->wr = 0;
}

static void bc_unlink(nexus_bchan *ch, nexus_bclaim *c) {
  if (c->prev_) c->prev_->next_ = c->next_;
  else ch->wq_head = c->next_;
  if (c->next_) c->next_->prev_ = c->prev_;
  else ch->wq_tail = c->prev_;
  c->next_ = c->prev_ = NULL;
}

/* Hands freed room to the waiting claims, in order. */
static void bc_serve(nexus_bchan *ch) {
  nexus_bclaim *c;
  while ((c = ch->wq_head) && !ch->rx_closed) {
    uint32_t off = bc_fit(ch, bc_rec(c->need_));
    if (off == BC_NONE) return;
    bc_unlink(ch, c);
    nx_task *t = c->task_;
    bc_reserve(ch, c, off, c->need_);
    c->st_ = BC_GRANTED;
    nx_task_grant(ch->rt, t);            /* keeps bc_claim_cancel registered */
  }
}

static void bc_settle(nexus_bchan *ch) {
  bc_reclaim(ch);
  bc_serve(ch);
}

static int bc_head_ready(const nexus_bchan *ch) {
  return ch->used && !ch->held && bc_at(ch, ch->rd)->kind == K_READY;
}

static int bc_tx_done(const nexus_bchan *ch) { return ch->senders == 0 && ch->nclaims == 0; }

/* Wakes the waiting receiver if it has something to see. */
static void bc_wake_rx(nexus_bchan *ch) {
  nx_task *t = ch->rx_task;
  if (!t || !(bc_head_ready(ch) || bc_tx_done(ch) || ch->rx_closed)) return;
  ch->rx_task = NULL;
  nx_task_wake(ch->rt, t, NX_WAKE_OK);
}

/* ---- producing ---- */

int nexus_bchan_claim(nexus_bchan *ch, size_t n, nexus_bclaim *c) {
  if (!ch || !c || n == 0 || n > ch->capacity || c->st_ != BC_IDLE) return NEXUS_EINVAL;
  if (ch->rx_closed) return NEXUS_EPIPE;
  if (ch->wq_head) return NEXUS_EAGAIN;  /* waiting tasks go first */
  uint32_t off = bc_fit(ch, bc_rec((uint32_t)n));
  if (off == BC_NONE) return NEXUS_EAGAIN;
  bc_reserve(ch, c, off, (uint32_t)n);
  c->st_ = BC_CLAIMED;
  return 0;
}

int nexus_bchan_commit(nexus_bclaim *c) {
  if (!c || c->st_ != BC_CLAIMED) return NEXUS_EINVAL;
  bc_unhold(c);
  nexus_bchan *ch = c->ch_;
  bc_hdr *h = bc_at(ch, c->off_);
  bc_clear_claim(c);
  ch->nclaims--;
  int rc = 0;
  if (ch->rx_closed) {
    h->kind = K_SKIP;
    rc = NEXUS_EPIPE;
  } else {
    h->kind = K_READY;
    ch->nready++;
    bc_wake_rx(ch);
  }
  nexus_bchan_unref(ch);
  return rc;
}

int nexus_bchan_abort(nexus_bclaim *c) {
  if (!c || c->st_ != BC_CLAIMED) return NEXUS_EINVAL;
  bc_unhold(c);
  nexus_bchan *ch = c->ch_;
  uint32_t off = c->off_, rec = bc_rec(c->len);
  bc_clear_claim(c);
  ch->nclaims--;
  uint32_t end = off + rec == ch->size ? 0 : off + rec;
  if (end == ch->wr) {                   /* the newest record: take the room back now */
    ch->wr = off;
    ch->used -= rec;
  } else {
    bc_at(ch, off)->kind = K_SKIP;       /* freed when the receiver gets there */
  }
  bc_settle(ch);
  bc_wake_rx(ch);                        /* it may have held back later messages */
  nexus_bchan_unref(ch);
  return 0;
}

/* A task waiting for room was aborted or timed out; or it was granted
 * room and aborted before it ran: the room goes back. */
static void bc_claim_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nexus_bclaim *c = t->wobj;
  if (c->st_ == BC_GRANTED) {
    c->task_ = NULL;
    c->st_ = BC_CLAIMED;
    nexus_bchan_abort(c);
    return;
  }
  if (c->st_ != BC_WAITING) return;
  nexus_bchan *ch = c->ch_;
  bc_unlink(ch, c);
  bc_clear_claim(c);
  bc_serve(ch);                          /* the claims behind it may fit */
}

int nx_bchan_claim_wait(nexus_bchan *ch, uint32_t n, nexus_bclaim *c, int wait) {
  if (c->st_ == BC_GRANTED) {            /* granted: the room is reserved */
    nx_task *t = c->task_;
    bc_taken(t, c);
    c->task_ = NULL;
    c->st_ = BC_CLAIMED;
    if (t) bc_hold(c, t);
    return NX_OK;
  }
  nx_rt *rt = nx_cur_rt;
  if (bc_other_rt(ch, rt)) return NX_B_OTHERRT;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (t && !nx_task_ext(t)) return NX_E_NOMEM;
  int rc = nexus_bchan_claim(ch, n, c);
  if (rc == 0 && t) bc_hold(c, t);
  if (rc != NEXUS_EAGAIN || !wait) return rc;
  if (!t) return NX_E_NOTASK;
  if ((rc = bc_bind(ch, rt)) != 0) return rc;
  nx_wait(rt, bc_claim_cancel, c);
  c->st_ = BC_WAITING;
  c->need_ = n;
  c->task_ = t;
  c->ch_ = ch;
  c->next_ = NULL;
  c->prev_ = ch->wq_tail;
  if (ch->wq_tail) ch->wq_tail->next_ = c;
  else ch->wq_head = c;
  ch->wq_tail = c;
  return NX_AGAIN;
}

/* ---- consuming ---- */

static int bc_take(nexus_bchan *ch, nexus_bmsg *m) {
  if (ch->rx_closed) return NEXUS_EPIPE;
  bc_settle(ch);
  if (bc_head_ready(ch)) {
    bc_hdr *h = bc_at(ch, ch->rd);
    m->ptr = ch->buf + ch->rd + BC_HDR;
    m->len = h->len;
    m->off_ = ch->rd;
    m->ch_ = ch;
    m->st_ = BM_HELD;
    ch->held = 1;
    ch->nready--;
    ch->refs++;                          /* a held message keeps the channel */
    return 0;
  }
  return bc_tx_done(ch) ? NEXUS_EPIPE : NEXUS_EAGAIN;
}

int nexus_bchan_recv(nexus_bchan *ch, nexus_bmsg *m) {
  if (!ch || !m || m->st_ != BM_IDLE) return NEXUS_EINVAL;
  if (ch->held || ch->rx_task) return NEXUS_EBUSY;
  return bc_take(ch, m);
}

int nexus_bchan_release(nexus_bmsg *m) {
  if (!m || m->st_ != BM_HELD) return NEXUS_EINVAL;
  nexus_bchan *ch = m->ch_;
  uint32_t off = m->off_;
  m->ptr = NULL;
  m->len = 0;
  m->st_ = BM_IDLE;
  m->ch_ = NULL;
  assert(ch->held && off == ch->rd);
  ch->held = 0;
  bc_hdr *h = bc_at(ch, off);
  uint32_t rec = bc_rec(h->len);
  ch->used -= rec;
  ch->rd = off + rec == ch->size ? 0 : off + rec;
  bc_settle(ch);
  nexus_bchan_unref(ch);
  return 0;
}

static void bc_rx_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nexus_bchan *ch = t->wobj;
  if (ch->rx_task == t) ch->rx_task = NULL;
}

int nx_bchan_recv_wait(nexus_bchan *ch, nexus_bmsg *m, int wait) {
  nx_rt *rt = nx_cur_rt;
  if (bc_other_rt(ch, rt)) return NX_B_OTHERRT;
  if (m->st_ != BM_IDLE || ch->held) return NX_B_HELD;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (ch->rx_task) return NX_B_RXBUSY;
  int rc = bc_take(ch, m);
  if (rc != NEXUS_EAGAIN || !wait) return rc;
  if (!t) return NX_E_NOTASK;
  if ((rc = bc_bind(ch, rt)) != 0) return rc;
  nx_wait(rt, bc_rx_cancel, ch);
  ch->rx_task = t;
  return NX_AGAIN;
}

/* ---- ends ---- */

size_t nexus_bchan_len(const nexus_bchan *ch) { return ch->nready; }
size_t nexus_bchan_capacity(const nexus_bchan *ch) { return ch->capacity; }

int nx_bchan_state(const nexus_bchan *ch) {
  int st = 0;
  if (ch->rx_closed) st |= NX_B_RXCLOSED;
  if (bc_tx_done(ch)) st |= NX_B_TXCLOSED;
  if (ch->rx_closed || ch->nready == 0) st |= NX_B_DRAINED;
  return st;
}

void nx_bchan_tx_add(nexus_bchan *ch) {
  ch->senders++;
  ch->refs++;
}

void nx_bchan_tx_close(nexus_bchan *ch) {
  assert(ch->senders > 0);
  ch->senders--;
  bc_wake_rx(ch);
}

void nx_bchan_tx_drop(nexus_bchan *ch) {
  nx_bchan_tx_close(ch);
  nexus_bchan_unref(ch);
}

/* Queued messages are dropped; waiting producers see "closed"; a message
 * already held stays readable until released. */
void nx_bchan_rx_close(nexus_bchan *ch) {
  if (ch->rx_closed) return;
  ch->rx_closed = 1;
  ch->nready = 0;
  if (ch->rx_task) {
    nx_task *t = ch->rx_task;
    ch->rx_task = NULL;
    nx_task_wake(ch->rt, t, NX_WAKE_OK);
  }
  nexus_bclaim *c;
  while ((c = ch->wq_head)) {
    nx_task *t = c->task_;
    bc_unlink(ch, c);
    bc_clear_claim(c);
    nx_task_wake(ch->rt, t, NX_WAKE_OK);
  }
}

void nx_bchan_rx_drop(nexus_bchan *ch) {
  nx_bchan_rx_close(ch);
  nexus_bchan_unref(ch);
}

void nx_bchan_claim_close(nexus_bclaim *c) {
  if (c->st_ != BC_WAITING) return;      /* granted: the woken task aborts it */
  nexus_bchan *ch = c->ch_;
  nx_task *t = c->task_;
  bc_unlink(ch, c);
  bc_clear_claim(c);
  nx_task_wake(ch->rt, t, NX_WAKE_OK);
  bc_serve(ch);                          /* the claims behind it may fit */
}

/* Finalizers of Lua claim and message objects: a claim dropped without
 * commit gives its room back, a message dropped unreleased frees its room. */
void nx_bchan_claim_gc(nexus_bclaim *c) {
  if (c->st_ == BC_WAITING) {
    bc_unlink(c->ch_, c);
    bc_clear_claim(c);
  } else if (c->st_ == BC_GRANTED) {     /* task_: the granted waiter */
    bc_taken(c->task_, c);
    c->task_ = NULL;
    c->st_ = BC_CLAIMED;
    nexus_bchan_abort(c);
  } else if (c->st_ == BC_CLAIMED) {     /* task_: its holder, if any */
    nexus_bchan_abort(c);
  }
}

void nx_bchan_msg_gc(nexus_bmsg *m) {
  if (m->st_ == BM_HELD) nexus_bchan_release(m);
}

/* ---- the FFI's table ---- */

typedef struct nx_bchan_api {
  nexus_bytes_api pub;
  nexus_bchan *(*create)(uint32_t capacity);
  void (*tx_add)(nexus_bchan *ch);
  void (*tx_close)(nexus_bchan *ch);
  void (*tx_drop)(nexus_bchan *ch);
  void (*rx_close)(nexus_bchan *ch);
  void (*rx_drop)(nexus_bchan *ch);
  int (*claim_wait)(nexus_bchan *ch, uint32_t n, nexus_bclaim *c, int wait);
  int (*recv_wait)(nexus_bchan *ch, nexus_bmsg *m, int wait);
  int (*state)(const nexus_bchan *ch);
  void (*claim_gc)(nexus_bclaim *c);
  void (*msg_gc)(nexus_bmsg *m);
  void (*claim_close)(nexus_bclaim *c);
} nx_bchan_api;

static const nx_bchan_api nx_bchan_api_table = {
  { nexus_bchan_claim, nexus_bchan_commit, nexus_bchan_abort, nexus_bchan_recv,
    nexus_bchan_release, nexus_bchan_len, nexus_bchan_capacity,
    nexus_bchan_ref, nexus_bchan_unref },
  nx_bchan_new, nx_bchan_tx_add, nx_bchan_tx_close, nx_bchan_tx_drop, nx_bchan_rx_close, nx_bchan_rx_drop,
  nx_bchan_claim_wait, nx_bchan_recv_wait, nx_bchan_state,
  nx_bchan_claim_gc, nx_bchan_msg_gc, nx_bchan_claim_close,
};

void nx_bchan_open(lua_State *L) {
  nx_wait_kind(bc_claim_cancel, "bytes claim", NULL);
  nx_wait_kind(bc_rx_cancel, "bytes recv", NULL);
  lua_pushlightuserdata(L, (void *)&nx_bchan_api_table);
  lua_setfield(L, -2, "bchan_api");
}
