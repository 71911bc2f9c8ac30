/* nexus.h - the C face of nexus, an async runtime for LuaJIT.
 *
 * For embedders and handler libraries. This version exposes the module
 * entry point and the clock; later sections (World, byte channels) join
 * as those components land.
 */
#ifndef NEXUS_H
#define NEXUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* nexus builds its core with -fvisibility=hidden (internal calls bind
 * directly, no PLT); what this header declares stays exported. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define NEXUS_VERSION "0.1.0"

struct lua_State;

/* Opens the C core as a Lua module (what `require "nexus.core"` calls). */
int luaopen_nexus_core(struct lua_State *L);

/* Monotonic clock in seconds: the clock of nexus.now(). */
double nexus_now(void);

/* ==== World ===============================================================
 *
 * The World holds named resources. A typed resource (registered from Lua
 * with a C type, `builder:register("Book", "ob_book", {...})`) is one
 * aligned, zeroed block of C memory that stays at the same address for
 * the World's whole life; a plain Lua resource has no C memory.
 *
 * Getting the World in C. Lua passes it as an argument: `world:ptr()` is
 * a `nexus_world *` cdata, to hand to a C function through the FFI
 * (e.g. `lib.my_init(world:ptr())`). Its first member is a table of
 * functions, so the calls below are inline calls through that table: a
 * handler library needs no nexus symbol at link or load time, and works
 * the same whether nexus was loaded by `require` (privately, RTLD_LOCAL),
 * linked into the `nexus` command, or embedded. Build against this header
 * only (CMake: `find_package(nexus)` + `nexus::nexus`; pkg-config: `nexus`);
 * do not link the nexus core into a handler library.
 *
 * Handler convention. `world:handler(fn, "A", nexus.res("B"), ...)`
 * resolves the names once and `handler:run(ev)` then calls
 *
 *     fn(res_1, ..., res_n, event)
 *
 * with one pointer per name, in the order given: `T *` for a bare name or
 * `nexus.res_mut(name)`, `const T *` for `nexus.res(name)` (T the
 * resource's registered C type), then the event as passed to run (a
 * pointer to a C struct, usually). So a C handler over two resources is
 *
 *     void on_tick(book_t *book, const config_t *cfg, const tick_t *ev);
 *
 * declared the same way in the library and in the Lua `ffi.cdef`. Its
 * parameter count must be n + 1 (checked when the handler is made). Its
 * return value, if any, is what `run` returns. It runs synchronously on
 * the runtime's thread and must not block.
 */
#include <stddef.h>
#include <stdint.h>

#define NEXUS_WORLD_ABI 1

typedef struct nexus_world nexus_world;

/* Entries are only ever appended: check `size` before using a newer one. */
typedef struct nexus_world_api {
  uint32_t abi;     /* NEXUS_WORLD_ABI of the nexus that made the World */
  uint32_t size;    /* sizeof (nexus_world_api) there */
  void *(*resource)(nexus_world *w, const char *name);
  uint64_t (*next_sequence)(nexus_world *w);
  uint64_t (*current_sequence)(const nexus_world *w);
} nexus_world_api;

/* Only the first member is public; the rest is private to nexus. */
struct nexus_world {
  const nexus_world_api *api;
};

/* The typed resource registered under `name`: its stable address, or NULL
 * when there is none (unknown name, or a plain Lua resource). A lookup by
 * name (a string compare per resource): resolve once, keep the pointer. */
static inline void *nexus_world_resource(nexus_world *w, const char *name) {
  return w->api->resource(w, name);
}

/* The World's sequence counter: starts at 0; next adds one and returns
 * the new value (world:next_sequence() in Lua is the same counter). */
static inline uint64_t nexus_world_next_sequence(nexus_world *w) {
  return w->api->next_sequence(w);
}

static inline uint64_t nexus_world_current_sequence(const nexus_world *w) {
  return w->api->current_sequence(w);
}

