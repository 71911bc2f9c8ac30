/* mpsc.c - cross-thread channel.
 *
 * A bounded ring of encoded values behind a mutex. Senders encode the
 * value in their own thread (into a buffer of the sender object), then
 * copy it into a slot under the lock; the receiver swaps the slot's
 * buffer with its own and decodes outside the lock. Slot buffers are kept
 * and reused, so a steady stream allocates nothing but the Lua values the
 * receiver builds.
 *
 * Waking: a sender on the receiver's thread (a task of its runtime) wakes
 * the receiving task directly; a sender on any other thread marks nothing
 * but the ring and, when the receiver waits, sends the runtime's uv_async_t
 * (owned by the runtime: rt:close() closes it). The async handle is unref'd
 * except while the receiver waits, so an idle channel keeps no loop alive.
 * Senders in the receiver's thread wait as tasks (FIFO) while the ring is
 * full; senders in other threads block on a condition variable.
 *
 * Values are encoded by codec.c.
 */
#include "mpsc.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <uv.h>

#include "codec.h"
#include "rt.h"

#define MP_MAGIC 0x6e786d70u         /* "nxmp": a live channel */
#define MP_MAX_CAP (1u << 24)
#define MP_KEEP_BUF (256u * 1024u)   /* larger scratch buffers are freed after use */

#define MP_SENDER_MT "nexus.mpsc.sender"
#define MP_RECEIVER_MT "nexus.mpsc.receiver"

typedef nx_buf mp_buf;

/* A task waiting for room, and the sender it sends through (closing that
 * sender makes the wait give up). */
typedef struct mp_waiter { nx_task *t; const void *via; } mp_waiter;

struct nexus_mpsc {
  uint32_t magic;
  uv_mutex_t mu;
  uv_cond_t room;                /* blocked senders of other threads */
  /* under mu */
  mp_buf *slots;
  uint32_t cap, head, n;
  uint32_t senders, refs, blocked;
  uint32_t remote;               /* senders made from handles: maybe other threads */
  uint8_t rx_closed, rx_waiting, async_live;
  /* the receiver's thread only */
  uv_thread_t rx_thread;
  nx_rt *rt;                     /* bound at creation in a runtime, or at the first wait */
  nx_task *rx_task;
  mp_waiter *wq;                 /* tasks waiting for room, FIFO */
  uint32_t wq_n, wq_cap;
  mp_buf dec;
  uint8_t async_init;
  uv_async_t async;
  nx_owned own;
};

typedef struct mp_sender { nexus_mpsc *ch; uint32_t cap; uint8_t open, remote; mp_buf enc; } mp_sender;
typedef struct mp_receiver { nexus_mpsc *ch; uint32_t cap; } mp_receiver;

/* ---- the handle registry ----
 *
 * A handle (tx:handle(), nexus_mpsc_sender_clone) is the channel's
 * address: it crosses into other Lua states as a number and into C code
 * as a pointer, so it can be forged, or used after the sender it stood for
 * was closed and the channel freed. No handle is dereferenced on trust:
 * this process-wide table counts the outstanding handles of each channel,
 * and every entry point that takes one looks it up first. A channel is in
 * it only while it has handles; each handle holds a reference, so a
 * channel found here is alive. Taking over or closing a handle takes it
 * out of the count, so a handle used twice is refused too. (Two handles of
 * the same channel are the same address: one of them used twice passes
 * while the other is outstanding; it then stands for that other one. The
 * C API promises that nexus_mpsc_sender_clone returns h itself, so
 * handles cannot be told apart.)
 *
 * The table is behind a lock because handles cross OS threads (C code,
 * nexus.thread.run, luv threads). Making and ending handles take it for
 * writing; a lookup for reading. The C send path must not pay a lock per
 * value on top of the channel's own mutex (a read lock is an atomic
 * read-modify-write on a line every sending thread shares: it cost 11 of
 * 27 ns per uncontended nexus_mpsc_send_number), so each thread keeps the
 * last handle it found here, with the registry's epoch, which bumps
 * whenever a channel's last handle ends: while the epoch is unchanged the
 * handle is still outstanding (a channel leaves the table only through
 * that bump, and is freed only after it left), so the repeat lookup is one
 * atomic load. Lua senders never look anything up: mpsc.sender() checks
 * the handle once and the sender object holds its own reference. */

typedef struct mp_hent { nexus_mpsc *ch; uint32_t n; } mp_hent;
static struct {
  uv_rwlock_t lock;
  mp_hent *v;                    /* open addressing, linear probing; ch NULL = free */
  uint32_t cap, used;
  _Atomic uint64_t epoch;        /* bumps when an entry goes (under the write lock) */
} mp_reg;
/* This thread's last handle found in the table, and the epoch then. */
static NX_TLS const nexus_mpsc *mp_seen;
static NX_TLS uint64_t mp_seen_epoch;
static uv_once_t mp_reg_once = UV_ONCE_INIT;
static void mp_reg_init(void) {
  if (uv_rwlock_init(&mp_reg.lock) != 0) abort();
}

static uint32_t mp_reg_hash(const nexus_mpsc *ch, uint32_t cap) {
  uint64_t x = (uint64_t)(uintptr_t)ch;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return (uint32_t)x & (cap - 1);
}

