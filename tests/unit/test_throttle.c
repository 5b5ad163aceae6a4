/* Unit tests of login throttling (sessiond/throttle) in its local mode (no
 * Redis): counting and delays, bans of users, addresses and pairs, known
 * addresses that a ban does not apply to, repeated passwords, and the
 * events other proxies publish. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/config.h"
#include "sessiond/throttle.h"

#define USER "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define OTHER "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static struct config cfg;

static void config_for_tests(void) {
  memset(&cfg, 0, sizeof cfg);
  cfg.failure_delay_ms = 100;
  cfg.throttle_max_delay_ms = 800;
  cfg.throttle_window_ms = 60000;
  cfg.throttle_ban_ms = 60000;
  cfg.throttle_user_failures = 3;
  cfg.throttle_ip_failures = 5;
  cfg.throttle_known_ms = 3600000;
}

static void on_delay(void *cookie, uint32_t delay_ms) { *(uint32_t *)cookie = delay_ms; }
static void on_checked(void *cookie, int refused) { *(int *)cookie = refused; }

/* Every call is answered at once without Redis. */
static uint32_t fail_once(struct throttle *t, const char *ip, const char *user, const char *pw) {
  uint32_t delay = UINT32_MAX;
  char fp[65];
  snprintf(fp, sizeof fp, "%-64s", pw);
  throttle_failure(t, ip, user, fp, on_delay, &delay);
  assert_int_not_equal(delay, UINT32_MAX);
  return delay;
}

static int refused(struct throttle *t, const char *ip, const char *user) {
  int r = -1;
  throttle_check(t, ip, user, on_checked, &r);
  assert_int_not_equal(r, -1);
  return r;
}

static void test_delays_grow_then_a_stranger_is_refused(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  assert_false(refused(t, "192.0.2.1", USER));
  assert_int_equal(fail_once(t, "192.0.2.1", USER, "guess1"), 100);
  assert_int_equal(fail_once(t, "192.0.2.1", USER, "guess2"), 200);
  assert_int_equal(fail_once(t, "192.0.2.1", USER, "guess3"), 400);
  assert_true(refused(t, "192.0.2.1", USER));     /* the guesser */
  assert_true(refused(t, "198.51.100.7", USER));  /* anyone else: the user is banned */
  assert_false(refused(t, "192.0.2.1", OTHER));   /* other users from that address: not yet */
  assert_int_equal(throttle_stats(t)->bans, 2);   /* the user, and the guesser's pair */
  throttle_free(t);
}

static void test_a_known_address_gets_in_during_a_ban(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  throttle_success(t, "203.0.113.5", USER);       /* the owner logged in from here */
  for (int i = 0; i < 3; i++) {
    char pw[32];
    snprintf(pw, sizeof pw, "guess%d", i);
    fail_once(t, "192.0.2.1", USER, pw);          /* a stranger guesses */
  }
  assert_true(refused(t, "192.0.2.1", USER));
  assert_true(refused(t, "198.51.100.7", USER));
  assert_false(refused(t, "203.0.113.5", USER));  /* the owner is not locked out */
  assert_int_equal(throttle_stats(t)->known_passed, 1);
  throttle_free(t);
}

static void test_guesses_from_a_known_address_ban_that_pair(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  throttle_success(t, "203.0.113.5", USER);
  for (int i = 0; i < 3; i++) {
    char pw[32];
    snprintf(pw, sizeof pw, "nat-guess%d", i);    /* an attacker behind the owner's NAT */
    fail_once(t, "203.0.113.5", USER, pw);
  }
  assert_true(refused(t, "203.0.113.5", USER));   /* the pair is banned, known or not */
  throttle_free(t);
}

static void test_known_addresses_can_be_switched_off(void **state) {
  (void)state;
  config_for_tests();
  cfg.throttle_known_ms = 0;
  struct throttle *t = throttle_new(&cfg, NULL);
  throttle_success(t, "203.0.113.5", USER);
  for (int i = 0; i < 3; i++) {
    char pw[32];
    snprintf(pw, sizeof pw, "guess%d", i);
    fail_once(t, "192.0.2.1", USER, pw);
  }
  assert_true(refused(t, "203.0.113.5", USER));
  throttle_free(t);
}

static void test_a_repeated_password_counts_once(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  for (int i = 0; i < 10; i++) fail_once(t, "192.0.2.1", USER, "stale-saved-password");
  assert_false(refused(t, "192.0.2.1", USER));
  assert_int_equal(throttle_stats(t)->failures_counted, 1);
  assert_int_equal(throttle_stats(t)->failures_repeated, 9);
  /* A success does not hand a guesser a fresh allowance. */
  fail_once(t, "192.0.2.1", USER, "other1");
  throttle_success(t, "192.0.2.9", USER);
  fail_once(t, "192.0.2.1", USER, "other2");
  assert_true(refused(t, "198.51.100.7", USER));
  throttle_free(t);
}

static void test_an_address_guessing_many_users_is_banned(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  throttle_success(t, "192.0.2.1", OTHER);        /* someone who really uses that address */
  for (int i = 0; i < 5; i++) {
    char user[80];
    snprintf(user, sizeof user, "%064d", i);
    fail_once(t, "192.0.2.1", user, "x");
  }
  assert_true(refused(t, "192.0.2.1", USER));     /* a new name from there */
  assert_false(refused(t, "192.0.2.2", USER));    /* the next address */
  assert_false(refused(t, "192.0.2.1", OTHER));   /* the known user of that address */
  throttle_free(t);
}

static void test_events_from_other_proxies(void **state) {
  (void)state;
  config_for_tests();
  struct throttle *t = throttle_new(&cfg, NULL);
  const char *ban_user = "ban user " USER;
  throttle_on_event(t, ban_user, strlen(ban_user));
  assert_true(refused(t, "192.0.2.1", USER));
  const char *ban_pair = "ban pair " OTHER " 192.0.2.8";
  throttle_on_event(t, ban_pair, strlen(ban_pair));
  assert_true(refused(t, "192.0.2.8", OTHER));
  assert_false(refused(t, "192.0.2.9", OTHER));
  const char *junk = "ban nonsense";
  throttle_on_event(t, junk, strlen(junk));       /* ignored */
  throttle_free(t);
}

static void test_address_keys(void **state) {
  (void)state;
  char k[THROTTLE_KEY_MAX];
  throttle_ip_key("192.0.2.1", k);
  assert_string_equal(k, "192.0.2.1");
  throttle_ip_key("2001:db8:1:2:3:4:5:6", k);
  assert_string_equal(k, "2001:db8:1:2::/64");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delays_grow_then_a_stranger_is_refused),
      cmocka_unit_test(test_a_known_address_gets_in_during_a_ban),
      cmocka_unit_test(test_guesses_from_a_known_address_ban_that_pair),
      cmocka_unit_test(test_known_addresses_can_be_switched_off),
      cmocka_unit_test(test_a_repeated_password_counts_once),
      cmocka_unit_test(test_an_address_guessing_many_users_is_banned),
      cmocka_unit_test(test_events_from_other_proxies),
      cmocka_unit_test(test_address_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
