/* usher's TLS 1.3 record layer, for sessions taken over from OpenSSL after
 * the handshake (see tlsrec.h for why). RFC 8446: records in section 5,
 * the key schedule's HKDF-Expand-Label in 7.1, traffic keys in 7.3,
 * KeyUpdate in 4.6.3. */
#include "proxy/tlsrec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>
#include <openssl/tls1.h>

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
#define HS_FINISHED 20
#define HS_KEY_UPDATE 24

struct direction {
  uint64_t seq;
  uint8_t secret[MAX_SECRET];
  uint8_t key[32];
  uint8_t iv[IV_LEN];
};

struct tlsrec {
  /* While OpenSSL does the handshake: the traffic secrets as it derives
   * them, and the records it protects under them (after each side's
   * Finished, every record is). */
  uint8_t have_secret[2];                    /* [0] client's, [1] server's */
  uint8_t after_finished[2];                 /* [0] read, [1] written */
  uint64_t records[2];                       /* [0] read, [1] written */

  /* The record layer. */
  const EVP_CIPHER *cipher;                  /* the worker's, fetched once */
  enum hmac_digest digest;                   /* the suite's hash, for HKDF */
  uint8_t key_len, secret_len;
  uint8_t closed;                            /* close_notify came */
  int fd;
  struct bufferevent *bev, *under;           /* the filter and its socket */
  struct direction rd, wr;
};

static int ex_index = -1;

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

/* A direction's key changed or is going away: no context may reuse it. */
static void forget_key(const struct direction *d) {
  if (seal_key == d) seal_key = NULL;
  if (open_key == d) open_key = NULL;
}

static void tlsrec_free(void *p) {
  if (!p) return;
  struct tlsrec *t = p;
  forget_key(&t->rd);
  forget_key(&t->wr);
  wipe(p, sizeof(struct tlsrec));
  free(p);
}

static void ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  tlsrec_free(ptr);
}

/* ---- watching the handshake ---------------------------------------------- */

static int hex_value(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* The key log callback is armed only around the two traffic secrets we
 * take (see on_message): OpenSSL 3.0 formats every line it logs in hex,
 * one sprintf per byte, and the five lines of a TLS 1.3 handshake cost
 * about 20 us here, against 195 us for all of OpenSSL's work on a resumed
 * handshake (bench/tls_floor.c with a key log). Armed, it gets a line or
 * two we do not want on the way (the exporter secret comes just before
 * the server's traffic secret). Workers are single-threaded, so arming
 * the context for one connection arms it for no other at the same time;
 * a handshake that fails while armed leaves the next one with all five
 * lines, which it takes as it would with the callback always on. */
static void on_keylog(const SSL *ssl, const char *line);

static void keylog_arm(const SSL *ssl, int on) {
  SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl), on ? on_keylog : NULL);
}

/* "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>", and SERVER_... */
static void on_keylog(const SSL *ssl, const char *line) {
  struct tlsrec *t = SSL_get_ex_data(ssl, ex_index);
  if (!t) return;
  int side;
  if (!strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) side = 0;
  else if (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24)) side = 1;
  else return;
  keylog_arm(ssl, 0);
  const char *hex = strchr(line + 24, ' ');
  if (!hex) return;
  hex++;
  size_t n = strlen(hex) / 2;
  if (n != 32 && n != 48) return;
  uint8_t *out = side ? t->wr.secret : t->rd.secret;
  for (size_t i = 0; i < n; i++) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  t->secret_len = (uint8_t)n;
  t->have_secret[side] = 1;
}

/* Counts the records protected under the traffic keys: those after the
 * Finished message of their direction. OpenSSL reports a record's header
 * before the messages in it. A Finished also arms the key log: OpenSSL
 * reports the message before it derives that direction's traffic secret. */
static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
  (void)version;
  struct tlsrec *t = arg;
  int dir = write_p ? 1 : 0;
  if (content_type == SSL3_RT_HEADER) {
    if (t->after_finished[dir]) t->records[dir]++;
  } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
             ((const uint8_t *)buf)[0] == HS_FINISHED) {
    t->after_finished[dir] = 1;
    if (SSL_version(ssl) == TLS1_3_VERSION) keylog_arm(ssl, 1);
  }
}

