/* tls.c - OpenSSL under a stream, through memory BIOs (see tls.h).
 *
 * The pattern of luvit's secure-socket and libuv-tls: OpenSSL never sees
 * the socket. tcp.c feeds the ciphertext libuv read into the read BIO and
 * sends what collects in the write BIO, so the stream keeps its one read
 * buffer, its write queue, its waits and its time-outs, and TLS is a
 * transformation between the socket and them.
 *
 * Contexts (SSL_CTX) are made once per option set by lua/nexus/tcp.lua
 * (core.tls_ctx_new) and shared by their connections: each connection
 * holds a reference, so a context outlives its Lua handle while in use.
 */
#include "tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define NX_TLS_CTX_MT "nexus.tls.ctx"
#define NX_TLS_ERRLEN 256

struct nx_tls_ctx {
  SSL_CTX *ctx;
  int refs;                     /* the Lua handle and each connection */
  int server;
  size_t alpnlen;               /* server: the protocols, wire format */
  unsigned char alpn[];
};

struct nx_tls {
  SSL *ssl;
  BIO *rbio, *wbio;             /* owned by ssl */
  nx_tls_ctx *c;
  char *name;                   /* client: the name sent and checked */
  int done;                     /* handshake complete */
  char err[NX_TLS_ERRLEN];
};

static void nx_tls_ctx_unref(nx_tls_ctx *c) {
  if (--c->refs > 0) return;
  SSL_CTX_free(c->ctx);
  free(c);
}

int nx_tls_ctx_is_server(const nx_tls_ctx *c) { return c->server; }

/* "tls: <what>: <OpenSSL's reason>", the error queue cleared. */
static void nx_tls_reason(char *out, size_t n, const char *what) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  char buf[128];
  if (e && !r) {
    ERR_error_string_n(e, buf, sizeof buf);
    r = buf;
  }
  if (what && r) snprintf(out, n, "tls: %s: %s", what, r);
  else if (what) snprintf(out, n, "tls: %s", what);
  else snprintf(out, n, "tls: %s", r ? r : "unknown error");
  ERR_clear_error();
}

/* ---- contexts ---- */

/* Server ALPN: the first of the server's protocols the client offers
 * (server preference, as Go and nginx choose); none in common fails the
 * handshake with no_application_protocol (RFC 7301, as Go does). */
