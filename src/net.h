/* net.h - what the network components (tcp.c, udp.c, dns.c; and thread.c,
 * a thread-pool request like dns.c) share:
 * addresses, error strings, the Lua-side conventions of their suspending
 * calls, and their openers for lmodule.c.
 *
 * A suspending network call is a classic Lua C function (it returns
 * strings): it returns its results when it can complete now, or registers
 * a wait of the running task (nx_wait) and returns false (which no result
 * can be); the Lua wrapper then yields and calls it again.
 */
#ifndef NX_NET_H
#define NX_NET_H

#include <stddef.h>
#include <sys/socket.h>

#include <lauxlib.h>
#include <lua.h>

#include "rt.h"

/* "255.255.255.255" or "[ffff:...:ffff%ifname]:65535" fits. */
#define NX_ADDRSTRLEN 80

/* The part every socket object shares: its libuv handle (first, so the
 * handle's address is the object's), its place in the runtime's owned
 * list, and a two-sided life. The Lua userdata and the libuv handle each
 * hold the struct: it is freed by whichever lets go last (the userdata's
 * __gc or the handle's close callback), since uv_close completes later. */
typedef struct nx_nh nx_nh;
struct nx_nh {
  union { uv_handle_t h; uv_stream_t s; uv_tcp_t tcp; uv_udp_t udp; uv_pipe_t pipe; } u;
  nx_owned own;
  nx_rt *rt;                    /* referenced (nx_rt_ref) until __gc */
  void (*destroy)(nx_nh *nh);   /* frees the component's buffers and nh */
  uint8_t closed;               /* closed for Lua: calls say "closed" */
  uint8_t hclosing, hclosed;    /* uv_close called; its callback ran */
  uint8_t udgone;               /* the userdata was collected */
};

/* After the handle's uv_*_init succeeded (ok = 1) or failed (ok = 0). */
void nx_nh_init(nx_nh *nh, nx_rt *rt, void (*destroy)(nx_nh *), int ok);
/* Closes the libuv handle, once; the struct goes when both sides let go. */
void nx_nh_close_handle(nx_nh *nh);
/* From __gc: the userdata lets go (closing the handle if close_now). */
void nx_nh_gc(nx_nh *nh, int close_now);

/* tcp.c: a new stream userdata over a pipe (a child process's stdio,
 * process.c), pushed on L; its uv_stream_t for uv_spawn, or NULL. */
uv_stream_t *nx_pipe_stream_new(lua_State *L, nx_rt *rt);

/* Short lowercase message for a libuv error code ("connection refused",
 * "address already in use", "eof", "timeout", ...). */
const char *nx_net_strerror(int err);

/* Fills ss from an IP literal ("127.0.0.1", "::1") and a port; "*" is
 * 0.0.0.0 and "localhost" 127.0.0.1 (listen and bind take no other names:
 * resolving would suspend). 0 or UV_EINVAL. */
int nx_net_addr(const char *host, int port, struct sockaddr_storage *ss);

/* The IP of sa as text ("::1", no brackets); returns its port. */
int nx_net_ip(const struct sockaddr *sa, char *ip, size_t iplen);
/* "ip:port", "[ip6]:port". */
void nx_net_fmt(const struct sockaddr *sa, char *out, size_t outlen);

/* Pushes "ip:port", ip, port of sa; returns 3. */
int nx_net_push_addr(lua_State *L, const struct sockaddr *sa);
/* Pushes nil, nx_net_strerror(err); returns 2. */
int nx_net_fail(lua_State *L, int err);
/* lua_typename of the value at idx, "nil" for none. */
const char *nx_net_typename(lua_State *L, int idx);
/* Raises "<fmt...>" with no position (see lmodule.c nx_error). */
int nx_net_error(lua_State *L, const char *fmt, ...);
/* The host (or name) string at idx, raising "<fname>: <what> must be a
 * string" or "<fname>: <what> contains a NUL byte": C would read such a
 * string only up to the NUL ("127.0.0.1\0.attacker.example"). */
const char *nx_net_checkhost(lua_State *L, int idx, const char *fname, const char *what);
/* After nx_wait: pushes false, and true when L cannot yield to the
 * executor (then the Lua wrapper raises through util.check_yieldable,
 * which releases the wait). Checking here saves the wrapper a call into
 * C on every wait. Returns the number of values pushed. */
