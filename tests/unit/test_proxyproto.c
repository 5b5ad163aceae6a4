/* Unit tests of the PROXY v2 header parser (proxy/proxyproto): round
 * trips for IPv4 and IPv6, LOCAL, TLVs, every prefix being "more", and
 * the ways a header is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <netinet/in.h>
#include <string.h>

#include "proxy/proxyproto.h"

static struct netaddr addr(const char *s) {
  struct netaddr a;
  assert_int_equal(netaddr_parse(s, &a), 0);
  return a;
}

/* The parser, with *h poisoned first: a field it should have cleared
 * cannot pass for zero by luck. */
static int parse(const uint8_t *buf, size_t len, size_t max_len, struct proxyproto_header *h) {
  memset(h, 0xa5, sizeof *h);
  return proxyproto_parse(buf, len, max_len, h);
}

static void assert_addr(const struct netaddr *a, const char *want) {
  char got[NETADDR_STRLEN];
  assert_string_equal(netaddr_str(a, got, sizeof got), want);
}

static void test_tcp4_round_trip(void **state) {
  (void)state;
  struct netaddr src = addr("203.0.113.7:40000"), dst = addr("10.0.0.1:143");
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &src, &dst);
  assert_int_equal(n, 28);
  struct proxyproto_header h;
  assert_int_equal(parse(buf, n, 4096, &h), 1);
  assert_int_equal(h.length, 28);
  assert_false(h.local);
  assert_addr(&h.src, "203.0.113.7:40000");
  assert_addr(&h.dst, "10.0.0.1:143");
}

static void test_tcp6_round_trip_and_prefixes(void **state) {
  (void)state;
  struct netaddr src = addr("[2001:db8::5]:40001"), dst = addr("[::1]:993");
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &src, &dst);
  assert_int_equal(n, 52);
  struct proxyproto_header h;
  for (size_t i = 0; i < n; i++) assert_int_equal(parse(buf, i, 4096, &h), 0);
  assert_int_equal(parse(buf, n, 4096, &h), 1);
  assert_int_equal(h.length, 52);
  assert_false(h.local);
  assert_addr(&h.src, "[2001:db8::5]:40001");
  assert_addr(&h.dst, "[::1]:993");
}

/* A dual-stack balancer writes IPv4 clients as ::ffff:a.b.c.d: they are
 * IPv4 clients, each its own (throttling by IPv6 /64 would lump all of
 * them into ::/64). */
static void test_ipv4_mapped_become_ipv4(void **state) {
  (void)state;
  struct netaddr src = addr("[::ffff:203.0.113.7]:40000"), dst = addr("[::ffff:10.0.0.1]:143");
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &src, &dst);
  assert_int_equal(n, 52);
  struct proxyproto_header h;
  assert_int_equal(parse(buf, n, 4096, &h), 1);
  assert_int_equal(h.src.ss.ss_family, AF_INET);
  assert_addr(&h.src, "203.0.113.7:40000");
  assert_addr(&h.dst, "10.0.0.1:143");

  struct sockaddr_in6 s6 = {.sin6_family = AF_INET6, .sin6_port = htons(993)};
  s6.sin6_addr.s6_addr[10] = s6.sin6_addr.s6_addr[11] = 0xff;
  s6.sin6_addr.s6_addr[12] = 198, s6.sin6_addr.s6_addr[13] = 51;
  s6.sin6_addr.s6_addr[14] = 100, s6.sin6_addr.s6_addr[15] = 9;
  struct netaddr a;
  assert_int_equal(netaddr_from_sockaddr(&a, (struct sockaddr *)&s6, sizeof s6), 0);
  assert_int_equal(a.ss.ss_family, AF_INET);
  assert_addr(&a, "198.51.100.9:993");
}

static void test_local_and_tlvs(void **state) {
  (void)state;
  uint8_t buf[128];
  struct proxyproto_header h;
  size_t n = proxyproto_build(buf, sizeof buf, NULL, NULL);
  assert_int_equal(n, 16);
  assert_int_equal(parse(buf, n, 4096, &h), 1);
  assert_true(h.local);
  assert_int_equal(h.length, 16);
  assert_int_equal(h.src.len, 0);
  assert_int_equal(h.dst.len, 0);

  /* An IPv4 header followed by an AUTHORITY TLV: all of it is consumed,
   * and what follows (the client's first bytes) is not. */
  struct netaddr src = addr("192.0.2.1:1"), dst = addr("192.0.2.2:2");
  n = proxyproto_build(buf, sizeof buf, &src, &dst);
  static const uint8_t tlv[] = {0x02, 0x00, 0x0b, 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'o', 'r', 'g'};
  memcpy(buf + n, tlv, sizeof tlv);
  buf[15] = (uint8_t)(12 + sizeof tlv);
  memcpy(buf + n + sizeof tlv, "a001 CAPA", 9);
  assert_int_equal(parse(buf, n + sizeof tlv + 9, 4096, &h), 1);
  assert_int_equal(h.length, n + sizeof tlv);
}