static int nx_alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                          const unsigned char *in, unsigned int inlen, void *arg) {
  nx_tls_ctx *c = arg;
  (void)ssl;
  for (size_t i = 0; i < c->alpnlen; i += 1 + c->alpn[i]) {
    unsigned int sl = c->alpn[i];
    for (unsigned int j = 0; j < inlen; j += 1 + in[j]) {
      if (in[j] == sl && j + 1 + sl <= inlen && memcmp(in + j + 1, c->alpn + i + 1, sl) == 0) {
        *out = in + j + 1;
        *outlen = (unsigned char)sl;
        return SSL_TLSEXT_ERR_OK;
      }
    }
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static const char *nx_optstr(lua_State *L, int idx) {
  return lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
}

/* core.tls_ctx_new(server, verify, ca_file, ca_path, cert_file, key_file,
 * alpn_wire, min_version (12|13), verify_client): ctx | nil, "tls: ..."
 * (the Lua side has checked every option). */
static int l_tls_ctx_new(lua_State *L) {
  int server = lua_toboolean(L, 1);
  int verify = lua_toboolean(L, 2);
  const char *ca_file = nx_optstr(L, 3), *ca_path = nx_optstr(L, 4);
  const char *cert = nx_optstr(L, 5), *key = nx_optstr(L, 6);
  size_t alen = 0;
  const char *alpn = lua_type(L, 7) == LUA_TSTRING ? lua_tolstring(L, 7, &alen) : NULL;
  int minv = (int)lua_tointeger(L, 8);
  int verify_client = lua_toboolean(L, 9);
  char err[NX_TLS_ERRLEN];
  nx_tls_ctx **ud = lua_newuserdata(L, sizeof *ud);
  *ud = NULL;
  luaL_getmetatable(L, NX_TLS_CTX_MT);
  lua_setmetatable(L, -2);
  nx_tls_ctx *c = calloc(1, sizeof *c + (server ? alen : 0));
  if (!c) return luaL_error(L, "nexus.tls: out of memory");
  c->refs = 1;
  c->server = server;
  *ud = c;
  ERR_clear_error();
  c->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (!c->ctx) {
    nx_tls_reason(err, sizeof err, "cannot make a context");
    goto fail;
  }
  SSL_CTX *ctx = c->ctx;
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_min_proto_version(ctx, minv == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (cert && SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    char what[80 + 160];
    snprintf(what, sizeof what, "cannot load cert_file '%.160s'", cert);
    nx_tls_reason(err, sizeof err, what);
    goto fail;
  }
  if (key && SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    char what[80 + 160];
    snprintf(what, sizeof what, "cannot load key_file '%.160s'", key);
    nx_tls_reason(err, sizeof err, what);
    goto fail;
  }
  if (cert && key && SSL_CTX_check_private_key(ctx) != 1) {
    nx_tls_reason(err, sizeof err, "key_file does not match cert_file");
    goto fail;
  }
  int want_ca = server ? verify_client : verify;
  if (want_ca) {
    if (ca_file || ca_path) {
      if (SSL_CTX_load_verify_locations(ctx, ca_file, ca_path) != 1) {
        char what[80 + 160];
        snprintf(what, sizeof what, "cannot load %s '%.160s'", ca_file ? "ca_file" : "ca_path",
                 ca_file ? ca_file : ca_path);
        nx_tls_reason(err, sizeof err, what);
        goto fail;
      }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
      nx_tls_reason(err, sizeof err, "cannot load the system trust store");
      goto fail;
    }
    if (server && ca_file) {
      STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
      if (names) SSL_CTX_set_client_CA_list(ctx, names);
      ERR_clear_error();
    }
    SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
                       NULL);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  }
  if (alpn && alen) {
    if (server) {
      memcpy(c->alpn, alpn, alen);
      c->alpnlen = alen;
      SSL_CTX_set_alpn_select_cb(ctx, nx_alpn_select, c);
    } else if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)alpn, (unsigned)alen) != 0) {
      nx_tls_reason(err, sizeof err, "bad alpn list");
      goto fail;
    }
  }
  return 1;
fail:
  *ud = NULL;
  nx_tls_ctx_unref(c);
  lua_pushnil(L);
  lua_pushstring(L, err);
  return 2;
}

static int l_tls_ctx_gc(lua_State *L) {
  nx_tls_ctx **ud = lua_touserdata(L, 1);
  if (ud && *ud) {
    nx_tls_ctx_unref(*ud);
    *ud = NULL;
  }
  return 0;
}

static int l_tls_ctx_tostring(lua_State *L) {
  nx_tls_ctx **ud = lua_touserdata(L, 1);
  lua_pushfstring(L, "nexus.tls.ctx(%s)", ud && *ud ? ((*ud)->server ? "server" : "client") : "freed");
  return 1;
}

nx_tls_ctx *nx_tls_check_ctx(lua_State *L, int idx, const char *fname) {
  nx_tls_ctx **ud = luaL_testudata(L, idx, NX_TLS_CTX_MT);
  if (!ud || !*ud) luaL_error(L, "%s: expected a tls context", fname);
  return *ud;
}

/* ---- connections ---- */

