/* The worker <-> sessiond codec. One table says, for every known tag, what
 * kind of value it carries and where it lives in struct proto_msg; encode
 * and decode both walk it, so a new field is one line here. */
#include "common/proto.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/bev_send.h"
#include "common/util.h"

enum field_kind { FK_U8, FK_U16, FK_U32, FK_U64, FK_STR };

struct field {
  enum proto_tag tag;
  enum field_kind kind;
  size_t offset;
};

#define F(tag, kind, member) {tag, kind, offsetof(struct proto_msg, member)}
static const struct field fields[] = {
    F(PT_REQ, FK_U32, req),
    F(PT_RESULT, FK_U32, result),
    F(PT_DELAY_MS, FK_U32, delay_ms),
    F(PT_WORKER_ID, FK_U32, worker_id),
    F(PT_PID, FK_U32, pid),
    F(PT_BYTES_IN, FK_U64, bytes_in),
    F(PT_BYTES_OUT, FK_U64, bytes_out),
    F(PT_DURATION_MS, FK_U64, duration_ms),
    F(PT_CLIENT_PORT, FK_U16, client_port),
    F(PT_LOCAL_PORT, FK_U16, local_port),
    F(PT_TLS, FK_U8, tls),
    F(PT_REHOME, FK_U8, rehome),
    F(PT_SESSION, FK_STR, session),
    F(PT_USER, FK_STR, user),
    F(PT_PASSWORD, FK_STR, password),
    F(PT_CLIENT_ADDR, FK_STR, client_addr),
    F(PT_LOCAL_ADDR, FK_STR, local_addr),
    F(PT_MECH, FK_STR, mech),
    F(PT_BACKEND, FK_STR, backend),
    F(PT_BACKEND_ADDR, FK_STR, backend_addr),
    F(PT_REASON, FK_STR, reason),
    F(PT_SEAT, FK_STR, seat),
    F(PT_TICKET, FK_STR, ticket),
    F(PT_MASTER_USER, FK_STR, master_user),
};
#undef F
#define N_FIELDS (sizeof fields / sizeof fields[0])

static const size_t int_width[] = {[FK_U8] = 1, [FK_U16] = 2, [FK_U32] = 4, [FK_U64] = 8};

static uint64_t get_int(const struct proto_msg *m, const struct field *f) {
  const char *p = (const char *)m + f->offset;
  switch (f->kind) {
  case FK_U8: return *(const uint8_t *)p;
  case FK_U16: return *(const uint16_t *)p;
  case FK_U32: return *(const uint32_t *)p;
  default: return *(const uint64_t *)p;
  }
}

static void set_int(struct proto_msg *m, const struct field *f, uint64_t v) {
  char *p = (char *)m + f->offset;
  switch (f->kind) {
  case FK_U8: *(uint8_t *)p = (uint8_t)v; break;
  case FK_U16: *(uint16_t *)p = (uint16_t)v; break;
  case FK_U32: *(uint32_t *)p = (uint32_t)v; break;
  default: *(uint64_t *)p = v; break;
  }
}

