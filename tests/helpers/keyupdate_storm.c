/* keyupdate_storm: a TLS 1.3 client that floods the server with
 * KeyUpdate(update_requested) messages and never reads, for
 * tests/integration/test_keyupdate_storm.py. Python's ssl cannot send a
 * KeyUpdate, and OpenSSL sends one per SSL_key_update() only, so the
 * handshake is OpenSSL's and the records after it are sealed here, from
 * the client's traffic secret (taken from the key log callback), with the
 * key moved on after each KeyUpdate as RFC 8446 4.6.3 and 7.2 say.
 *
 *   keyupdate_storm PORT --per-record K [--seconds S] [--wait S]
 * K KeyUpdates in each record: 1 is what RFC 8446 allows (a KeyUpdate
 * ends its record), more is the flood of issue 21 (one 16 KiB record
 * held 3,276 of them and usher answered each). Records are sent as fast
 * as the socket takes them for S seconds; a socket that takes nothing
 * for 2 s means the server stopped reading (stalled=1), and the storm
 * ends there; so does a send that fails (the server closed, and reset
 * what we sent after). Then the client reads, raw, whatever the server
 * sent, for up to --wait seconds or until the server closes, and prints
 *   records=N bytes=N stalled=0|1 send_error=0|1 closed=0|1 last_record=LEN
 * last_record: the body length of the last record before the close (19
 * is a TLS 1.3 alert under AES-128-GCM: 2 bytes, the type, the tag).
 * Only TLS_AES_128_GCM_SHA256 is offered, so that the sizes are known. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/ssl.h>

#define SECRET_LEN 32   /* SHA-256 */
#define KEY_LEN 16      /* AES-128 */
#define IV_LEN 12
#define TAG_LEN 16
#define MAX_PLAIN 16384

static uint8_t secret[SECRET_LEN], key[KEY_LEN], iv[IV_LEN];
static int have_secret;
static uint64_t seq;

static void on_keylog(const SSL *ssl, const char *line) {
  (void)ssl;
  if (strncmp(line, "CLIENT_TRAFFIC_SECRET_0 ", 24)) return;
  const char *hex = strchr(line + 24, ' ');
  if (!hex || strlen(hex + 1) != 2 * SECRET_LEN) return;
  for (int i = 0; i < SECRET_LEN; i++) sscanf(hex + 1 + 2 * i, "%2hhx", &secret[i]);
  have_secret = 1;
}

/* HKDF-Expand-Label(secret, label, "", len), len <= 32: one HMAC block. */
static void expand_label(const char *label, uint8_t *out, size_t len) {
  uint8_t info[64], md[EVP_MAX_MD_SIZE];
  unsigned mdlen = 0;
  size_t n = 0, llen = strlen(label);
  info[n++] = 0;
  info[n++] = (uint8_t)len;
  info[n++] = (uint8_t)(6 + llen);
  memcpy(info + n, "tls13 ", 6);
  memcpy(info + n + 6, label, llen);
  n += 6 + llen;
  info[n++] = 0;   /* no context */
  info[n++] = 1;   /* T(1) */
  HMAC(EVP_sha256(), secret, SECRET_LEN, info, n, md, &mdlen);
  memcpy(out, md, len);
}

static void derive_keys(void) {
  expand_label("key", key, KEY_LEN);
  expand_label("iv", iv, IV_LEN);
  seq = 0;
}

/* Our KeyUpdate took effect: the next traffic secret (7.2). */
static void next_secret(void) {
  uint8_t next[SECRET_LEN];
  expand_label("traffic upd", next, SECRET_LEN);
  memcpy(secret, next, SECRET_LEN);
  derive_keys();
}

