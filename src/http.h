/* http.h - nexus.http.request on libcurl's multi interface (http.c). */
#ifndef NX_HTTP_H
#define NX_HTTP_H

#include "rt.h"

void nx_http_open(lua_State *L);

#endif
