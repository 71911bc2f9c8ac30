/* main.c - the nexus command: LuaJIT with the nexus core linked in.
 *
 * The Lua side of nexus is embedded (nx_embedded, generated at build time)
 * and preloaded, so the command works from any directory and always pairs
 * its C core with the Lua files it was built with. Argument handling and
 * running the script as the root task live in nexus/cli.lua.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "nexus.h"
#include "master.h"

typedef struct nx_embedded_mod {
  const char *name;
  const char *chunkname;
  const char *src;
  size_t len;
} nx_embedded_mod;

extern const nx_embedded_mod nx_embedded[];

static void nx_preload(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  for (const nx_embedded_mod *m = nx_embedded; m->name; m++) {
    if (luaL_loadbuffer(L, m->src, m->len, m->chunkname) != 0) {
      fprintf(stderr, "nexus: embedded module %s: %s\n", m->name, lua_tostring(L, -1));
      exit(1);
    }
    lua_setfield(L, -2, m->name);
  }
  lua_pushcfunction(L, luaopen_nexus_core);
  lua_setfield(L, -2, "nexus.core");
  lua_pop(L, 2);
}

static int nx_traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  luaL_traceback(L, L, msg ? msg : "(error object is not a string)", 1);
  return 1;
}

/* `--workers N` (or `--workers=N`) before the script: runs the master,
 * whose workers come back here and go on without that option. */
static int nx_workers_option(int *argc, char **argv) {
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-' || !strcmp(a, "-") || !strcmp(a, "--")) return 0;   /* the script: options end */
    if (!strcmp(a, "-e")) {
      i++;
      continue;
    }
    const char *v = NULL;
    int take = 1;
    if (!strcmp(a, "--workers")) {
      if (i + 1 >= *argc) {
        fputs("nexus: '--workers' needs a number\n", stderr);
        return 1;
      }
      v = argv[i + 1];
      take = 2;
    } else if (!strncmp(a, "--workers=", 10)) {
      v = a + 10;
    } else {
      continue;
    }
    char *end;
    long n = strtol(v, &end, 10);
    if (*v == '\0' || *end != '\0' || n < 1 || n > 1024) {
      fprintf(stderr, "nexus: --workers: expected a number of workers in 1..1024, got '%s'\n", v);
      return 1;
    }
    for (int k = i; k + take <= *argc; k++) argv[k] = argv[k + take];   /* keeps argv[argc] NULL */
    *argc -= take;
    int rc = nx_master_run((int)n);
    return rc < 0 ? -1 : (rc == 0 ? 0 : rc) | 0x100;
  }
  return 0;
}

int main(int argc, char **argv) {
  int w = nx_workers_option(&argc, argv);   /* -1: a worker, 0: no option */
  if (w == 1) return 1;                     /* a bad option */
  if (w > 0) return w & 0xff;               /* the master is done */
  lua_State *L = luaL_newstate();
  if (!L) {
    fputs("nexus: cannot create a Lua state\n", stderr);
    return 1;
  }
  luaL_openlibs(L);
  nx_preload(L);
  lua_pushcfunction(L, nx_traceback);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "nexus.cli");
  int status = 1;
  if (lua_pcall(L, 1, 1, 1) == 0) {
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 0; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    lua_pushinteger(L, argc);
    if (lua_pcall(L, 2, 1, 1) == 0) {
      status = (int)lua_tointeger(L, -1);
    } else {
      fprintf(stderr, "nexus: %s\n", lua_tostring(L, -1));
    }
  } else {
    fprintf(stderr, "nexus: %s\n", lua_tostring(L, -1));
  }
  fflush(stdout);
  lua_close(L);
  return status;
}
