/* Unit tests of weighted rendezvous hashing (sessiond/hashring): an even
 * spread, shares that follow weights, minimal movement when a backend leaves
 * or joins, and independence from the order the backends are listed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "sessiond/hashring.h"

#define KEYS 200000

static int pick(int i, const struct hr_node *nodes, size_t n) {
  char key[32];
  int len = snprintf(key, sizeof key, "user%d@example.org", i);
  return hashring_pick(key, (size_t)len, nodes, n);
}

/* Asserts that count is within rel (relative) of the expected share. */
static void assert_share(unsigned count, double expected, double rel, const char *what) {
  double dev = fabs((double)count - expected) / expected;
  if (dev > rel)
    fail_msg("%s: %u keys, expected %.0f (off by %.2f%%, limit %.2f%%)", what, count,
             expected, 100 * dev, 100 * rel);
}

static void test_even_spread(void **state) {
  (void)state;
  struct hr_node nodes[4] = {
      {"imap1", 100, 1}, {"imap2", 100, 1}, {"imap3", 100, 1}, {"imap4", 100, 1}};
  unsigned count[4] = {0};
  for (int i = 0; i < KEYS; i++) {
    int w = pick(i, nodes, 4);
    assert_true(w >= 0 && w < 4);
    count[w]++;
  }
  /* 200,000 keys: one standard deviation is ~0.4% of a share; 2% is far out. */
  for (int j = 0; j < 4; j++) {
    printf("# %s: %u keys (%.2f%%)\n", nodes[j].name, count[j], 100.0 * count[j] / KEYS);
    assert_share(count[j], KEYS / 4.0, 0.02, nodes[j].name);
  }
}

static void test_weights(void **state) {
  (void)state;
  struct hr_node nodes[3] = {{"big", 300, 1}, {"mid", 200, 1}, {"small", 100, 1}};
  unsigned count[3] = {0};
  for (int i = 0; i < KEYS; i++) count[pick(i, nodes, 3)]++;
  assert_share(count[0], KEYS * 3 / 6.0, 0.02, "big");
  assert_share(count[1], KEYS * 2 / 6.0, 0.02, "mid");
  assert_share(count[2], KEYS * 1 / 6.0, 0.03, "small");
}

static void test_remove_moves_only_its_keys(void **state) {
  (void)state;
  struct hr_node all[5] = {{"b1", 100, 1}, {"b2", 100, 1}, {"b3", 100, 1},
                           {"b4", 100, 1}, {"b5", 100, 1}};
  struct hr_node without_b3[4] = {all[0], all[1], all[3], all[4]};
  unsigned moved = 0, b3_keys = 0, to[5] = {0};
  for (int i = 0; i < KEYS; i++) {
    int before = pick(i, all, 5);
    int after = pick(i, without_b3, 4);
    const char *bn = all[before].name, *an = without_b3[after].name;
    if (before == 2) {
      b3_keys++;
      to[after]++;
    } else if (strcmp(bn, an)) {
      moved++;   /* a key that was not on b3 changed backend: must never happen */
    }
  }
  assert_int_equal(moved, 0);
  assert_share(b3_keys, KEYS / 5.0, 0.02, "b3");
  /* b3's keys spread evenly over the four that remain. */
  for (int j = 0; j < 4; j++) assert_share(to[j], b3_keys / 4.0, 0.05, without_b3[j].name);

  /* Marking a node ineligible (down, draining) is the same as removing it. */
  struct hr_node b3_down[5];
  memcpy(b3_down, all, sizeof all);
  b3_down[2].eligible = 0;
  for (int i = 0; i < KEYS; i += 13)
    assert_string_equal(b3_down[pick(i, b3_down, 5)].name, without_b3[pick(i, without_b3, 4)].name);
}

static void test_add_moves_only_to_new(void **state) {
  (void)state;
  struct hr_node four[4] = {{"b1", 100, 1}, {"b2", 100, 1}, {"b3", 100, 1}, {"b4", 100, 1}};
  struct hr_node five[5] = {four[0], four[1], four[2], four[3], {"b5", 100, 1}};
  unsigned to_new = 0;
  for (int i = 0; i < KEYS; i++) {
    int before = pick(i, four, 4), after = pick(i, five, 5);
    if (after == 4) to_new++;
    else assert_int_equal(before, after);
  }
  assert_share(to_new, KEYS / 5.0, 0.02, "b5");
}

static void test_order_independent(void **state) {
  (void)state;
  struct hr_node a[3] = {{"x", 100, 1}, {"y", 50, 1}, {"z", 100, 1}};
  struct hr_node b[3] = {{"z", 100, 1}, {"x", 100, 1}, {"y", 50, 1}};
  for (int i = 0; i < 20000; i++) assert_string_equal(a[pick(i, a, 3)].name, b[pick(i, b, 3)].name);
}

static void test_none_eligible(void **state) {
  (void)state;
  struct hr_node nodes[2] = {{"a", 100, 0}, {"b", 0, 1}};
  assert_int_equal(hashring_pick("alice", 5, nodes, 2), -1);
  assert_int_equal(hashring_pick("alice", 5, nodes, 0), -1);
  nodes[1].weight = 1;
  assert_int_equal(hashring_pick("alice", 5, nodes, 2), 1);
  /* The hash separates node and key: ("ab","c") differs from ("a","bc"). */
  assert_true(hashring_hash("ab", "c", 1) != hashring_hash("a", "bc", 2));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_even_spread),
      cmocka_unit_test(test_weights),
      cmocka_unit_test(test_remove_moves_only_its_keys),
      cmocka_unit_test(test_add_moves_only_to_new),
      cmocka_unit_test(test_order_independent),
      cmocka_unit_test(test_none_eligible),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
