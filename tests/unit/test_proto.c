/* Unit tests of the worker <-> sessiond codec, and of the small common
 * helpers it travels with (durations, sizes, addresses, log quoting). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/netaddr.h"
#include "common/proto.h"
#include "common/util.h"

static uint8_t frame[PROTO_MAX_BODY + PROTO_HDR_LEN + 16];

/* Encodes, checks the header, decodes in place. */
static void roundtrip(const struct proto_msg *in, struct proto_msg *out) {
  ssize_t n = proto_encode(in, frame, sizeof frame);
  assert_true(n > PROTO_HDR_LEN);
  assert_int_equal(proto_body_len(frame), (size_t)n - PROTO_HDR_LEN);
  assert_int_equal(proto_decode(frame + PROTO_HDR_LEN, (size_t)n - PROTO_HDR_LEN, out), 0);
}

static void test_every_field_roundtrips(void **state) {
  (void)state;
  struct proto_msg in = {
      .type = PROTO_LOGIN, .req = 0xdeadbeef, .result = 2, .delay_ms = 2000, .worker_id = 3,
      .pid = 4242, .bytes_in = 1ULL << 40, .bytes_out = 77, .duration_ms = 123456789012ULL,
      .client_port = 65535, .local_port = 143, .tls = 1, .session = "0123456789abcdef",
      .user = "alice@example.org", .password = "p\"w d", .client_addr = "2001:db8::1",
      .local_addr = "127.0.0.1", .mech = "PLAIN", .backend = "b1", .backend_addr = "[::1]:143",
      .reason = "connect_timeout", .seat = "uid=alice,ou=people", .ticket = "5eal",
      .rehome = 1, .master_user = "usher-master"};
  struct proto_msg out;
  roundtrip(&in, &out);
  assert_int_equal(out.type, PROTO_LOGIN);
  assert_int_equal(out.req, in.req);
  assert_int_equal(out.result, in.result);
  assert_int_equal(out.delay_ms, in.delay_ms);
  assert_int_equal(out.worker_id, in.worker_id);
  assert_int_equal(out.pid, in.pid);
  assert_true(out.bytes_in == in.bytes_in && out.bytes_out == in.bytes_out);
  assert_true(out.duration_ms == in.duration_ms);
  assert_int_equal(out.client_port, 65535);
  assert_int_equal(out.local_port, 143);
  assert_int_equal(out.tls, 1);
  assert_int_equal(out.rehome, 1);
  const char *const *a = &in.session, *const *b = &out.session;
  for (int i = 0; i < 12; i++) assert_string_equal(a[i], b[i]);   /* the string fields */
}

static void test_each_type_and_absent_fields(void **state) {
  (void)state;
  for (int t = PROTO_HELLO; t <= PROTO_REHOME_DONE; t++) {
    struct proto_msg in = {.type = (enum proto_type)t, .session = "s"}, out;
    roundtrip(&in, &out);
    assert_int_equal(out.type, t);
    assert_null(out.user);
    assert_int_equal(out.req, 0);
    assert_string_not_equal(proto_type_name((enum proto_type)t), "UNKNOWN");
  }
  struct proto_msg in = {.type = PROTO_KICK, .reason = ""}, out;
  roundtrip(&in, &out);
  assert_string_equal(out.reason, "");
  assert_int_equal(out.rehome, 0);   /* an old sessiond's KICK: close, not re-home */
}

/* The tags re-homing added, on the wire as the header says: KICK's
 * PT_REHOME is one byte, PT_MASTER_USER a counted string. */
static int frame_holds(ssize_t n, const uint8_t *field, size_t len) {
  for (ssize_t i = PROTO_HDR_LEN + 1; i + (ssize_t)len <= n; i++)
    if (!memcmp(frame + i, field, len)) return 1;
  return 0;
}

