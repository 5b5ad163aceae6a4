/* Unit tests of common/hmac: RFC 4231's test vectors, and a context keyed
 * anew for each message (a key must not leak into the next one's MAC). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/hmac.h"

static void hex(const uint8_t *p, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

static void check(enum hmac_digest d, const void *key, size_t key_len, const char *msg,
                  const char *want) {
  uint8_t out[HMAC_MAX_LEN];
  char got[2 * HMAC_MAX_LEN + 1] = "";
  assert_int_equal(hmac_compute(d, key, key_len, msg, strlen(msg), out), 0);
  hex(out, strlen(want) / 2, got);
  assert_string_equal(got, want);
}

/* RFC 4231, test case 2: key "Jefe". */
static void test_rfc4231_case2(void **state) {
  (void)state;
  const char *msg = "what do ya want for nothing?";
  check(HMAC_SHA256, "Jefe", 4, msg,
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  check(HMAC_SHA384, "Jefe", 4, msg,
        "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e"
        "8e2240ca5e69e2c78b3239ecfab21649");
}

/* RFC 4231, test case 1, after case 2 on the same context: the context is
 * keyed anew, so the earlier key plays no part. */
static void test_rekeyed_per_message(void **state) {
  (void)state;
  uint8_t key[20];
  memset(key, 0x0b, sizeof key);
  check(HMAC_SHA256, "Jefe", 4, "what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  check(HMAC_SHA256, key, sizeof key, "Hi There",
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc4231_case2),
      cmocka_unit_test(test_rekeyed_per_message),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
