/* libFuzzer target: the PROXY v2 header parser. Whatever it takes must be
 * within what it was given, agree under both caps (4096 as a listener
 * would use, and the protocol's own maximum), agree on every prefix (a
 * prefix of a header is "more", never "bad" and never "done"), and build
 * back to a header that parses to the same addresses. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/proxyproto.h"

#define CAP 4096

static void check_prefixes(const uint8_t *data, size_t total) {
  struct proxyproto_header h;
  for (size_t n = 0; n < total; n++)
    if (proxyproto_parse(data, n, CAP, &h) != 0) __builtin_trap();
}

static int same_addr(const struct netaddr *a, const struct netaddr *b) {
  return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* Whatever addresses were parsed, built into a header and parsed again. */
static void check_round_trip(const struct proxyproto_header *h) {
  if (h->local || h->src.len == 0) {
    if (h->src.len != 0 || h->dst.len != 0) __builtin_trap();   /* both or neither */
    return;
  }
  /* An IPv4-mapped address becomes IPv4 (netaddr.h): beside an IPv6 one
   * the pair has no single family to be built back into. */
  if (h->src.ss.ss_family != h->dst.ss.ss_family) return;
  struct proxyproto_header back;
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &h->src, &h->dst);
  if (n == 0 || proxyproto_parse(buf, n, sizeof buf, &back) != 1 || back.length != n)
    __builtin_trap();
  if (back.local || !same_addr(&back.src, &h->src) || !same_addr(&back.dst, &h->dst))
    __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct proxyproto_header h, wide;
  int r = proxyproto_parse(data, size, CAP, &h);
  int rw = proxyproto_parse(data, size, PROXYPROTO_MAX_LEN, &wide);

  /* A larger cap changes nothing except what the small one refused for length. */
  if (r >= 0 && rw != r) __builtin_trap();
  if (rw == 1) {
    if (wide.length < PROXYPROTO_FIXED_LEN || wide.length > size) __builtin_trap();
    check_round_trip(&wide);
  }
  if (r != 1) return 0;
  if (h.length < PROXYPROTO_FIXED_LEN || h.length > size || h.length > CAP) __builtin_trap();
  if (h.length != wide.length || h.local != wide.local || !same_addr(&h.src, &wide.src) ||
      !same_addr(&h.dst, &wide.dst))
    __builtin_trap();
  check_prefixes(data, h.length);
  return 0;
}
