/* codec.h - values copied between Lua states: booleans, numbers, strings
 * and tables of those (the mpsc channel, nexus.thread.run).
 */
#ifndef NX_CODEC_H
#define NX_CODEC_H

#include <stddef.h>
#include <stdint.h>
#include <lua.h>

typedef struct nx_buf { uint8_t *p; size_t len, cap; } nx_buf;

int nx_buf_reserve(nx_buf *b, size_t need);      /* 0, or -1 on ENOMEM */
void nx_buf_trim(nx_buf *b, size_t keep);         /* len = 0; frees a buffer over keep */

/* Appends the value at idx of L to b. A value that cannot be copied
 * raises "<fname>: cannot <verb> <what> ..." on L; nil is copied only
 * when nil_ok (a top-level value: argument or result). */
void nx_codec_put(lua_State *L, nx_buf *b, int idx, const char *fname, const char *verb, int nil_ok);

/* Appends a string value without a Lua state (a message built in C);
 * 0, or -1 on ENOMEM or a string of 4 GiB or more. */
int nx_codec_put_string(nx_buf *b, const char *s, size_t n);

/* Pushes the value encoded at *pp and advances it; 0, or -1 when the
 * bytes are not a value. */
int nx_codec_get(lua_State *L, const uint8_t **pp, const uint8_t *end);

#endif