static void test_refusals(void **state) {
  (void)state;
  struct netaddr src = addr("192.0.2.1:1"), dst = addr("192.0.2.2:2");
  uint8_t good[64], bad[64];
  size_t n = proxyproto_build(good, sizeof good, &src, &dst);
  struct proxyproto_header h;

  assert_int_equal(parse((const uint8_t *)"a001 LOGIN x y\r\n", 16, 4096, &h), -1);
  memcpy(bad, good, n);
  bad[3] ^= 1;   /* refused on the first bytes already */
  assert_int_equal(parse(bad, 5, 4096, &h), -1);
  memcpy(bad, good, n);
  bad[12] = 0x11;   /* version 1 */
  assert_int_equal(parse(bad, n, 4096, &h), -1);
  bad[12] = 0x22;   /* command 2 */
  assert_int_equal(parse(bad, 13, 4096, &h), -1);
  memcpy(bad, good, n);
  bad[15] = 8;      /* INET needs 12 bytes of addresses */
  assert_int_equal(parse(bad, 24, 4096, &h), -1);
  bad[13] = 0x21;   /* INET6 with the 12 bytes that would do for INET */
  bad[15] = 12;
  assert_int_equal(parse(bad, 28, 4096, &h), -1);
  memcpy(bad, good, n);
  bad[14] = 0x10;   /* 4096 + 16 + ... : above max_len, known from 16 bytes */
  assert_int_equal(parse(bad, 16, 4096, &h), -1);
  assert_int_equal(parse(good, n, 27, &h), -1);
  assert_int_equal(parse(good, n, 28, &h), 1);
}

static void test_undefined_family_or_transport(void **state) {
  (void)state;
  struct netaddr src = addr("192.0.2.1:1"), dst = addr("192.0.2.2:2");
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &src, &dst);
  struct proxyproto_header h;
  buf[13] = 0x41;   /* family 4 does not exist: refused from byte 14 on */
  assert_int_equal(parse(buf, 14, 4096, &h), -1);
  assert_int_equal(parse(buf, n, 4096, &h), -1);
  buf[13] = 0x13;   /* nor does transport 3 */
  assert_int_equal(parse(buf, n, 4096, &h), -1);
  buf[12] = 0x20;   /* but LOCAL ignores the family byte altogether */
  assert_int_equal(parse(buf, n, 4096, &h), 1);
  assert_true(h.local);
}

static void test_other_families_keep_socket_addresses(void **state) {
  (void)state;
  uint8_t buf[16 + 216];
  struct netaddr src = addr("192.0.2.1:1"), dst = addr("192.0.2.2:2");
  proxyproto_build(buf, sizeof buf, &src, &dst);
  struct proxyproto_header h;
  buf[13] = 0x00;   /* UNSPEC with PROXY: taken, no addresses */
  assert_int_equal(parse(buf, 28, 4096, &h), 1);
  assert_false(h.local);
  assert_int_equal(h.length, 28);
  assert_int_equal(h.src.len, 0);
  assert_int_equal(h.dst.len, 0);
  buf[13] = 0x31;   /* UNIX stream: 216 bytes of paths */
  buf[14] = 0;
  buf[15] = 216;
  memset(buf + 16, 0, 216);
  assert_int_equal(parse(buf, sizeof buf, 4096, &h), 1);
  assert_int_equal(h.src.len, 0);
  assert_int_equal(h.dst.len, 0);
  assert_int_equal(h.length, sizeof buf);
  buf[13] = 0x12;   /* INET over datagrams: not a TCP client */
  assert_int_equal(parse(buf, sizeof buf, 4096, &h), 1);
  assert_int_equal(h.src.len, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_tcp4_round_trip),
      cmocka_unit_test(test_tcp6_round_trip_and_prefixes),
      cmocka_unit_test(test_ipv4_mapped_become_ipv4),
      cmocka_unit_test(test_local_and_tlvs),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_undefined_family_or_transport),
      cmocka_unit_test(test_other_families_keep_socket_addresses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