nx_tls *nx_tls_new(nx_tls_ctx *c, const char *name, char *err, size_t errlen) {
  nx_tls *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "tls: out of memory");
    return NULL;
  }
  ERR_clear_error();
  t->ssl = SSL_new(c->ctx);
  t->rbio = BIO_new(BIO_s_mem());
  t->wbio = BIO_new(BIO_s_mem());
  if (!t->ssl || !t->rbio || !t->wbio) {
    nx_tls_reason(err, errlen, "cannot make a connection");
    goto fail;
  }
  /* An empty read BIO says "retry", never end of file: the socket's end
   * is tcp.c's to tell. */
  BIO_set_mem_eof_return(t->rbio, -1);
  BIO_set_mem_eof_return(t->wbio, -1);
  SSL_set_bio(t->ssl, t->rbio, t->wbio);        /* ssl owns them now */
  t->c = c;
  c->refs++;
  if (c->server) {
    SSL_set_accept_state(t->ssl);
    return t;
  }
  SSL_set_connect_state(t->ssl);
  if (name && *name) {
    unsigned char a[16];
    int ip = inet_pton(AF_INET, name, a) == 1 || inet_pton(AF_INET6, name, a) == 1;
    if (!(t->name = strdup(name))) {
      snprintf(err, errlen, "tls: out of memory");
      goto fail2;
    }
    /* SNI for names only (RFC 6066: no IP literals); the check for both. */
    if (!ip && SSL_set_tlsext_host_name(t->ssl, name) != 1) {
      nx_tls_reason(err, errlen, "bad server_name");
      goto fail2;
    }
    if (SSL_get_verify_mode(t->ssl) != SSL_VERIFY_NONE) {
      X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
      int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name) : SSL_set1_host(t->ssl, name);
      if (ok != 1) {
        nx_tls_reason(err, errlen, "bad server_name");
        goto fail2;
      }
    }
  }
  return t;
fail:                                   /* before SSL_set_bio */
  SSL_free(t->ssl);
  BIO_free(t->rbio);
  BIO_free(t->wbio);
  free(t);
  return NULL;
fail2:
  nx_tls_free(t);
  return NULL;
}

void nx_tls_free(nx_tls *t) {
  if (!t) return;
  SSL_free(t->ssl);
  if (t->c) nx_tls_ctx_unref(t->c);
  free(t->name);
  free(t);
}

const char *nx_tls_error(const nx_tls *t) { return t->err[0] ? t->err : "tls: error"; }

void nx_tls_set_error(nx_tls *t, const char *what) {
  if (!t->err[0]) snprintf(t->err, sizeof t->err, "tls: %s", what);
}

/* After a failed SSL call: the reason, with the certificate's when the
 * verification failed ("certificate verify failed: hostname mismatch"). */
static int nx_tls_fail(nx_tls *t, int rc) {
  int e = SSL_get_error(t->ssl, rc);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return NX_TLS_AGAIN;
  if (e == SSL_ERROR_ZERO_RETURN) return NX_TLS_EOF;
  if (t->err[0]) {
    ERR_clear_error();
    return NX_TLS_ERR;
  }
  unsigned long q = ERR_peek_last_error();
  long v = SSL_get_verify_result(t->ssl);
  if (ERR_GET_REASON(q) == SSL_R_CERTIFICATE_VERIFY_FAILED && v != X509_V_OK) {
    snprintf(t->err, sizeof t->err, "tls: certificate verify failed: %s", X509_verify_cert_error_string(v));
    ERR_clear_error();
  } else if (q) {
    nx_tls_reason(t->err, sizeof t->err, NULL);
  } else {
    snprintf(t->err, sizeof t->err, "tls: protocol error");
  }
  return NX_TLS_ERR;
}

int nx_tls_feed(nx_tls *t, const char *p, size_t n) {
  while (n > 0) {
    int k = BIO_write(t->rbio, p, n > 0x40000000 ? 0x40000000 : (int)n);
    if (k <= 0) {
      nx_tls_set_error(t, "out of memory");
      return NX_TLS_ERR;
    }
    p += k;
    n -= (size_t)k;
  }
  return 0;
}

int nx_tls_handshake(nx_tls *t) {
  if (t->done) return 0;
  ERR_clear_error();
  int rc = SSL_do_handshake(t->ssl);
  if (rc == 1) {
    t->done = 1;
    return 0;
  }
  return nx_tls_fail(t, rc);
}

