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

#ifdef __cplusplus
}
#endif

#endif
