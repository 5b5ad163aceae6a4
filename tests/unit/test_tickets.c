/* Unit tests of the ticket key schedule (proxy/tickets): keys follow from
 * the secret and the period alone (so a twin derives the same), each
 * period has its own, and the three a worker holds overlap with the
 * neighbouring periods' sets so that a ticket outlives one key change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "proxy/tickets.h"

static const unsigned char secret_a[TICKET_SECRET_LEN] = "the pair shares this secret....";
static const unsigned char secret_b[TICKET_SECRET_LEN] = "another proxy, another secret..";

static int same_key(const struct ticket_key *x, const struct ticket_key *y) {
  return memcmp(x, y, sizeof *x) == 0;
}

static void test_same_secret_same_keys(void **state) {
  (void)state;
  struct ticket_keys one, two, other;
  tickets_derive(secret_a, 493811, &one);
  tickets_derive(secret_a, 493811, &two);
  tickets_derive(secret_b, 493811, &other);
  assert_memory_equal(&one, &two, sizeof one);
  for (int i = 0; i < 3; i++) {
    assert_false(same_key(&one.key[i], &other.key[i]));
    assert_memory_not_equal(one.key[i].name, other.key[i].name, TICKET_NAME_LEN);
  }
}

static void test_window_overlaps_neighbours(void **state) {
  (void)state;
  struct ticket_keys prev, cur, next;
  tickets_derive(secret_a, 99, &prev);
  tickets_derive(secret_a, 100, &cur);
  tickets_derive(secret_a, 101, &next);
  assert_int_equal(cur.period, 100);
  assert_true(same_key(&cur.key[1], &prev.key[2]));   /* a twin a little ahead */
  assert_true(same_key(&cur.key[1], &next.key[0]));   /* still taken next period */
  assert_true(same_key(&cur.key[0], &prev.key[1]));
  /* Two periods on, this period's key is gone. */
  struct ticket_keys later;
  tickets_derive(secret_a, 102, &later);
  for (int i = 0; i < 3; i++) assert_false(same_key(&later.key[i], &cur.key[1]));
}

static void test_parts_are_independent(void **state) {
  (void)state;
  struct ticket_keys k;
  tickets_derive(secret_a, 7, &k);
  for (int i = 0; i < 3; i++) {
    assert_memory_not_equal(k.key[i].hmac, k.key[i].aes, sizeof k.key[i].aes);
    assert_memory_not_equal(k.key[i].name, k.key[i].hmac, TICKET_NAME_LEN);
    for (int j = i + 1; j < 3; j++)
      assert_memory_not_equal(k.key[i].name, k.key[j].name, TICKET_NAME_LEN);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_same_secret_same_keys),
      cmocka_unit_test(test_window_overlaps_neighbours),
      cmocka_unit_test(test_parts_are_independent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
