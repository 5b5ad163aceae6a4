/* libFuzzer target: the PROXY v2 header parser. Whatever it takes must be
 * within what it was given, agree on every prefix (a prefix of a header
 * is "more", never "bad" and never "done"), and build back to a header
 * that parses to the same addresses. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/proxyproto.h"

static void check_prefixes(const uint8_t *data, size_t total) {
  struct proxyproto_header h;
  for (size_t n = 0; n < total; n++)
    if (proxyproto_parse(data, n, 4096, &h) != 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct proxyproto_header h, back;
  int r = proxyproto_parse(data, size, 4096, &h);
  if (r != 1) return 0;
  if (h.length < PROXYPROTO_FIXED_LEN || h.length > size || h.length > 4096) __builtin_trap();
  check_prefixes(data, h.length);
  if (h.local || h.src.len == 0) return 0;
  uint8_t buf[64];
  size_t n = proxyproto_build(buf, sizeof buf, &h.src, &h.dst);
  if (n == 0 || proxyproto_parse(buf, n, sizeof buf, &back) != 1 || back.length != n)
    __builtin_trap();
  if (back.src.len != h.src.len || memcmp(&back.src.ss, &h.src.ss, h.src.len) != 0 ||
      memcmp(&back.dst.ss, &h.dst.ss, h.dst.len) != 0)
    __builtin_trap();
  return 0;
}
