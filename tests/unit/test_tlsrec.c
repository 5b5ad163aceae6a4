/* usher's TLS 1.3 record layer (proxy/tlsrec.c) against a peer written
 * here with OpenSSL's EVP: its own HKDF (EVP_KDF "HKDF", expand only),
 * its own AES-128-GCM records. The filter sits on one end of a socket
 * pair, the test plays the client on the other. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
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

#define MAX_PLAIN 16384

/* ---- the peer's own record layer ------------------------------------------ */

/* The peer's side of each direction is tests/tls13_peer.h. */
/* A record of n bytes of type, then pad zeros; returns its length. */
static size_t pseal(struct tls13_dir *d, uint8_t type, const void *in, size_t n, size_t pad,
                    uint8_t *out) {
  size_t len = tls13_seal(d, type, in, n, pad, out);
  assert_int_not_equal(len, 0);
  return len;
}

/* ---- the fixture ---------------------------------------------------------- */

struct fx {
  struct event_base *base;
  int fd[2];                       /* [0] usher's, [1] the peer's */
  struct bufferevent *bev;
  struct tls13_dir c2s, s2c;
  struct evbuffer *got;            /* what the session read */
  struct evbuffer *pin;            /* what the peer received, not yet opened */
  short events;
};

static const uint8_t client_secret[32] = {0x11, 0x12, 0x13, 0x14, 0x15};
static const uint8_t server_secret[32] = {0x21, 0x22, 0x23, 0x24, 0x25};

static void on_read(struct bufferevent *bev, void *arg) {
  struct fx *f = arg;
  evbuffer_add_buffer(f->got, bufferevent_get_input(bev));
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct fx *f = arg;
  f->events |= what;
}

static int setup_with(void **state, const uint8_t *cs, const uint8_t *ss, uint64_t wseq) {
  struct fx *f = calloc(1, sizeof *f);
  f->base = event_base_new();
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, f->fd), 0);
  evutil_make_socket_nonblocking(f->fd[0]);
  memcpy(f->c2s.secret, cs, 32);
  memcpy(f->s2c.secret, ss, 32);
  tls13_keys(&f->c2s);
  tls13_keys(&f->s2c);
  f->s2c.seq = wseq;
  f->bev = tlsrec_from_secrets(f->base, f->fd[0], 0x1301, cs, ss, 32, 0, wseq);
  assert_non_null(f->bev);
  bufferevent_setcb(f->bev, on_read, NULL, on_event, f);
  bufferevent_enable(f->bev, EV_READ | EV_WRITE);
  bev_filter_socket_side(f->bev);
  f->got = evbuffer_new();
  f->pin = evbuffer_new();
  *state = f;
  return 0;
}

static int setup(void **state) {
  return setup_with(state, client_secret, server_secret, 0);
}

static int teardown(void **state) {
  struct fx *f = *state;
  bev_filter_release_fd(f->bev);
  bufferevent_free(f->bev);
  close(f->fd[0]);
  close(f->fd[1]);
  evbuffer_free(f->got);
  evbuffer_free(f->pin);
  event_base_free(f->base);
  free(f);
  return 0;
}

static void pump(struct fx *f) {
  for (int i = 0; i < 20; i++) event_base_loop(f->base, EVLOOP_NONBLOCK);
}

static uint8_t rec[5 + MAX_PLAIN + 512];

static void write_all(int fd, const void *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    assert_true(w > 0);
    p = (const uint8_t *)p + w;
    n -= (size_t)w;
  }
}

/* The peer sends one record of type holding n bytes (and pad zeros). */
static void psend(struct fx *f, uint8_t type, const void *in, size_t n, size_t pad) {
  write_all(f->fd[1], rec, pseal(&f->c2s, type, in, n, pad, rec));
}

static void precv(struct fx *f) {
  uint8_t buf[65536];
  ssize_t n;
  while ((n = recv(f->fd[1], buf, sizeof buf, MSG_DONTWAIT)) > 0) evbuffer_add(f->pin, buf, (size_t)n);
}

/* The next whole record the server sent, opened (a KeyUpdate of its own
 * changes the peer's read key): its content length, or -1 if none. */
static long pnext(struct fx *f, uint8_t *out, uint8_t *type) {
  uint8_t h[5];
  if (evbuffer_copyout(f->pin, h, 5) != 5) return -1;
  size_t len = 5 + ((size_t)h[3] << 8 | h[4]);
  if (evbuffer_get_length(f->pin) < len) return -1;
  long n = tls13_open(&f->s2c, evbuffer_pullup(f->pin, (ev_ssize_t)len), len, out, type);
  assert_true(n >= 0);
  evbuffer_drain(f->pin, len);
  if (*type == 22) {
    assert_int_equal(n, 5);
    assert_memory_equal(out, "\x18\x00\x00\x01\x00", 5);
    tls13_update(&f->s2c);
  }
  return n;
}