/* The entry of ch, or the free one where it would go; under the lock. */
static mp_hent *mp_reg_slot(const nexus_mpsc *ch) {
  uint32_t i = mp_reg_hash(ch, mp_reg.cap);
  while (mp_reg.v[i].ch && mp_reg.v[i].ch != ch) i = (i + 1) & (mp_reg.cap - 1);
  return &mp_reg.v[i];
}

static int mp_reg_grow(void) {
  uint32_t cap = mp_reg.cap ? mp_reg.cap * 2 : 64;
  mp_hent *old = mp_reg.v, *v = calloc(cap, sizeof *v);
  uint32_t ocap = mp_reg.cap;
  if (!v) return -1;
  mp_reg.v = v;
  mp_reg.cap = cap;
  for (uint32_t i = 0; i < ocap; i++)
    if (old[i].ch) *mp_reg_slot(old[i].ch) = old[i];
  free(old);
  return 0;
}

/* One more handle of ch; -1 on ENOMEM. */
static int mp_reg_issue(nexus_mpsc *ch) {
  int rc = 0;
  uv_once(&mp_reg_once, mp_reg_init);
  uv_rwlock_wrlock(&mp_reg.lock);
  if ((mp_reg.used + 1) * 2 > mp_reg.cap && mp_reg_grow() != 0) {
    rc = -1;
  } else {
    mp_hent *e = mp_reg_slot(ch);
    if (!e->ch) {
      e->ch = ch;
      mp_reg.used++;
    }
    e->n++;
  }
  uv_rwlock_wrunlock(&mp_reg.lock);
  return rc;
}

/* Is h an outstanding handle? (Its channel is then alive.) */
static int mp_reg_valid(const nexus_mpsc *h) {
  if (!h) return 0;
  if (h == mp_seen && atomic_load_explicit(&mp_reg.epoch, memory_order_acquire) == mp_seen_epoch)
    return 1;                    /* no handle ended since this thread found it */
  int ok = 0;
  uv_once(&mp_reg_once, mp_reg_init);
  uv_rwlock_rdlock(&mp_reg.lock);
  if (mp_reg.cap) ok = mp_reg_slot(h)->ch != NULL;
  uint64_t epoch = atomic_load_explicit(&mp_reg.epoch, memory_order_relaxed);
  uv_rwlock_rdunlock(&mp_reg.lock);
  if (ok) {
    mp_seen = h;
    mp_seen_epoch = epoch;
  }
  return ok;
}

/* Ends one handle of h: 1 if it was outstanding (its sender and reference
 * are now the caller's), 0 if not (refused). */
static int mp_reg_take(const nexus_mpsc *h) {
  int ok = 0;
  if (!h) return 0;
  uv_once(&mp_reg_once, mp_reg_init);
  uv_rwlock_wrlock(&mp_reg.lock);
  mp_hent *e = mp_reg.cap ? mp_reg_slot(h) : NULL;
  if (e && e->ch) {
    ok = 1;
    if (--e->n == 0) {           /* remove, shifting the probe chain back */
      uint32_t i = (uint32_t)(e - mp_reg.v), j = i;
      atomic_fetch_add_explicit(&mp_reg.epoch, 1, memory_order_release);
      mp_reg.v[i].ch = NULL;
      mp_reg.used--;
      for (;;) {
        j = (j + 1) & (mp_reg.cap - 1);
        if (!mp_reg.v[j].ch) break;
        uint32_t k = mp_reg_hash(mp_reg.v[j].ch, mp_reg.cap);
        /* j's entry may move to the hole at i unless its home k lies in (i, j] */
        if ((i <= j) ? (i < k && k <= j) : (i < k || k <= j)) continue;
        mp_reg.v[i] = mp_reg.v[j];
        mp_reg.v[j].ch = NULL;
        i = j;
      }
    }
  }
  uv_rwlock_wrunlock(&mp_reg.lock);
  return ok;
}

/* ---- buffers ---- */

static int mp_reserve(mp_buf *b, size_t need) {
  return nx_buf_reserve(b, need) ? NEXUS_ENOMEM : 0;
}

static void mp_buf_trim(mp_buf *b) { nx_buf_trim(b, MP_KEEP_BUF); }

/* ---- lifetime ---- */

static nexus_mpsc *mp_new(uint32_t cap) {
  nexus_mpsc *ch = calloc(1, sizeof *ch);
  if (!ch) return NULL;
  ch->slots = calloc(cap, sizeof *ch->slots);
  if (!ch->slots) goto fail;
  if (uv_mutex_init(&ch->mu) != 0) goto fail_slots;
  if (uv_cond_init(&ch->room) != 0) goto fail_mutex;
  ch->magic = MP_MAGIC;
  ch->cap = cap;
  ch->senders = 1;
  ch->refs = 2;                  /* the first sender and the receiver */
  ch->rx_thread = uv_thread_self();
  return ch;
fail_mutex:
  uv_mutex_destroy(&ch->mu);
fail_slots:
  free(ch->slots);
fail:
  free(ch);
  return NULL;
}

static void mp_free(nexus_mpsc *ch) {
  ch->magic = 0;
  for (uint32_t i = 0; i < ch->cap; i++) free(ch->slots[i].p);
  free(ch->slots);
  free(ch->wq);
  free(ch->dec.p);
  uv_cond_destroy(&ch->room);
  uv_mutex_destroy(&ch->mu);
  free(ch);
}

