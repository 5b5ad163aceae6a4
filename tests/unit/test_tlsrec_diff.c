/* usher's TLS 1.3 record layer (proxy/tlsrec.c) against OpenSSL itself.
 *
 * Two OpenSSL SSL objects make a real TLS 1.3 handshake over memory BIOs,
 * for each suite tlsrec takes over. The server's side then goes to
 * tlsrec, on one end of a socket pair, either by the take-over the worker
 * does (tlswatch_start and tlswatch_takeover, which count the records OpenSSL
 * protected) or from the traffic secrets the client's key log reports
 * (tlsrec_from_secrets). The client stays an OpenSSL SSL, and the test
 * carries the bytes between it and the socket, cut at random points.
 *
 * In the second way the server's SSL is not freed: it is the shadow, an
 * OpenSSL record layer holding the same session as tlsrec. It is given
 * every byte the client sends, in the same pieces, and the same
 * plaintext to send: it must deliver what tlsrec delivers, reach the
 * same verdict on a corrupted stream, and write the same bytes, record
 * for record (AEAD sealing is deterministic, and neither pads).
 *
 * The tests: random lives of many sessions at once (test_streams), a
 * byte flipped in a client's flight (test_corruption), flights cut at
 * every byte (test_every_cut), a session holding its input while the
 * client sends on (test_held_input), a KeyUpdate storm from a client
 * that never reads (test_key_update_storm).
 *
 * The random choices come from one seed, printed; TLSREC_DIFF_SEED sets
 * it, TLSREC_DIFF_SCALE multiplies the work. A replay makes the same
 * choices, but how the socket pair cuts what it carries may differ from
 * run to run, and with it what follows. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "common/bev_send.h"
#include "proxy/tlsrec.h"
#include "proxy/tlswatch.h"

#define MAX_PLAIN 16384
#define TAG_LEN 16
#define SUITES 3

static const struct suite {
  const char *name;
  int id;
} suites[SUITES] = {
    {"TLS_AES_128_GCM_SHA256", 0x1301},
    {"TLS_AES_256_GCM_SHA384", 0x1302},
    {"TLS_CHACHA20_POLY1305_SHA256", 0x1303},
};

/* ---- randomness ------------------------------------------------------------ */

static uint64_t seed, rng;
static unsigned scale = 1;

static uint64_t rnd(void) {   /* xorshift64* */
  rng ^= rng >> 12;
  rng ^= rng << 25;
  rng ^= rng >> 27;
  return rng * 0x2545F4914F6CDD1DULL;
}

