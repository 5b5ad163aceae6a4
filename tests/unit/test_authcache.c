/* Unit tests of the memory layer of the auth cache (auth/authcache): keyed
 * hashes, positive/stale/negative verdicts, LRU bound, forgetting. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "auth/authcache.h"

static const uint8_t SECRET[] = "sixteen-bytes-or-more-secret";

struct kf { uint8_t key[AUTHCACHE_HASH_LEN], fp[AUTHCACHE_HASH_LEN]; };

static struct kf kf(struct authcache *c, const char *user, const char *pw) {
  struct kf r;
  authcache_key(c, user, r.key);
  authcache_fingerprint(c, user, pw, r.fp);
  return r;
}

static void test_hashes_are_keyed_and_separated(void **state) {
  (void)state;
  struct authcache *a = authcache_new(SECRET, sizeof SECRET - 1, 10);
  struct authcache *b = authcache_new((const uint8_t *)"another-secret-entirely", 23, 10);
  struct kf x = kf(a, "alice", "pw"), y = kf(b, "alice", "pw");
  assert_memory_not_equal(x.key, y.key, AUTHCACHE_HASH_LEN);   /* the secret matters */
  assert_memory_not_equal(x.fp, y.fp, AUTHCACHE_HASH_LEN);
  struct kf z = kf(a, "alic", "epw");                          /* no ambiguity at the join */
  assert_memory_not_equal(x.fp, z.fp, AUTHCACHE_HASH_LEN);
  assert_memory_not_equal(x.key, x.fp, AUTHCACHE_HASH_LEN);
  char hex[AUTHCACHE_HEX_LEN + 1];
  uint8_t back[AUTHCACHE_HASH_LEN];
  authcache_hex(x.key, hex);
  assert_int_equal(strlen(hex), 64);
  assert_int_equal(authcache_unhex(hex, 64, back), 0);
  assert_memory_equal(back, x.key, AUTHCACHE_HASH_LEN);
  assert_int_equal(authcache_unhex(hex, 63, back), -1);
  hex[5] = 'G';
  assert_int_equal(authcache_unhex(hex, 64, back), -1);
  authcache_free(a);
  authcache_free(b);
}

static void test_verdicts(void **state) {
  (void)state;
  struct authcache *c = authcache_new(SECRET, sizeof SECRET - 1, 10);
  struct authcache_hit hit;
  struct kf ok = kf(c, "bobby", "right"), bad = kf(c, "bobby", "wrong");
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 1000, &hit), AC_MISS);
  authcache_put_positive(c, ok.key, ok.fp, "bob", NULL, "imap2", 2000, 5000);
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 1500, &hit), AC_POSITIVE);
  assert_string_equal(hit.canonical, "bob");
  assert_string_equal(hit.backend, "imap2");
  assert_int_equal(authcache_lookup(c, ok.key, bad.fp, 1500, &hit), AC_MISS);   /* ask the db */
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 2500, &hit), AC_STALE);
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 5000, &hit), AC_MISS);
  authcache_put_negative(c, bad.key, bad.fp, 7000);
  assert_int_equal(authcache_lookup(c, bad.key, bad.fp, 6000, &hit), AC_NEGATIVE);
  assert_int_equal(authcache_lookup(c, bad.key, bad.fp, 7000, &hit), AC_MISS);
  /* A password the database refused stops being a positive one. */
  authcache_put_positive(c, ok.key, ok.fp, "bob", NULL, NULL, 9000, 9500);
  authcache_put_negative(c, ok.key, ok.fp, 9000);
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 8000, &hit), AC_NEGATIVE);
  authcache_put_positive(c, ok.key, ok.fp, "bob", NULL, NULL, 9000, 9500);
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 8000, &hit), AC_POSITIVE);
  assert_null(hit.backend);
  authcache_forget(c, ok.key);
  assert_int_equal(authcache_lookup(c, ok.key, ok.fp, 8000, &hit), AC_MISS);
  authcache_free(c);
}

static void test_lru_bound(void **state) {
  (void)state;
  struct authcache *c = authcache_new(SECRET, sizeof SECRET - 1, 100);
  struct authcache_hit hit;
  char user[16];
  for (int i = 0; i < 1000; i++) {
    snprintf(user, sizeof user, "user%d", i);
    struct kf e = kf(c, user, "pw");
    authcache_put_positive(c, e.key, e.fp, user, NULL, NULL, 10000, 20000);
    if (i >= 1) {   /* keep user0 recently used: it must survive */
      struct kf u0 = kf(c, "user0", "pw");
      assert_int_equal(authcache_lookup(c, u0.key, u0.fp, 1, &hit), AC_POSITIVE);
    }
  }
  assert_int_equal(authcache_count(c), 100);
  struct kf old = kf(c, "user5", "pw"), recent = kf(c, "user999", "pw");
  assert_int_equal(authcache_lookup(c, old.key, old.fp, 1, &hit), AC_MISS);
  assert_int_equal(authcache_lookup(c, recent.key, recent.fp, 1, &hit), AC_POSITIVE);
  authcache_clear(c);
  assert_int_equal(authcache_count(c), 0);
  authcache_free(c);

  struct authcache *off = authcache_new(SECRET, sizeof SECRET - 1, 0);   /* memory layer off */
  struct kf e = kf(off, "a", "b");
  authcache_put_positive(off, e.key, e.fp, "a", NULL, NULL, 10, 20);
  assert_int_equal(authcache_lookup(off, e.key, e.fp, 1, &hit), AC_MISS);
  authcache_free(off);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hashes_are_keyed_and_separated),
      cmocka_unit_test(test_verdicts),
      cmocka_unit_test(test_lru_bound),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