static void put_be(uint8_t *p, uint64_t v, size_t width) {
  for (size_t i = 0; i < width; i++) p[i] = (uint8_t)(v >> (8 * (width - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, size_t width) {
  uint64_t v = 0;
  for (size_t i = 0; i < width; i++) v = v << 8 | p[i];
  return v;
}

ssize_t proto_encode(const struct proto_msg *m, uint8_t *buf, size_t cap) {
  size_t n = PROTO_HDR_LEN;
  if (cap < PROTO_HDR_LEN + 1) return -1;
  buf[n++] = (uint8_t)m->type;
  for (size_t i = 0; i < N_FIELDS; i++) {
    const struct field *f = &fields[i];
    const uint8_t *val;
    size_t len;
    uint8_t intbuf[8];
    if (f->kind == FK_STR) {
      const char *s = *(const char *const *)((const char *)m + f->offset);
      if (!s) continue;
      val = (const uint8_t *)s;
      len = strlen(s) + 1;   /* the NUL travels */
    } else {
      uint64_t v = get_int(m, f);
      if (v == 0) continue;
      len = int_width[f->kind];
      put_be(intbuf, v, len);
      val = intbuf;
    }
    if (len > 0xffff || n + 3 + len > cap || n + 3 + len - PROTO_HDR_LEN > PROTO_MAX_BODY)
      return -1;
    buf[n] = (uint8_t)f->tag;
    put_be(buf + n + 1, len, 2);
    memcpy(buf + n + 3, val, len);
    n += 3 + len;
  }
  put_be(buf, n - PROTO_HDR_LEN, 4);
  return (ssize_t)n;
}

size_t proto_body_len(const uint8_t hdr[PROTO_HDR_LEN]) {
  uint64_t len = get_be(hdr, 4);
  return len == 0 || len > PROTO_MAX_BODY ? 0 : (size_t)len;
}

static const struct field *field_of(uint8_t tag) {
  for (size_t i = 0; i < N_FIELDS; i++)
    if (fields[i].tag == tag) return &fields[i];
  return NULL;
}

int proto_decode(uint8_t *body, size_t len, struct proto_msg *m) {
  memset(m, 0, sizeof *m);
  if (len < 1 || len > PROTO_MAX_BODY) return -1;
  m->type = (enum proto_type)body[0];
  uint32_t seen[8] = {0};   /* one bit per tag value */
  size_t p = 1;
  while (p < len) {
    if (len - p < 3) return -1;
    uint8_t tag = body[p];
    size_t flen = (size_t)get_be(body + p + 1, 2);
    uint8_t *val = body + p + 3;
    if (flen > len - p - 3) return -1;
    p += 3 + flen;
    const struct field *f = field_of(tag);
    if (!f) continue;   /* a newer peer's field */
    if (seen[tag / 32] & (1u << (tag % 32))) return -1;
    seen[tag / 32] |= 1u << (tag % 32);
    if (f->kind == FK_STR) {
      if (flen == 0 || val[flen - 1] != '\0' || memchr(val, '\0', flen - 1)) return -1;
      *(const char **)((char *)m + f->offset) = (const char *)val;
    } else {
      if (flen != int_width[f->kind]) return -1;
      set_int(m, f, get_be(val, flen));
    }
  }
  return 0;
}

const char *proto_type_name(enum proto_type t) {
  switch (t) {
  case PROTO_HELLO: return "HELLO";
  case PROTO_LOGIN: return "LOGIN";
  case PROTO_LOGIN_REPLY: return "LOGIN_REPLY";
  case PROTO_BACKEND_FAILED: return "BACKEND_FAILED";
  case PROTO_SESSION_UP: return "SESSION_UP";
  case PROTO_SESSION_END: return "SESSION_END";
  case PROTO_KICK: return "KICK";
  case PROTO_REHOME: return "REHOME";
  case PROTO_REHOME_DONE: return "REHOME_DONE";
  }
  return "UNKNOWN";
}

int proto_frame_pop(struct evbuffer *in, uint8_t *body, size_t *len) {
  uint8_t hdr[PROTO_HDR_LEN];
  if (evbuffer_copyout(in, hdr, sizeof hdr) != (ssize_t)sizeof hdr) return 0;
  size_t n = proto_body_len(hdr);
  if (n == 0) return -1;
  if (evbuffer_get_length(in) < PROTO_HDR_LEN + n) return 0;
  evbuffer_drain(in, PROTO_HDR_LEN);
  evbuffer_remove(in, body, n);
  *len = n;
  return 1;
}

/* 8 KiB holds dozens of LOGIN frames; a turn that makes more sends
 * early, and a frame too big for it goes on its own. */
#define BATCH_CAP 8192

struct proto_batch {
  struct bufferevent *bev;
  struct event *flush;          /* made active when a frame must leave this turn */
  struct event *linger;         /* pending while only lazy frames wait */
  int urgent;                   /* flush is active */
  size_t len, wipe_len;         /* bytes waiting; bytes to wipe once sent */
  uint8_t buf[BATCH_CAP];
};

static void on_batch_flush(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  proto_batch_flush(arg);
}

struct proto_batch *proto_batch_new(struct event_base *base) {
  struct proto_batch *b = xcalloc(1, sizeof *b);
  b->flush = event_new(base, -1, 0, on_batch_flush, b);
  b->linger = evtimer_new(base, on_batch_flush, b);
  return b;
}

static void batch_drop(struct proto_batch *b) {
  wipe(b->buf, b->wipe_len);
  b->len = b->wipe_len = 0;
  event_del(b->flush);
  event_del(b->linger);
  b->urgent = 0;
}

void proto_batch_set_bev(struct proto_batch *b, struct bufferevent *bev) {
  if (b->bev != bev) batch_drop(b);
  b->bev = bev;
}

/* Straight to the socket when nothing is queued before it (bev_send); then
 * a password frame is usually never copied into a libevent buffer. */
static void send_bytes(struct bufferevent *bev, const uint8_t *p, size_t n) {
  bev_send(bev, bufferevent_getfd(bev), p, n);
}

void proto_batch_flush(struct proto_batch *b) {
  if (b->len && b->bev) send_bytes(b->bev, b->buf, b->len);
  batch_drop(b);
}

/* m at the end of the batch. An encoding that did not fit may have left
 * whole fields behind it, a password among them: those are wiped. */
static ssize_t encode_at_end(struct proto_batch *b, const struct proto_msg *m) {
  ssize_t n = proto_encode(m, b->buf + b->len, BATCH_CAP - b->len);
  if (n < 0 && m->password) wipe(b->buf + b->len, BATCH_CAP - b->len);
  return n;
}

static int batch_add(struct proto_batch *b, const struct proto_msg *m, int urgent) {
  if (!b->bev) return -1;
  ssize_t n = encode_at_end(b, m);
  if (n < 0 && b->len) {
    proto_batch_flush(b);
    n = encode_at_end(b, m);
  }
  if (n < 0) {   /* bigger than a batch (a long reason text): on its own */
    uint8_t *frame = xmalloc(PROTO_MAX_BODY + PROTO_HDR_LEN);
    n = proto_encode(m, frame, PROTO_MAX_BODY + PROTO_HDR_LEN);
    if (n > 0) send_bytes(b->bev, frame, (size_t)n);
    if (n > 0 && m->password) wipe(frame, (size_t)n);
    free(frame);
    return n > 0 ? 0 : -1;
  }
  if (urgent && !b->urgent) {
    event_active(b->flush, EV_TIMEOUT, 0);
    b->urgent = 1;
  } else if (!urgent && !b->urgent && b->len == 0) {
    struct timeval tv = {0, PROTO_LINGER_MS * 1000};
    evtimer_add(b->linger, &tv);
  }
  b->len += (size_t)n;
  if (m->password) b->wipe_len = b->len;
  return 0;
}

int proto_batch_add(struct proto_batch *b, const struct proto_msg *m) {
  return batch_add(b, m, 1);
}

int proto_batch_add_lazy(struct proto_batch *b, const struct proto_msg *m) {
  return batch_add(b, m, 0);
}

void proto_batch_free(struct proto_batch *b) {
  if (!b) return;
  batch_drop(b);
  event_free(b->flush);
  event_free(b->linger);
  free(b);
}
