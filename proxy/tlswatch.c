/* Watching OpenSSL's handshake for what usher's record layer needs to
 * take the session over (see tlswatch.h): the two traffic secrets, from
 * the key log, and how many records OpenSSL protected under them, from
 * the message callback. */
#include "proxy/tlswatch.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/tls1.h>

#include "common/util.h"
#include "proxy/tlsrec.h"

#define HS_FINISHED 20
#define MAX_SECRET 48                        /* SHA-384 */

/* While OpenSSL does the handshake: the traffic secrets as it derives
 * them, and the records it protects under them (after each side's
 * Finished, every record is). It lives in the SSL's ex data and dies,
 * wiped, with the SSL. */
struct tlswatch {
  uint8_t have_secret[2];                    /* [0] client's, [1] server's */
  uint8_t after_finished[2];                 /* [0] read, [1] written */
  uint64_t records[2];                       /* [0] read, [1] written */
  uint8_t secret_len;
  uint8_t secret[2][MAX_SECRET];             /* [0] client's, [1] server's */
};

static int ex_index = -1;

static void ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  if (!ptr) return;
  wipe(ptr, sizeof(struct tlswatch));
  free(ptr);
}

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
  struct tlswatch *t = SSL_get_ex_data(ssl, ex_index);
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
  uint8_t *out = side ? t->secret[1] : t->secret[0];
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
  struct tlswatch *t = arg;
  int dir = write_p ? 1 : 0;
  if (content_type == SSL3_RT_HEADER) {
    if (t->after_finished[dir]) t->records[dir]++;
  } else if (content_type == SSL3_RT_HANDSHAKE && len > 0 &&
             ((const uint8_t *)buf)[0] == HS_FINISHED) {
    t->after_finished[dir] = 1;
    if (SSL_version(ssl) == TLS1_3_VERSION) keylog_arm(ssl, 1);
  }
}

void tlswatch_ctx_setup(SSL_CTX *ctx) {
  if (ex_index < 0) ex_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, ex_free);
  SSL_CTX_set_keylog_callback(ctx, NULL);   /* armed per connection (on_message) */
}

int tlswatch_start(SSL *ssl) {
  if (ex_index < 0) return -1;
  struct tlswatch *t = calloc(1, sizeof *t);
  if (!t || SSL_set_ex_data(ssl, ex_index, t) != 1) {
    free(t);
    return -1;
  }
  SSL_set_msg_callback(ssl, on_message);
  SSL_set_msg_callback_arg(ssl, t);
  return 0;
}

struct bufferevent *tlswatch_takeover(struct event_base *base, int fd, SSL *ssl,
                                      const void *last_flight, size_t flen, const void *first,
                                      size_t len) {
  /* w: what watched the handshake; it dies (wiped) with the SSL. */
  const struct tlswatch *w = ex_index < 0 ? NULL : SSL_get_ex_data(ssl, ex_index);
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  if (!w || !c || SSL_version(ssl) != TLS1_3_VERSION || !w->have_secret[0] ||
      !w->have_secret[1] || !w->after_finished[0] || !w->after_finished[1] ||
      SSL_has_pending(ssl))
    return NULL;
  struct bufferevent *bev =
      tlsrec_from_secrets(base, fd, SSL_CIPHER_get_protocol_id(c), w->secret[0], w->secret[1],
                          w->secret_len, w->records[0], w->records[1]);
  if (!bev) return NULL;
  SSL_set_msg_callback(ssl, NULL);
  tlsrec_send_first(bev, last_flight, flen, first, len);
  return bev;
}
