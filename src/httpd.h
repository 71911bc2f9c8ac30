/* httpd.h - the request parser of nexus.http.listen: Debian's
 * http_parser (libhttp-parser, the parser Node.js used before llhttp)
 * run in place over a stream's read buffer.
 *
 * nx_hp_feed parses what the stream has buffered and takes what it
 * parsed, so no request byte becomes a Lua string until the Lua side asks
 * for it: the method, target and headers are copied into the parser's
 * arena, a body into its body buffer (de-chunked by http_parser). It
 * stops at the end of a message, so pipelined requests and an upgraded
 * connection's first frames stay in the stream for their next reader.
 * Limits (head size, header count, body size) end the parse with the
 * status to answer.
 *
 * The Lua side (lua/nexus/http_server.lua) reaches these through the FFI
 * (core.httpd_api, a table of function pointers); it declares the same
 * public head of the struct.
 */
#ifndef NX_HTTPD_H
#define NX_HTTPD_H

#include <lua.h>

/* core.httpd_api */
void nx_httpd_open(lua_State *L);

#endif
