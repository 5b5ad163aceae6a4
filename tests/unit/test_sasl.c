/* Unit tests of base64 (RFC 4648 vectors, strictness) and SASL PLAIN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/sasl.h"

static void test_rfc4648_vectors(void **state) {
  (void)state;
  static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    char enc[16];
    unsigned char dec[16];
    assert_int_equal(base64_encode((const unsigned char *)plain[i], strlen(plain[i]), enc, sizeof enc),
                     strlen(coded[i]));
    assert_string_equal(enc, coded[i]);
    assert_int_equal(base64_decode(coded[i], strlen(coded[i]), dec, sizeof dec), strlen(plain[i]));
    assert_memory_equal(dec, plain[i], strlen(plain[i]));
  }
}

static void test_base64_rejects(void **state) {
  (void)state;
  unsigned char out[16];
  assert_int_equal(base64_decode("=", 1, out, sizeof out), 0);   /* RFC 4959 empty */
  assert_int_equal(base64_decode("Zm9", 3, out, sizeof out), -1);        /* no padding */
  assert_int_equal(base64_decode("Zm 9v", 5, out, sizeof out), -1);      /* whitespace */
  assert_int_equal(base64_decode("Zm9v\r\n", 6, out, sizeof out), -1);
  assert_int_equal(base64_decode("Z===", 4, out, sizeof out), -1);       /* too much padding */
  assert_int_equal(base64_decode("Zg==Zg==", 8, out, sizeof out), -1);   /* data after '=' */
  assert_int_equal(base64_decode("Zh==", 4, out, sizeof out), -1);       /* non-zero pad bits */
  assert_int_equal(base64_decode("Zm9!", 4, out, sizeof out), -1);
  assert_int_equal(base64_decode("Zm9vYmFy", 8, out, 5), -1);            /* out too small */
  char enc[4];
  assert_int_equal(base64_encode((const unsigned char *)"foo", 3, enc, sizeof enc), -1);
}

static void test_plain_split(void **state) {
  (void)state;
  char msg[64];
  const char *z, *c, *p;
  memcpy(msg, "\0alice\0secret", 13);
  assert_int_equal(sasl_plain_split(msg, 13, &z, &c, &p), 0);
  assert_string_equal(z, "");
  assert_string_equal(c, "alice");
  assert_string_equal(p, "secret");
  memcpy(msg, "admin\0alice\0pw", 14);
  assert_int_equal(sasl_plain_split(msg, 14, &z, &c, &p), 0);
  assert_string_equal(z, "admin");
  assert_string_equal(p, "pw");

  memcpy(msg, "\0alice", 6);
  assert_int_equal(sasl_plain_split(msg, 6, &z, &c, &p), -1);           /* one NUL */
  memcpy(msg, "\0\0pw", 4);
  assert_int_equal(sasl_plain_split(msg, 4, &z, &c, &p), -1);           /* empty authcid */
  memcpy(msg, "\0alice\0", 7);
  assert_int_equal(sasl_plain_split(msg, 7, &z, &c, &p), -1);           /* empty password */
  memcpy(msg, "\0a\0b\0c", 7);
  assert_int_equal(sasl_plain_split(msg, 7, &z, &c, &p), -1);           /* three NULs */
  char big[600];
  memset(big, 'x', sizeof big);
  big[0] = '\0';
  big[300] = '\0';
  assert_int_equal(sasl_plain_split(big, 400, &z, &c, &p), -1);         /* authcid > 255 */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rfc4648_vectors),
      cmocka_unit_test(test_base64_rejects),
      cmocka_unit_test(test_plain_split),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
