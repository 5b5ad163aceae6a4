/* usher's TLS 1.3 record layer, for sessions taken over from OpenSSL after
 * the handshake (see tlsrec.h for why). RFC 8446: records in section 5,
 * the key schedule's HKDF-Expand-Label in 7.1, traffic keys in 7.3,
 * KeyUpdate in 4.6.3, alerts in 6.
 *
 * After the handshake a client may send application data, KeyUpdate
 * (one, at the end of its record) and alerts; anything else, a record
 * over the limits of 5.2 and 5.4, or one that does not open, ends the
 * session with the fatal alert RFC 8446 names for it. Every answer of
 * ours (our KeyUpdate, an alert) goes out on the socket side, whose
 * output is bounded: a client that sends without reading cannot make
 * the worker hold more (see stall), and the socket is not read while
 * the session holds its input under a read high-water mark (see
 * input_full). */
#include "proxy/tlsrec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "common/bev_send.h"
#include "common/hmac.h"
#include "common/util.h"

#define HEADER_LEN 5
#define TAG_LEN 16
#define MAX_PLAIN 16384                      /* 2^14 per record */
#define MAX_CIPHER (MAX_PLAIN + 256)         /* what a peer may send */
#define MAX_SECRET 48                        /* SHA-384 */
#define IV_LEN 12

#define CT_ALERT 21
#define CT_HANDSHAKE 22
#define CT_APPLICATION 23
#define HS_KEY_UPDATE 24

/* Alert levels and descriptions (RFC 8446 section 6). */
#define ALERT_WARNING 1
#define ALERT_FATAL 2
#define ALERT_CLOSE_NOTIFY 0
#define ALERT_UNEXPECTED_MESSAGE 10
#define ALERT_BAD_RECORD_MAC 20
#define ALERT_RECORD_OVERFLOW 22
#define ALERT_ILLEGAL_PARAMETER 47
#define ALERT_DECODE_ERROR 50
#define ALERT_INTERNAL_ERROR 80
#define ALERT_USER_CANCELED 90

struct direction {
  uint64_t seq;
  uint8_t secret[MAX_SECRET];
  uint8_t key[32];
  uint8_t iv[IV_LEN];
};

struct tlsrec {
  const EVP_CIPHER *cipher;                  /* the worker's, fetched once */
  enum hmac_digest digest;                   /* the suite's hash, for HKDF */
  uint8_t key_len, secret_len;
  uint8_t closed;                            /* reading ended: close_notify, alert, fault */
  uint8_t wr_closed;                         /* our close_notify or fatal alert went */
  uint8_t owe_update;                        /* update_requested came, not answered yet */
  int fd;
  struct bufferevent *bev, *under;           /* the filter and its socket */
  struct evbuffer_cb_entry *drain_cb;        /* on under's output, while reading stalls */
  struct evbuffer_cb_entry *taken_cb;        /* on the session's input, while it is full */
  struct direction rd, wr;
};

/* Two cipher contexts (sealing, opening) and two record buffers serve
 * every connection of this single-threaded worker; a session keeps only
 * its keys. A context remembers whose key it holds, so that the records
 * of a bulk transfer, which come one session at a time, set only their
 * nonce and not the whole key schedule. */
static EVP_CIPHER_CTX *seal_ctx, *open_ctx;
static const struct direction *seal_key, *open_key;
static uint8_t plain_buf[MAX_CIPHER];
static uint8_t record_buf[HEADER_LEN + MAX_PLAIN + 1 + TAG_LEN];
static EVP_CIPHER *aes128gcm, *aes256gcm, *chacha;   /* fetched once */

/* Our filters by descriptor, for tlsrec_close_notify: libevent offers no
 * way back from a filter bufferevent to its context. One pointer per
 * descriptor of this (single-threaded) worker. */
static struct tlsrec **by_fd;
static size_t by_fd_len;

static int remember(struct tlsrec *t) {
  size_t fd = (size_t)t->fd;
  if (fd >= by_fd_len) {
    size_t len = by_fd_len ? by_fd_len : 64;
    while (len <= fd) len *= 2;
    struct tlsrec **p = realloc(by_fd, len * sizeof *p);
    if (!p) return -1;
    memset(p + by_fd_len, 0, (len - by_fd_len) * sizeof *p);
    by_fd = p;
    by_fd_len = len;
  }
  by_fd[fd] = t;
  return 0;
}

