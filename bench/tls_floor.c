/* usher-tls-floor: what OpenSSL alone costs the server side of one TLS
 * handshake on this machine, with no sockets, no event loop and no proxy:
 * client and server talk through memory BIOs in one thread, and only the
 * server's calls are timed (thread CPU time).
 *
 * It is the floor under any proxy's CPU per TLS login built on this
 * OpenSSL: a figure of usher's minus this one is what usher, libevent and
 * the kernel add. The server is set up as usher's is: ECDSA P-256
 * certificate, one stateless ticket per handshake, no session cache.
 *
 * --keylog always|armed: with a key log callback that does nothing, on
 * for the whole handshake, or armed as usher's record layer arms it
 * (proxy/tlsrec.c: by each Finished, off at the traffic secret), to show
 * what OpenSSL's formatting of the key log costs.
 *
 *   usher-tls-floor CERT KEY [--handshakes N] [--tls12] [--keylog always|armed]
 * prints: full_us=... resumed_us=... version=... [keylog_lines=...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static double thread_cpu_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static void die(const char *what) {
  fprintf(stderr, "usher-tls-floor: %s\n", what);
  ERR_print_errors_fp(stderr);
  exit(1);
}

static enum { KEYLOG_OFF, KEYLOG_ALWAYS, KEYLOG_ARMED } keylog;
static long keylog_lines;

static void on_keylog(const SSL *ssl, const char *line) {
  keylog_lines++;
  if (keylog == KEYLOG_ARMED && (!strncmp(line, "SERVER_TRAFFIC_SECRET_0 ", 24) ||
                                 !strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)))
    SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl), NULL);
}

static void on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                       SSL *ssl, void *arg) {
  (void)write_p; (void)version; (void)arg;
  if (content_type == SSL3_RT_HANDSHAKE && len > 0 && ((const unsigned char *)buf)[0] == 20)
    SSL_CTX_set_keylog_callback(SSL_get_SSL_CTX(ssl), on_keylog);
}

/* One handshake; returns the server's CPU microseconds. *sess: the
 * client's session to resume (if resume), replaced by the newest. */
static double handshake(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION **sess, int resume,
                        const char **version) {
  SSL *s = NULL, *c = SSL_new(cctx);
  BIO *c2s = BIO_new(BIO_s_mem()), *s2c = BIO_new(BIO_s_mem());
  BIO_up_ref(c2s);
  BIO_up_ref(s2c);
  SSL_set_bio(c, s2c, c2s);   /* the client reads s2c, writes c2s */
  SSL_set_connect_state(c);
  if (resume && *sess) SSL_set_session(c, *sess);
  double spent = 0;
  double t0 = thread_cpu_us();
  s = SSL_new(sctx);
  if (keylog == KEYLOG_ARMED) SSL_set_msg_callback(s, on_message);
  SSL_set_bio(s, c2s, s2c);
  SSL_set_accept_state(s);
  spent += thread_cpu_us() - t0;
  int c_done = 0, s_done = 0;
  for (int round = 0; round < 20 && !(c_done && s_done); round++) {
    if (!c_done) {
      int r = SSL_do_handshake(c);
      if (r == 1) c_done = 1;
      else if (SSL_get_error(c, r) != SSL_ERROR_WANT_READ) die("client handshake");
    }
    t0 = thread_cpu_us();
    if (!s_done) {
      int r = SSL_do_handshake(s);
      if (r == 1) s_done = 1;
      else if (SSL_get_error(s, r) != SSL_ERROR_WANT_READ) die("server handshake");
    }
    spent += thread_cpu_us() - t0;
  }
  if (!(c_done && s_done)) die("handshake did not finish");
  /* The client takes the server's ticket (TLS 1.3 sends it after). */
  char byte;
  SSL_read(c, &byte, 1);
  if (resume && *sess && !SSL_session_reused(c)) die("not resumed");
  /* A client keeps the newest ticket, as clients do. */
  SSL_SESSION_free(*sess);
  *sess = SSL_get1_session(c);
  *version = SSL_get_version(s);
  t0 = thread_cpu_us();
  SSL_set_shutdown(s, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(s);
  spent += thread_cpu_us() - t0;
  SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);   /* else the session is spoilt */
  SSL_free(c);
  return spent;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: usher-tls-floor CERT KEY [--handshakes N] [--tls12]\n");
    return 2;
  }
  int n = 2000, tls12 = 0;
  for (int i = 3; i < argc; i++) {
    if (!strcmp(argv[i], "--handshakes") && i + 1 < argc) n = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--tls12")) tls12 = 1;
    else if (!strcmp(argv[i], "--keylog") && i + 1 < argc)
      keylog = !strcmp(argv[++i], "armed") ? KEYLOG_ARMED : KEYLOG_ALWAYS;
  }
  SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
  SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
  if (!sctx || !cctx) die("SSL_CTX_new");
  if (SSL_CTX_use_certificate_chain_file(sctx, argv[1]) != 1 ||
      SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1)
    die("certificate or key");
  SSL_CTX_set_cipher_list(sctx, "ECDHE+AESGCM:ECDHE+CHACHA20");
  SSL_CTX_set_session_cache_mode(sctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(sctx, 1);
  SSL_CTX_set_session_id_context(sctx, (const unsigned char *)"floor", 5);
  if (tls12) SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION);
  if (keylog == KEYLOG_ALWAYS) SSL_CTX_set_keylog_callback(sctx, on_keylog);
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT);

  const char *version = "?";
  SSL_SESSION *sess = NULL;
  for (int i = 0; i < 50; i++) handshake(sctx, cctx, &sess, 1, &version);   /* warm */
  double full = 0, resumed = 0;
  for (int i = 0; i < n; i++) {
    SSL_SESSION *none = NULL;
    full += handshake(sctx, cctx, &none, 0, &version);
    SSL_SESSION_free(none);
    resumed += handshake(sctx, cctx, &sess, 1, &version);
  }
  printf("full_us=%.1f resumed_us=%.1f version=%s handshakes=%d", full / n, resumed / n, version,
         n);
  if (keylog) printf(" keylog_lines=%.1f", (double)keylog_lines / (2 * n + 50));
  printf("\n");
  SSL_SESSION_free(sess);
  SSL_CTX_free(sctx);
  SSL_CTX_free(cctx);
  return 0;
}