/* The convention spelled with untyped pointers, for one to four resources:
 * a handler written with exactly these types (it casts inside) has them.
 * Handlers with typed parameters (as above) are the usual case. */
typedef void (*nexus_handler1_fn)(void *r1, const void *event);
typedef void (*nexus_handler2_fn)(void *r1, void *r2, const void *event);
typedef void (*nexus_handler3_fn)(void *r1, void *r2, void *r3, const void *event);
typedef void (*nexus_handler4_fn)(void *r1, void *r2, void *r3, void *r4, const void *event);

/* ==== end of World ======================================================= */

/* ---- Byte channels ----------------------------------------------------
 *
 * A byte channel (nexus.channel.bytes in Lua) is a ring buffer of
 * variable-length messages: producers claim room, write into it and
 * commit; the one consumer receives the oldest message and releases it.
 * Nothing is allocated per message. C code gets the channel from Lua
 * (tx:cptr() / rx:cptr(), valid while a Lua handle of that channel is
 * alive, or after nexus_bchan_ref) and uses these functions on the thread
 * that runs the channel's runtime; they never suspend. A library loaded
 * with ffi.load into a plain luajit (where the core's symbols are private)
 * gets the same functions from Lua as require("nexus.bytes").c_api, a
 * const nexus_bytes_api *.
 *
 * Messages are delivered in the order their room was claimed; a claim that
 * is neither committed nor aborted holds back the messages claimed after
 * it. Each message takes its length rounded up to 8 bytes, plus an 8-byte
 * header, of the ring; ptr is 8-byte aligned.
 *
 * Return codes: 0, or one of the negative NEXUS_E* codes below.
 */
#include <stddef.h>
#include <stdint.h>

#define NEXUS_EAGAIN  (-11)   /* would wait: no room (claim), no message (recv) */
#define NEXUS_ENOMEM  (-12)
#define NEXUS_EBUSY   (-16)   /* a message is already held, or a task waits to receive */
#define NEXUS_EINVAL  (-22)   /* 0 bytes, more than the capacity, object not in that state */
#define NEXUS_EPIPE   (-32)   /* closed: no receiver (claim, commit), or drained (recv) */
#define NEXUS_EDEADLK (-35)   /* a blocking send on the receiver's own thread */

typedef struct nexus_bchan nexus_bchan;

/* A write claim: ptr has room for len bytes until commit or abort. The
 * fields ending in _ are private. Zero it before first use. */
typedef struct nexus_bclaim {
  uint8_t *ptr;
  uint32_t len;
  uint32_t st_, off_, need_, own_;
  nexus_bchan *ch_;
  struct nexus_bclaim *next_, *prev_;
  void *task_;
} nexus_bclaim;

/* A received message: ptr, len are valid until release. Zero it before
 * first use. */
typedef struct nexus_bmsg {
  const uint8_t *ptr;
  uint32_t len;
  uint32_t st_, off_, pad_;
  nexus_bchan *ch_;
} nexus_bmsg;

/* Reserves n (1..capacity) contiguous bytes: 0, NEXUS_EAGAIN (no room now,
 * or tasks already wait for room: they go first), NEXUS_EPIPE (receiver
 * closed), NEXUS_EINVAL (bad n, or c is in use). */
int nexus_bchan_claim(nexus_bchan *ch, size_t n, nexus_bclaim *c);
/* Publishes the claim: 0, NEXUS_EPIPE (receiver closed: dropped),
 * NEXUS_EINVAL (not claimed). Either way c is free again. */
int nexus_bchan_commit(nexus_bclaim *c);
/* Gives the room back: 0, NEXUS_EINVAL (not claimed). */
int nexus_bchan_abort(nexus_bclaim *c);
/* The oldest committed message into m: 0, NEXUS_EAGAIN (none yet),
 * NEXUS_EPIPE (every sender closed and all drained, or receiver closed),
 * NEXUS_EBUSY (a message is held: release it first; or a task is waiting
 * in rx:recv), NEXUS_EINVAL (m is in use). */