/* Each test's own sequence from the seed (xorshift must not start at 0). */
static void reseed(uint64_t salt) {
  rng = (seed ^ salt) * 0x9E3779B97F4A7C15ULL;
  if (!rng) rng = 1;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static void fill(uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

/* A plaintext size: mostly small, often around one record's limit,
 * sometimes several records. */
static size_t random_size(void) {
  switch (below(6)) {
  case 0: return 1 + below(16);
  case 1: return 1 + below(512);
  case 2: return 1 + below(MAX_PLAIN);
  case 3: return MAX_PLAIN - 2 + below(5);   /* 16382 .. 16386 */
  case 4: return 1 + below(3 * MAX_PLAIN + 100);
  default: return 1 + below(4096);
  }
}

/* ---- contexts and a certificate -------------------------------------------- */

static SSL_CTX *client_ctx, *watched_ctx, *plain_ctx;
static int client_padding;   /* off where the test counts a record's plaintext */

/* The secrets the client's key log reported for the handshake under way. */
static struct {
  uint8_t client[48], server[48];
  size_t len;
  int have;
} logged;

static int unhex(const char *h, uint8_t *out, size_t max) {
  size_t n = strlen(h) / 2;
  if (n > max) return -1;
  for (size_t i = 0; i < n; i++) {
    unsigned v;
    if (sscanf(h + 2 * i, "%2x", &v) != 1) return -1;
    out[i] = (uint8_t)v;
  }
  return (int)n;
}

/* "CLIENT_TRAFFIC_SECRET_0 <client random> <secret>", and SERVER_... */
static void on_client_keylog(const SSL *ssl, const char *line) {
  (void)ssl;
  int server = !strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24);
  if (!server && strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) return;
  const char *hex = strchr(line + 24, ' ');
  assert_non_null(hex);
  int n = unhex(hex + 1, server ? logged.server : logged.client, 48);
  assert_true(n == 32 || n == 48);
  logged.len = (size_t)n;
  logged.have |= server ? 2 : 1;
}

static void make_cert(EVP_PKEY **key, X509 **cert) {
  *key = EVP_EC_gen("P-256");
  assert_non_null(*key);
  X509 *x = X509_new();
  assert_non_null(x);
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_NAME *name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"usher test", -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  X509_set_pubkey(x, *key);
  assert_true(X509_sign(x, *key, EVP_sha256()) > 0);
  *cert = x;
}

static SSL_CTX *tls13_ctx(const SSL_METHOD *method) {
  SSL_CTX *ctx = SSL_CTX_new(method);
  assert_non_null(ctx);
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  return ctx;
}

static SSL_CTX *server_ctx(EVP_PKEY *key, X509 *cert) {
  SSL_CTX *ctx = tls13_ctx(TLS_server_method());
  assert_int_equal(SSL_CTX_use_certificate(ctx, cert), 1);
  assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return ctx;
}

static int setup_contexts(void **state) {
  (void)state;
  setvbuf(stdout, NULL, _IOLBF, 0);   /* a line at a time, even into a pipe */
  const char *s = getenv("TLSREC_DIFF_SEED");
  seed = s ? strtoull(s, NULL, 0) : 0x75736865720a2026ULL;
  const char *k = getenv("TLSREC_DIFF_SCALE");
  if (k && atoi(k) > 0) scale = (unsigned)atoi(k);
  printf("tlsrec_diff: seed 0x%llx (TLSREC_DIFF_SEED sets it), scale %u\n",
         (unsigned long long)seed, scale);
  EVP_PKEY *key;
  X509 *cert;
  make_cert(&key, &cert);
  client_ctx = tls13_ctx(TLS_client_method());
  SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_keylog_callback(client_ctx, on_client_keylog);
  watched_ctx = server_ctx(key, cert);
  tlswatch_ctx_setup(watched_ctx);
  plain_ctx = server_ctx(key, cert);
  EVP_PKEY_free(key);
  X509_free(cert);
  return 0;
}

static int teardown_contexts(void **state) {
  (void)state;
  SSL_CTX_free(client_ctx);
  SSL_CTX_free(watched_ctx);
  SSL_CTX_free(plain_ctx);
  return 0;
}

/* ---- a session --------------------------------------------------------------- */

struct session {
  struct event_base *base;
  int fd[2];                    /* [0] tlsrec's, [1] the test's */
  int suite;
  struct bufferevent *bev;      /* tlsrec */
  SSL *client, *shadow;         /* shadow: NULL after a take-over */
  short events;                 /* tlsrec's events, as the session sees them */
  /* Plaintext sent and not yet seen on the other side, per reader. */
  struct evbuffer *want_tlsrec, *want_shadow, *want_client;
  /* Bytes on the way: the client's records, tlsrec's. */
  struct evbuffer *wire_c2s, *wire_s2c;
  /* tlsrec's bytes and the shadow's, compared as they come. */
  struct evbuffer *out_tlsrec, *out_shadow;
  int client_closed, client_failed, client_alert;   /* alert: as SSL_CB_READ_ALERT gives it */
  int shadow_closed, shadow_failed;
  int deaf;                     /* the client reads nothing off the socket */
  int holding;                  /* the session leaves tlsrec's input alone */
  size_t held_len, same_reads;  /* and how often it was called over the same input */
  int paused;                   /* the session's reading is disabled */
  int different_answers;        /* after a fault each side's last words are its own */
  size_t got_tlsrec, got_shadow; /* plaintext bytes each delivered, checked */
  size_t verified;              /* plaintext bytes checked, in all */
};

static struct {
  unsigned sessions, takeovers, key_updates[2], closes[2], corruptions;
  unsigned long long bytes, compared;   /* compared: of tlsrec's bytes, with the shadow's */
  unsigned alerts[256];
} tally;

/* What tlsrec delivered is checked and taken, unless the session holds
 * its input as usher does while a login is checked (a read high-water
 * mark, the input left where it is). */
static void consume(struct session *s) {
  struct evbuffer *in = bufferevent_get_input(s->bev);
  size_t n = evbuffer_get_length(in);
  assert_true(evbuffer_get_length(s->want_tlsrec) >= n);
  assert_memory_equal(evbuffer_pullup(in, (ev_ssize_t)n),
                      evbuffer_pullup(s->want_tlsrec, (ev_ssize_t)n), n);
  evbuffer_drain(in, n);
  evbuffer_drain(s->want_tlsrec, n);
  s->got_tlsrec += n;
  s->verified += n;
}

/* A read callback that runs again and again over the same held input is
 * libevent 2.1 going round without end: an input at or over its read
 * high-water mark is handed to the callback once more on every turn. */
static void on_bev_read(struct bufferevent *bev, void *arg) {
  struct session *s = arg;
  if (!s->holding) {
    consume(s);
    return;
  }
  size_t n = evbuffer_get_length(bufferevent_get_input(bev));
  s->same_reads = n == s->held_len ? s->same_reads + 1 : 0;
  s->held_len = n;
  assert_true(s->same_reads < 1000);
}

static void on_bev_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct session *s = arg;
  s->events |= what;
}

static void on_client_info(const SSL *ssl, int where, int ret) {
  if (!(where & SSL_CB_READ_ALERT)) return;
  struct session *s = SSL_get_app_data(ssl);
  s->client_alert = ret;
}

/* Everything a memory BIO holds, appended to out (and to copy). */
static void drain_bio(BIO *bio, struct evbuffer *out, struct evbuffer *copy) {
  char buf[16384];
  int n;
  while ((n = BIO_read(bio, buf, sizeof buf)) > 0) {
    evbuffer_add(out, buf, (size_t)n);
    if (copy) evbuffer_add(copy, buf, (size_t)n);
  }
}