void tlsrec_ctx_setup(SSL_CTX *ctx) {
  if (ex_index < 0) ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ex_free);
  SSL_CTX_set_keylog_callback(ctx, NULL);   /* armed per connection (on_message) */
}

int tlsrec_watch(SSL *ssl) {
  if (ex_index < 0) return -1;
  struct tlsrec *t = calloc(1, sizeof *t);
  if (!t || SSL_set_ex_data(ssl, ex_index, t) != 1) {
    free(t);
    return -1;
  }
  SSL_set_msg_callback(ssl, on_message);
  SSL_set_msg_callback_arg(ssl, t);
  return 0;
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
 * length and type, or -1 (bad tag, no content type). */
static long open_record(struct tlsrec *t, const uint8_t *r, size_t body, uint8_t *type) {
  uint8_t nonce[IV_LEN];
  int l, l2;
  if (body < TAG_LEN + 1) return -1;
  size_t n = body - TAG_LEN;
  nonce_of(&t->rd, nonce);
  int fresh = open_key != &t->rd;
  open_key = NULL;
  if (EVP_DecryptInit_ex(open_ctx, fresh ? t->cipher : NULL, NULL, fresh ? t->rd.key : NULL,
                         nonce) != 1)
    return -1;
  open_key = &t->rd;
  if (EVP_DecryptUpdate(open_ctx, NULL, &l, r, HEADER_LEN) != 1 ||
      EVP_DecryptUpdate(open_ctx, plain_buf, &l, r + HEADER_LEN, (int)n) != 1 ||
      EVP_CIPHER_CTX_ctrl(open_ctx, EVP_CTRL_AEAD_SET_TAG, TAG_LEN,
                          (void *)(r + HEADER_LEN + n)) != 1 ||
      EVP_DecryptFinal_ex(open_ctx, plain_buf + l, &l2) != 1)
    return -1;
  t->rd.seq++;
  while (n > 0 && plain_buf[n - 1] == 0) n--;   /* padding */
  if (n == 0) return -1;
  *type = plain_buf[n - 1];
  return (long)(n - 1);
}

/* Sends a record now if nothing is queued ahead (as bev_send does for
 * plain sockets), else queues it behind. */
static void emit(struct tlsrec *t, struct evbuffer *dst, size_t len) {
  size_t done = bev_send_direct(t->under, t->fd, record_buf, len);
  if (done < len) {
    evbuffer_add(dst, record_buf + done, len - done);
    bufferevent_enable(t->under, EV_WRITE);   /* off until a record waits (tlsrec_takeover) */
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

/* Post-handshake messages: only KeyUpdate is expected of a client. */
static int on_handshake(struct tlsrec *t, const uint8_t *p, size_t n) {
  while (n >= 4) {
    size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (p[0] != HS_KEY_UPDATE || len != 1 || n < 5 || p[4] > 1) return -1;
    key_update(t, &t->rd);
    if (p[4] == 1) {   /* update_requested: answer with ours, then switch */
      static const uint8_t ours[] = {HS_KEY_UPDATE, 0, 0, 1, 0};
      size_t r = seal(t, CT_HANDSHAKE, ours, sizeof ours);
      if (r == 0) return -1;
      emit(t, bufferevent_get_output(t->under), r);
      key_update(t, &t->wr);
    }
    p += 5;
    n -= 5;
  }
  return n == 0 ? 0 : -1;
}

static void fail(struct tlsrec *t, short what) {
  t->closed = 1;
  bufferevent_trigger_event(t->bev, what, BEV_TRIG_DEFER_CALLBACKS);
}

/* Socket bytes -> records -> the session's input. */
static enum bufferevent_filter_result on_input(struct evbuffer *src, struct evbuffer *dst,
                                               ev_ssize_t limit, enum bufferevent_flush_mode mode,
                                               void *arg) {
  (void)mode;
  struct tlsrec *t = arg;
  int produced = 0;
  uint8_t h[HEADER_LEN];
  while (!t->closed && evbuffer_copyout(src, h, HEADER_LEN) == HEADER_LEN) {
    size_t body = (size_t)h[3] << 8 | h[4];
    if (h[0] != CT_APPLICATION || h[1] != 3 || body > MAX_CIPHER) {
      fail(t, BEV_EVENT_READING | BEV_EVENT_ERROR);
      break;
    }
    if (evbuffer_get_length(src) < HEADER_LEN + body) break;
    const uint8_t *r = evbuffer_pullup(src, (ev_ssize_t)(HEADER_LEN + body));
    uint8_t type = 0;
    long n = open_record(t, r, body, &type);
    evbuffer_drain(src, HEADER_LEN + body);
    if (n >= 0 && type == CT_APPLICATION) {
      evbuffer_add(dst, plain_buf, (size_t)n);
      produced = 1;
    } else if (n >= 2 && type == CT_ALERT && plain_buf[1] == 0) {
      fail(t, BEV_EVENT_READING | BEV_EVENT_EOF);   /* close_notify */
    } else if (n < 0 || type != CT_HANDSHAKE || on_handshake(t, plain_buf, (size_t)n) != 0) {
      fail(t, BEV_EVENT_READING | BEV_EVENT_ERROR);
    }
    if (limit >= 0 && evbuffer_get_length(dst) >= (size_t)limit) break;
  }
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
  while ((n = evbuffer_get_length(src)) > 0 && (limit < 0 || moved < (size_t)limit)) {
    if (n > MAX_PLAIN) n = MAX_PLAIN;
    size_t len = seal(t, CT_APPLICATION, evbuffer_pullup(src, (ev_ssize_t)n), n);
    if (len == 0) {
      fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR);
      return BEV_ERROR;
    }
    emit(t, dst, len);
    evbuffer_drain(src, n);
    moved += len;
  }
  return BEV_OK;
}

/* ---- the take-over ---------------------------------------------------------- */

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

static int choose_cipher(struct tlsrec *t, const SSL_CIPHER *c) {
  switch (SSL_CIPHER_get_id(c)) {
  case TLS1_3_CK_AES_128_GCM_SHA256:
    t->cipher = aes128gcm, t->digest = HMAC_SHA256, t->key_len = 16;
    break;
  case TLS1_3_CK_AES_256_GCM_SHA384:
    t->cipher = aes256gcm, t->digest = HMAC_SHA384, t->key_len = 32;
    break;
  case TLS1_3_CK_CHACHA20_POLY1305_SHA256:
    t->cipher = chacha, t->digest = HMAC_SHA256, t->key_len = 32;
    break;
  default:
    return -1;
  }
  return t->secret_len == (t->digest == HMAC_SHA384 ? 48 : 32) ? 0 : -1;
}

struct bufferevent *tlsrec_takeover(struct event_base *base, int fd, SSL *ssl,
                                    const void *last_flight, size_t flen, const void *first,
                                    size_t len) {
  struct tlsrec *t = ex_index < 0 ? NULL : SSL_get_ex_data(ssl, ex_index);
  if (!t || SSL_version(ssl) != TLS1_3_VERSION || !t->have_secret[0] || !t->have_secret[1] ||
      !t->after_finished[0] || !t->after_finished[1] || SSL_has_pending(ssl) ||
      worker_setup() != 0 || choose_cipher(t, SSL_get_current_cipher(ssl)) != 0)
    return NULL;
  struct bufferevent *under = bufferevent_socket_new(base, fd, 0);
  struct bufferevent *bev = under ? bufferevent_filter_new(under, on_input, on_output,
                                                           BEV_OPT_CLOSE_ON_FREE, tlsrec_free, t)
                                  : NULL;
  if (!bev) {
    if (under) bufferevent_free(under);
    return NULL;
  }
  /* The filter turned the socket's writing on, which with nothing queued
   * costs an epoll round; emit() turns it on once a record waits. */
  bufferevent_disable(under, EV_WRITE);
  SSL_set_ex_data(ssl, ex_index, NULL);   /* ours now */
  SSL_set_msg_callback(ssl, NULL);
  t->rd.seq = t->records[0];
  t->wr.seq = t->records[1];
  direction_keys(t, &t->rd);
  direction_keys(t, &t->wr);
  t->fd = fd;
  t->bev = bev;
  t->under = under;
  if ((flen || len) && send_first(t, last_flight, flen, first, len) != 0)
    fail(t, BEV_EVENT_WRITING | BEV_EVENT_ERROR);   /* reported once callbacks are set */
  return bev;
}
