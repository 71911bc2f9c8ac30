/* ws.h - WebSocket framing (RFC 6455) with wslay, on a nexus stream.
 *
 * wslay's event API does no I/O of its own. nx_ws_feed hands it bytes the
 * Lua side read from the stream (its recv callback takes from them, or
 * says WOULDBLOCK); its send callback appends frames to a pending output
 * that the Lua side writes with s:write, so a send is under the stream's
 * backpressure and works unchanged over any stream (plain TCP or TLS).
 * Complete messages wait in a queue here until ws:recv takes them.
 *
 * The Lua side reaches these through the FFI (core.ws_api, a table of
 * function pointers; lua/nexus/websocket.lua declares the same structs).
 */
#ifndef NX_WS_H
#define NX_WS_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

/* The part of a connection the Lua side reads directly (first in nx_ws). */
typedef struct nx_ws_pub {
  size_t nmsg;                  /* complete messages queued */
  size_t outlen;                /* pending output bytes */
  double pongs;                 /* pongs received */
  int32_t rcode;                /* the peer's close code (1005: none) */
  int32_t scode;                /* the code of the close frame we queued, 0: none */
  uint8_t rclosed;              /* the peer's close frame arrived */
  uint8_t sclosed;              /* our close frame is queued */
  uint8_t dead;                 /* nothing more will be read */
  uint8_t failed;               /* we failed the connection (scode says why) */
  uint8_t reason_len;
  char reason[127];             /* the peer's close reason */
} nx_ws_pub;

typedef struct nx_ws nx_ws;

/* Return codes of nx_ws_queue and nx_ws_close. */
enum { NX_WS_OK = 0, NX_WS_CLOSED = -1, NX_WS_NOMEM = -2, NX_WS_INVAL = -3 };

/* Return codes of nx_ws_into when it moved nothing (ws:recv_into). */
enum {
  NX_WS_INTO_NONE = -10, NX_WS_INTO_FULL = -11, NX_WS_INTO_EMPTY = -12,
  NX_WS_INTO_BIG = -13, NX_WS_INTO_CLOSED = -14
};

/* Opener: called from luaopen_nexus_core with the module table on top. */
void nx_ws_open(lua_State *L);

#endif
