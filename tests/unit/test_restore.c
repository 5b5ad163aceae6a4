/* The restore dialogue (proxy/restore.h): the commands it sends for a
 * plan, and its verdict on Dovecot-style answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/restore.h"

/* Feeds the answer lines (NULL-ended) and returns the last status. */
static enum restore_status feed(struct restore *r, const char *const *lines) {
  enum restore_status st = RESTORE_MORE;
  for (; *lines; lines++) {
    st = restore_line(r, *lines, strlen(*lines));
    if (st != RESTORE_MORE) break;
  }
  return st;
}

static const char *const select_inbox[] = {
    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)",
    "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.",
    "* 5 EXISTS",
    "* 0 RECENT",
    "* OK [UIDVALIDITY 1700000000] UIDs valid",
    "* OK [UIDNEXT 9] Predicted next UID",
    "U2 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).",
    NULL};

static struct restore_plan inbox_plan(uint32_t count, uint32_t known_seq, uint32_t known_uid) {
  struct restore_plan p = {.mailbox = "\"INBOX\"", .uidvalidity = 1700000000, .count = count,
                           .known_seq = known_seq, .known_uid = known_uid};
  return p;
}

/* Nothing changed: SELECT, the count check, done; nothing for the client. */
static void test_unchanged(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(5, 5, 8);
  struct restore *r = restore_new(&p);
  assert_string_equal(restore_next(r), "U2 SELECT \"INBOX\"\r\n");
  assert_null(restore_next(r));   /* waits for the answer */
  assert_int_equal(feed(r, select_inbox), RESTORE_MORE);
  assert_string_equal(restore_next(r), "U3 UID SEARCH RETURN (COUNT) UID 1:8\r\n");
  const char *count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 5", "U3 OK Search completed", NULL};
  assert_int_equal(feed(r, count), RESTORE_DONE);
  size_t n;
  restore_client_text(r, &n);
  assert_int_equal(n, 0);
  restore_free(r);
}

/* New mail while re-homing: EXISTS for the client. */
static void test_new_mail(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(3, 3, 6);
  struct restore *r = restore_new(&p);
  restore_next(r);
  assert_int_equal(feed(r, select_inbox), RESTORE_MORE);
  restore_next(r);
  const char *count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 3", "U3 OK done", NULL};
  assert_int_equal(feed(r, count), RESTORE_DONE);
  size_t n;
  assert_string_equal(restore_client_text(r, &n), "* 5 EXISTS\r\n");
  restore_free(r);
}

/* One of the client's messages has gone (found by the count), another
 * mailbox generation (UIDVALIDITY), fewer messages: each fails. */
static void test_expunged_and_uidvalidity(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(5, 5, 8);
  struct restore *r = restore_new(&p);
  restore_next(r);
  feed(r, select_inbox);
  restore_next(r);
  const char *count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 4", "U3 OK done", NULL};
  assert_int_equal(feed(r, count), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "expunged");
  restore_free(r);

  p = inbox_plan(5, 5, 8);
  p.uidvalidity = 42;
  r = restore_new(&p);
  restore_next(r);
  feed(r, select_inbox);
  restore_next(r);
  const char *count5[] = {"* ESEARCH (TAG \"U3\") UID COUNT 5", "U3 OK done", NULL};
  assert_int_equal(feed(r, count5), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "uidvalidity_changed");
  restore_free(r);

  p = inbox_plan(6, 0, 0);   /* no tie: the count is not asked */
  p.modseq = 0;
  r = restore_new(&p);
  restore_next(r);
  assert_int_equal(feed(r, select_inbox), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "expunged");
  restore_free(r);
}

/* Messages announced after the tie point, UIDs never seen: without
 * QRESYNC their survival cannot be proved. */
static void test_unknown_tail(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(5, 3, 6);
  struct restore *r = restore_new(&p);
  restore_next(r);
  feed(r, select_inbox);
  restore_next(r);
  const char *count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 3", "U3 OK done", NULL};
  assert_int_equal(feed(r, count), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "unknown_uids");
  restore_free(r);
}

/* QRESYNC: ENABLE first, SELECT with the client's modseq, FETCH lines passed
 * on after EXISTS; a VANISHED (EARLIER) fails. The client's IDLE is
 * re-issued and its "+" swallowed. */