/* Drops a reference; any thread. */
static void mp_unref(nexus_mpsc *ch) {
  uv_mutex_lock(&ch->mu);
  int last = --ch->refs == 0;
  uv_mutex_unlock(&ch->mu);
  if (last) mp_free(ch);
}

/* ---- waking the receiver ---- */

/* Under mu: a value arrived or the last sender left. */
static void mp_notify_locked(nexus_mpsc *ch) {
  if (ch->rx_waiting && ch->async_live) {
    ch->rx_waiting = 0;
    uv_async_send(&ch->async);
  }
}

/* Receiver's thread: wake the waiting receiver task. */
static void mp_wake_rx(nexus_mpsc *ch) {
  nx_task *t = ch->rx_task;
  if (!t) return;
  ch->rx_task = NULL;
  uv_unref((uv_handle_t *)&ch->async);
  nx_task_wake(ch->rt, t, NX_WAKE_OK);
}

static void mp_async_cb(uv_async_t *a) { mp_wake_rx(a->data); }

static void mp_async_closed(uv_handle_t *h) {
  nexus_mpsc *ch = h->data;
  nx_rt_unref(ch->rt);           /* on the loop's thread, as rt refs must be */
  ch->rt = NULL;
  mp_unref(ch);
}

static void mp_async_close(nexus_mpsc *ch) {
  if (!ch->async_init) return;
  ch->async_init = 0;
  uv_mutex_lock(&ch->mu);
  ch->async_live = 0;
  ch->rx_waiting = 0;
  uv_mutex_unlock(&ch->mu);
  nx_disown(ch->rt, &ch->own);
  uv_close((uv_handle_t *)&ch->async, mp_async_closed);
}

/* ---- local senders waiting for room ---- */

static int mp_wq_add(nexus_mpsc *ch, nx_task *t, const void *via, int front) {
  if (ch->wq_n == ch->wq_cap) {
    uint32_t cap = ch->wq_cap ? ch->wq_cap * 2 : 8;
    mp_waiter *wq = realloc(ch->wq, cap * sizeof *wq);
    if (!wq) return NX_E_NOMEM;
    ch->wq = wq;
    ch->wq_cap = cap;
  }
  mp_waiter w = { t, via };
  if (front) {
    memmove(ch->wq + 1, ch->wq, ch->wq_n * sizeof *ch->wq);
    ch->wq[0] = w;
  } else {
    ch->wq[ch->wq_n] = w;
  }
  ch->wq_n++;
  return 0;
}

static void mp_wq_remove(nexus_mpsc *ch, nx_task *t) {
  for (uint32_t i = 0; i < ch->wq_n; i++) {
    if (ch->wq[i].t == t) {
      memmove(ch->wq + i, ch->wq + i + 1, (ch->wq_n - i - 1) * sizeof *ch->wq);
      ch->wq_n--;
      return;
    }
  }
}

/* Room freed: the first waiting sender gets the turn to try again
 * (nx_task_grant keeps mp_tx_cancel registered: aborted before it runs,
 * it passes the turn on). */
static void mp_wake_sender(nexus_mpsc *ch) {
  if (ch->wq_n == 0) return;
  nx_task *t = ch->wq[0].t;
  mp_wq_remove(ch, t);
  nx_task_grant(ch->rt, t);
}

static void mp_tx_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nexus_mpsc *ch = t->wobj;
  if (t->state != NX_READY) {            /* waiting in the queue */
    mp_wq_remove(ch, t);
    return;
  }
  uv_mutex_lock(&ch->mu);                /* granted the turn, then aborted */
  int room = ch->n < ch->cap;
  uv_mutex_unlock(&ch->mu);
  if (room) mp_wake_sender(ch);
}

static void mp_wake_all_senders(nexus_mpsc *ch) {
  while (ch->wq_n) {
    nx_task *t = ch->wq[0].t;
    mp_wq_remove(ch, t);
    nx_task_wake(ch->rt, t, NX_WAKE_OK);
  }
}

/* The sender via was closed: the tasks waiting for room through it give
 * up (woken, they find it closed and return nil, "closed"); the others
 * keep their places. A task already granted the turn is not in the queue:
 * it finds the sender closed when it runs and passes the turn on. Without
 * this a send waiting through a closed sender waited until the receiver
 * made room, or forever (reported as a deadlock). */
static void mp_wake_through(nexus_mpsc *ch, const void *via) {
  uint32_t i = 0;
  while (i < ch->wq_n) {
    if (ch->wq[i].via != via) {
      i++;
      continue;
    }
    nx_task *t = ch->wq[i].t;
    memmove(ch->wq + i, ch->wq + i + 1, (ch->wq_n - i - 1) * sizeof *ch->wq);
    ch->wq_n--;
    nx_task_wake(ch->rt, t, NX_WAKE_OK);
  }
}

/* ---- runtime binding ---- */

static void mp_owned_close(nx_rt *rt, nx_owned *o);

/* Ties the channel to rt (receiver's thread): the async handle lives on
 * its loop, and its closing closes the receiver. */