static void test_rehome_tags_on_the_wire(void **state) {
  (void)state;
  struct proto_msg kick = {.type = PROTO_KICK, .session = "0123456789abcdef", .rehome = 1}, out;
  ssize_t n = proto_encode(&kick, frame, sizeof frame);
  assert_true(n > 0);
  const uint8_t rehome_field[] = {PT_REHOME, 0, 1, 1};
  assert_true(frame_holds(n, rehome_field, sizeof rehome_field));
  roundtrip(&kick, &out);
  assert_int_equal(out.rehome, 1);
  assert_int_equal(PROTO_REHOME, 8);
  assert_string_equal(proto_type_name(PROTO_REHOME), "REHOME");
  struct proto_msg reply = {.type = PROTO_LOGIN_REPLY, .req = 7, .master_user = "mu",
                            .password = "secret"};
  n = proto_encode(&reply, frame, sizeof frame);
  const uint8_t master_field[] = {PT_MASTER_USER, 0, 3, 'm', 'u', 0};
  assert_true(frame_holds(n, master_field, sizeof master_field));
  roundtrip(&reply, &out);
  assert_string_equal(out.master_user, "mu");
  assert_string_equal(out.password, "secret");
}

static void test_big_body(void **state) {
  (void)state;
  static char big[PROTO_MAX_BODY];
  memset(big, 'u', sizeof big);
  big[65000] = '\0';
  struct proto_msg in = {.type = PROTO_LOGIN, .user = big}, out;
  roundtrip(&in, &out);
  assert_int_equal(strlen(out.user), 65000);
  big[65000] = 'u';
  big[65535] = '\0';   /* over the body limit */
  assert_int_equal(proto_encode(&in, frame, sizeof frame), -1);
  struct proto_msg small = {.type = PROTO_HELLO, .user = "x"};
  assert_int_equal(proto_encode(&small, frame, 6), -1);   /* buffer too small */
}

static size_t body_of(const struct proto_msg *m) {
  ssize_t n = proto_encode(m, frame, sizeof frame);
  assert_true(n > 0);
  return (size_t)n - PROTO_HDR_LEN;
}

static void test_rejects_malformed(void **state) {
  (void)state;
  struct proto_msg m = {.type = PROTO_LOGIN, .user = "ab", .req = 5}, out;
  uint8_t *body = frame + PROTO_HDR_LEN;
  size_t n = body_of(&m);
  assert_int_equal(proto_decode(body, n - 1, &out), -1);      /* truncated */
  assert_int_equal(proto_decode(body, 0, &out), -1);

  /* The string field: type, then req (tag 1, 4 bytes), then user (tag 33). */
  n = body_of(&m);
  assert_int_equal(body[8], PT_USER);
  body[n - 1] = 'x';                                           /* no final NUL */
  assert_int_equal(proto_decode(body, n, &out), -1);
  n = body_of(&m);
  body[n - 2] = '\0';                                          /* interior NUL */
  assert_int_equal(proto_decode(body, n, &out), -1);

  n = body_of(&m);
  memcpy(body + n, body + 1, 7);                               /* req twice */
  assert_int_equal(proto_decode(body, n + 7, &out), -1);

  uint8_t wrong_width[] = {PROTO_HELLO, PT_REQ, 0, 2, 0, 1};
  assert_int_equal(proto_decode(wrong_width, sizeof wrong_width, &out), -1);
  uint8_t unknown[] = {PROTO_HELLO, 200, 0, 3, 'a', 'b', 'c', PT_PID, 0, 4, 0, 0, 0, 9};
  assert_int_equal(proto_decode(unknown, sizeof unknown, &out), 0);   /* skipped */
  assert_int_equal(out.pid, 9);

  uint8_t hdr_zero[4] = {0, 0, 0, 0}, hdr_big[4] = {0, 1, 0, 1}, hdr_ok[4] = {0, 1, 0, 0};
  assert_int_equal(proto_body_len(hdr_zero), 0);
  assert_int_equal(proto_body_len(hdr_big), 0);
  assert_int_equal(proto_body_len(hdr_ok), PROTO_MAX_BODY);
}

