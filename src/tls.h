/* tls.h - TLS on a stream: OpenSSL with memory BIOs, no I/O of its own.
 *
 * tcp.c owns the socket and the plaintext read buffer; this side owns the
 * SSL object and its two memory BIOs. Ciphertext that libuv read is fed in
 * (nx_tls_feed); nx_tls_handshake and nx_tls_read advance the connection;
 * whatever OpenSSL wants to send collects in the write BIO, which tcp.c
 * drains (nx_tls_out, nx_tls_out_clear) after every call here.
 *
 * Functions return 0 (done), NX_TLS_AGAIN (needs more input) or
 * NX_TLS_ERR (the reason is in nx_tls_error), NX_TLS_EOF (close_notify).
 */
#ifndef NX_TLS_H
#define NX_TLS_H

#include <stddef.h>

#include <lauxlib.h>
#include <lua.h>

enum { NX_TLS_AGAIN = 1, NX_TLS_ERR = -1, NX_TLS_EOF = -2 };

/* The error code a stream keeps (rerr, werr) for a TLS failure; its text
 * is the stream's nx_tls_error. Outside libuv's codes. */
#define NX_ETLS (-0x7e5)

typedef struct nx_tls nx_tls;
typedef struct nx_tls_ctx nx_tls_ctx;

/* The context of the userdata at idx (core.tls_ctx_new's), or raises
 * "<fname>: expected a tls context". */
nx_tls_ctx *nx_tls_check_ctx(lua_State *L, int idx, const char *fname);
int nx_tls_ctx_is_server(const nx_tls_ctx *c);

/* A connection of c (client: connect state, SNI and the checked name
 * from name, which may be NULL; server: accept state). NULL with the
 * reason in err when OpenSSL refuses. */
nx_tls *nx_tls_new(nx_tls_ctx *c, const char *name, char *err, size_t errlen);
void nx_tls_free(nx_tls *t);

int nx_tls_feed(nx_tls *t, const char *p, size_t n);
int nx_tls_handshake(nx_tls *t);
int nx_tls_done(const nx_tls *t);
/* Up to cap decrypted bytes into buf, *n of them. */
int nx_tls_read(nx_tls *t, char *buf, size_t cap, size_t *n);
/* All of p (the write BIO grows as needed). */
int nx_tls_write(nx_tls *t, const char *p, size_t n);
/* close_notify into the write BIO (after a completed handshake). */
void nx_tls_close_notify(nx_tls *t);
/* The bytes waiting in the write BIO, then forget them. */
const char *nx_tls_out(nx_tls *t, size_t *n);
void nx_tls_out_clear(nx_tls *t);

/* "tls: <reason>" of the last failure. */
const char *nx_tls_error(const nx_tls *t);
/* Records a failure of the stream under t ("tls: <what>"). */
void nx_tls_set_error(nx_tls *t, const char *what);

/* Pushes { version, cipher, alpn, server_name, peer = {...} }. */
int nx_tls_push_info(lua_State *L, nx_tls *t);

/* Registers core.tls_ctx_new (called from nx_tcp_open). */
void nx_tls_open(lua_State *L);

#endif