static int mp_bind(nexus_mpsc *ch, nx_rt *rt) {
  if (ch->rt == rt && ch->async_init) return 0;
  if (ch->rt || ch->rx_closed) return NX_M_OTHERRT;
  if (uv_async_init(&rt->loop, &ch->async, mp_async_cb) != 0) return NX_E_NOMEM;
  uv_unref((uv_handle_t *)&ch->async);
  ch->async.data = ch;
  ch->rt = rt;
  nx_rt_ref(rt);
  ch->async_init = 1;
  ch->own.close = mp_owned_close;
  nx_own(rt, &ch->own);
  uv_mutex_lock(&ch->mu);
  ch->async_live = 1;
  ch->refs++;                    /* the async handle, until its close callback */
  uv_mutex_unlock(&ch->mu);
  return 0;
}

static int mp_other_rt(const nexus_mpsc *ch, const nx_rt *rt) {
  return rt && ch->rt && ch->rt != rt;
}

/* ---- closing ---- */

/* The receiver is gone: senders see "closed", queued values are dropped. */
static void mp_rx_close(nexus_mpsc *ch) {
  uv_mutex_lock(&ch->mu);
  int was = ch->rx_closed;
  ch->rx_closed = 1;
  ch->n = 0;
  uv_cond_broadcast(&ch->room);
  uv_mutex_unlock(&ch->mu);
  if (was) return;
  if (ch->rt) {
    mp_wake_all_senders(ch);
    mp_wake_rx(ch);
  }
  mp_async_close(ch);
}

/* rt:close(): its receiver can never wait again. */
static void mp_owned_close(nx_rt *rt, nx_owned *o) {
  (void)rt;
  nexus_mpsc *ch = (nexus_mpsc *)((char *)o - offsetof(nexus_mpsc, own));
  mp_rx_close(ch);
}

static int mp_on_rx_thread(const nexus_mpsc *ch);
static void mp_wake_rx(nexus_mpsc *ch);

/* A sender is done; unref: also drop its reference (a Lua sender keeps
 * it until collected, so that a send still waiting on it can finish). */
static void mp_sender_close(nexus_mpsc *ch, int remote, int unref) {
  int local = mp_on_rx_thread(ch), wake = 0;
  uv_mutex_lock(&ch->mu);
  /* The last sender gone, or the last that could be on another thread:
   * the waiting receiver re-checks (and may then wait without keeping
   * the loop alive, so a deadlock is detected). On its own thread it is
   * woken directly: an async send does not keep an idle loop alive. */
  int last_remote = remote && --ch->remote == 0;
  if (--ch->senders == 0 || last_remote) {
    if (!local) {
      mp_notify_locked(ch);
    } else if (ch->rx_waiting) {
      ch->rx_waiting = 0;
      wake = 1;
    }
  }
  int last = unref && --ch->refs == 0;
  uv_mutex_unlock(&ch->mu);
  if (wake) mp_wake_rx(ch);
  if (last) mp_free(ch);
}

/* ---- sending ---- */

/* Under mu, with room: the value (head + body) into the next slot. */
static int mp_push_locked(nexus_mpsc *ch, const void *h, size_t hn, const void *b, size_t bn) {
  mp_buf *s = &ch->slots[(ch->head + ch->n) % ch->cap];
  if (mp_reserve(s, hn + bn) != 0) return NEXUS_ENOMEM;
  if (hn) memcpy(s->p, h, hn);
  if (bn) memcpy(s->p + hn, b, bn);
  s->len = hn + bn;
  ch->n++;
  return 0;
}

static int mp_on_rx_thread(const nexus_mpsc *ch) {
  uv_thread_t self = uv_thread_self();
  return uv_thread_equal(&self, &ch->rx_thread);
}

/* Any thread but the receiver's task context: waits on the condition
 * variable while full (block), or gives NEXUS_EAGAIN. */
static int mp_send_blocking(nexus_mpsc *ch, const void *h, size_t hn, const void *b, size_t bn, int block) {
  int rc;
  uv_mutex_lock(&ch->mu);
  for (;;) {
    if (ch->rx_closed) {
      rc = NEXUS_EPIPE;
      break;
    }
    if (ch->n < ch->cap) {
      if ((rc = mp_push_locked(ch, h, hn, b, bn)) == 0) mp_notify_locked(ch);
      break;
    }
    if (!block) {
      rc = NEXUS_EAGAIN;
      break;
    }
    ch->blocked++;
    uv_cond_wait(&ch->room, &ch->mu);
    ch->blocked--;
  }
  uv_mutex_unlock(&ch->mu);
  return rc;
}

static int mp_check_handle(const nexus_mpsc *h) { return mp_reg_valid(h); }

static int mp_c_send(nexus_mpsc *h, const void *hd, size_t hn, const void *b, size_t bn, int flags) {
  if (!mp_check_handle(h)) return NEXUS_EINVAL;
  int block = flags & NEXUS_MPSC_BLOCK;
  if (block && mp_on_rx_thread(h)) {
    int rc = mp_send_blocking(h, hd, hn, b, bn, 0);
    return rc == NEXUS_EAGAIN ? NEXUS_EDEADLK : rc;
  }
  return mp_send_blocking(h, hd, hn, b, bn, block);
}

