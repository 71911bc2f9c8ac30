/* httpd.c - the request parser of nexus.http.listen (see httpd.h). */
#include "httpd.h"

#include <http_parser.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net.h"

/* Parse states, as the Lua side sees them. */
enum {
  NX_HP_HEAD = 0,         /* reading the request head */
  NX_HP_BODY = 1,         /* head complete, the body is not */
  NX_HP_DONE = 2,         /* the whole message */
  NX_HP_ERROR = 3,        /* answer status and close */
};

/* The public head, declared again in lua/nexus/http_server.lua. */
typedef struct nx_hp {
  int32_t state;
  int32_t status;         /* NX_HP_ERROR: the status to answer */
  int32_t method;         /* http_parser's enum http_method */
  int32_t major, minor;
  int32_t keep_alive;     /* http_should_keep_alive */
  int32_t upgrade;
  int32_t nhdr;
  uint32_t url_len;       /* the target: arena[0 .. url_len) */
  uint32_t *hdr;          /* per header: name offset, length, value offset, length */
  char *arena;
  char *body;
  size_t body_len;
  double content_length;  /* -1: none given */
  /* private */
  size_t arena_len, arena_cap, body_cap;
  size_t head_bytes;      /* bytes of the head taken so far */
  size_t max_head, max_body;
  uint32_t max_headers;
  uint8_t in_value;       /* the last callback was a header value */
  uint8_t chunked;
  http_parser p;
} nx_hp;

#define NX_HP_BODY_KEEP 65536   /* a body buffer larger than this is not kept between requests */

static nx_hp *nx_hp_of(http_parser *p) { return p->data; }

static int nx_hp_fail(nx_hp *h, int status) {
  h->status = status;
  return -1;                      /* http_parser stops with HPE_CB_* */
}

