/* world.c - the World: named resources in stable C memory, the sequence
 * counter, and the function tables of the C face (nexus.h) and of Lua.
 *
 * Registration happens once, at set-up, and lookup by name is meant to be
 * done once per handler (pre-resolved): a flat array searched linearly is
 * all it needs, and keeps the addresses of the blocks out of any rehash.
 */
#include "world.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

typedef struct nx_res {
  char *name;
  void *mem;                    /* aligned, zeroed, never moves */
} nx_res;

typedef struct nx_world {
  nexus_world pub;              /* first: handed out as nexus_world * */
  uint64_t seq;
  nx_res *res;
  uint32_t n, cap;
  uint8_t sealed;
} nx_world;

/* Worlds alive in the process: lets a spec see that one was freed. */
static atomic_long nx_worlds_live;

static nx_world *nx_w(nexus_world *w) { return (nx_world *)w; }

static void *nx_world_resource(nexus_world *pw, const char *name) {
  nx_world *w = nx_w(pw);
  if (!name) return NULL;
  for (uint32_t i = 0; i < w->n; i++)
    if (strcmp(w->res[i].name, name) == 0) return w->res[i].mem;
  return NULL;
}

static uint64_t nx_world_next_sequence(nexus_world *w) { return ++nx_w(w)->seq; }
static uint64_t nx_world_current_sequence(const nexus_world *w) { return ((const nx_world *)w)->seq; }

static const nexus_world_api nx_world_capi = {
  NEXUS_WORLD_ABI, sizeof(nexus_world_api),
  nx_world_resource, nx_world_next_sequence, nx_world_current_sequence,
};

static nexus_world *nx_world_create(void) {
  nx_world *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->pub.api = &nx_world_capi;
  atomic_fetch_add(&nx_worlds_live, 1);
  return &w->pub;
}

static void nx_world_destroy(nexus_world *pw) {
  nx_world *w = nx_w(pw);
  if (!w) return;
  for (uint32_t i = 0; i < w->n; i++) {
    free(w->res[i].name);
    free(w->res[i].mem);
  }
  free(w->res);
  w->pub.api = NULL;            /* a use after free then faults at once */
  free(w);
  atomic_fetch_sub(&nx_worlds_live, 1);
}

static int nx_world_grow(nx_world *w) {
  uint32_t cap = w->cap ? w->cap * 2 : 8;
  nx_res *res = realloc(w->res, cap * sizeof *res);
  if (!res) return NX_E_NOMEM;
  w->res = res;
  w->cap = cap;
  return NX_OK;
}

/* One block per resource: size rounded up to a multiple of the alignment
 * (aligned_alloc's rule), at least max_align_t's alignment. */
static void *nx_block(size_t size, size_t align) {
  if (align < _Alignof(max_align_t)) align = _Alignof(max_align_t);
  if (size == 0) size = 1;
  if (size > SIZE_MAX - align) return NULL;
  size = (size + align - 1) / align * align;
  void *p = aligned_alloc(align, size);
  if (p) memset(p, 0, size);
  return p;
}

static int nx_world_add(nexus_world *pw, const char *name, size_t size, size_t align, void **out) {
  nx_world *w = nx_w(pw);
  *out = NULL;
  if (!name || !*name || align == 0 || (align & (align - 1))) return NX_W_INVAL;
  if (w->sealed) return NX_W_SEALED;
  if (nx_world_resource(pw, name)) return NX_W_EXISTS;
  if (w->n == w->cap && nx_world_grow(w) != NX_OK) return NX_E_NOMEM;
  char *copy = strdup(name);
  void *mem = nx_block(size, align);
  if (!copy || !mem) goto fail;
  w->res[w->n].name = copy;
  w->res[w->n].mem = mem;
  w->n++;
  *out = mem;
  return NX_OK;
fail:
  free(copy);
  free(mem);
  return NX_E_NOMEM;
}

static void nx_world_seal(nexus_world *w) { nx_w(w)->sealed = 1; }

/* Resumes of the runtime being driven: with_world compares it before and
 * after its function to notice a yield inside (see world.lua). */
static double nx_world_resumes(void) { return nx_cur_rt ? (double)nx_cur_rt->st.resumes : -1.0; }

static double nx_world_live(void) { return (double)atomic_load(&nx_worlds_live); }

static const nx_world_lapi nx_world_lapi_table = {
  nx_world_create, nx_world_destroy, nx_world_add, nx_world_seal,
  nx_world_resource, nx_world_next_sequence, nx_world_current_sequence,
  nx_world_resumes, nx_world_live,
};

void nx_world_open(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&nx_world_lapi_table);
  lua_setfield(L, -2, "world_api");
}
