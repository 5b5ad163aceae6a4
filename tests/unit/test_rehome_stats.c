/* Unit tests of the re-homing outcome counts (sessiond/rehome_stats): the
 * buckets of the time to resume, the bounded set of reasons, and what a
 * worker cannot do to the label set with odd reasons. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "sessiond/rehome_stats.h"

static void test_resume_times_fall_into_their_buckets(void **state) {
  (void)state;
  struct rehome_stats s = {0};
  rehome_stats_resumed(&s, 0);        /* <= 10 ms */
  rehome_stats_resumed(&s, 10);       /* <= 10 ms: bounds are inclusive */
  rehome_stats_resumed(&s, 11);       /* <= 50 ms */
  rehome_stats_resumed(&s, 600);      /* <= 1 s */
  rehome_stats_resumed(&s, 60000);    /* above every bound */
  assert_int_equal(s.resumed, 5);
  assert_int_equal(s.resume_buckets[0], 2);
  assert_int_equal(s.resume_buckets[1], 1);
  assert_int_equal(s.resume_buckets[5], 1);
  assert_int_equal(s.resume_buckets[REHOME_STATS_BUCKETS], 1);
  assert_int_equal(s.resume_us_sum, (0 + 10 + 11 + 600 + 60000) * 1000ull);
  assert_int_equal(rehome_stats_quantile_ms(&s, 0.5), 50);    /* the 3rd of 5 */
  assert_int_equal(rehome_stats_quantile_ms(&s, 0.4), 10);    /* the 2nd */
  assert_true(rehome_stats_quantile_ms(&s, 0.99) == UINT64_MAX);
  struct rehome_stats none = {0};
  assert_int_equal(rehome_stats_quantile_ms(&none, 0.5), 0);
}

static void test_reasons_are_counted_apart_up_to_the_bound(void **state) {
  (void)state;
  struct rehome_stats s = {0};
  rehome_stats_ended(&s, "mid_command");
  rehome_stats_ended(&s, "mid_command");
  rehome_stats_ended(&s, "expunged");
  assert_int_equal(s.ended, 3);
  assert_int_equal(s.n_reasons, 2);
  assert_string_equal(s.reasons[0].name, "mid_command");
  assert_int_equal(s.reasons[0].n, 2);
  char name[16];
  for (int i = 0; i < 40; i++) {   /* a worker inventing reasons */
    snprintf(name, sizeof name, "r%c%c", 'a' + i % 26, 'a' + i / 26);
    rehome_stats_ended(&s, name);
  }
  assert_int_equal(s.n_reasons, REHOME_STATS_REASONS);
  assert_int_equal(s.ended, 43);
  assert_int_equal(s.ended_other, 40 - (REHOME_STATS_REASONS - 2));   /* two slots were taken */
}

static void test_odd_reasons_count_as_other(void **state) {
  (void)state;
  struct rehome_stats s = {0};
  rehome_stats_ended(&s, NULL);
  rehome_stats_ended(&s, "");
  rehome_stats_ended(&s, "Upper");
  rehome_stats_ended(&s, "quote\"d");
  rehome_stats_ended(&s, "other");   /* would clash with the catch-all label */
  rehome_stats_ended(&s, "a_reason_that_is_much_too_long_to_keep");
  assert_int_equal(s.ended, 6);
  assert_int_equal(s.ended_other, 6);
  assert_int_equal(s.n_reasons, 0);
}

static void test_status_json(void **state) {
  (void)state;
  struct rehome_stats s = {0};
  rehome_stats_resumed(&s, 40);
  rehome_stats_ended(&s, "timeout");
  rehome_stats_ended(&s, "Bad");
  struct evbuffer *b = evbuffer_new();
  rehome_stats_json(&s, b);
  evbuffer_add(b, "", 1);
  assert_string_equal((const char *)evbuffer_pullup(b, -1),
                      ",\"rehome_done\":{\"resumed\":1,\"resume_p50_ms\":50,\"resume_p99_ms\":50,"
                      "\"ended\":2,\"ended_by\":{\"timeout\":1,\"other\":1}}");
  evbuffer_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resume_times_fall_into_their_buckets),
      cmocka_unit_test(test_reasons_are_counted_apart_up_to_the_bound),
      cmocka_unit_test(test_odd_reasons_count_as_other),
      cmocka_unit_test(test_status_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
