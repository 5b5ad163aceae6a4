/* Unit tests of login name normalization (common/username). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "common/username.h"

static void check(const char *fmt, const char *in, const char *want) {
  char out[USERNAME_MAX];
  long n = username_normalize(fmt, in, out, sizeof out);
  if (!want) {
    assert_int_equal(n, -1);
    return;
  }
  assert_int_equal(n, (long)strlen(want));
  assert_string_equal(out, want);
}

static void test_default_lowercases_and_trims(void **state) {
  (void)state;
  check(NULL, "Alice", "alice");
  check(NULL, " aLIce\t", "alice");
  check(NULL, "Alice.Smith@EXAMPLE.org", "alice.smith@example.org");
  check(NULL, "inner space", "inner space");   /* only the ends are trimmed */
  check(NULL, "ÄLICE", "Älice");               /* ASCII case only: bytes beyond stay */
}

static void test_parts_and_modifiers(void **state) {
  (void)state;
  check("%u", " Alice ", "Alice");
  check("%Uu", "alice", "ALICE");
  check("%Ln", "Alice@Example.org", "alice");
  check("%Ld", "Alice@Example.org", "example.org");
  check("%Ln@%Ld", "a@b@C", "a@b@c");            /* split at the last @ */
  check("%Ln", "alice", "alice");               /* no @: all of it */
  check("%n@example.org", "bob", "bob@example.org");
  check("100%%-%u", "x", "100%-x");
}

static void test_refusals(void **state) {
  (void)state;
  check(NULL, "", NULL);
  check(NULL, "   ", NULL);
  check(NULL, "al\rice", NULL);
  check(NULL, "al\x7fice", NULL);
  check("%Ld", "alice", NULL);                   /* empty result */
  char big[USERNAME_MAX + 8];
  memset(big, 'a', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  check(NULL, big, NULL);
  char out[4];
  assert_int_equal(username_normalize(NULL, "abcd", out, sizeof out), -1);
  assert_int_equal(username_normalize(NULL, "abc", out, sizeof out), 3);
}

static void test_format_check(void **state) {
  (void)state;
  char err[160];
  assert_int_equal(username_format_check("%Lu", err, sizeof err), 0);
  assert_int_equal(username_format_check("%n@x.org", err, sizeof err), 0);
  assert_int_equal(username_format_check("%%%u", err, sizeof err), 0);
  assert_int_equal(username_format_check("%x", err, sizeof err), -1);
  assert_int_equal(username_format_check("%L", err, sizeof err), -1);
  assert_int_equal(username_format_check("%", err, sizeof err), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_default_lowercases_and_trims),
      cmocka_unit_test(test_parts_and_modifiers),
      cmocka_unit_test(test_refusals),
      cmocka_unit_test(test_format_check),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