static void test_util_parsers(void **state) {
  (void)state;
  uint64_t v;
  assert_int_equal(parse_duration_ms("250ms", &v), 0);
  assert_int_equal(v, 250);
  assert_int_equal(parse_duration_ms("30", &v), 0);
  assert_int_equal(v, 30000);
  assert_int_equal(parse_duration_ms("15m", &v), 0);
  assert_int_equal(v, 900000);
  assert_int_equal(parse_duration_ms("1d", &v), 0);
  assert_int_equal(v, 86400000);
  assert_int_equal(parse_duration_ms("-1s", &v), -1);
  assert_int_equal(parse_duration_ms("5 s", &v), -1);
  assert_int_equal(parse_duration_ms("5x", &v), -1);
  assert_int_equal(parse_duration_ms("", &v), -1);
  assert_int_equal(parse_duration_ms("99999999999999999999d", &v), -1);
  assert_int_equal(parse_size("64k", &v), 0);
  assert_int_equal(v, 65536);
  assert_int_equal(parse_size("1M", &v), 0);
  assert_int_equal(v, 1 << 20);
  assert_int_equal(parse_size("12", &v), 0);
  assert_int_equal(v, 12);
  assert_int_equal(parse_size("1T", &v), -1);
  int b;
  assert_int_equal(parse_bool("Yes", &b), 0);
  assert_int_equal(b, 1);
  assert_int_equal(parse_bool("off", &b), 0);
  assert_int_equal(b, 0);
  assert_int_equal(parse_bool("maybe", &b), -1);
  char a[17], c[17];
  session_id_new(a);
  session_id_new(c);
  assert_int_equal(strlen(a), 16);
  assert_int_equal(strspn(a, "0123456789abcdef"), 16);
  assert_string_not_equal(a, c);
  assert_int_equal(ascii_casecmp("LoGiN", "login"), 0);
  assert_true(ascii_ncasecmp("LOGINX", "login", 5) == 0);
}

static void test_netaddr(void **state) {
  (void)state;
  struct netaddr a;
  char buf[NETADDR_STRLEN];
  assert_int_equal(netaddr_parse("127.0.0.1:143", &a), 0);
  assert_string_equal(netaddr_str(&a, buf, sizeof buf), "127.0.0.1:143");
  assert_int_equal(netaddr_parse("[::1]:993", &a), 0);
  assert_string_equal(netaddr_str(&a, buf, sizeof buf), "[::1]:993");
  assert_int_equal(netaddr_port(&a), 993);
  assert_int_equal(netaddr_parse("*:143", &a), 0);
  assert_string_equal(netaddr_host(&a, buf, sizeof buf), "0.0.0.0");
  assert_int_equal(netaddr_parse("::1:143", &a), -1);
  assert_int_equal(netaddr_parse("host.example:143", &a), -1);
  assert_int_equal(netaddr_parse("1.2.3.4:70000", &a), -1);
  assert_int_equal(netaddr_parse("1.2.3.4", &a), -1);

  struct netmask m;
  assert_int_equal(netmask_parse("10.0.0.0/8", &m), 0);
  netaddr_parse("10.200.1.1:1", &a);
  assert_true(netmask_contains(&m, &a));
  netaddr_parse("11.0.0.1:1", &a);
  assert_false(netmask_contains(&m, &a));
  netaddr_parse("[::ffff:10.1.2.3]:1", &a);   /* IPv4-mapped counts as IPv4 */
  assert_true(netmask_contains(&m, &a));
  assert_int_equal(netmask_parse("2001:db8::/33", &m), 0);
  netaddr_parse("[2001:db8:7fff::1]:1", &a);
  assert_true(netmask_contains(&m, &a));
  netaddr_parse("[2001:db8:8000::1]:1", &a);
  assert_false(netmask_contains(&m, &a));
  assert_int_equal(netmask_parse("10.0.0.0/33", &m), -1);
  assert_int_equal(netmask_parse("bogus/8", &m), -1);
}