int nexus_mpsc_send_bytes(nexus_mpsc *h, const void *p, size_t n, int flags) {
  if (n > UINT32_MAX) return NEXUS_EINVAL;
  uint8_t hd[5] = { 'S' };
  uint32_t len = (uint32_t)n;
  memcpy(hd + 1, &len, 4);
  return mp_c_send(h, hd, sizeof hd, p, n, flags);
}

int nexus_mpsc_send_number(nexus_mpsc *h, double v, int flags) {
  uint8_t hd[9] = { 'N' };
  memcpy(hd + 1, &v, 8);
  return mp_c_send(h, hd, sizeof hd, NULL, 0, flags);
}

int nexus_mpsc_send_boolean(nexus_mpsc *h, int v, int flags) {
  uint8_t hd[1] = { v ? 'T' : 'F' };
  return mp_c_send(h, hd, sizeof hd, NULL, 0, flags);
}

/* One more handle of a live channel (a sender that may be on another
 * thread, with its reference); NULL on ENOMEM. */
static nexus_mpsc *mp_new_handle(nexus_mpsc *ch) {
  if (mp_reg_issue(ch) != 0) return NULL;
  uv_mutex_lock(&ch->mu);
  ch->senders++;
  ch->remote++;
  ch->refs++;
  uv_mutex_unlock(&ch->mu);
  return ch;
}

nexus_mpsc *nexus_mpsc_sender_clone(nexus_mpsc *h) {
  if (!mp_check_handle(h)) return NULL;
  return mp_new_handle(h);
}

void nexus_mpsc_sender_close(nexus_mpsc *h) {
  if (mp_reg_take(h)) mp_sender_close(h, 1, 1);
}

/* A task of the receiver's runtime: push, or wait in the FIFO while full.
 * A task woken for room that finds it taken (by another thread) goes back
 * to the front. */
static int mp_send_local(nexus_mpsc *ch, const void *via, mp_buf *enc, int wait, int closed) {
  nx_rt *rt = nx_cur_rt;
  if (mp_other_rt(ch, rt)) return NX_M_OTHERRT;
  nx_task *t = rt ? nx_running(rt) : NULL;
  int woken = t && t->wobj == ch && t->cancel == mp_tx_cancel;   /* granted the turn */
  if (woken) {
    t->cancel = NULL;
    t->wobj = NULL;
  }
  int rc, wake_rx = 0;
  uv_mutex_lock(&ch->mu);
  if (ch->rx_closed || closed) {
    rc = NEXUS_EPIPE;
  } else if (ch->n < ch->cap && (woken || ch->wq_n == 0)) {
    if ((rc = mp_push_locked(ch, NULL, 0, enc->p, enc->len)) == 0 && ch->rx_waiting) {
      ch->rx_waiting = 0;        /* ours to wake: directly, not through the loop */
      wake_rx = 1;
    }
  } else {
    rc = NEXUS_EAGAIN;
  }
  int room = ch->n < ch->cap;
  uv_mutex_unlock(&ch->mu);
  if (wake_rx) mp_wake_rx(ch);
  if (rc != NEXUS_EAGAIN || !wait) {
    if (rc != NX_OK && woken && room) mp_wake_sender(ch);  /* pass the turn on */
    return rc;
  }
  if (!t) return NX_E_NOTASK;
  if ((rc = mp_bind(ch, rt)) != 0) return rc;
  if ((rc = mp_wq_add(ch, t, via, woken)) != 0) return rc;
  nx_wait(rt, mp_tx_cancel, ch);
  return NX_AGAIN;
}

/* ---- receiving ---- */

static void mp_rx_cancel(nx_rt *rt, nx_task *t) {
  (void)rt;
  nexus_mpsc *ch = t->wobj;
  if (ch->rx_task != t) return;
  uv_mutex_lock(&ch->mu);
  ch->rx_waiting = 0;
  uv_mutex_unlock(&ch->mu);
  ch->rx_task = NULL;
  uv_unref((uv_handle_t *)&ch->async);
}

/* Takes the oldest value into ch->dec: NX_OK, NEXUS_EAGAIN (empty),
 * NEXUS_EPIPE (closed and drained), or NX_AGAIN with a wait registered. */
static int mp_take(nexus_mpsc *ch, int wait) {
  nx_rt *rt = nx_cur_rt;
  if (mp_other_rt(ch, rt) && !ch->rx_closed) return NX_M_OTHERRT;
  nx_task *t = rt ? nx_running(rt) : NULL;
  if (ch->rx_task) return NX_M_RXBUSY;
  if (wait && t && !ch->rx_closed) {
    int rc = mp_bind(ch, rt);    /* before the lock: the wait needs the async */
    if (rc != 0) return rc;
  }
  int rc;
  uv_mutex_lock(&ch->mu);
  if (ch->n > 0) {
    mp_buf *s = &ch->slots[ch->head];
    mp_buf tmp = *s;
    *s = ch->dec;
    ch->dec = tmp;
    ch->head = (ch->head + 1) % ch->cap;
    ch->n--;
    if (ch->blocked) uv_cond_signal(&ch->room);
    rc = NX_OK;
  } else if (ch->rx_closed || ch->senders == 0) {
    rc = NEXUS_EPIPE;
  } else if (!wait) {
    rc = NEXUS_EAGAIN;
  } else if (!t) {
    rc = NX_E_NOTASK;
  } else {
    ch->rx_waiting = 1;
    rc = NX_AGAIN;
  }
  int remote = ch->remote > 0;
  uv_mutex_unlock(&ch->mu);
  if (rc == NX_OK) {
    mp_wake_sender(ch);
  } else if (rc == NX_AGAIN) {
    /* Only a sender on another thread can wake us through the loop: with
     * none, the wait must not keep the loop alive (deadlock detection). */
    if (remote) uv_ref((uv_handle_t *)&ch->async);
    nx_wait(rt, mp_rx_cancel, ch);
    ch->rx_task = t;
  }
  return rc;
}