int nexus_bchan_recv(nexus_bchan *ch, nexus_bmsg *m);
/* Frees the message's room: 0, NEXUS_EINVAL (m holds no message). */
int nexus_bchan_release(nexus_bmsg *m);
size_t nexus_bchan_len(const nexus_bchan *ch);        /* committed, not yet received */
size_t nexus_bchan_capacity(const nexus_bchan *ch);   /* the capacity_bytes it was made with */
/* Keeps the channel's memory past its Lua handles (loop thread only). */
void nexus_bchan_ref(nexus_bchan *ch);
void nexus_bchan_unref(nexus_bchan *ch);

typedef struct nexus_bytes_api {
  int (*claim)(nexus_bchan *ch, size_t n, nexus_bclaim *c);
  int (*commit)(nexus_bclaim *c);
  int (*abort)(nexus_bclaim *c);
  int (*recv)(nexus_bchan *ch, nexus_bmsg *m);
  int (*release)(nexus_bmsg *m);
  size_t (*len)(const nexus_bchan *ch);
  size_t (*capacity)(const nexus_bchan *ch);
  void (*ref)(nexus_bchan *ch);
  void (*unref)(nexus_bchan *ch);
} nexus_bytes_api;

/* ---- Cross-thread channel ----------------------------------------------
 *
 * nexus.channel.mpsc(capacity) in Lua. A sender handle (tx:handle() in
 * Lua, a nexus_mpsc *) may be used from any OS thread; each handle counts
 * as one open sender until nexus_mpsc_sender_close. Values are copied;
 * the receiving task is woken through the runtime's loop.
 *
 * flags: NEXUS_MPSC_BLOCK waits (blocking the calling OS thread) while the
 * channel is full; without it a full channel gives NEXUS_EAGAIN. Blocking
 * on the receiver's own thread gives NEXUS_EDEADLK.
 * Returns 0, NEXUS_EAGAIN, NEXUS_EPIPE (receiver closed or gone),
 * NEXUS_EDEADLK, NEXUS_ENOMEM, NEXUS_EINVAL (not an open handle).
 */
typedef struct nexus_mpsc nexus_mpsc;
#define NEXUS_MPSC_BLOCK 1

int nexus_mpsc_send_bytes(nexus_mpsc *h, const void *p, size_t n, int flags);  /* a Lua string */
int nexus_mpsc_send_number(nexus_mpsc *h, double v, int flags);
int nexus_mpsc_send_boolean(nexus_mpsc *h, int v, int flags);
/* Another sender handle on the same channel (h itself, one more sender);
 * NULL if h is not an outstanding handle, or on ENOMEM. */
nexus_mpsc *nexus_mpsc_sender_clone(nexus_mpsc *h);
/* This sender is done: h must not be used again through this handle.
 * Handles are looked up in a process-wide registry before anything is
 * read through them: a pointer that is not an outstanding handle (made
 * up, or already closed or taken over) is ignored here and refused with
 * NEXUS_EINVAL by the send functions. Closing a handle while another
 * thread still sends through it is not caught. */
void nexus_mpsc_sender_close(nexus_mpsc *h);

/* The same functions as a table, for code that cannot link the core's
 * symbols: require("nexus.mpsc").c_api in Lua. */
typedef struct nexus_mpsc_api {
  int (*send_bytes)(nexus_mpsc *h, const void *p, size_t n, int flags);
  int (*send_number)(nexus_mpsc *h, double v, int flags);
  int (*send_boolean)(nexus_mpsc *h, int v, int flags);
  nexus_mpsc *(*sender_clone)(nexus_mpsc *h);
  void (*sender_close)(nexus_mpsc *h);
} nexus_mpsc_api;

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif

#endif