static int nx_hp_append(nx_hp *h, const char *at, size_t len, int lower) {
  if (h->arena_len + len > h->max_head) return nx_hp_fail(h, 431);
  if (h->arena_len + len > h->arena_cap) {
    size_t cap = h->arena_cap ? h->arena_cap : 1024;
    while (cap < h->arena_len + len) cap *= 2;
    char *a = realloc(h->arena, cap);
    if (!a) return nx_hp_fail(h, 500);
    h->arena = a;
    h->arena_cap = cap;
  }
  char *d = h->arena + h->arena_len;
  if (lower) {
    for (size_t i = 0; i < len; i++) {
      unsigned char c = (unsigned char)at[i];
      d[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
  } else {
    memcpy(d, at, len);
  }
  h->arena_len += len;
  return 0;
}

static int nx_hp_on_url(http_parser *p, const char *at, size_t len) {
  nx_hp *h = nx_hp_of(p);
  if (h->arena_len + len > h->max_head) return nx_hp_fail(h, 414);
  if (nx_hp_append(h, at, len, 0)) return -1;
  h->url_len += (uint32_t)len;
  return 0;
}

static int nx_hp_on_field(http_parser *p, const char *at, size_t len) {
  nx_hp *h = nx_hp_of(p);
  if (h->in_value || h->nhdr == 0) {          /* a new header begins */
    if ((uint32_t)h->nhdr >= h->max_headers) return nx_hp_fail(h, 431);
    uint32_t *e = h->hdr + 4 * h->nhdr++;
    e[0] = (uint32_t)h->arena_len;
    e[1] = e[2] = e[3] = 0;
    h->in_value = 0;
  }
  h->hdr[4 * (h->nhdr - 1) + 1] += (uint32_t)len;
  return nx_hp_append(h, at, len, 1);
}

static int nx_hp_on_value(http_parser *p, const char *at, size_t len) {
  nx_hp *h = nx_hp_of(p);
  uint32_t *e = h->hdr + 4 * (h->nhdr - 1);
  if (!h->in_value) {
    e[2] = (uint32_t)h->arena_len;
    h->in_value = 1;
  }
  e[3] += (uint32_t)len;
  return nx_hp_append(h, at, len, 0);
}

static int nx_hp_on_headers(http_parser *p) {
  nx_hp *h = nx_hp_of(p);
  h->method = (int32_t)p->method;
  h->major = p->http_major;
  h->minor = p->http_minor;
  h->keep_alive = http_should_keep_alive(p);
  h->upgrade = p->upgrade;
  h->chunked = (p->flags & F_CHUNKED) != 0;
  if (p->flags & F_CONTENTLENGTH) {
    h->content_length = (double)p->content_length;
    if (p->content_length > h->max_body) return nx_hp_fail(h, 413);
  }
  h->state = NX_HP_BODY;
  return 0;
}

static int nx_hp_on_body(http_parser *p, const char *at, size_t len) {
  nx_hp *h = nx_hp_of(p);
  if (h->body_len + len > h->max_body) return nx_hp_fail(h, 413);
  if (h->body_len + len > h->body_cap) {
    size_t cap = h->body_cap ? h->body_cap : 4096;
    while (cap < h->body_len + len) cap *= 2;
    if (cap > h->max_body && h->max_body >= h->body_len + len) cap = h->max_body;
    char *b = realloc(h->body, cap);
    if (!b) return nx_hp_fail(h, 500);
    h->body = b;
    h->body_cap = cap;
  }
  memcpy(h->body + h->body_len, at, len);
  h->body_len += len;
  return 0;
}

static int nx_hp_on_done(http_parser *p) {
  nx_hp *h = nx_hp_of(p);
  h->state = NX_HP_DONE;
  http_parser_pause(p, 1);        /* the next message stays in the stream */
  return 0;
}

static const http_parser_settings nx_hp_settings = {
  .on_url = nx_hp_on_url,
  .on_header_field = nx_hp_on_field,
  .on_header_value = nx_hp_on_value,
  .on_headers_complete = nx_hp_on_headers,
  .on_body = nx_hp_on_body,
  .on_message_complete = nx_hp_on_done,
};

/* Ready for the next request: the buffers stay (a large body's does not). */
static void nx_hp_reset(nx_hp *h) {
  http_parser_init(&h->p, HTTP_REQUEST);
  h->p.data = h;
  h->state = NX_HP_HEAD;
  h->status = 0;
  h->method = 0;
  h->major = h->minor = 0;
  h->keep_alive = h->upgrade = 0;
  h->nhdr = 0;
  h->url_len = 0;
  h->arena_len = 0;
  h->head_bytes = 0;
  h->in_value = 0;
  h->chunked = 0;
  h->content_length = -1;
  h->body_len = 0;
  if (h->body_cap > NX_HP_BODY_KEEP) {
    free(h->body);
    h->body = NULL;
    h->body_cap = 0;
  }
}

static nx_hp *nx_hp_new(double max_head, double max_headers, double max_body) {
  nx_hp *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  h->max_head = (size_t)max_head;
  h->max_headers = (uint32_t)max_headers;
  h->max_body = (size_t)max_body;
  h->hdr = malloc(sizeof(uint32_t) * 4 * (h->max_headers ? h->max_headers : 1));
  if (!h->hdr) {
    free(h);
    return NULL;
  }
  nx_hp_reset(h);
  return h;
}

static void nx_hp_free(nx_hp *h) {
  if (!h) return;
  free(h->hdr);
  free(h->arena);
  free(h->body);
  free(h);
}

/* http_parser's error as the status to answer. */
static int nx_hp_error_status(nx_hp *h) {
  if (h->status) return h->status;                 /* a limit (callbacks) */
  switch (HTTP_PARSER_ERRNO(&h->p)) {
  case HPE_HEADER_OVERFLOW: return 431;
  case HPE_INVALID_TRANSFER_ENCODING: return 501;
  case HPE_INVALID_VERSION: return 505;
  default: return 400;
  }
}

/* Parses what the stream (a userdata payload) has buffered, taking what
 * was parsed; stops at the end of a message. Returns the state, or -1
 * when the stream cannot be read from here. */
static int nx_hp_feed(nx_hp *h, void *stream) {
  if (h->state == NX_HP_DONE || h->state == NX_HP_ERROR) return h->state;
  size_t n;
  const char *p = nx_stream_peek(stream, &n);
  if (!p) return -1;
  if (n == 0) return h->state;
  size_t took = http_parser_execute(&h->p, &nx_hp_settings, p, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&h->p);
  if (e != HPE_OK && e != HPE_PAUSED) {
    h->status = nx_hp_error_status(h);
    h->state = NX_HP_ERROR;
    return h->state;
  }
  if (h->state == NX_HP_HEAD) {
    h->head_bytes += took;
    if (h->head_bytes > h->max_head) {        /* blank lines, spaces: the head counts all */
      h->status = h->nhdr == 0 ? 414 : 431;
      h->state = NX_HP_ERROR;
      return h->state;
    }
  }
  nx_stream_take(stream, took);
  return h->state;
}

static const char *nx_hp_method_name(int m) { return http_method_str((enum http_method)m); }

typedef struct nx_httpd_api {
  nx_hp *(*new)(double max_head, double max_headers, double max_body);
  void (*free)(nx_hp *h);
  void (*reset)(nx_hp *h);
  int (*feed)(nx_hp *h, void *stream);
  const char *(*method_name)(int m);
} nx_httpd_api;

static const nx_httpd_api nx_httpd_api_table = {
  nx_hp_new, nx_hp_free, nx_hp_reset, nx_hp_feed, nx_hp_method_name,
};

void nx_httpd_open(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&nx_httpd_api_table);
  lua_setfield(L, -2, "httpd_api");
}