/* ---- the Lua binding ---- */

static mp_sender *mp_check_sender(lua_State *L, int idx, const char *fname) {
  mp_sender *s = luaL_testudata(L, idx, MP_SENDER_MT);
  if (!s) luaL_error(L, "%s: expected an mpsc sender, got %s", fname, luaL_typename(L, idx));
  return s;
}

static mp_receiver *mp_check_receiver(lua_State *L, int idx, const char *fname) {
  mp_receiver *r = luaL_testudata(L, idx, MP_RECEIVER_MT);
  if (!r) luaL_error(L, "%s: expected an mpsc receiver, got %s", fname, luaL_typename(L, idx));
  return r;
}

static mp_sender *mp_push_sender(lua_State *L, nexus_mpsc *ch, uint32_t cap) {
  mp_sender *s = lua_newuserdata(L, sizeof *s);
  memset(s, 0, sizeof *s);
  s->ch = ch;
  s->cap = cap;
  s->open = 1;
  luaL_getmetatable(L, MP_SENDER_MT);
  lua_setmetatable(L, -2);
  return s;
}

/* core.mpsc_new(capacity) -> tx, rx */
static int l_mpsc_new(lua_State *L) {
  lua_Number c = luaL_checknumber(L, 1);
  if (c < 1 || c > MP_MAX_CAP) return luaL_error(L, "nexus.channel.mpsc: bad capacity");
  uint32_t cap = (uint32_t)c;
  mp_sender *s = mp_push_sender(L, NULL, cap);
  mp_receiver *r = lua_newuserdata(L, sizeof *r);
  r->ch = NULL;
  r->cap = cap;
  luaL_getmetatable(L, MP_RECEIVER_MT);
  lua_setmetatable(L, -2);
  nexus_mpsc *ch = mp_new(cap);
  if (!ch) {
    s->open = 0;
    return luaL_error(L, "nexus.channel.mpsc: out of memory");
  }
  s->ch = r->ch = ch;
  if (nx_cur_rt && mp_bind(ch, nx_cur_rt) != 0) {
    /* no async handle: the first wait binds again */
  }
  return 2;
}

/* core.mpsc_send(tx, v, wait, fname) -> status */
static int l_mpsc_send(lua_State *L) {
  const char *fname = luaL_optstring(L, 4, "tx:send");
  mp_sender *s = mp_check_sender(L, 1, fname);
  int wait = lua_toboolean(L, 3);
  lua_settop(L, 2);
  nexus_mpsc *ch = s->ch;
  s->enc.len = 0;
  nx_codec_put(L, &s->enc, 2, fname, "send", 0);   /* bad values raise, closed or not */
  if (!s->open) {
    /* A send waiting on this sender when it was closed: give up the turn. */
    mp_buf_trim(&s->enc);
    lua_pushinteger(L, mp_on_rx_thread(ch) ? mp_send_local(ch, s, NULL, 0, 1) : NEXUS_EPIPE);
    return 1;
  }
  int rc;
  if (mp_on_rx_thread(ch)) rc = mp_send_local(ch, s, &s->enc, wait, 0);
  else rc = mp_send_blocking(ch, NULL, 0, s->enc.p, s->enc.len, wait);
  if (rc != NX_AGAIN) mp_buf_trim(&s->enc);
  lua_pushinteger(L, rc);
  return 1;
}

/* core.mpsc_recv(rx, wait) -> status[, value] */
static int l_mpsc_recv(lua_State *L) {
  mp_receiver *r = mp_check_receiver(L, 1, "rx:recv");
  nexus_mpsc *ch = r->ch;
  int rc = mp_take(ch, lua_toboolean(L, 2));
  lua_pushinteger(L, rc);
  if (rc != NX_OK) return 1;
  const uint8_t *p = ch->dec.p, *end = p + ch->dec.len;
  if (nx_codec_get(L, &p, end) != 0 || p != end) {
    mp_buf_trim(&ch->dec);
    return luaL_error(L, "rx:recv: corrupt message");
  }
  mp_buf_trim(&ch->dec);
  return 2;
}

/* core.mpsc_check(tx, v, fname): raises what tx:send would raise for v (a
 * value that cannot be copied), sending nothing: send_op and op:set check
 * their value when given, not at the select. The sender's scratch buffer
 * is free between calls (every send encodes into it anew). */
static int l_mpsc_check(lua_State *L) {
  const char *fname = luaL_checkstring(L, 3);
  mp_sender *s = mp_check_sender(L, 1, fname);
  lua_settop(L, 2);
  s->enc.len = 0;
  nx_codec_put(L, &s->enc, 2, fname, "send", 0);
  mp_buf_trim(&s->enc);
  return 0;
}

