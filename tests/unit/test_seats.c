/* Unit tests of the common hash table (common/htable) and of the seat and
 * session tables built on it (sessiond/seats): growth, removal while
 * walking, seat expiry and the session counts a seat keeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "common/htable.h"
#include "sessiond/seats.h"

struct item { int key; struct htable_node node; };

static void test_htable_grows_finds_and_removes_while_walking(void **state) {
  (void)state;
  static struct item items[5000];
  struct htable t;
  htable_init(&t, 1);
  for (int i = 0; i < 5000; i++) {
    items[i].key = i;
    htable_insert(&t, &items[i].node, htable_hash_bytes(&i, sizeof i));
  }
  assert_int_equal(t.count, 5000);
  assert_true(t.nbuckets >= 5000);   /* doubled as it filled */
  for (int i = 0; i < 5000; i += 97) {
    struct htable_node *n = htable_first_with(&t, htable_hash_bytes(&i, sizeof i));
    while (n && HTABLE_ENTRY(n, struct item, node)->key != i) n = htable_next_same(n);
    assert_non_null(n);
  }
  struct htable_iter it;
  size_t seen = 0;
  for (struct htable_node *n = htable_iter_first(&t, &it); n; n = htable_iter_next(&t, &it)) {
    seen++;
    if (HTABLE_ENTRY(n, struct item, node)->key % 2) htable_remove(&t, n);   /* the odd ones */
  }
  assert_int_equal(seen, 5000);
  assert_int_equal(t.count, 2500);
  seen = 0;
  for (struct htable_node *n = htable_iter_first(&t, &it); n; n = htable_iter_next(&t, &it)) {
    assert_int_equal(HTABLE_ENTRY(n, struct item, node)->key % 2, 0);
    seen++;
  }
  assert_int_equal(seen, 2500);
  htable_destroy(&t);
}

static void test_seat_lives_while_sessions_then_expires(void **state) {
  (void)state;
  struct seats *t = seats_new();
  assert_null(seat_find(t, "alice", 1000));
  seat_create(t, "alice", "b1", 1000);
  struct session *a = session_add(t, "0000000000000001", "alice", "b1", "192.0.2.1:5", NULL, 1000);
  struct session *b = session_add(t, "0000000000000002", "alice", "b1", "192.0.2.1:6", NULL, 1000);
  assert_int_equal(seat_find(t, "alice", 1000)->sessions, 2);
  assert_ptr_equal(session_find(t, "0000000000000002"), b);
  session_remove(t, a, 2000, 500);
  assert_int_equal(seat_find(t, "alice", 2000)->sessions, 1);
  session_remove(t, b, 3000, 500);
  assert_non_null(seat_find(t, "alice", 3400));   /* kept seat_expire past the last one */
  assert_null(seat_find(t, "alice", 3500));       /* then gone */
  assert_int_equal(seats_count(t), 0);
  assert_int_equal(sessions_count(t), 0);
  seats_free(t);
}

static void test_many_seats_and_the_sweep(void **state) {
  (void)state;
  struct seats *t = seats_new();
  char user[32], id[17];
  for (int i = 0; i < 3000; i++) {
    snprintf(user, sizeof user, "user%d", i);
    seat_create(t, user, i % 2 ? "b1" : "b2", 0);
    snprintf(id, sizeof id, "%016x", i);
    struct session *s = session_add(t, id, user, "b1", "192.0.2.1:1", NULL, 0);
    if (i % 3 == 0) session_remove(t, s, 10, 100);   /* these seats expire at 110 */
  }
  assert_int_equal(seats_count(t), 3000);
  assert_int_equal(seats_sweep(t, 109), 0);
  assert_int_equal(seats_sweep(t, 110), 1000);
  assert_int_equal(seats_count(t), 2000);
  assert_string_equal(seat_find(t, "user1", 200)->backend, "b1");
  assert_null(seat_find(t, "user3", 200));
  seats_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_htable_grows_finds_and_removes_while_walking),
      cmocka_unit_test(test_seat_lives_while_sessions_then_expires),
      cmocka_unit_test(test_many_seats_and_the_sweep),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
