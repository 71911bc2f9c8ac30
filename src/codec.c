/* codec.c - values copied between Lua states (mpsc channel, thread.run).
 *
 * Encoding: '0' (nil, where allowed), 'F', 'T', 'N' + double,
 * 'S' + u32 length + bytes, '{' key value ... '}'. Only values that mean
 * the same in any Lua state are copied: no functions, userdata, threads,
 * and no table that contains itself.
 */
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#define NX_CODEC_MAX_DEPTH 64

int nx_buf_reserve(nx_buf *b, size_t need) {
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

void nx_buf_trim(nx_buf *b, size_t keep) {
  if (b->cap > keep) {
    free(b->p);
    b->p = NULL;
    b->cap = 0;
  }
  b->len = 0;
}

/* ---- encoding ---- */

int nx_codec_put_string(nx_buf *b, const char *s, size_t n) {
  uint32_t len = (uint32_t)n;
  if (n > UINT32_MAX || nx_buf_reserve(b, b->len + 5 + n) != 0) return -1;
  b->p[b->len] = 'S';
  memcpy(b->p + b->len + 1, &len, 4);
  memcpy(b->p + b->len + 5, s, n);
  b->len += 5 + n;
  return 0;
}

typedef struct nx_enc {
  lua_State *L;
  nx_buf *b;
  const char *fname, *verb;
  int depth;
  int keys[NX_CODEC_MAX_DEPTH];        /* stack index of the key at each level */
  const void *seen[NX_CODEC_MAX_DEPTH];
} nx_enc;

static void nx_put(nx_enc *e, const void *p, size_t n) {
  if (nx_buf_reserve(e->b, e->b->len + n) != 0) luaL_error(e->L, "%s: out of memory", e->fname);
  memcpy(e->b->p + e->b->len, p, n);
  e->b->len += n;
}

/* Raises "<fname>: cannot <verb> <what> (at [k1][k2]...)". */
static void nx_enc_fail(nx_enc *e, const char *what) {
  lua_State *L = e->L;
  luaL_Buffer path;
  luaL_buffinit(L, &path);
  for (int i = 0; i < e->depth; i++) {
    int k = e->keys[i];
    if (lua_type(L, k) == LUA_TSTRING) {
      lua_pushfstring(L, "[\"%s\"]", lua_tostring(L, k));
    } else if (lua_type(L, k) == LUA_TNUMBER) {
      lua_pushfstring(L, "[%s]", lua_tostring(L, k) ? lua_tostring(L, k) : "?");
    } else {
      lua_pushfstring(L, "[%s]", luaL_typename(L, k));
    }
    luaL_addvalue(&path);
  }
  luaL_pushresult(&path);
  const char *p = lua_tostring(L, -1);
  if (*p) {
    lua_pushfstring(L, "%s: cannot %s %s (at %s; values are copied: booleans, numbers, "
                    "strings and tables of those)", e->fname, e->verb, what, p);
  } else {
    lua_pushfstring(L, "%s: cannot %s %s (values are copied: booleans, numbers, "
                    "strings and tables of those)", e->fname, e->verb, what);
  }
  lua_error(L);
}

static void nx_enc_value(nx_enc *e, int idx, int is_key);

static void nx_enc_table(nx_enc *e, int idx) {
  lua_State *L = e->L;
  const void *self = lua_topointer(L, idx);
  for (int i = 0; i < e->depth; i++)
    if (e->seen[i] == self) nx_enc_fail(e, "a table that contains itself");
  if (e->depth == NX_CODEC_MAX_DEPTH) nx_enc_fail(e, "tables nested deeper than 64 levels");
  luaL_checkstack(L, 4, "nested tables");
  nx_put(e, "{", 1);
  int d = e->depth;
  e->seen[d] = self;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    e->keys[d] = lua_gettop(L) - 1;
    e->depth = d + 1;
    nx_enc_value(e, -2, 1);
    nx_enc_value(e, -1, 0);
    e->depth = d;
    lua_pop(L, 1);
  }
  nx_put(e, "}", 1);
}

static void nx_enc_value(nx_enc *e, int idx, int is_key) {
  lua_State *L = e->L;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    nx_put(e, lua_toboolean(L, idx) ? "T" : "F", 1);
    break;
  case LUA_TNUMBER: {
    double v = lua_tonumber(L, idx);
    nx_put(e, "N", 1);
    nx_put(e, &v, 8);
    break;
  }
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    if (n > UINT32_MAX) nx_enc_fail(e, "a string of 4 GiB or more");
    if (nx_codec_put_string(e->b, s, n) != 0) luaL_error(L, "%s: out of memory", e->fname);
    break;
  }
  case LUA_TTABLE:
    if (is_key) nx_enc_fail(e, "a table as a table key");
    nx_enc_table(e, idx);
    break;
  case LUA_TNIL:
    nx_enc_fail(e, "nil");
    break;
  default: {
    const char *tn = luaL_typename(L, idx);
    char what[48];
    snprintf(what, sizeof what, "a %s", tn);
    nx_enc_fail(e, what);
  }
  }
}

void nx_codec_put(lua_State *L, nx_buf *b, int idx, const char *fname, const char *verb, int nil_ok) {
  if (nil_ok && lua_isnil(L, idx)) {
    if (nx_buf_reserve(b, b->len + 1) != 0) luaL_error(L, "%s: out of memory", fname);
    b->p[b->len++] = '0';
    return;
  }
  nx_enc e = { L, b, fname, verb, 0, { 0 }, { 0 } };
  nx_enc_value(&e, idx, 0);
}

/* ---- decoding ---- */

static int nx_dec_value(lua_State *L, const uint8_t **pp, const uint8_t *end, int depth) {
  const uint8_t *p = *pp;
  if (p >= end) return -1;
  switch (*p++) {
  case '0':
    if (depth) return -1;
    lua_pushnil(L);
    break;
  case 'F': lua_pushboolean(L, 0); break;
  case 'T': lua_pushboolean(L, 1); break;
  case 'N': {
    double v;
    if (end - p < 8) return -1;
    memcpy(&v, p, 8);
    p += 8;
    lua_pushnumber(L, v);
    break;
  }
  case 'S': {
    uint32_t n;
    if (end - p < 4) return -1;
    memcpy(&n, p, 4);
    p += 4;
    if ((size_t)(end - p) < n) return -1;
    lua_pushlstring(L, (const char *)p, n);
    p += n;
    break;
  }
  case '{':
    if (depth >= NX_CODEC_MAX_DEPTH) return -1;
    luaL_checkstack(L, 4, "nested tables");
    lua_newtable(L);
    for (;;) {
      if (p >= end) return -1;
      if (*p == '}') {
        p++;
        break;
      }
      if (nx_dec_value(L, &p, end, depth + 1) != 0) return -1;
      if (nx_dec_value(L, &p, end, depth + 1) != 0) return -1;
      lua_rawset(L, -3);
    }
    break;
  default:
    return -1;
  }
  *pp = p;
  return 0;
}

int nx_codec_get(lua_State *L, const uint8_t **pp, const uint8_t *end) {
  return nx_dec_value(L, pp, end, 0);
}