static void test_qresync_idle(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(4, 3, 6);
  p.enable = "QRESYNC";
  p.modseq = 77;
  p.idle_tag = "A17";
  struct restore *r = restore_new(&p);
  assert_string_equal(restore_next(r), "U1 ENABLE QRESYNC\r\n");
  const char *enabled[] = {"* ENABLED QRESYNC", "U1 OK Enabled.", NULL};
  assert_int_equal(feed(r, enabled), RESTORE_MORE);
  assert_string_equal(restore_next(r), "U2 SELECT \"INBOX\" (QRESYNC (1700000000 77))\r\n");
  const char *sel[] = {"* 5 EXISTS", "* OK [UIDVALIDITY 1700000000] ok",
                       "* OK [HIGHESTMODSEQ 80] ok", "* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (79))",
                       "U2 OK [READ-WRITE] done", NULL};
  assert_int_equal(feed(r, sel), RESTORE_MORE);
  restore_next(r);
  const char *count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 3", "U3 OK done", NULL};
  assert_int_equal(feed(r, count), RESTORE_MORE);
  assert_string_equal(restore_next(r), "A17 IDLE\r\n");
  const char *idle[] = {"+ idling", NULL};
  assert_int_equal(feed(r, idle), RESTORE_DONE);
  size_t n;
  assert_string_equal(restore_client_text(r, &n),
                      "* 5 EXISTS\r\n* 2 FETCH (UID 4 FLAGS (\\Seen) MODSEQ (79))\r\n");
  restore_free(r);

  r = restore_new(&p);
  restore_next(r);
  feed(r, enabled);
  restore_next(r);
  const char *gone[] = {"* 5 EXISTS", "* OK [UIDVALIDITY 1700000000] ok",
                        "* VANISHED (EARLIER) 2", "U2 OK done", NULL};
  feed(r, gone);
  restore_next(r);
  assert_int_equal(feed(r, count), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "expunged");
  restore_free(r);
}

/* Not selected: only ENABLE (or nothing at all); a refused SELECT and a
 * literal in an answer fail. */
static void test_auth_state_and_refusals(void **state) {
  (void)state;
  struct restore_plan p = {0};
  struct restore *r = restore_new(&p);
  assert_int_equal(restore_status(r), RESTORE_DONE);
  assert_null(restore_next(r));
  assert_int_equal(restore_line(r, "x", 1), RESTORE_DONE);
  restore_free(r);

  p = inbox_plan(1, 1, 1);
  r = restore_new(&p);
  restore_next(r);
  const char *no[] = {"U2 NO [NONEXISTENT] Mailbox doesn't exist: INBOX", NULL};
  assert_int_equal(feed(r, no), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "select_refused");
  restore_free(r);

  r = restore_new(&p);
  restore_next(r);
  const char *lit[] = {"* 1 FETCH (BODY[] {12}", NULL};
  assert_int_equal(feed(r, lit), RESTORE_FAILED);
  restore_free(r);
}

/* The mailbox changes after the SELECT's answer, while the count check
 * and the IDLE run: new mail and flag changes reach the client, in the
 * order they came and after the verdict's own EXISTS; an expunge ends it. */
static void test_news_during_the_dialogue(void **state) {
  (void)state;
  struct restore_plan p = inbox_plan(5, 5, 8);
  p.idle_tag = "A9";
  struct restore *r = restore_new(&p);
  restore_next(r);
  assert_int_equal(feed(r, select_inbox), RESTORE_MORE);
  assert_string_equal(restore_next(r), "U3 UID SEARCH RETURN (COUNT) UID 1:8\r\n");
  const char *count[] = {"* 6 EXISTS", "* ESEARCH (TAG \"U3\") UID COUNT 5", "U3 OK done", NULL};
  assert_int_equal(feed(r, count), RESTORE_MORE);
  assert_string_equal(restore_next(r), "A9 IDLE\r\n");
  const char *idle[] = {"* 3 FETCH (FLAGS (\\Seen))", "* 7 EXISTS", "+ idling", NULL};
  assert_int_equal(feed(r, idle), RESTORE_DONE);
  size_t n;
  assert_string_equal(restore_client_text(r, &n),
                      "* 6 EXISTS\r\n* 3 FETCH (FLAGS (\\Seen))\r\n* 7 EXISTS\r\n");
  restore_free(r);

  r = restore_new(&p);
  restore_next(r);
  feed(r, select_inbox);
  restore_next(r);
  const char *expunged[] = {"* 5 EXPUNGE", "* ESEARCH (TAG \"U3\") UID COUNT 5", "U3 OK done",
                            NULL};
  assert_int_equal(feed(r, expunged), RESTORE_FAILED);
  assert_string_equal(restore_failure(r), "expunged");
  restore_free(r);

  r = restore_new(&p);
  restore_next(r);
  feed(r, select_inbox);
  restore_next(r);
  const char *ok_count[] = {"* ESEARCH (TAG \"U3\") UID COUNT 5", "U3 OK done", NULL};
  feed(r, ok_count);
  restore_next(r);
  const char *idle_gone[] = {"* 2 EXPUNGE", "+ idling", NULL};
  assert_int_equal(feed(r, idle_gone), RESTORE_FAILED);
  restore_free(r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unchanged),
      cmocka_unit_test(test_new_mail),
      cmocka_unit_test(test_expunged_and_uidvalidity),
      cmocka_unit_test(test_unknown_tail),
      cmocka_unit_test(test_qresync_idle),
      cmocka_unit_test(test_auth_state_and_refusals),
      cmocka_unit_test(test_news_during_the_dialogue),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