/* A descriptor is reused as soon as it is closed, possibly before the
 * filter that had it is freed: the slot is checked against its filter. */
static struct tlsrec *lookup(struct bufferevent *bev) {
  struct bufferevent *under = bufferevent_get_underlying(bev);
  int fd = under ? bufferevent_getfd(under) : -1;
  if (fd < 0 || (size_t)fd >= by_fd_len) return NULL;
  struct tlsrec *t = by_fd[fd];
  return t && t->bev == bev ? t : NULL;
}

/* A direction's key changed or is going away: no context may reuse it. */
static void forget_key(const struct direction *d) {
  if (seal_key == d) seal_key = NULL;
  if (open_key == d) open_key = NULL;
}

static void tlsrec_free(void *p) {
  if (!p) return;
  struct tlsrec *t = p;
  if (t->bev && (size_t)t->fd < by_fd_len && by_fd[t->fd] == t) by_fd[t->fd] = NULL;
  if (t->taken_cb) evbuffer_remove_cb_entry(bufferevent_get_input(t->bev), t->taken_cb);
  forget_key(&t->rd);
  forget_key(&t->wr);
  wipe(p, sizeof(struct tlsrec));
  free(p);
}


/* ---- keys ------------------------------------------------------------------ */

/* HKDF-Expand-Label(secret, label, "", len) for len up to the hash size:
 * one HMAC block, T(1) = HMAC(secret, HkdfLabel || 0x01). */
static void expand_label(const struct tlsrec *t, const uint8_t *secret, const char *label,
                         uint8_t *out, size_t len) {
  uint8_t info[64], md[HMAC_MAX_LEN];
  size_t llen = strlen(label), n = 0;
  info[n++] = (uint8_t)(len >> 8);
  info[n++] = (uint8_t)len;
  info[n++] = (uint8_t)(6 + llen);
  memcpy(info + n, "tls13 ", 6);
  memcpy(info + n + 6, label, llen);
  n += 6 + llen;
  info[n++] = 0;      /* empty context */
  info[n++] = 1;      /* block counter */
  hmac_compute(t->digest, secret, t->secret_len, info, n, md);
  memcpy(out, md, len);
  wipe(md, sizeof md);
}

static void direction_keys(const struct tlsrec *t, struct direction *d) {
  forget_key(d);
  expand_label(t, d->secret, "key", d->key, t->key_len);
  expand_label(t, d->secret, "iv", d->iv, IV_LEN);
}

static void key_update(const struct tlsrec *t, struct direction *d) {
  uint8_t next[MAX_SECRET];
  expand_label(t, d->secret, "traffic upd", next, t->secret_len);
  memcpy(d->secret, next, t->secret_len);
  wipe(next, sizeof next);
  direction_keys(t, d);
  d->seq = 0;
}

