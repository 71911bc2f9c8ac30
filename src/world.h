/* world.h - the World: named resources in stable C memory, a sequence
 * counter, and the function table Lua reaches them through.
 *
 * A typed resource is one aligned, zeroed block per name, allocated at
 * registration and freed with the World, so a pointer handed out stays
 * valid for the World's whole life. Plain Lua resources never reach C:
 * they live in the Lua object (lua/nexus/world.lua), and
 * nexus_world_resource returns NULL for their names.
 *
 * C code outside the core (handler libraries) reaches the World only
 * through the function table stored in its first member (nexus.h), so it
 * needs no symbol from nexus however nexus was loaded.
 */
#ifndef NX_WORLD_H
#define NX_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "nexus.h"

/* Status codes of nx_world_add, next to rt.h's NX_OK / NX_E_NOMEM. */
enum {
  NX_W_EXISTS = -3,   /* the name is taken */
  NX_W_SEALED = -4,   /* built: no more registration */
  NX_W_INVAL = -5     /* empty name or bad alignment */
};

/* What lua/nexus/world.lua calls through the FFI (core.world_api). */
typedef struct nx_world_lapi {
  nexus_world *(*create)(void);
  void (*destroy)(nexus_world *w);
  int (*add)(nexus_world *w, const char *name, size_t size, size_t align, void **out);
  void (*seal)(nexus_world *w);
  void *(*resource)(nexus_world *w, const char *name);
  uint64_t (*next_sequence)(nexus_world *w);
  uint64_t (*current_sequence)(const nexus_world *w);
  double (*resumes)(void);
  double (*live)(void);
} nx_world_lapi;

/* Sets core.world_api (a light userdata: the nx_world_lapi table). */
void nx_world_open(lua_State *L);

#endif
