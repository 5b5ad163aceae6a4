/* What a client may send usher's TLS 1.3 record layer (proxy/tlsrec.c)
 * after the handshake. Random bytes would almost never get past the AEAD
 * tag, so the input is a script: each step is either raw bytes for the
 * socket, or a record this harness seals under the client's current key
 * (any inner type, length, padding). A valid KeyUpdate the harness seals
 * changes its key too, as the filter's, so that the script can go on
 * past it. The filter runs over a socket pair; what it answers is read
 * and thrown away, and the session may end with our close_notify.
 *
 * A step: op byte. op & 0x80: raw, next byte n, then n bytes.
 * Else a record: inner type op & 0x1f, 2 bytes length (cut to 2^14 + 64),
 * 1 byte padding, then the content (what is left if shorter). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "common/bev_send.h"
#include "proxy/tlsrec.h"
#include "tests/tls13_peer.h"

#define MAX_CONTENT (16384 + 64)

static const uint8_t client_secret[32] = {1, 2, 3, 4, 5, 6, 7, 8};
static const uint8_t server_secret[32] = {9, 10, 11, 12, 13, 14, 15, 16};

static uint8_t rec[5 + MAX_CONTENT + 256 + 1 + 16];

/* Seals content and pad zeros as a record of inner type into rec. */
static size_t seal(struct tls13_dir *k, uint8_t type, const uint8_t *in, size_t n, size_t pad) {
  size_t len = tls13_seal(k, type, in, n, pad, rec);
  if (!len) abort();
  return len;
}

static void pump(struct event_base *base, int peer) {
  static uint8_t sink[65536];
  for (int i = 0; i < 4; i++) {
    event_base_loop(base, EVLOOP_NONBLOCK);
    while (recv(peer, sink, sizeof sink, MSG_DONTWAIT) > 0) continue;
  }
}

/* Writes all of p, letting the filter run while the socket is full. */
static void put(struct event_base *base, int peer, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(peer, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w <= 0) {
      pump(base, peer);
      w = send(peer, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (w <= 0) return;   /* the filter stopped reading for good */
    }
    p += w;
    n -= (size_t)w;
  }
}

static void on_read(struct bufferevent *bev, void *arg) {
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  /* Some of it echoed: the session has something to send back. */
  if (evbuffer_get_length(in) > 64) bufferevent_write(bev, evbuffer_pullup(in, 64), 64);
  evbuffer_drain(in, evbuffer_get_length(in));
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  *(short *)arg |= what;
}

/* One step of the script at data; returns the bytes it took. */
static size_t step(struct event_base *base, int peer, struct tls13_dir *k, const uint8_t *d, size_t n) {
  if (d[0] & 0x80) {
    size_t len = n > 1 ? d[1] : 0;
    if (len > n - 2) len = n > 2 ? n - 2 : 0;
    put(base, peer, d + 2, len);
    return 2 + len;
  }
  if (n < 4) return n;
  uint8_t type = d[0] & 0x1f;
  size_t len = ((size_t)d[1] << 8 | d[2]) % (MAX_CONTENT + 1), pad = d[3];
  if (len > n - 4) len = n - 4;
  int is_key_update = type == 22 && len == 5 && !memcmp(d + 4, "\x18\x00\x00\x01", 4) && d[8] <= 1;
  put(base, peer, rec, seal(k, type, d + 4, len, pad));
  if (is_key_update) tls13_update(k);
  return 4 + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct event_base *base = event_base_new();
  int fd[2];
  if (!base || socketpair(AF_UNIX, SOCK_STREAM, 0, fd) != 0) abort();
  evutil_make_socket_nonblocking(fd[0]);
  struct bufferevent *bev =
      tlsrec_from_secrets(base, fd[0], 0x1301, client_secret, server_secret, 32, 0, 0);
  if (!bev) abort();
  short events = 0;
  bufferevent_setcb(bev, on_read, NULL, on_event, &events);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  bev_filter_socket_side(bev);
  struct tls13_dir k = {.seq = 0};
  memcpy(k.secret, client_secret, 32);
  tls13_keys(&k);
  size_t off = 0;
  while (off < size && !events) off += step(base, fd[1], &k, data + off, size - off);
  pump(base, fd[1]);
  if (size && (data[size - 1] & 1) && !events) tlsrec_close_notify(bev);
  pump(base, fd[1]);
  bev_filter_release_fd(bev);
  bufferevent_free(bev);
  event_base_loop(base, EVLOOP_NONBLOCK);   /* the filter's deferred free */
  close(fd[0]);
  close(fd[1]);
  event_base_free(base);
  return 0;
}