/* tlsrec's bytes and the shadow's must be the same, as far as both go. */
static void compare_outputs(struct session *s) {
  if (!s->shadow || s->different_answers) return;
  drain_bio(SSL_get_wbio(s->shadow), s->out_shadow, NULL);
  size_t a = evbuffer_get_length(s->out_tlsrec), b = evbuffer_get_length(s->out_shadow);
  size_t n = a < b ? a : b;
  if (n == 0) return;
  assert_memory_equal(evbuffer_pullup(s->out_tlsrec, (ev_ssize_t)n),
                      evbuffer_pullup(s->out_shadow, (ev_ssize_t)n), n);
  evbuffer_drain(s->out_tlsrec, n);
  evbuffer_drain(s->out_shadow, n);
  tally.compared += n;
}

/* The event loop runs, then what tlsrec wrote is taken off the socket. */
static void pump(struct session *s, int turns) {
  for (int i = 0; i < turns; i++) event_base_loop(s->base, EVLOOP_NONBLOCK);
  if (s->deaf) return;
  uint8_t buf[65536];
  ssize_t n;
  while ((n = recv(s->fd[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) {
    evbuffer_add(s->wire_s2c, buf, (size_t)n);
    if (s->shadow && !s->different_answers) evbuffer_add(s->out_tlsrec, buf, (size_t)n);
  }
  compare_outputs(s);
}

/* An SSL reads all it can; plaintext is checked against want. */
static int read_all(SSL *ssl, struct evbuffer *want, size_t *verified, size_t *got) {
  static uint8_t buf[4 * MAX_PLAIN];
  for (;;) {
    ERR_clear_error();
    int n = SSL_read(ssl, buf, sizeof buf);
    if (n > 0) {
      assert_true(evbuffer_get_length(want) >= (size_t)n);
      assert_memory_equal(buf, evbuffer_pullup(want, n), (size_t)n);
      evbuffer_drain(want, (size_t)n);
      *verified += (size_t)n;
      if (got) *got += (size_t)n;
      continue;
    }
    return SSL_get_error(ssl, n);
  }
}

static void client_read(struct session *s) {
  if (s->client_closed || s->client_failed) return;
  int e = read_all(s->client, s->want_client, &s->verified, NULL);
  if (e == SSL_ERROR_ZERO_RETURN) s->client_closed = 1;
  else if (e != SSL_ERROR_WANT_READ) s->client_failed = 1;
  drain_bio(SSL_get_wbio(s->client), s->wire_c2s, NULL);
}

static void shadow_read(struct session *s) {
  if (!s->shadow || s->shadow_closed || s->shadow_failed) return;
  int e = read_all(s->shadow, s->want_shadow, &s->verified, &s->got_shadow);
  if (e == SSL_ERROR_ZERO_RETURN) s->shadow_closed = 1;
  else if (e != SSL_ERROR_WANT_READ) s->shadow_failed = 1;
  compare_outputs(s);
}

/* What the socket takes of n bytes, the loop running when it is full;
 * less than n only when tlsrec does not read (held, paused, stalled). */
static size_t write_some(struct session *s, const void *p, size_t n) {
  size_t done = 0;
  for (int full = 0; done < n && full < 3;) {
    ssize_t w = send(s->fd[1], (const uint8_t *)p + done, n - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w > 0) {
      done += (size_t)w;
      full = 0;
    } else {
      full++;
      pump(s, 1);
    }
  }
  return done;
}

static void write_socket(struct session *s, const void *p, size_t n) {
  assert_int_equal(write_some(s, p, n), n);
}

/* Up to len bytes of the client's records go to tlsrec (and the shadow),
 * in random pieces, each given its own turn of the loop: records are cut
 * anywhere, and several may come in one read. */
static void deliver_to_server(struct session *s, size_t len) {
  size_t avail = evbuffer_get_length(s->wire_c2s);
  if (len > avail) len = avail;
  while (len > 0) {
    size_t piece = below(3) == 0 ? 1 + below(8) : 1 + below(2 * MAX_PLAIN + 100);
    if (piece > len) piece = len;
    const uint8_t *p = evbuffer_pullup(s->wire_c2s, (ev_ssize_t)piece);
    piece = write_some(s, p, piece);
    if (piece == 0) break;
    if (s->shadow) {
      assert_int_equal(BIO_write(SSL_get_rbio(s->shadow), p, (int)piece), (int)piece);
      shadow_read(s);
    }
    evbuffer_drain(s->wire_c2s, piece);
    len -= piece;
    pump(s, 2);
  }
  pump(s, 4);
}

/* Up to len bytes of tlsrec's go to the client, in random pieces. */
static void deliver_to_client(struct session *s, size_t len) {
  pump(s, 2);
  size_t avail = evbuffer_get_length(s->wire_s2c);
  if (len > avail) len = avail;
  while (len > 0) {
    size_t piece = below(3) == 0 ? 1 + below(8) : 1 + below(2 * MAX_PLAIN + 100);
    if (piece > len) piece = len;
    const uint8_t *p = evbuffer_pullup(s->wire_s2c, (ev_ssize_t)piece);
    assert_int_equal(BIO_write(SSL_get_rbio(s->client), p, (int)piece), (int)piece);
    evbuffer_drain(s->wire_s2c, piece);
    len -= piece;
    client_read(s);
  }
}

static void client_write(struct session *s, size_t n) {
  uint8_t *p = malloc(n);
  fill(p, n);
  assert_int_equal(SSL_write(s->client, p, (int)n), (int)n);
  evbuffer_add(s->want_tlsrec, p, n);
  if (s->shadow) evbuffer_add(s->want_shadow, p, n);
  drain_bio(SSL_get_wbio(s->client), s->wire_c2s, NULL);
  free(p);
}

/* The same plaintext into tlsrec and into the shadow; the loop runs
 * after it unless the write is to stay queued. */
static void server_write_queued(struct session *s, size_t n, int queued) {
  uint8_t *p = malloc(n);
  fill(p, n);
  assert_int_equal(bufferevent_write(s->bev, p, n), 0);
  if (s->shadow) {
    assert_int_equal(SSL_write(s->shadow, p, (int)n), (int)n);
  }
  evbuffer_add(s->want_client, p, n);
  free(p);
  if (!queued) pump(s, 2);
}

static void server_write(struct session *s, size_t n) { server_write_queued(s, n, 0); }

static void client_key_update(struct session *s, int type) {
  assert_int_equal(SSL_key_update(s->client, type), 1);
  assert_int_equal(SSL_do_handshake(s->client), 1);   /* sends it now */
  drain_bio(SSL_get_wbio(s->client), s->wire_c2s, NULL);
  tally.key_updates[type == SSL_KEY_UPDATE_REQUESTED]++;
}

/* The number of whole records in a buffer of them. */
static uint64_t count_records(const uint8_t *p, size_t n) {
  uint64_t count = 0;
  while (n >= 5) {
    size_t len = 5 + ((size_t)p[3] << 8 | p[4]);
    assert_true(len <= n);
    p += len;
    n -= len;
    count++;
  }
  assert_int_equal(n, 0);
  return count;
}

static void handshake(SSL *client, SSL *server) {
  int done = 0;
  for (int i = 0; i < 10 && !done; i++) {
    int rc = SSL_do_handshake(client);
    assert_true(rc == 1 || SSL_get_error(client, rc) == SSL_ERROR_WANT_READ);
    char buf[16384];
    int n;
    while ((n = BIO_read(SSL_get_wbio(client), buf, sizeof buf)) > 0)
      BIO_write(SSL_get_rbio(server), buf, n);
    int rs = SSL_do_handshake(server);
    assert_true(rs == 1 || SSL_get_error(server, rs) == SSL_ERROR_WANT_READ);
    done = rs == 1;
    if (!done)   /* the server's last flight (tickets) stays, for tlsrec to send */
      while ((n = BIO_read(SSL_get_wbio(server), buf, sizeof buf)) > 0)
        BIO_write(SSL_get_rbio(client), buf, n);
  }
  assert_true(done);
  assert_int_equal(SSL_version(server), TLS1_3_VERSION);
}

static SSL *ssl_over_memory(SSL_CTX *ctx, const char *suite) {
  SSL *ssl = SSL_new(ctx);
  assert_non_null(ssl);
  BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(rbio, -1);   /* empty: try again, not end of file */
  SSL_set_bio(ssl, rbio, wbio);
  assert_int_equal(SSL_set_ciphersuites(ssl, suite), 1);
  return ssl;
}

/* A session of the given suite; takeover: as the worker hands it over,
 * else from the key log's secrets, with the shadow. */
static struct session *session_new(struct event_base *base, int suite, int takeover) {
  struct session *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->base = base;
  s->suite = suite;
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, s->fd), 0);
  evutil_make_socket_nonblocking(s->fd[0]);
  evutil_make_socket_nonblocking(s->fd[1]);
  s->want_tlsrec = evbuffer_new();
  s->want_shadow = evbuffer_new();
  s->want_client = evbuffer_new();
  s->wire_c2s = evbuffer_new();
  s->wire_s2c = evbuffer_new();
  s->out_tlsrec = evbuffer_new();
  s->out_shadow = evbuffer_new();

  s->client = ssl_over_memory(client_ctx, suites[suite].name);
  SSL_set_connect_state(s->client);
  /* Records of every size and padding from the client, at times. */
  if (below(3) == 0) SSL_set_max_send_fragment(s->client, 512 + below(MAX_PLAIN - 512));
  if (client_padding && below(3) == 0) SSL_set_block_padding(s->client, 1 + below(2048));
  SSL_set_app_data(s->client, s);
  SSL_set_info_callback(s->client, on_client_info);
  SSL *server = ssl_over_memory(takeover ? watched_ctx : plain_ctx, suites[suite].name);
  SSL_set_accept_state(server);
  SSL_set_num_tickets(server, below(3));
  if (takeover) assert_int_equal(tlswatch_start(server), 0);
  memset(&logged, 0, sizeof logged);
  handshake(s->client, server);
  assert_int_equal(SSL_CIPHER_get_protocol_id(SSL_get_current_cipher(server)), suites[suite].id);
  assert_int_equal(logged.have, 3);

  char *flight;
  long flen = BIO_get_mem_data(SSL_get_wbio(server), &flight);
  if (takeover) {
    uint8_t greeting[200];
    size_t glen = below(sizeof greeting);
    fill(greeting, glen);
    evbuffer_add(s->want_client, greeting, glen);
    s->bev = tlswatch_takeover(base, s->fd[0], server, flight, (size_t)flen, greeting, glen);
    assert_non_null(s->bev);
    SSL_free(server);
    tally.takeovers++;
  } else {
    /* The tickets go to the client without tlsrec; tlsrec protects the
     * records after them. */
    uint64_t wseq = count_records((const uint8_t *)flight, (size_t)flen);
    s->bev = tlsrec_from_secrets(base, s->fd[0], suites[suite].id, logged.client, logged.server,
                                 logged.len, 0, wseq);
    assert_non_null(s->bev);
    drain_bio(SSL_get_wbio(server), s->wire_s2c, NULL);
    s->shadow = server;
  }
  bufferevent_setcb(s->bev, on_bev_read, NULL, on_bev_event, s);
  bufferevent_enable(s->bev, EV_READ | EV_WRITE);
  bev_filter_socket_side(s->bev);
  tally.sessions++;
  return s;
}

static void session_free(struct session *s) {
  tally.bytes += s->verified;
  bev_filter_release_fd(s->bev);
  bufferevent_free(s->bev);
  close(s->fd[0]);
  close(s->fd[1]);
  SSL_free(s->client);
  SSL_free(s->shadow);
  evbuffer_free(s->want_tlsrec);
  evbuffer_free(s->want_shadow);
  evbuffer_free(s->want_client);
  evbuffer_free(s->wire_c2s);
  evbuffer_free(s->wire_s2c);
  evbuffer_free(s->out_tlsrec);
  evbuffer_free(s->out_shadow);
  free(s);
}

/* As usher's client_hold_input(): while a login is checked, what the
 * client sends waits in the input, up to a bound. */
static void hold_input(struct session *s, int on) {
  s->holding = on;
  /* A mark under one record's plaintext would have libevent go round:
   * a single record fills the input past it. usher's is 64 KiB. */
  bufferevent_setwatermark(s->bev, EV_READ, 0, on ? MAX_PLAIN + 2 + below(3 * MAX_PLAIN) : 0);
  s->same_reads = 0;
  if (!on) consume(s);
}

/* As the relay's side_pause() and side_resume(). */
static void pause_reading(struct session *s, int on) {
  s->paused = on;
  if (on) bufferevent_disable(s->bev, EV_READ);
  else bufferevent_enable(s->bev, EV_READ);
}

static void go_on_reading(struct session *s) {
  if (s->holding) hold_input(s, 0);
  if (s->paused) pause_reading(s, 0);
}

/* Everything on the way arrives, and all that was sent was read. */
static void settle(struct session *s) {
  go_on_reading(s);
  for (int i = 0; i < 4; i++) {
    deliver_to_server(s, SIZE_MAX);
    deliver_to_client(s, SIZE_MAX);
  }
  assert_int_equal(evbuffer_get_length(s->wire_c2s), 0);
  assert_int_equal(evbuffer_get_length(s->wire_s2c), 0);
  assert_int_equal(evbuffer_get_length(s->want_tlsrec), 0);
  assert_int_equal(evbuffer_get_length(s->want_client), 0);
  if (s->shadow) {
    assert_int_equal(evbuffer_get_length(s->want_shadow), 0);
    assert_int_equal(evbuffer_get_length(s->out_tlsrec), 0);
    assert_int_equal(evbuffer_get_length(s->out_shadow), 0);
  }
  assert_int_equal(s->events, 0);
  assert_false(s->client_failed || s->client_closed || s->shadow_failed || s->shadow_closed);
}

/* One random step of a session's life. */
static void step(struct session *s) {
  size_t r = below(100);
  if (r < 22) {
    client_write(s, random_size());
  } else if (r < 44) {
    server_write(s, random_size());
  } else if (r < 62) {
    deliver_to_server(s, below(3) ? below(3 * MAX_PLAIN) : SIZE_MAX);
  } else if (r < 80) {
    deliver_to_client(s, below(3) ? below(3 * MAX_PLAIN) : SIZE_MAX);
  } else if (r < 86) {
    client_key_update(s, SSL_KEY_UPDATE_NOT_REQUESTED);
  } else if (r < 92) {
    client_key_update(s, SSL_KEY_UPDATE_REQUESTED);
    /* With the shadow: read by both, and answered before the next
     * request arrives. tlsrec answers each read's requests at once,
     * OpenSSL at its next write, so requests in between would be
     * coalesced differently. */
    if (s->shadow) {
      go_on_reading(s);
      deliver_to_server(s, SIZE_MAX);
      server_write(s, random_size());
    }
  } else if (r < 94) {
    hold_input(s, !s->holding);
  } else if (r < 96) {
    pause_reading(s, !s->paused);
  } else {
    settle(s);
  }
}

/* The end: close_notify from one side, seen as a clean close by the
 * other, after all data; then from the other. */
static void session_close(struct session *s) {
  int server_first = (int)below(2);
  tally.closes[server_first]++;
  go_on_reading(s);
  if (!server_first) settle(s);
  for (int side = 0; side < 2; side++) {
    if ((side == 0) == (server_first == 1)) {
      /* Data still queued in tlsrec leaves before its close_notify: at
       * times more than the socket and the socket side's output take. */
      if (below(3) == 0) server_write_queued(s, 100000 + below(400000), 1);
      else server_write(s, below(2) ? random_size() : 1);
      assert_int_equal(tlsrec_close_notify(s->bev), 0);
      if (s->shadow) assert_true(SSL_shutdown(s->shadow) >= 0);
      for (int i = 0; i < 100 && !s->client_closed && !s->client_failed; i++)
        deliver_to_client(s, SIZE_MAX);
      assert_true(s->client_closed);
      assert_false(s->client_failed);
      assert_int_equal(evbuffer_get_length(s->want_client), 0);
    } else {
      client_write(s, random_size());
      assert_true(SSL_shutdown(s->client) >= 0);
      drain_bio(SSL_get_wbio(s->client), s->wire_c2s, NULL);
      deliver_to_server(s, SIZE_MAX);
      pump(s, 4);
      assert_true(s->events & BEV_EVENT_EOF);
      assert_false(s->events & BEV_EVENT_ERROR);
      assert_int_equal(evbuffer_get_length(s->want_tlsrec), 0);
      if (s->shadow) {
        assert_true(s->shadow_closed);
        assert_int_equal(evbuffer_get_length(s->want_shadow), 0);
      }
    }
  }
  if (s->shadow) {
    compare_outputs(s);
    assert_int_equal(evbuffer_get_length(s->out_tlsrec), 0);
    assert_int_equal(evbuffer_get_length(s->out_shadow), 0);
  }
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- tests -------------------------------------------------------------------- */

/* Several sessions at once (tlsrec's cipher contexts serve them all),
 * each living a random number of random steps, then closed. */
static void test_streams(void **state) {
  (void)state;
  reseed(0);
  client_padding = 1;
  double t0 = now();
  struct event_base *base = event_base_new();
  enum { LIVE = 3 };
  struct session *live[LIVE] = {0};
  unsigned steps_left[LIVE] = {0}, started = 0, total = 90 * scale;
  while (started < total || live[0] || live[1] || live[2]) {
    size_t i = below(LIVE);
    if (!live[i]) {
      if (started >= total) continue;
      live[i] = session_new(base, (int)(started % SUITES), (int)below(2));
      steps_left[i] = 20 + (unsigned)below(80);
      started++;
    }
    if (steps_left[i]--) {
      step(live[i]);
      continue;
    }
    session_close(live[i]);
    session_free(live[i]);
    live[i] = NULL;
  }
  event_base_free(base);
  client_padding = 0;
  printf("tlsrec_diff: %u sessions (%u taken over, %u from secrets with the shadow), "
         "%llu plaintext bytes checked, %llu record bytes equal to the shadow's, key updates %u not requested / %u requested, "
         "closes %u client first / %u server first, %.2f s\n",
         tally.sessions, tally.takeovers, tally.sessions - tally.takeovers, tally.bytes, tally.compared,
         tally.key_updates[0], tally.key_updates[1], tally.closes[0], tally.closes[1],
         now() - t0);
}

/* The records a client's flight holds, as the test wrote them. */
struct flight {
  size_t n;
  size_t end[1024];     /* where each record ends on the wire */
  size_t data[1024];    /* its application data */
};

static void note_records(struct flight *fl, struct evbuffer *wire, size_t from, int is_data) {
  size_t len = evbuffer_get_length(wire);
  const uint8_t *p = evbuffer_pullup(wire, (ev_ssize_t)len);
  while (from < len) {
    size_t rlen = 5 + ((size_t)p[from + 3] << 8 | p[from + 4]);
    assert_true(fl->n < 1024);
    fl->end[fl->n] = from + rlen;
    fl->data[fl->n] = is_data ? rlen - 5 - TAG_LEN - 1 : 0;   /* OpenSSL does not pad */
    fl->n++;
    from += rlen;
  }
}

/* The alert tlsrec owes for a flipped byte at offset off of a record. */
static int alert_for(const uint8_t *rec, size_t off) {
  if (off == 0) return 10;                         /* not application_data outside */
  if (off == 3 || off == 4) {
    size_t body = (size_t)rec[3] << 8 | rec[4];   /* as corrupted */
    if (body > MAX_PLAIN + 256 || body > MAX_PLAIN + 1 + TAG_LEN) return 22;
  }
  return 20;   /* the header is the AEAD's additional data: the tag fails */
}

/* A byte flipped anywhere in a client's flight: tlsrec delivers the
 * records before it and nothing more, and ends the session with the
 * fatal alert for it; the shadow delivers the same and fails too. */
static void test_corruption(void **state) {
  (void)state;
  reseed(0xc0441);
  double t0 = now();
  struct event_base *base = event_base_new();
  unsigned runs = 300 * scale, by_alert[256] = {0};
  for (unsigned run = 0; run < runs; run++) {
    struct session *s = session_new(base, (int)(run % SUITES), 0);
    for (size_t i = below(8); i > 0; i--) step(s);   /* some life before */
    settle(s);
    size_t before_tlsrec = s->got_tlsrec, before_shadow = s->got_shadow;
    struct flight fl = {0};
    for (size_t i = 1 + below(5); i > 0; i--) {
      size_t from = evbuffer_get_length(s->wire_c2s);
      int data = below(5) != 0;
      if (data) client_write(s, below(4) ? random_size() : 1 + below(64));
      else client_key_update(s, SSL_KEY_UPDATE_NOT_REQUESTED);
      note_records(&fl, s->wire_c2s, from, data);
    }
    /* Anywhere, or in a header, or in a tag: a uniform choice would
     * almost never hit the few bytes of a header. */
    size_t len = evbuffer_get_length(s->wire_c2s), pos = below(len), k = 0, good = 0;
    size_t pick = below(fl.n), pick_start = pick ? fl.end[pick - 1] : 0;
    if (below(3) == 0) pos = pick_start + below(5);
    else if (below(2) == 0) pos = fl.end[pick] - 1 - below(TAG_LEN);
    while (fl.end[k] <= pos) good += fl.data[k++];
    size_t start = k ? fl.end[k - 1] : 0;
    uint8_t *wire = evbuffer_pullup(s->wire_c2s, (ev_ssize_t)len);
    wire[pos] ^= (uint8_t)(1 + below(255));
    int want_alert = alert_for(wire + start, pos - start);
    /* Enough behind it to complete any record length the flip made. */
    client_write(s, MAX_PLAIN);
    client_write(s, MAX_PLAIN);
    s->different_answers = 1;
    deliver_to_server(s, SIZE_MAX);
    assert_true(s->events & BEV_EVENT_ERROR);
    assert_int_equal(s->got_tlsrec - before_tlsrec, good);
    assert_true(s->shadow_failed);
    assert_int_equal(s->got_shadow - before_shadow, good);
    deliver_to_client(s, SIZE_MAX);
    assert_true(s->client_failed);
    assert_int_equal(s->client_alert >> 8, 2);   /* fatal */
    assert_int_equal(s->client_alert & 0xff, want_alert);
    by_alert[want_alert]++;
    session_free(s);
  }
  event_base_free(base);
  printf("tlsrec_diff: %u corrupted flights: %u bad_record_mac, %u record_overflow, "
         "%u unexpected_message, %.2f s\n",
         runs, by_alert[20], by_alert[22], by_alert[10], now() - t0);
}

/* A flight cut in two at every byte: the records wholly before the cut
 * are delivered at once, the rest once it comes. */
static void cut_everywhere(struct session *s, const size_t *sizes, size_t nsizes, size_t stride) {
  size_t wlen = 0;
  for (size_t cut = 0;; cut += (cut < 64 || cut + 64 >= wlen) ? 1 : stride) {
    struct flight fl = {0};
    size_t before = s->got_tlsrec;
    for (size_t i = 0; i < nsizes; i++) {
      size_t from = evbuffer_get_length(s->wire_c2s);
      if (sizes[i]) client_write(s, sizes[i]);
      else client_key_update(s, SSL_KEY_UPDATE_NOT_REQUESTED);
      note_records(&fl, s->wire_c2s, from, sizes[i] != 0);
    }
    wlen = evbuffer_get_length(s->wire_c2s);
    if (cut > wlen) break;
    size_t whole = 0;
    for (size_t k = 0; k < fl.n && fl.end[k] <= cut; k++) whole += fl.data[k];
    const uint8_t *p = evbuffer_pullup(s->wire_c2s, (ev_ssize_t)wlen);
    write_socket(s, p, cut);
    pump(s, 3);
    assert_int_equal(s->got_tlsrec - before, whole);
    write_socket(s, p + cut, wlen - cut);
    pump(s, 3);
    assert_int_equal(evbuffer_get_length(s->want_tlsrec), 0);
    evbuffer_drain(s->wire_c2s, wlen);
    evbuffer_drain(s->want_shadow, evbuffer_get_length(s->want_shadow));
    assert_int_equal(s->events, 0);
  }
}

static void test_every_cut(void **state) {
  (void)state;
  reseed(0xc07);
  double t0 = now();
  struct event_base *base = event_base_new();
  for (int suite = 0; suite < SUITES; suite++) {
    struct session *s = session_new(base, suite, 1);
    const size_t small[] = {0, 1, 200}, big[] = {MAX_PLAIN};
    cut_everywhere(s, small, 3, 1);
    cut_everywhere(s, big, 1, 61);
    session_close(s);
    session_free(s);
  }
  event_base_free(base);
  printf("tlsrec_diff: every cut of a KeyUpdate, a 1-byte and a 200-byte record, and of a "
         "2^14-byte record (every 61st in the middle), %d suites, %.2f s\n", SUITES, now() - t0);
}

/* While usher checks a login it holds what the client sends, under a read
 * high-water mark of 64 KiB on the filter (client_hold_input). A client
 * that sends far more meanwhile: the worker does not go round without
 * end, tlsrec stops reading the socket, the input and the socket side's
 * stay bounded, and everything arrives, in order, once the hold ends. */
static void test_held_input(void **state) {
  (void)state;
  reseed(0x401d);
  struct event_base *base = event_base_new();
  struct session *s = session_new(base, 0, 1);
  const size_t mark = 64 * 1024, sent = 2 * 1024 * 1024;
  s->holding = 1;
  bufferevent_setwatermark(s->bev, EV_READ, 0, mark);
  for (size_t n = 0; n < sent; n += MAX_PLAIN) client_write(s, MAX_PLAIN);
  struct evbuffer *in = bufferevent_get_input(s->bev);
  struct evbuffer *under_in = bufferevent_get_input(bufferevent_get_underlying(s->bev));
  size_t most_in = 0, most_under = 0;
  for (int i = 0; i < 200 && evbuffer_get_length(s->wire_c2s); i++) {
    size_t n = evbuffer_get_length(s->wire_c2s);
    n = write_some(s, evbuffer_pullup(s->wire_c2s, (ev_ssize_t)n), n);
    evbuffer_drain(s->wire_c2s, n);
    pump(s, 3);
    if (evbuffer_get_length(in) > most_in) most_in = evbuffer_get_length(in);
    if (evbuffer_get_length(under_in) > most_under) most_under = evbuffer_get_length(under_in);
  }
  printf("tlsrec_diff: a held session sent %zu bytes: %zu still with the client, at most %zu in "
         "the input (mark %zu), %zu on the socket side\n",
         sent, evbuffer_get_length(s->wire_c2s), most_in, mark, most_under);
  assert_true(evbuffer_get_length(s->wire_c2s) > sent / 2);   /* the socket was not read */
  assert_true(most_in < mark);
  assert_true(most_under <= 16384 + MAX_PLAIN + 256 + 5);     /* one read, a record cut */
  hold_input(s, 0);
  settle(s);
  assert_int_equal(s->got_tlsrec, sent);
  session_close(s);
  session_free(s);
  event_base_free(base);
}

/* A client that sends KeyUpdate(update_requested), each in its own read,
 * thousands of times, and never reads: tlsrec answers (one answer per
 * read at most), its answers fill the socket, then its socket side's
 * output up to FILTER_SOCKET_HIGH, and there it stops reading. What it
 * holds stays bounded, and the session is whole once the client reads. */
static void test_key_update_storm(void **state) {
  (void)state;
  reseed(0x5701);
  struct event_base *base = event_base_new();
  struct session *s = session_new(base, (int)below(SUITES), 1);
  settle(s);   /* the tickets and the greeting are read */
  int small = 4096;
  setsockopt(s->fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(s->fd[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  s->deaf = 1;
  struct bufferevent *under = bufferevent_get_underlying(s->bev);
  struct evbuffer *uout = bufferevent_get_output(under), *uin = bufferevent_get_input(under);
  size_t most = 0, requests = 0;
  int refused = 0;
  for (int i = 0; i < 20000 && refused < 20; i++) {
    if (evbuffer_get_length(s->wire_c2s) == 0) {
      client_key_update(s, SSL_KEY_UPDATE_REQUESTED);
      requests++;
    }
    size_t n = evbuffer_get_length(s->wire_c2s);
    n = write_some(s, evbuffer_pullup(s->wire_c2s, (ev_ssize_t)n), n);
    evbuffer_drain(s->wire_c2s, n);
    refused = n ? 0 : refused + 1;
    pump(s, 1);
    size_t held = evbuffer_get_length(uout) + evbuffer_get_length(uin) +
                  evbuffer_get_length(bufferevent_get_output(s->bev)) +
                  evbuffer_get_length(bufferevent_get_input(s->bev));
    if (held > most) most = held;
  }
  printf("tlsrec_diff: KeyUpdate storm: %zu requests sent before the socket filled, "
         "at most %zu bytes in tlsrec's buffers (socket side's output %zu, mark %d)\n",
         requests, most, evbuffer_get_length(uout), FILTER_SOCKET_HIGH);
  assert_true(requests > 1000);
  assert_int_equal(refused, 20);   /* tlsrec stopped reading: the socket refused more */
  assert_true(evbuffer_get_length(uout) >= FILTER_SOCKET_HIGH);   /* it did fill */
  assert_true(most < FILTER_SOCKET_HIGH + 2 * (MAX_PLAIN + 256 + 5) + 16384);
  assert_int_equal(s->events, 0);

  /* The client reads again: every answer, then data both ways. */
  s->deaf = 0;
  settle(s);
  client_write(s, 100);
  server_write(s, 100);
  settle(s);
  session_close(s);
  session_free(s);
  event_base_free(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_corruption),
      cmocka_unit_test(test_every_cut),
      cmocka_unit_test(test_held_input),
      cmocka_unit_test(test_key_update_storm),
  };
  return cmocka_run_group_tests(tests, setup_contexts, teardown_contexts);
}
