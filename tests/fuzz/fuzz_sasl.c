/* libFuzzer target: base64 decoding and the PLAIN message split, with a
 * round trip: whatever decodes must encode and decode back to itself. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned char out[2048];
  ssize_t n = base64_decode((const char *)data, size, out, sizeof out - 1);
  if (n < 0) return 0;
  char enc[4096], *msg = malloc((size_t)n + 1);
  memcpy(msg, out, (size_t)n);
  const char *authz, *authc, *pass;
  if (sasl_plain_split(msg, (size_t)n, &authz, &authc, &pass) == 0) {
    if (!*authc || !*pass) __builtin_trap();   /* empty parts are refused */
  }
  free(msg);
  ssize_t e = base64_encode(out, (size_t)n, enc, sizeof enc);
  if (e < 0) __builtin_trap();
  unsigned char back[2048];
  ssize_t m = base64_decode(enc, (size_t)e, back, sizeof back);
  if (m != n || memcmp(back, out, (size_t)n)) __builtin_trap();
  return 0;
}