int nx_tls_done(const nx_tls *t) { return t->done; }

int nx_tls_read(nx_tls *t, char *buf, size_t cap, size_t *n) {
  ERR_clear_error();
  *n = 0;
  if (SSL_read_ex(t->ssl, buf, cap, n) == 1) return 0;
  return nx_tls_fail(t, 0);
}

int nx_tls_write(nx_tls *t, const char *p, size_t n) {
  while (n > 0) {
    size_t k = 0;
    ERR_clear_error();
    if (SSL_write_ex(t->ssl, p, n, &k) != 1) {
      int r = nx_tls_fail(t, 0);
      if (r == NX_TLS_AGAIN || r == NX_TLS_EOF) nx_tls_set_error(t, "cannot write now");
      return NX_TLS_ERR;
    }
    p += k;
    n -= k;
  }
  return 0;
}

void nx_tls_close_notify(nx_tls *t) {
  if (!t->done || t->err[0]) return;
  ERR_clear_error();
  SSL_shutdown(t->ssl);
  ERR_clear_error();
}

const char *nx_tls_out(nx_tls *t, size_t *n) {
  char *p = NULL;
  long k = BIO_get_mem_data(t->wbio, &p);
  *n = k > 0 ? (size_t)k : 0;
  return p;
}

void nx_tls_out_clear(nx_tls *t) { (void)BIO_reset(t->wbio); }

/* ---- tls_info ---- */

static void nx_push_name(lua_State *L, X509_NAME *nm) {
  BIO *b = BIO_new(BIO_s_mem());
  char *p = NULL;
  long n;
  if (!b) {
    lua_pushnil(L);
    return;
  }
  X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253);
  n = BIO_get_mem_data(b, &p);
  lua_pushlstring(L, p ? p : "", n > 0 ? (size_t)n : 0);
  BIO_free(b);
}

int nx_tls_push_info(lua_State *L, nx_tls *t) {
  SSL *ssl = t->ssl;
  lua_createtable(L, 0, 6);
  lua_pushstring(L, SSL_get_version(ssl));
  lua_setfield(L, -2, "version");
  const char *cipher = SSL_get_cipher_name(ssl);
  if (cipher) {
    lua_pushstring(L, cipher);
    lua_setfield(L, -2, "cipher");
  }
  const unsigned char *ap = NULL;
  unsigned int al = 0;
  SSL_get0_alpn_selected(ssl, &ap, &al);
  if (ap && al) {
    lua_pushlstring(L, (const char *)ap, al);
    lua_setfield(L, -2, "alpn");
  }
  const char *sn = t->c->server ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : t->name;
  if (sn) {
    lua_pushstring(L, sn);
    lua_setfield(L, -2, "server_name");
  }
  lua_pushboolean(L, t->done);
  lua_setfield(L, -2, "handshake_done");
  X509 *x = SSL_get1_peer_certificate(ssl);
  if (x) {
    lua_createtable(L, 0, 3);
    nx_push_name(L, X509_get_subject_name(x));
    lua_setfield(L, -2, "subject");
    nx_push_name(L, X509_get_issuer_name(x));
    lua_setfield(L, -2, "issuer");
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1) {
      lua_pushnumber(L, (lua_Number)timegm(&tm));
      lua_setfield(L, -2, "not_after");
    }
    lua_pushboolean(L, SSL_get_verify_result(ssl) == X509_V_OK &&
                           SSL_get_verify_mode(ssl) != SSL_VERIFY_NONE);
    lua_setfield(L, -2, "verified");
    lua_setfield(L, -2, "peer");
    X509_free(x);
  }
  return 1;
}

void nx_tls_open(lua_State *L) {
  if (luaL_newmetatable(L, NX_TLS_CTX_MT)) {
    lua_pushcfunction(L, l_tls_ctx_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tls_ctx_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "nexus.tls.ctx");
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_tls_ctx_new);
  lua_setfield(L, -2, "tls_ctx_new");
}