static void test_log_quote(void **state) {
  (void)state;
  char out[LOG_QUOTE_MAX];
  assert_string_equal(log_quote(out, sizeof out, "alice", 5), "\"alice\"");
  assert_string_equal(log_quote(out, sizeof out, "a\"b\\c d", 7), "\"a\\\"b\\\\c d\"");
  assert_string_equal(log_quote(out, sizeof out, "x\ny=1\x80", 6), "\"x\\x0ay=1\\x80\"");
  char big[300];
  memset(big, 'A', sizeof big);
  log_quote(out, sizeof out, big, sizeof big);
  assert_int_equal(strlen(out), 128 + 5);   /* 128 shown, "...", two quotes */
  memset(big, '\x01', sizeof big);          /* the worst case still fits */
  log_quote(out, sizeof out, big, sizeof big);
  assert_true(strlen(out) < sizeof out);
  char tiny[10];
  log_quote(tiny, sizeof tiny, "abcdefghijkl", 12);
  assert_true(strlen(tiny) < sizeof tiny);
}

/* ---- batches ---------------------------------------------------------- */

struct batch_fixture {
  struct event_base *base;
  struct bufferevent *bev;
  int peer;
  struct proto_batch *b;
};

static void batch_setup(struct batch_fixture *f) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  f->base = event_base_new();
  f->bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
  f->peer = sv[1];
  f->b = proto_batch_new(f->base);
  proto_batch_set_bev(f->b, f->bev);
}

static void batch_teardown(struct batch_fixture *f) {
  proto_batch_free(f->b);
  bufferevent_free(f->bev);
  event_base_free(f->base);
  close(f->peer);
}

/* Everything the peer has received by now. */
static size_t peer_read(int fd, uint8_t *buf, size_t cap) {
  size_t got = 0;
  ssize_t n;
  while (got < cap && (n = recv(fd, buf + got, cap - got, MSG_DONTWAIT)) > 0) got += (size_t)n;
  return got;
}

/* The frames of a loop turn leave together at its end, in order. */
static void test_batch_sends_at_end_of_turn(void **state) {
  (void)state;
  struct batch_fixture f;
  batch_setup(&f);
  struct proto_msg m1 = {.type = PROTO_LOGIN, .req = 1, .user = "a", .password = "secret"};
  struct proto_msg m2 = {.type = PROTO_SESSION_END, .session = "00ff", .reason = "logout"};
  struct proto_msg m3 = {.type = PROTO_LOGIN, .req = 3, .user = "c", .password = "other"};
  assert_int_equal(proto_batch_add(f.b, &m1), 0);
  assert_int_equal(proto_batch_add(f.b, &m2), 0);
  assert_int_equal(proto_batch_add(f.b, &m3), 0);
  assert_int_equal(peer_read(f.peer, frame, sizeof frame), 0);   /* not before the turn ends */
  event_base_loop(f.base, EVLOOP_NONBLOCK);
  size_t n = peer_read(f.peer, frame, sizeof frame);
  struct evbuffer *in = evbuffer_new();
  evbuffer_add(in, frame, n);
  uint8_t body[PROTO_MAX_BODY];
  size_t len;
  uint32_t want_req[] = {1, 0, 3};
  for (int i = 0; i < 3; i++) {
    struct proto_msg out;
    assert_int_equal(proto_frame_pop(in, body, &len), 1);
    assert_int_equal(proto_decode(body, len, &out), 0);
    assert_int_equal(out.req, want_req[i]);
  }
  assert_int_equal(evbuffer_get_length(in), 0);
  evbuffer_free(in);
  batch_teardown(&f);
}

/* A frame bigger than a batch goes on its own, after what waited; with no
 * peer, what waits is dropped and nothing more is taken. */