int nx_net_wait(lua_State *L, nx_rt *rt);

/* The runtime being driven, which must be rt: raises "<fname>: belongs to
 * another runtime" when another one is driven. NULL when none is (a call
 * from outside every task). */
nx_rt *nx_net_rt(lua_State *L, nx_rt *rt, const char *fname);
/* The same, for calls that suspend: raises "<fname>: not inside a nexus
 * task" when no task of rt is running. */
nx_rt *nx_net_task_rt(lua_State *L, nx_rt *rt, const char *fname);

/* The userdata of every network object: the C object and a tag naming
 * its type. Checking the size and the tag costs a third of a metatable
 * comparison through the Lua API, on every call of the hot methods. */
enum {
  NX_TAG_STREAM = 0x6e785354u,    /* "nxST" */
  NX_TAG_LISTENER = 0x6e784c4eu,  /* "nxLN" */
  NX_TAG_UDP = 0x6e785544u,       /* "nxUD" */
  NX_TAG_DNS = 0x6e78444eu,       /* "nxDN" */
  NX_TAG_THREAD = 0x6e785448u,    /* "nxTH" */
};
typedef struct nx_ud { void *p; uint32_t tag; } nx_ud;

/* The C object of the userdata at idx, which must be tagged tag; raises
 * "<fname>: expected <what>, got <type>". */
void *nx_net_check(lua_State *L, int idx, uint32_t tag, const char *fname, const char *what);
/* The buffered bytes of the stream behind a userdata payload, in place
 * (NULL: not usable from the running task), and the taking of the first n
 * (src/tcp.c; a parser working on the buffer, src/httpd.c). */
const char *nx_stream_peek(void *ud, size_t *n);
void nx_stream_take(void *ud, size_t n);
/* Pushes a userdata tagged tag, with the metatable at index mt. */
void **nx_net_newud(lua_State *L, int mt, uint32_t tag);

/* A libuv thread-pool request one task waits on (dns.c, thread.c),
 * first in its owner's struct. It outlives its Lua userdata when the task
 * gives up (abort, timeout, a closing runtime): a request still queued is
 * cancelled, one already running finishes unheard, and the owner is
 * destroyed by whichever of the libuv callback and the userdata's __gc
 * comes last. */
typedef struct nx_preq nx_preq;
struct nx_preq {
  uv_req_t *req;                  /* the owner's libuv request */
  nx_rt *rt;
  nx_task *waiter;
  void (*destroy)(nx_preq *p);    /* frees the owner */
  uint8_t done, udgone;
};
/* The running task waits on p; raises "<fname>: not inside a nexus task". */
void nx_preq_wait(lua_State *L, nx_rt *rt, nx_preq *p, const char *fname);
/* From the libuv callback: wakes the waiter, or destroys the owner when
 * its userdata is gone (then returns 1). */
int nx_preq_done(nx_preq *p);
/* From the userdata's __gc. */
void nx_preq_gc(nx_preq *p);

/* Optional integer argument in [lo, hi]; dflt when nil or none. */
lua_Integer nx_net_optint(lua_State *L, int idx, lua_Integer dflt, lua_Integer lo,
                          lua_Integer hi, const char *fname, const char *what);

/* SIGPIPE would kill the process on a write to a closed peer: ignore it,
 * once, unless the program installed a handler of its own. */
void nx_net_ignore_sigpipe(void);

/* Pushes a new metatable named name, with an empty __index table. (Not
 * protected by __metatable: the Lua side compares getmetatable(obj) with
 * it before an FFI call, which the JIT compiles to one load.) */
void nx_net_newmt(lua_State *L, const char *name);
/* Sets fns into the table at index t, as closures over the nup values on
 * top of the stack (which stay there). */
void nx_net_setfuncs(lua_State *L, int t, const luaL_Reg *fns, int nup);

/* Openers: called from luaopen_nexus_core with the module table on top. */
void nx_tcp_open(lua_State *L);
void nx_udp_open(lua_State *L);
void nx_dns_open(lua_State *L);
void nx_thread_open(lua_State *L);

#endif