/* A record of n bytes of content type 22 (handshake) into out; its length. */
static size_t seal(const uint8_t *in, size_t n, uint8_t *out) {
  static EVP_CIPHER_CTX *ctx;
  if (!ctx) ctx = EVP_CIPHER_CTX_new();
  size_t body = n + 1 + TAG_LEN;
  uint8_t nonce[IV_LEN], type = 22;
  int l;
  out[0] = 23, out[1] = 3, out[2] = 3, out[3] = (uint8_t)(body >> 8), out[4] = (uint8_t)body;
  memcpy(nonce, iv, IV_LEN);
  for (int i = 0; i < 8; i++) nonce[IV_LEN - 1 - i] ^= (uint8_t)(seq >> (8 * i));
  EVP_EncryptInit_ex(ctx, EVP_aes_128_gcm(), NULL, key, nonce);
  EVP_EncryptUpdate(ctx, NULL, &l, out, 5);
  EVP_EncryptUpdate(ctx, out + 5, &l, in, (int)n);
  EVP_EncryptUpdate(ctx, out + 5 + n, &l, &type, 1);
  EVP_EncryptFinal_ex(ctx, out + 5 + n + 1, &l);
  EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, TAG_LEN, out + 5 + n + 1);
  seq++;
  return 5 + body;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Sends all of buf; 0, 1 when the socket took nothing for 2 s, -1 on an error. */
static int send_all(int fd, const uint8_t *buf, size_t len) {
  while (len) {
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 2000) == 0) return 1;
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads the server's records raw until it closes or `wait` seconds pass;
 * the body length of the last whole record. */
static int drain(int fd, double wait, int *closed) {
  static uint8_t buf[1 << 16];
  size_t have = 0;
  int last = -1;
  double end = now() + wait;
  *closed = 0;
  while (now() < end) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    ssize_t n = recv(fd, buf + have, sizeof buf - have, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) {
      *closed = 1;
      break;
    }
    have += (size_t)n;
    size_t off = 0;
    while (have - off >= 5) {
      size_t body = (size_t)buf[off + 3] << 8 | buf[off + 4];
      if (have - off < 5 + body) break;
      last = (int)body;
      off += 5 + body;
    }
    memmove(buf, buf + off, have - off);
    have -= off;
  }
  return last;
}

int main(int argc, char **argv) {
  if (argc < 4 || strcmp(argv[2], "--per-record")) {
    fprintf(stderr, "usage: keyupdate_storm PORT --per-record K [--seconds S] [--wait S]\n");
    return 2;
  }
  int port = atoi(argv[1]), per = atoi(argv[3]);
  double seconds = 5, wait = 15;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
    else if (!strcmp(argv[i], "--wait")) wait = atof(argv[i + 1]);
  }
  if (per < 1 || per * 5 + 1 > MAX_PLAIN) {
    fprintf(stderr, "keyupdate_storm: --per-record 1..%d\n", (MAX_PLAIN - 1) / 5);
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  /* A small receive window, set before the handshake so that it holds:
   * the server's answers fill what the kernels buffer for a client that
   * never reads in a moment, instead of megabytes later. */
  int rcvbuf = 16384;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
    perror("keyupdate_storm: connect");
    return 1;
  }
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_keylog_callback(ctx, on_keylog);
  SSL *ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  if (SSL_connect(ssl) != 1 || !have_secret) {
    fprintf(stderr, "keyupdate_storm: handshake failed\n");
    return 1;
  }
  /* Nothing of ours went under the traffic key yet: the Finished was the
   * last record, under the handshake key. From here OpenSSL is done. */
  derive_keys();
  uint8_t plain[MAX_PLAIN], record[MAX_PLAIN + 64];
  for (int i = 0; i < per; i++) memcpy(plain + 5 * i, "\x18\x00\x00\x01\x01", 5);
  unsigned long records = 0;
  unsigned long long bytes = 0;
  int stalled = 0, send_error = 0;
  double end = now() + seconds;
  while (now() < end) {
    size_t len = seal(plain, (size_t)per * 5, record);
    for (int i = 0; i < per; i++) next_secret();
    int r = send_all(fd, record, len);
    if (r != 0) {
      stalled = r > 0;
      send_error = r < 0;
      break;
    }
    records++;
    bytes += len;
  }
  /* After a send error too: what the server sent before it reset the
   * connection (its alert) is still queued here, read before the reset. */
  int closed;
  int last = drain(fd, wait, &closed);
  closed |= send_error;
  printf("records=%lu bytes=%llu stalled=%d send_error=%d closed=%d last_record=%d\n", records,
         bytes, stalled, send_error, closed, last);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return 0;
}