static void test_batch_big_frame_and_no_peer(void **state) {
  (void)state;
  struct batch_fixture f;
  batch_setup(&f);
  static char reason[20000];
  memset(reason, 'r', sizeof reason - 1);
  struct proto_msg small = {.type = PROTO_SESSION_END, .session = "01"};
  struct proto_msg big = {.type = PROTO_SESSION_END, .session = "02", .reason = reason};
  assert_int_equal(proto_batch_add(f.b, &small), 0);
  assert_int_equal(proto_batch_add(f.b, &big), 0);
  static uint8_t got[2 * sizeof reason];
  size_t n = peer_read(f.peer, got, sizeof got);
  assert_true(n > sizeof reason);
  assert_int_equal(proto_body_len(got), 1 + 3 + 3);   /* "01" came first */

  assert_int_equal(proto_batch_add(f.b, &small), 0);
  proto_batch_set_bev(f.b, NULL);
  assert_int_equal(proto_batch_add(f.b, &small), -1);
  event_base_loop(f.base, EVLOOP_NONBLOCK);
  assert_int_equal(peer_read(f.peer, got, sizeof got), 0);
  batch_teardown(&f);
}

/* The req numbers of the frames the peer has received by now (0 for frames
 * without one), up to max; returns how many. */
static int peer_reqs(int fd, uint32_t *reqs, int max) {
  size_t n = peer_read(fd, frame, sizeof frame);
  struct evbuffer *in = evbuffer_new();
  evbuffer_add(in, frame, n);
  uint8_t body[PROTO_MAX_BODY];
  size_t len;
  int k = 0;
  while (k < max && proto_frame_pop(in, body, &len) == 1) {
    struct proto_msg out;
    assert_int_equal(proto_decode(body, len, &out), 0);
    reqs[k++] = out.req;
  }
  assert_int_equal(evbuffer_get_length(in), 0);
  evbuffer_free(in);
  return k;
}

/* A lazy frame waits past the end of the turn; it leaves with the next
 * frame that must leave, in order, or alone once PROTO_LINGER_MS pass. */
static void test_batch_lazy_frames(void **state) {
  (void)state;
  struct batch_fixture f;
  batch_setup(&f);
  struct proto_msg end = {.type = PROTO_SESSION_END, .session = "00ff", .reason = "logout"};
  struct proto_msg login = {.type = PROTO_LOGIN, .req = 7, .user = "a", .password = "secret"};
  uint32_t reqs[4];
  assert_int_equal(proto_batch_add_lazy(f.b, &end), 0);
  event_base_loop(f.base, EVLOOP_NONBLOCK);
  assert_int_equal(peer_reqs(f.peer, reqs, 4), 0);   /* the turn ended; it waits */
  assert_int_equal(proto_batch_add(f.b, &login), 0);
  assert_int_equal(proto_batch_add_lazy(f.b, &end), 0);
  event_base_loop(f.base, EVLOOP_NONBLOCK);
  assert_int_equal(peer_reqs(f.peer, reqs, 4), 3);    /* end, login, end */
  assert_int_equal(reqs[0], 0);
  assert_int_equal(reqs[1], 7);
  assert_int_equal(reqs[2], 0);

  assert_int_equal(proto_batch_add_lazy(f.b, &end), 0);
  uint64_t t0 = now_ms();
  event_base_loop(f.base, EVLOOP_ONCE);               /* sleeps until the linger ends */
  assert_true(now_ms() - t0 >= PROTO_LINGER_MS - 1);
  assert_int_equal(peer_reqs(f.peer, reqs, 4), 1);
  batch_teardown(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_field_roundtrips), cmocka_unit_test(test_each_type_and_absent_fields),
      cmocka_unit_test(test_big_body),               cmocka_unit_test(test_rejects_malformed),
      cmocka_unit_test(test_util_parsers),           cmocka_unit_test(test_netaddr),
      cmocka_unit_test(test_log_quote),               cmocka_unit_test(test_rehome_tags_on_the_wire),
      cmocka_unit_test(test_batch_sends_at_end_of_turn),
      cmocka_unit_test(test_batch_big_frame_and_no_peer),
      cmocka_unit_test(test_batch_lazy_frames),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