/* core.mpsc_local(tx|rx) -> true on the receiver's thread: where a send
 * waits as a task (a select op can), not by blocking the thread. */
static int l_mpsc_local(lua_State *L) {
  nexus_mpsc *ch;
  mp_sender *s = luaL_testudata(L, 1, MP_SENDER_MT);
  if (s) ch = s->ch;
  else ch = mp_check_receiver(L, 1, "mpsc")->ch;
  lua_pushboolean(L, ch && mp_on_rx_thread(ch));
  return 1;
}

static int l_mpsc_clone(lua_State *L) {
  mp_sender *s = mp_check_sender(L, 1, "tx:clone");
  if (!s->open) return luaL_error(L, "tx:clone: the sender is closed");
  /* The userdata first: if its allocation raises, nothing was counted. A
   * clone is a sender of this thread: it is not a handle, and not remote
   * (it used to count as remote and never stopped counting, keeping the
   * async handle referenced while the receiver waited). */
  nexus_mpsc *ch = s->ch;
  mp_push_sender(L, ch, s->cap);
  uv_mutex_lock(&ch->mu);
  ch->senders++;
  ch->refs++;
  uv_mutex_unlock(&ch->mu);
  return 1;
}

static int l_mpsc_tx_close(lua_State *L) {
  mp_sender *s = mp_check_sender(L, 1, "tx:close");
  if (s->open) {
    s->open = 0;
    if (mp_on_rx_thread(s->ch) && s->ch->wq_n) mp_wake_through(s->ch, s);
    mp_sender_close(s->ch, s->remote, 0);
  }
  return 0;
}

static int l_mpsc_tx_gc(lua_State *L) {
  mp_sender *s = lua_touserdata(L, 1);
  if (s->open) {
    s->open = 0;
    mp_sender_close(s->ch, s->remote, 1);
  } else if (s->ch) {
    mp_unref(s->ch);
  }
  s->ch = NULL;
  free(s->enc.p);
  s->enc.p = NULL;
  return 0;
}

static int l_mpsc_rx_close(lua_State *L) {
  mp_receiver *r = mp_check_receiver(L, 1, "rx:close");
  mp_rx_close(r->ch);
  return 0;
}

static int l_mpsc_rx_gc(lua_State *L) {
  mp_receiver *r = lua_touserdata(L, 1);
  if (r->ch) {
    mp_rx_close(r->ch);
    mp_unref(r->ch);
    r->ch = NULL;
  }
  return 0;
}

/* core.mpsc_info(tx|rx) -> len, capacity, rx_closed, senders_gone, open */
static int l_mpsc_info(lua_State *L) {
  mp_sender *s = luaL_testudata(L, 1, MP_SENDER_MT);
  nexus_mpsc *ch;
  uint32_t cap;
  int open = 1;
  if (s) {
    if (!s->open) {
      lua_pushinteger(L, 0);
      lua_pushinteger(L, s->cap);
      lua_pushboolean(L, 1);
      lua_pushboolean(L, 1);
      lua_pushboolean(L, 0);
      return 5;
    }
    ch = s->ch;
    cap = s->cap;
  } else {
    mp_receiver *r = mp_check_receiver(L, 1, "mpsc");
    ch = r->ch;
    cap = r->cap;
  }
  uv_mutex_lock(&ch->mu);
  uint32_t n = ch->n, senders = ch->senders;
  int closed = ch->rx_closed;
  uv_mutex_unlock(&ch->mu);
  lua_pushinteger(L, n);
  lua_pushinteger(L, cap);
  lua_pushboolean(L, closed);
  lua_pushboolean(L, senders == 0);
  lua_pushboolean(L, open);
  return 5;
}

/* core.mpsc_handle(tx) -> lightuserdata: one more sender, for C code or
 * another thread (nexus_mpsc_sender_close, or mpsc.sender(h), ends it). */
static int l_mpsc_handle(lua_State *L) {
  mp_sender *s = mp_check_sender(L, 1, "tx:handle");
  if (!s->open) return luaL_error(L, "tx:handle: the sender is closed");
  nexus_mpsc *ch = s->ch;
  if (!mp_new_handle(ch)) return luaL_error(L, "tx:handle: out of memory");
  lua_pushlightuserdata(L, ch);
  /* The receiver may be waiting already: now another thread may wake it. */
  if (mp_on_rx_thread(ch) && ch->rx_task) uv_ref((uv_handle_t *)&ch->async);
  return 1;
}

#define MP_NOT_LIVE "%s: not a live channel handle (not from tx:handle(), or already taken over or closed)"

/* The handle at idx (a light userdata, or its address as a number), not
 * yet looked up: nothing is read through it here. */
static nexus_mpsc *mp_handle_arg(lua_State *L, int idx, const char *fname) {
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA) return lua_touserdata(L, idx);
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_Number n = lua_tonumber(L, idx);
    if (n >= 0 && n < 18446744073709551616.0) return (nexus_mpsc *)(uintptr_t)n;
    luaL_error(L, MP_NOT_LIVE, fname);
  }
  luaL_error(L, "%s: expected a channel handle (from tx:handle()), got %s", fname, luaL_typename(L, idx));
  return NULL;
}

static nexus_mpsc *mp_to_handle(lua_State *L, int idx, const char *fname) {
  nexus_mpsc *h = mp_handle_arg(L, idx, fname);
  if (!mp_check_handle(h)) luaL_error(L, MP_NOT_LIVE, fname);
  return h;
}