static void nonce_of(const struct direction *d, uint8_t nonce[IV_LEN]) {
  memcpy(nonce, d->iv, IV_LEN);
  for (int i = 0; i < 8; i++) nonce[IV_LEN - 1 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* ---- records ---------------------------------------------------------------- */

/* Protects n bytes of type into record_buf; returns the record's length. */
static size_t seal(struct tlsrec *t, uint8_t type, const uint8_t *in, size_t n) {
  size_t body = n + 1 + TAG_LEN;
  uint8_t *r = record_buf, nonce[IV_LEN];
  int l;
  r[0] = CT_APPLICATION;
  r[1] = 3;
  r[2] = 3;
  r[3] = (uint8_t)(body >> 8);
  r[4] = (uint8_t)body;
  nonce_of(&t->wr, nonce);
  int fresh = seal_key != &t->wr;
  seal_key = NULL;   /* until this init has worked */
  if (EVP_EncryptInit_ex(seal_ctx, fresh ? t->cipher : NULL, NULL, fresh ? t->wr.key : NULL,
                         nonce) != 1)
    return 0;
  seal_key = &t->wr;
  if (EVP_EncryptUpdate(seal_ctx, NULL, &l, r, HEADER_LEN) != 1 ||
      EVP_EncryptUpdate(seal_ctx, r + HEADER_LEN, &l, in, (int)n) != 1 ||
      EVP_EncryptUpdate(seal_ctx, r + HEADER_LEN + n, &l, &type, 1) != 1 ||
      EVP_EncryptFinal_ex(seal_ctx, r + HEADER_LEN + n + 1, &l) != 1 ||
      EVP_CIPHER_CTX_ctrl(seal_ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN,
                          r + HEADER_LEN + n + 1) != 1)
    return 0;
  t->wr.seq++;
  return HEADER_LEN + body;
}

/* Opens a whole record (header included) into plain_buf: the content's
 * length and type, or minus the alert it calls for. */
static long open_record(struct tlsrec *t, const uint8_t *r, size_t body, uint8_t *type) {
  uint8_t nonce[IV_LEN];
  int l, l2;
  if (body < TAG_LEN) return -ALERT_BAD_RECORD_MAC;       /* no room for a tag */
  size_t n = body - TAG_LEN;
  if (n > MAX_PLAIN + 1) return -ALERT_RECORD_OVERFLOW;   /* 5.2: content, type and padding */
  nonce_of(&t->rd, nonce);
  int fresh = open_key != &t->rd;
  open_key = NULL;
  if (EVP_DecryptInit_ex(open_ctx, fresh ? t->cipher : NULL, NULL, fresh ? t->rd.key : NULL,
                         nonce) != 1)
    return -ALERT_INTERNAL_ERROR;
  open_key = &t->rd;
  if (EVP_DecryptUpdate(open_ctx, NULL, &l, r, HEADER_LEN) != 1 ||
      EVP_DecryptUpdate(open_ctx, plain_buf, &l, r + HEADER_LEN, (int)n) != 1 ||
      EVP_CIPHER_CTX_ctrl(open_ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                          (void *)(r + HEADER_LEN + n)) != 1 ||
      EVP_DecryptFinal_ex(open_ctx, plain_buf + l, &l2) != 1)
    return -ALERT_BAD_RECORD_MAC;
  t->rd.seq++;
  while (n > 0 && plain_buf[n - 1] == 0) n--;   /* padding */
  if (n == 0) return -ALERT_UNEXPECTED_MESSAGE;  /* 5.4: no content type at all */
  *type = plain_buf[n - 1];
  return (long)(n - 1);
}

/* Sends a record now if nothing is queued ahead (as bev_send does for
 * plain sockets), else queues it behind. */
static void emit(struct tlsrec *t, struct evbuffer *dst, size_t len) {
  size_t done = bev_send_direct(t->under, t->fd, record_buf, len);
  if (done < len) {
    evbuffer_add(dst, record_buf + done, len - done);
    bufferevent_enable(t->under, EV_WRITE);   /* off until a record waits (tlsrec_from_secrets) */
  }
}

/* OpenSSL's last flight of the handshake (its session ticket) and the
 * first record (the greeting, on implicit TLS) leave in one packet. */
static int send_first(struct tlsrec *t, const void *last_flight, size_t flen, const void *first,
                      size_t len) {
  size_t rlen = len ? seal(t, CT_APPLICATION, first, len) : 0;
  if (len && rlen == 0) return -1;
  struct iovec iov[2] = {{(void *)last_flight, flen}, {record_buf, rlen}};
  struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
  ssize_t n = sendmsg(t->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
  size_t done = n > 0 ? (size_t)n : 0;
  struct evbuffer *out = bufferevent_get_output(t->under);
  if (done < flen) evbuffer_add(out, (const uint8_t *)last_flight + done, flen - done);
  done = done > flen ? done - flen : 0;
  if (done < rlen) evbuffer_add(out, record_buf + done, rlen - done);
  if (evbuffer_get_length(out)) bufferevent_enable(t->under, EV_WRITE);
  return 0;
}

/* An alert: a fatal one just before a fault is reported, or our
 * close_notify. Best effort, behind what is queued; it is the last record
 * we seal (6.1, 6.2). */
static void send_alert(struct tlsrec *t, uint8_t level, uint8_t desc) {
  if (t->wr_closed) return;
  const uint8_t a[2] = {level, desc};
  size_t r = seal(t, CT_ALERT, a, sizeof a);
  t->wr_closed = 1;
  if (r) emit(t, bufferevent_get_output(t->under), r);
}

/* Reading ends; alert: the fatal alert to send first, 0 for none (the
 * peer's own alert, a failure of ours to write). */
static void fail(struct tlsrec *t, short what, int alert) {
  if (alert) send_alert(t, ALERT_FATAL, (uint8_t)alert);
  t->closed = 1;
  bufferevent_trigger_event(t->bev, what, BEV_TRIG_DEFER_CALLBACKS);
}

/* Our answer to update_requested (4.6.3): a KeyUpdate sealed under our
 * old key, then ours changes. However many requests came meanwhile, one
 * answer is owed; it leaves when the socket side has room, and always
 * before our next application data. */
static int answer_update(struct tlsrec *t) {
  static const uint8_t ours[] = {HS_KEY_UPDATE, 0, 0, 1, 0};
  t->owe_update = 0;
  if (t->wr_closed) return 0;
  size_t r = seal(t, CT_HANDSHAKE, ours, sizeof ours);
  if (r == 0) return -1;
  emit(t, bufferevent_get_output(t->under), r);
  key_update(t, &t->wr);
  return 0;
}

/* Post-handshake messages: a client may send only KeyUpdate. It changes
 * our read key, so it must end its record (5.1: a message after it would
 * be under the old key). A message split across records is refused: the
 * one legitimate (5 bytes) never needs to be. 0, or the alert to send. */
static int on_handshake(struct tlsrec *t, const uint8_t *p, size_t n) {
  if (n < 5 || p[0] != HS_KEY_UPDATE) return ALERT_UNEXPECTED_MESSAGE;
  if (p[1] != 0 || p[2] != 0 || p[3] != 1) return ALERT_DECODE_ERROR;
  if (p[4] > 1) return ALERT_ILLEGAL_PARAMETER;       /* 4.6.3 */
  if (n > 5) return ALERT_UNEXPECTED_MESSAGE;
  key_update(t, &t->rd);
  if (p[4] == 1) t->owe_update = 1;
  return 0;
}

/* A record other than application data: 0, or the alert to send. */
static int on_control(struct tlsrec *t, uint8_t type, size_t n) {
  if (type == CT_HANDSHAKE) return on_handshake(t, plain_buf, n);
  if (type != CT_ALERT) return ALERT_UNEXPECTED_MESSAGE;   /* 5.4: 21, 22 or 23 */
  if (n != 2) return ALERT_DECODE_ERROR;
  if (plain_buf[1] == ALERT_USER_CANCELED) return 0;       /* a close_notify follows (6.1) */
  /* close_notify is the end of the stream; any other alert is fatal
   * (6.2) and not answered. */
  fail(t, BEV_EVENT_READING | (plain_buf[1] == ALERT_CLOSE_NOTIFY ? BEV_EVENT_EOF : BEV_EVENT_ERROR),
       0);
  return 0;
}

/* A client that sends without reading (a KeyUpdate storm, or commands
 * whose answers it never takes) must not make our output grow: records
 * are no longer opened while the socket side holds FILTER_SOCKET_HIGH,
 * and the socket is no longer read: what came waits in the socket side's
 * input (a read at most). on_drain resumes. A read high-water mark on
 * that input would not do: libevent 2.1 runs the read callback again and
 * again while the input stays over it. The filter's own enabling and
 * disabling only suspends the socket side's reading, so it cannot undo
 * this. */
static void stall(struct tlsrec *t) {
  bufferevent_disable(t->under, EV_READ);
  evbuffer_cb_set_flags(bufferevent_get_output(t->under), t->drain_cb, EVBUFFER_CB_ENABLED);
}

/* Reading goes on after a stall or a full input: on_input again, over
 * what waits, which stops it again if either still holds. */
static void resume(struct tlsrec *t) {
  bufferevent_enable(t->under, EV_READ);
  bufferevent_trigger(t->under, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

static void on_drain(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
  struct tlsrec *t = arg;
  if (!info->n_deleted || evbuffer_get_length(buf) >= FILTER_SOCKET_HIGH) return;
  evbuffer_cb_clear_flags(buf, t->drain_cb, EVBUFFER_CB_ENABLED);
  resume(t);
}

/* The session holds what it was given (while a login is checked, usher
 * sets a read high-water mark on the filter and leaves its input as it
 * is). Records are opened only while their plaintext surely fits under
 * the mark (limit: the room left when on_input was called), and the
 * socket is no longer read until the session takes some: libevent 2.1
 * runs the read callback again and again, without end, while an input
 * is at or over its mark, and the socket side would read on without
 * bound. An empty input always takes a record, so that a mark below a
 * record's size still lets data through. */
static int input_full(struct tlsrec *t, struct evbuffer *dst, size_t mark, size_t body) {
  size_t have = evbuffer_get_length(dst), most = body > TAG_LEN ? body - TAG_LEN - 1 : 0;
  if (have == 0 || have + most < mark) return 0;
  bufferevent_disable(t->under, EV_READ);
  evbuffer_cb_set_flags(dst, t->taken_cb, EVBUFFER_CB_ENABLED);
  return 1;
}

static void on_taken(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
  struct tlsrec *t = arg;
  if (!info->n_deleted) return;
  evbuffer_cb_clear_flags(buf, t->taken_cb, EVBUFFER_CB_ENABLED);
  resume(t);
}

/* Opens one whole record from src into dst (application data) or acts on
 * it. Returns 1 for application data, 0 for anything else. */
static int one_record(struct tlsrec *t, struct evbuffer *src, struct evbuffer *dst, size_t body) {
  const uint8_t *r = evbuffer_pullup(src, (ev_ssize_t)(HEADER_LEN + body));
  uint8_t type = 0;
  long n = open_record(t, r, body, &type);
  evbuffer_drain(src, HEADER_LEN + body);
  if (n >= 0 && type == CT_APPLICATION) {
    evbuffer_add(dst, plain_buf, (size_t)n);
    return 1;
  }
  int alert = n < 0 ? (int)-n : on_control(t, type, (size_t)n);
  if (alert) fail(t, BEV_EVENT_READING | BEV_EVENT_ERROR, alert);
  return 0;
}

/* Socket bytes -> records -> the session's input. The record's outer
 * legacy_record_version is ignored, as 5.1 says. */
static enum bufferevent_filter_result on_input(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *arg) {
  (void)mode;
  struct tlsrec *t = arg;
  struct evbuffer *out = bufferevent_get_output(t->under);
  int produced = 0;
  size_t mark = limit < 0 ? SIZE_MAX : evbuffer_get_length(dst) + (size_t)limit;
  uint8_t h[HEADER_LEN];
  while (!t->closed && evbuffer_copyout(src, h, HEADER_LEN) == HEADER_LEN) {
    if (evbuffer_get_length(out) >= FILTER_SOCKET_HIGH) {
      stall(t);
      break;
    }
    size_t body = (size_t)h[3] << 8 | h[4];
    if (h[0] != CT_APPLICATION || body > MAX_CIPHER) {
      fail(t, BEV_EVENT_READING | BEV_EVENT_ERROR,
           h[0] != CT_APPLICATION ? ALERT_UNEXPECTED_MESSAGE : ALERT_RECORD_OVERFLOW);
      break;
    }
    if (evbuffer_get_length(src) < HEADER_LEN + body) break;
    if (limit >= 0 && input_full(t, dst, mark, body)) break;
    produced |= one_record(t, src, dst, body);
  }
  if (t->owe_update && !t->closed && evbuffer_get_length(out) < FILTER_SOCKET_HIGH &&
      answer_update(t) != 0)
    fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR, 0);
  if (t->closed) evbuffer_drain(src, evbuffer_get_length(src));
  return produced ? BEV_OK : BEV_NEED_MORE;
}

/* The session's output -> records -> the socket. */
static enum bufferevent_filter_result on_output(struct evbuffer *src, struct evbuffer *dst,
                                                ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                                void *arg) {
  (void)mode;
  struct tlsrec *t = arg;
  size_t moved = 0, n;
  if (t->wr_closed) {   /* after our close_notify or a fatal alert nothing more is sealed */
    evbuffer_drain(src, evbuffer_get_length(src));
    return BEV_OK;
  }
  if (t->owe_update && evbuffer_get_length(src) && answer_update(t) != 0) {
    fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR, 0);
    return BEV_ERROR;
  }
  while ((n = evbuffer_get_length(src)) > 0 && (limit < 0 || moved < (size_t)limit)) {
    if (n > MAX_PLAIN) n = MAX_PLAIN;
    size_t len = seal(t, CT_APPLICATION, evbuffer_pullup(src, (ev_ssize_t)n), n);
    if (len == 0) {
      fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR, 0);
      return BEV_ERROR;
    }
    emit(t, dst, len);
    evbuffer_drain(src, n);
    moved += len;
  }
  return BEV_OK;
}

int tlsrec_close_notify(struct bufferevent *bev) {
  struct tlsrec *t = lookup(bev);
  if (!t) return -1;
  bufferevent_flush(bev, EV_WRITE, BEV_FLUSH);   /* the session's last bytes go first */
  send_alert(t, ALERT_WARNING, ALERT_CLOSE_NOTIFY);
  return 0;
}

/* ---- making a record layer -------------------------------------------------- */

/* The worker's contexts and ciphers, made once: fetching a cipher by
 * name is slow in OpenSSL 3, and a legacy EVP_aes_*() fetches at each
 * init. */
static int worker_setup(void) {
  if (seal_ctx) return 0;
  aes128gcm = EVP_CIPHER_fetch(NULL, "AES-128-GCM", NULL);
  aes256gcm = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  chacha = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
  seal_ctx = EVP_CIPHER_CTX_new();
  open_ctx = EVP_CIPHER_CTX_new();
  return aes128gcm && aes256gcm && chacha && seal_ctx && open_ctx ? 0 : -1;
}

static int choose_suite(struct tlsrec *t, int suite_id) {
  switch (suite_id) {
  case 0x1301:   /* TLS_AES_128_GCM_SHA256 */
    t->cipher = aes128gcm, t->digest = HMAC_SHA256, t->key_len = 16, t->secret_len = 32;
    return 0;
  case 0x1302:   /* TLS_AES_256_GCM_SHA384 */
    t->cipher = aes256gcm, t->digest = HMAC_SHA384, t->key_len = 32, t->secret_len = 48;
    return 0;
  case 0x1303:   /* TLS_CHACHA20_POLY1305_SHA256 */
    t->cipher = chacha, t->digest = HMAC_SHA256, t->key_len = 32, t->secret_len = 32;
    return 0;
  default:
    return -1;
  }
}

/* The filter over a new socket bufferevent on fd; t is then the filter's. */
static struct bufferevent *start(struct event_base *base, int fd, struct tlsrec *t) {
  struct bufferevent *under = bufferevent_socket_new(base, fd, 0);
  struct bufferevent *bev = under ? bufferevent_filter_new(under, on_input, on_output,
                                                           BEV_OPT_CLOSE_ON_FREE, tlsrec_free, t)
                                  : NULL;
  if (!bev) {
    if (under) bufferevent_free(under);
    tlsrec_free(t);
    return NULL;
  }
  t->fd = fd;
  t->bev = bev;
  t->under = under;
  /* The filter turned the socket's writing on, which with nothing queued
   * costs an epoll round; emit() turns it on once a record waits. */
  bufferevent_disable(under, EV_WRITE);
  t->drain_cb = evbuffer_add_cb(bufferevent_get_output(under), on_drain, t);
  t->taken_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_taken, t);
  if (!t->drain_cb || !t->taken_cb || remember(t) != 0) {
    bufferevent_free(bev);   /* and t */
    return NULL;
  }
  evbuffer_cb_clear_flags(bufferevent_get_output(under), t->drain_cb, EVBUFFER_CB_ENABLED);
  evbuffer_cb_clear_flags(bufferevent_get_input(bev), t->taken_cb, EVBUFFER_CB_ENABLED);
  return bev;
}

struct bufferevent *tlsrec_from_secrets(struct event_base *base, int fd, int suite_id,
                                        const uint8_t *client_secret,
                                        const uint8_t *server_secret, size_t secret_len,
                                        uint64_t rseq, uint64_t wseq) {
  if (worker_setup() != 0) return NULL;
  struct tlsrec *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  if (choose_suite(t, suite_id) != 0 || secret_len != t->secret_len) {
    free(t);
    return NULL;
  }
  memcpy(t->rd.secret, client_secret, secret_len);
  memcpy(t->wr.secret, server_secret, secret_len);
  t->rd.seq = rseq;
  t->wr.seq = wseq;
  direction_keys(t, &t->rd);
  direction_keys(t, &t->wr);
  return start(base, fd, t);
}

int tlsrec_send_first(struct bufferevent *bev, const void *last_flight, size_t flen,
                      const void *first, size_t len) {
  struct tlsrec *t = lookup(bev);
  if (!t) return -1;
  if ((flen || len) && send_first(t, last_flight, flen, first, len) != 0)
    fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR, 0);   /* reported once callbacks are set */
  return 0;
}
