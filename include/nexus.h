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

#ifdef __cplusplus
}
#endif

#endif