/* core.mpsc_address(h) -> the address of an outstanding handle, as a
 * number (the form that crosses into another Lua state); the handle stays
 * outstanding. */
static int l_mpsc_address(lua_State *L) {
  nexus_mpsc *h = mp_to_handle(L, 1, "mpsc.address");
  lua_pushnumber(L, (lua_Number)(uintptr_t)h);
  return 1;
}

/* core.mpsc_sender(h) -> tx: takes over the handle's sender (and ends the
 * handle: a second mpsc.sender(h) is refused). */
static int l_mpsc_sender(lua_State *L) {
  nexus_mpsc *h = mp_handle_arg(L, 1, "mpsc.sender");
  /* The userdata first: an allocation error must not lose the handle. */
  mp_sender *s = mp_push_sender(L, NULL, 0);
  s->open = 0;                   /* its __gc has nothing to close yet */
  if (!mp_reg_take(h)) return luaL_error(L, MP_NOT_LIVE, "mpsc.sender");
  s->open = 1;
  s->ch = h;
  s->cap = h->cap;
  s->remote = 1;
  return 1;
}

/* ---- test entry: a libuv thread-pool job that sends from its worker ---- */

typedef struct mp_job {
  uv_work_t req;
  nexus_mpsc *h;
  int count;
  char prefix[32];
} mp_job;

static void mp_job_work(uv_work_t *req) {
  mp_job *j = req->data;
  /* First value: is this a thread other than the receiver's? */
  nexus_mpsc_send_boolean(j->h, !mp_on_rx_thread(j->h), NEXUS_MPSC_BLOCK);
  char msg[48];
  for (int i = 1; i <= j->count; i++) {
    int n = snprintf(msg, sizeof msg, "%s%d", j->prefix, i);
    if (nexus_mpsc_send_bytes(j->h, msg, (size_t)n, NEXUS_MPSC_BLOCK) != 0) break;
  }
}

static void mp_job_done(uv_work_t *req, int status) {
  (void)status;
  mp_job *j = req->data;
  nexus_mpsc_sender_close(j->h);
  free(j);
}

/* core._mpsc_pool_send(h, prefix, count): test-only. Queues a job on the
 * running runtime's loop whose worker thread sends true (it runs on
 * another thread), then "<prefix>1".."<prefix><count>", blocking while the
 * channel is full, through nexus_mpsc_send_*; the handle is closed when
 * the job is done. */
static int l_mpsc_pool_send(lua_State *L) {
  nexus_mpsc *h = mp_to_handle(L, 1, "_mpsc_pool_send");
  const char *prefix = luaL_checkstring(L, 2);
  int count = (int)luaL_checkinteger(L, 3);
  if (!nx_cur_rt) return luaL_error(L, "_mpsc_pool_send: no runtime is running");
  mp_job *j = calloc(1, sizeof *j);
  if (!j) return luaL_error(L, "_mpsc_pool_send: out of memory");
  j->h = h;
  j->count = count;
  snprintf(j->prefix, sizeof j->prefix, "%s", prefix);
  j->req.data = j;
  if (uv_queue_work(&nx_cur_rt->loop, &j->req, mp_job_work, mp_job_done) != 0) {
    free(j);
    return luaL_error(L, "_mpsc_pool_send: uv_queue_work failed");
  }
  return 0;
}

static const luaL_Reg mp_funcs[] = {
  {"mpsc_new", l_mpsc_new}, {"mpsc_send", l_mpsc_send}, {"mpsc_recv", l_mpsc_recv},
  {"mpsc_clone", l_mpsc_clone}, {"mpsc_tx_close", l_mpsc_tx_close},
  {"mpsc_rx_close", l_mpsc_rx_close}, {"mpsc_info", l_mpsc_info},
  {"mpsc_handle", l_mpsc_handle}, {"mpsc_sender", l_mpsc_sender},
  {"mpsc_address", l_mpsc_address},
  {"mpsc_check", l_mpsc_check}, {"mpsc_local", l_mpsc_local},
  {"_mpsc_pool_send", l_mpsc_pool_send},
  {NULL, NULL},
};

static const nexus_mpsc_api nx_mpsc_api_table = {
  nexus_mpsc_send_bytes, nexus_mpsc_send_number, nexus_mpsc_send_boolean,
  nexus_mpsc_sender_clone, nexus_mpsc_sender_close,
};

void nx_mpsc_open(lua_State *L) {
  nx_wait_kind(mp_tx_cancel, "mpsc send", NULL);
  nx_wait_kind(mp_rx_cancel, "mpsc recv", NULL);
  luaL_newmetatable(L, MP_SENDER_MT);
  lua_pushcfunction(L, l_mpsc_tx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, -2, "mpsc_sender_mt");
  luaL_newmetatable(L, MP_RECEIVER_MT);
  lua_pushcfunction(L, l_mpsc_rx_gc);
  lua_setfield(L, -2, "__gc");
  lua_setfield(L, -2, "mpsc_receiver_mt");
  luaL_register(L, NULL, mp_funcs);
  lua_pushlightuserdata(L, (void *)&nx_mpsc_api_table);
  lua_setfield(L, -2, "mpsc_api");
}
