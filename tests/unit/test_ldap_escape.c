/* Unit tests of RFC 4515 filter and RFC 4514 DN escaping (auth/ldap_escape). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "auth/ldap_escape.h"

static void check(long (*esc)(const char *, size_t, char *, size_t), const char *in, size_t len,
                  const char *want) {
  char out[256];
  long n = esc(in, len, out, sizeof out);
  assert_int_equal(n, (long)strlen(want));
  assert_string_equal(out, want);
}

static void test_filter(void **state) {
  (void)state;
  check(ldap_escape_filter, "alice", 5, "alice");
  check(ldap_escape_filter, "*", 1, "\\2a");
  check(ldap_escape_filter, "*)(uid=*", 8, "\\2a\\29\\28uid=\\2a");
  check(ldap_escape_filter, "a\\b", 3, "a\\5cb");
  check(ldap_escape_filter, "a\0b", 3, "a\\00b");
  check(ldap_escape_filter, "tab\there", 8, "tab\\09here");
  check(ldap_escape_filter, "j\xc3\xbcrgen", 7, "j\xc3\xbcrgen");   /* UTF-8 kept */
  check(ldap_escape_filter, "", 0, "");
}

static void test_dn(void **state) {
  (void)state;
  check(ldap_escape_dn, "alice", 5, "alice");
  check(ldap_escape_dn, "a,ou=x", 6, "a\\2cou\\3dx");
  check(ldap_escape_dn, "a+b\"c\\d<e>f;g", 13, "a\\2bb\\22c\\5cd\\3ce\\3ef\\3bg");
  check(ldap_escape_dn, " lead", 5, "\\20lead");
  check(ldap_escape_dn, "#hash", 5, "\\23hash");
  check(ldap_escape_dn, "trail ", 6, "trail\\20");
  check(ldap_escape_dn, "mid dle", 7, "mid dle");
  check(ldap_escape_dn, "n\0l", 3, "n\\00l");
}

static void test_small_buffer(void **state) {
  (void)state;
  char out[4];
  assert_int_equal(ldap_escape_filter("abc", 3, out, sizeof out), 3);
  assert_int_equal(ldap_escape_filter("abcd", 4, out, sizeof out), -1);
  assert_int_equal(ldap_escape_filter("*", 1, out, sizeof out), 3);    /* \2a and NUL: 4 */
  assert_int_equal(ldap_escape_filter("*", 1, out, 3), -1);
  assert_int_equal(ldap_escape_dn("x", 1, out, 0), -1);
}

static void test_expand(void **state) {
  (void)state;
  char *s = ldap_expand("(&(objectClass=person)(|(uid=%u)(mail=%u)))", "a*", ldap_escape_filter, 200);
  assert_string_equal(s, "(&(objectClass=person)(|(uid=a\\2a)(mail=a\\2a)))");
  free(s);
  s = ldap_expand("uid=%u,ou=people,dc=example,dc=org", "x,y", ldap_escape_dn, 200);
  assert_string_equal(s, "uid=x\\2cy,ou=people,dc=example,dc=org");
  free(s);
  assert_null(ldap_expand("(uid=%u)", "a-rather-long-name", ldap_escape_filter, 10));
  s = ldap_expand("100%", "x", ldap_escape_filter, 10);   /* a lone % stays */
  assert_string_equal(s, "100%");
  free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_filter),
      cmocka_unit_test(test_dn),
      cmocka_unit_test(test_small_buffer),
      cmocka_unit_test(test_expand),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