/* The server's last word is this fatal alert, and the session was told. */
static void expect_alert(struct fx *f, uint8_t desc) {
  pump(f);
  precv(f);
  uint8_t out[MAX_PLAIN + 256], type = 0;
  long n = pnext(f, out, &type);
  assert_int_equal(n, 2);
  assert_int_equal(type, 21);
  assert_int_equal(out[0], 2);
  assert_int_equal(out[1], desc);
  assert_int_equal(evbuffer_get_length(f->pin), 0);   /* nothing after it */
  assert_true(f->events & BEV_EVENT_ERROR);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_roundtrip(void **state) {
  struct fx *f = *state;
  static uint8_t big[MAX_PLAIN];
  memset(big, 'b', sizeof big);
  psend(f, 23, "hello", 5, 0);
  psend(f, 23, big, sizeof big, 0);   /* the largest inner plaintext: 2^14 + 1 */
  psend(f, 23, "x", 1, 100);          /* padding is removed */
  pump(f);
  assert_int_equal(evbuffer_get_length(f->got), 5 + MAX_PLAIN + 1);
  assert_memory_equal(evbuffer_pullup(f->got, 5), "hello", 5);
  bufferevent_write(f->bev, "world", 5);
  pump(f);
  precv(f);
  uint8_t out[MAX_PLAIN + 256], type = 0;
  assert_int_equal(pnext(f, out, &type), 5);
  assert_int_equal(type, 23);
  assert_memory_equal(out, "world", 5);
  assert_int_equal(f->events, 0);
}

static void test_key_update(void **state) {
  struct fx *f = *state;
  /* Many requests in one flight: one answer. */
  uint8_t flight[50 * 32];
  size_t n = 0;
  for (int i = 0; i < 50; i++) {
    n += pseal(&f->c2s, 22, "\x18\x00\x00\x01\x01", 5, 0, flight + n);
    tls13_update(&f->c2s);
  }
  write_all(f->fd[1], flight, n);
  psend(f, 23, "after", 5, 0);
  pump(f);
  assert_int_equal(evbuffer_get_length(f->got), 5);
  bufferevent_write(f->bev, "x", 1);
  pump(f);
  precv(f);
  uint8_t out[MAX_PLAIN + 256], type = 0;
  assert_int_equal(pnext(f, out, &type), 5);
  assert_int_equal(type, 22);   /* the answer, under the old key */
  assert_int_equal(pnext(f, out, &type), 1);
  assert_int_equal(type, 23);   /* then data under the new one */
  assert_int_equal(pnext(f, out, &type), -1);
  assert_int_equal(f->events, 0);
}

static void test_key_update_not_last(void **state) {
  struct fx *f = *state;
  psend(f, 22, "\x18\x00\x00\x01\x00" "\x18\x00\x00\x01\x00", 10, 0);
  expect_alert(f, 10);
}

static void test_key_update_storm_in_one_record(void **state) {
  struct fx *f = *state;
  static uint8_t many[1000 * 5];
  for (int i = 0; i < 1000; i++) memcpy(many + 5 * i, "\x18\x00\x00\x01\x01", 5);
  psend(f, 22, many, sizeof many, 0);
  expect_alert(f, 10);   /* refused as a whole: no answer before the alert */
}

static void test_bad_handshake(void **state) {
  struct fx *f = *state;
  psend(f, 22, "\x14\x00\x00\x01\x00", 5, 0);   /* a Finished */
  expect_alert(f, 10);
}

static void test_key_update_bad_value(void **state) {
  struct fx *f = *state;
  psend(f, 22, "\x18\x00\x00\x01\x02", 5, 0);
  expect_alert(f, 47);   /* illegal_parameter, 4.6.3 */
}

static void test_key_update_split(void **state) {
  struct fx *f = *state;
  psend(f, 22, "\x18\x00\x00", 3, 0);
  expect_alert(f, 10);
}

static void test_empty_handshake(void **state) {
  struct fx *f = *state;
  psend(f, 22, "", 0, 0);
  expect_alert(f, 10);
}

static void test_inner_overflow(void **state) {
  struct fx *f = *state;
  static uint8_t big[MAX_PLAIN];
  psend(f, 23, big, sizeof big, 1);   /* 2^14 + 2 with its padding */
  expect_alert(f, 22);
  assert_int_equal(evbuffer_get_length(f->got), 0);
}

static void test_outer_overflow(void **state) {
  struct fx *f = *state;
  const uint8_t h[5] = {23, 3, 3, (MAX_PLAIN + 257) >> 8, (MAX_PLAIN + 257) & 0xff};
  write_all(f->fd[1], h, 5);
  expect_alert(f, 22);
}

static void test_bad_mac(void **state) {
  struct fx *f = *state;
  size_t n = pseal(&f->c2s, 23, "hello", 5, 0, rec);
  rec[7] ^= 1;
  write_all(f->fd[1], rec, n);
  expect_alert(f, 20);
  assert_int_equal(evbuffer_get_length(f->got), 0);
}

static void test_unknown_types(void **state) {
  struct fx *f = *state;
  psend(f, 24, "x", 1, 0);   /* inner type not 21, 22 or 23 */
  expect_alert(f, 10);
}

static void test_unknown_outer_type(void **state) {
  struct fx *f = *state;
  write_all(f->fd[1], "\x16\x03\x03\x00\x01\x00", 6);
  expect_alert(f, 10);
}

static void test_close_notify_received(void **state) {
  struct fx *f = *state;
  psend(f, 23, "last", 4, 0);
  psend(f, 21, "\x01\x00", 2, 0);
  pump(f);
  assert_int_equal(evbuffer_get_length(f->got), 4);
  assert_true(f->events & BEV_EVENT_EOF);
  assert_false(f->events & BEV_EVENT_ERROR);
}

static void test_close_notify_sent(void **state) {
  struct fx *f = *state;
  /* Not ours: a plain socket bufferevent. */
  struct bufferevent *plain = bufferevent_socket_new(f->base, -1, 0);
  assert_int_equal(tlsrec_close_notify(plain), -1);
  bufferevent_free(plain);

  static uint8_t big[3 * MAX_PLAIN];
  memset(big, 'q', sizeof big);
  bufferevent_write(f->bev, big, sizeof big);
  bufferevent_write(f->bev, "bye", 3);
  assert_int_equal(tlsrec_close_notify(f->bev), 0);
  bufferevent_write(f->bev, "more", 4);   /* sealed no more */
  size_t data = 0;
  uint8_t out[MAX_PLAIN + 256], type = 0;
  long n;
  for (int i = 0; i < 50; i++) {
    pump(f);
    precv(f);
  }
  while ((n = pnext(f, out, &type)) >= 0 && type == 23) data += (size_t)n;
  assert_int_equal(data, sizeof big + 3);
  assert_int_equal(n, 2);
  assert_int_equal(type, 21);
  assert_memory_equal(out, "\x01\x00", 2);
  assert_int_equal(evbuffer_get_length(f->pin), 0);
}

/* A client that sends update requests and never reads: the server's
 * queued output stays bounded, its reading stops, and all is well once
 * the client reads again. */
static void test_backpressure(void **state) {
  struct fx *f = *state;
  int small = 4096;
  setsockopt(f->fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
  setsockopt(f->fd[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  evutil_make_socket_nonblocking(f->fd[1]);
  static uint8_t big[512 * 1024];
  memset(big, 'z', sizeof big);
  bufferevent_write(f->bev, big, sizeof big);
  pump(f);
  struct bufferevent *under = bufferevent_get_underlying(f->bev);
  struct evbuffer *uout = bufferevent_get_output(under), *uin = bufferevent_get_input(under);
  assert_true(evbuffer_get_length(uout) >= FILTER_SOCKET_HIGH);

  /* The storm: each record a request, as many as the socket takes. */
  size_t sent = 0, pending = 0, off = 0;
  for (int i = 0; i < 20000; i++) {
    if (off == pending) {
      pending = pseal(&f->c2s, 22, "\x18\x00\x00\x01\x01", 5, 0, rec);
      tls13_update(&f->c2s);
      off = 0;
    }
    ssize_t w = write(f->fd[1], rec + off, pending - off);
    if (w <= 0) {
      pump(f);
      w = write(f->fd[1], rec + off, pending - off);
      if (w <= 0) break;
    }
    off += (size_t)w;
    if (off == pending) sent++;
    if (i % 64 == 0) pump(f);
  }
  pump(f);
  assert_true(sent > 100);
  assert_true(evbuffer_get_length(uout) < FILTER_SOCKET_HIGH + MAX_PLAIN + 512);
  assert_true(evbuffer_get_length(uin) < 5 * (MAX_PLAIN + 256 + 5) + MAX_PLAIN);
  assert_true(evbuffer_get_length(uin) > 0);   /* reading stopped: records wait */
  assert_int_equal(f->events, 0);

  /* The client reads again: everything arrives, with few answers. */
  if (off != pending) {
    evutil_make_socket_nonblocking(f->fd[1]);
    while (off < pending) {
      ssize_t w = write(f->fd[1], rec + off, pending - off);
      if (w > 0) off += (size_t)w;
      pump(f);
      precv(f);
    }
    sent++;
  }
  psend(f, 23, "end", 3, 0);
  size_t data = 0, answers = 0;
  uint8_t out[MAX_PLAIN + 256], type = 0;
  long n;
  for (int i = 0; i < 5000 && (data < sizeof big || evbuffer_get_length(f->got) < 3); i++) {
    pump(f);
    precv(f);
    while ((n = pnext(f, out, &type)) >= 0) {
      if (type == 23) data += (size_t)n;
      else answers++;
    }
  }
  assert_int_equal(data, sizeof big);
  assert_int_equal(evbuffer_get_length(f->got), 3);
  assert_true(answers >= 1 && answers < sent);
  assert_int_equal(f->events, 0);
}

/* ---- RFC 8448 section 3 (simple 1-RTT handshake) --------------------------- */

static void unhex(const char *h, uint8_t *out, size_t n) {
  for (size_t i = 0; i < n; i++) {
    while (*h == ' ') h++;
    unsigned v;
    assert_int_equal(sscanf(h, "%2x", &v), 1);
    out[i] = (uint8_t)v;
    h += 2;
  }
}

static uint8_t rfc_c_ap[32], rfc_s_ap[32];

static int setup_rfc8448(void **state) {
  unhex("9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5", rfc_c_ap, 32);
  unhex("a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643", rfc_s_ap, 32);
  /* The server's NewSessionTicket took its record 0 under these keys. */
  return setup_with(state, rfc_c_ap, rfc_s_ap, 1);
}

static void test_rfc8448(void **state) {
  struct fx *f = *state;
  uint8_t want[80], plain[50];
  /* The traffic keys, by the test's HKDF-Expand-Label. */
  unhex("9f02283b6c9c07efc26bb9f2ac92e356", want, 16);
  assert_memory_equal(f->s2c.key, want, 16);
  unhex("cf782b88dd83549aadf1e984", want, 12);
  assert_memory_equal(f->s2c.iv, want, 12);
  unhex("17422dda596ed5d9acd890e3c63f5051", want, 16);
  assert_memory_equal(f->c2s.key, want, 16);
  unhex("5b78923dee08579033e523d9", want, 12);
  assert_memory_equal(f->c2s.iv, want, 12);
  for (int i = 0; i < 50; i++) plain[i] = (uint8_t)i;

  /* The client's application data record, opened by usher. */
  unhex("17 03 03 00 43 a2 3f 70 54 b6 2c 94 d0 af fa fe 82 28 ba 55 cb ef ac ea 42 f9 14 aa"
        "66 bc ab 3f 2b 98 19 a8 a5 b4 6b 39 5b d5 4a 9a 20 44 1e 2b 62 97 4e 1f 5a 62 92 a2"
        "97 70 14 bd 1e 3d ea e6 3a ee bb 21 69 49 15 e4", want, 72);
  write_all(f->fd[1], want, 72);
  pump(f);
  assert_int_equal(evbuffer_get_length(f->got), 50);
  assert_memory_equal(evbuffer_pullup(f->got, 50), plain, 50);

  /* The server's, sealed by usher byte for byte. */
  unhex("17 03 03 00 43 2e 93 7e 11 ef 4a c7 40 e5 38 ad 36 00 5f c4 a4 69 32 fc 32 25 d0 5f"
        "82 aa 1b 36 e3 0e fa f9 7d 90 e6 df fc 60 2d cb 50 1a 59 a8 fc c4 9c 4b f2 e5 f0 a2"
        "1c 00 47 c2 ab f3 32 54 0d d0 32 e1 67 c2 95 5d", want, 72);
  bufferevent_write(f->bev, plain, 50);
  pump(f);
  precv(f);
  assert_int_equal(evbuffer_get_length(f->pin), 72);
  assert_memory_equal(evbuffer_pullup(f->pin, 72), want, 72);
  assert_int_equal(f->events, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_update, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_update_not_last, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_update_storm_in_one_record, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_handshake, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_update_bad_value, setup, teardown),
      cmocka_unit_test_setup_teardown(test_key_update_split, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_handshake, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inner_overflow, setup, teardown),
      cmocka_unit_test_setup_teardown(test_outer_overflow, setup, teardown),
      cmocka_unit_test_setup_teardown(test_bad_mac, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_types, setup, teardown),
      cmocka_unit_test_setup_teardown(test_unknown_outer_type, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_notify_received, setup, teardown),
      cmocka_unit_test_setup_teardown(test_close_notify_sent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
      cmocka_unit_test_setup_teardown(test_rfc8448, setup_rfc8448, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
