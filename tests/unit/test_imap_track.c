/* The IMAP tracker (proxy/imap_track.h) on Dovecot-style transcripts.
 * Every transcript is fed three ways, whole, byte by byte and in random
 * splits (several seeds), and each way must end in the same view. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proxy/imap_track.h"

/* One step of a transcript: 'C' client->backend, 'S' backend->client;
 * len 0 means strlen(text). */
struct step { char dir; const char *text; size_t len; };
#define C(s) { 'C', s, sizeof(s) - 1 }
#define S(s) { 'S', s, sizeof(s) - 1 }

/* What a run ends with, comparable across the ways of feeding. */
struct outcome {
  struct imap_track_view v;
  char mailbox[2048];
  enum imap_track_state state;
  int rehomable;
  const char *why;
};

enum feed_way { WHOLE, BYTES, RANDOM };

static uint32_t rng = 1;
static uint32_t next_rand(void) { rng = rng * 1103515245u + 12345u; return rng >> 8; }

static void feed_step(struct imap_track *t, const struct step *s, enum feed_way way) {
  size_t len = s->len ? s->len : strlen(s->text), at = 0;
  while (at < len) {
    size_t k = way == WHOLE ? len - at : way == BYTES ? 1 : 1 + next_rand() % 17;
    if (k > len - at) k = len - at;
    if (s->dir == 'C') imap_track_client(t, s->text + at, k);
    else imap_track_server(t, s->text + at, k);
    at += k;
  }
}

static struct outcome run_way(const struct step *steps, size_t n, enum feed_way way) {
  struct imap_track *t = imap_track_new();
  assert_non_null(t);
  for (size_t i = 0; i < n; i++) feed_step(t, &steps[i], way);
  struct outcome o;
  memset(&o, 0, sizeof o);
  imap_track_view(t, &o.v);
  if (o.v.mailbox) memcpy(o.mailbox, o.v.mailbox, o.v.mailbox_len);
  o.v.mailbox = o.v.idle_tag = NULL;   /* pointers die with t; compared through copies */
  o.state = imap_track_state(t);
  o.rehomable = imap_track_rehomable(t, &o.why);
  imap_track_free(t);
  return o;
}

/* Runs all ways and checks they agree; returns the whole-feed outcome. */
static struct outcome run(const struct step *steps, size_t n) {
  struct outcome whole = run_way(steps, n, WHOLE);
  struct outcome bytes = run_way(steps, n, BYTES);
  assert_memory_equal(&whole, &bytes, sizeof whole);
  for (uint32_t seed = 1; seed <= 20; seed++) {
    rng = seed;
    struct outcome r = run_way(steps, n, RANDOM);
    assert_memory_equal(&whole, &r, sizeof whole);
  }
  return whole;
}
#define RUN(steps) run(steps, sizeof(steps) / sizeof(steps)[0])

static const struct step select_inbox[] = {
    C("a1 SELECT INBOX\r\n"),
    S("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n"
      "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n"
      "* 5 EXISTS\r\n* 0 RECENT\r\n"
      "* OK [UIDVALIDITY 1700000000] UIDs valid\r\n"
      "* OK [UIDNEXT 11] Predicted next UID\r\n"
      "* OK [HIGHESTMODSEQ 40] Highest\r\n"
      "a1 OK [READ-WRITE] Select completed (0.001 + 0.000 secs).\r\n"),
};

static void test_select(void **state) {
  (void)state;
  struct outcome o = RUN(select_inbox);
  assert_int_equal(o.state, IMAP_TRACK_SELECTED);
  assert_true(o.v.selected);
  assert_string_equal(o.mailbox, "INBOX");
  assert_int_equal(o.v.mailbox_form, IMAP_TRACK_ATOM);
  assert_false(o.v.examine);
  assert_int_equal(o.v.uidvalidity, 1700000000u);
  assert_int_equal(o.v.exists, 5);
  assert_int_equal(o.v.uidnext, 11);
  assert_int_equal(o.v.known_seq, 5);
  assert_int_equal(o.v.known_uid, 10);
  assert_int_equal(o.v.highestmodseq, 40);
  assert_int_equal(o.v.in_flight, 0);
  assert_true(o.rehomable);
}

/* The tie point's rules, each step checked on its own transcript. */
static void test_tie_point(void **state) {
  (void)state;
  struct step s[] = {
      { 'S', "* 1 FETCH (FLAGS (\\Seen))\r\n", 0 },       /* no UID: nothing */
      { 'S', "* 6 EXISTS\r\n", 0 },                         /* EXISTS leaves it */
      { 'S', "* 6 FETCH (UID 12 FLAGS ())\r\n", 0 },        /* raised to (6, 12) */
      { 'S', "* 3 FETCH (UID 4 FLAGS ())\r\n", 0 },         /* u <= known_uid: kept */
      { 'S', "* 2 EXPUNGE\r\n", 0 },                        /* k <= known_seq: down */
      { 'S', "* 7 EXISTS\r\n* 7 EXPUNGE\r\n", 0 },          /* k > known_seq: kept */
  };
  struct step all[8];
  memcpy(all, select_inbox, sizeof select_inbox);
  uint32_t want_seq[] = { 5, 5, 6, 6, 5, 5 }, want_uid[] = { 10, 10, 12, 12, 12, 12 };
  uint32_t want_exists[] = { 5, 6, 6, 6, 5, 6 };
  for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
    all[2 + i] = s[i];
    struct outcome o = run(all, 3 + i);
    assert_int_equal(o.v.known_seq, want_seq[i]);
    assert_int_equal(o.v.known_uid, want_uid[i]);
    assert_int_equal(o.v.exists, want_exists[i]);
  }
}

/* QRESYNC: the SELECT's VANISHED (EARLIER) does not touch the count,
 * FETCH MODSEQ raises highestmodseq, a later VANISHED does. */
static const struct step qresync[] = {
    C("e1 ENABLE QRESYNC\r\n"),
    S("* ENABLED QRESYNC\r\ne1 OK Enabled.\r\n"),
    C("s1 SELECT \"INBOX\" (QRESYNC (1700000000 30 1:12))\r\n"),
    S("* FLAGS (\\Seen)\r\n* 5 EXISTS\r\n* OK [UIDVALIDITY 1700000000] Ok\r\n"
      "* OK [UIDNEXT 13] Ok\r\n* OK [HIGHESTMODSEQ 41] Ok\r\n"
      "* VANISHED (EARLIER) 2:4,7\r\n"
      "* 5 FETCH (UID 12 FLAGS (\\Seen) MODSEQ (45))\r\n"
      "s1 OK [READ-WRITE] Select completed.\r\n"),
};

static void test_qresync_select(void **state) {
  (void)state;
  struct outcome o = RUN(qresync);
  assert_true(o.v.qresync);
  assert_int_equal(o.v.enabled, IMAP_TRACK_EXT_QRESYNC);
  assert_int_equal(o.v.mailbox_form, IMAP_TRACK_QUOTED);
  assert_int_equal(o.v.exists, 5);
  assert_int_equal(o.v.highestmodseq, 45);
  assert_int_equal(o.v.known_seq, 5);
  assert_int_equal(o.v.known_uid, 12);
  char list[64];
  imap_track_enabled_list(&o.v, list, sizeof list);
  assert_string_equal(list, "QRESYNC");
  assert_true(o.rehomable);
}

static void test_vanished(void **state) {
  (void)state;
  struct step s[5];
  memcpy(s, qresync, sizeof qresync);
  /* UIDs 3, 11 and 12 are under the tie (12); 14 is over it. */
  s[4] = (struct step){ 'S', "* VANISHED 3,11:12,14\r\n* 1 FETCH (MODSEQ (50) FLAGS ())\r\n", 0 };
  struct outcome o = run(s, 5);
  assert_int_equal(o.v.exists, 1);
  assert_int_equal(o.v.known_seq, 2);
  assert_int_equal(o.v.known_uid, 12);
  assert_int_equal(o.v.highestmodseq, 50);
}

/* SELECT while selected, CONDSTORE on: what comes before [CLOSED] is the
 * old mailbox's. */
static void test_closed_switch(void **state) {
  (void)state;
  struct step s[] = {
      qresync[0], qresync[1], qresync[2], qresync[3],
      C("s2 SELECT Archive\r\n"),
      S("* 1 EXPUNGE\r\n* OK [CLOSED] Previous mailbox closed.\r\n* 2 EXISTS\r\n"
        "* OK [UIDVALIDITY 77] Ok\r\n* OK [UIDNEXT 3] Ok\r\ns2 OK [READ-WRITE] Done.\r\n"),
  };
  struct outcome o = RUN(s);
  assert_string_equal(o.mailbox, "Archive");
  assert_int_equal(o.v.uidvalidity, 77);
  assert_int_equal(o.v.exists, 2);
  assert_int_equal(o.v.known_seq, 2);
  assert_int_equal(o.v.known_uid, 2);
  assert_int_equal(o.v.highestmodseq, 0);
}

static void test_failed_select(void **state) {
  (void)state;
  struct step s[] = {
      select_inbox[0], select_inbox[1],
      C("a2 SELECT Nonexistent\r\n"),
      S("a2 NO [NONEXISTENT] Mailbox doesn't exist: Nonexistent\r\n"),
  };
  struct outcome o = RUN(s);
  assert_int_equal(o.state, IMAP_TRACK_AUTHENTICATED);
  assert_false(o.v.selected);
  assert_int_equal(o.v.mailbox_len, 0);
  assert_int_equal(o.v.exists, 0);
  assert_true(o.rehomable);
}

static void test_examine_close_unselect(void **state) {
  (void)state;
  struct step s[] = {
      C("x1 EXAMINE Sent\r\n"),
      S("* 2 EXISTS\r\nx1 OK [READ-ONLY] Examine completed.\r\n"),
  };
  struct outcome o = RUN(s);
  assert_true(o.v.examine);
  assert_string_equal(o.mailbox, "Sent");
  struct step ro[] = {
      C("x1 SELECT Shared\r\n"),
      S("* 2 EXISTS\r\nx1 OK [READ-ONLY] Select completed.\r\n"),
      C("x2 UNSELECT\r\n"),
  };
  o = RUN(ro);
  assert_true(o.v.examine);
  assert_true(o.v.selected);
  assert_false(o.rehomable);
  assert_string_equal(o.why, "in_flight");
  struct step closed[] = { ro[0], ro[1], ro[2], S("x2 OK Unselect completed.\r\n") };
  o = RUN(closed);
  assert_false(o.v.selected);
  assert_int_equal(o.state, IMAP_TRACK_AUTHENTICATED);
}

/* The mailbox name as a literal (synchronising, so the "+" comes first),
 * and a quoted one with escapes. */
static void test_mailbox_literal(void **state) {
  (void)state;
  struct step s[] = {
      C("m1 SELECT {11}\r\n"),
      S("+ OK\r\n"),
      C("Sent \"old\"}"),
      C(" (CONDSTORE)\r\n"),
      S("* 0 EXISTS\r\n* OK [UIDNEXT 1] Ok\r\nm1 OK [READ-WRITE] Done.\r\n"),
  };
  struct outcome o = RUN(s);
  assert_int_equal(o.v.mailbox_form, IMAP_TRACK_LITERAL);
  assert_int_equal(o.v.mailbox_len, 11);
  assert_string_equal(o.mailbox, "Sent \"old\"}");
  assert_int_equal(o.v.known_seq, 0);
  assert_int_equal(o.v.known_uid, 0);
  struct step q[] = { C("m1 SELECT \"a \\\"b\\\\ c\"\r\n"), S("m1 OK Done.\r\n") };
  o = RUN(q);
  assert_int_equal(o.v.mailbox_form, IMAP_TRACK_QUOTED);
  assert_string_equal(o.mailbox, "a \"b\\ c");
}

/* Literals of every kind in both directions, whose contents look like
 * IMAP: they must be skipped, not read. */
static void test_literals(void **state) {
  (void)state;
  struct step s[] = {
      select_inbox[0], select_inbox[1],
      C("p1 APPEND Drafts (\\Seen) {26}\r\n"),
      S("+ OK\r\n"),
      C("p1 OK\r\n* 99 EXISTS\r\nDONE\r\n" "\r\n"),
      C("p2 APPEND Drafts {11+}\r\np2 SELECT X\r\n"),
      C("p3 APPEND Drafts ~{6+}\r\n\0\1\r\n\0\n\r\n"),
      S("p1 OK [APPENDUID 1 11] Append completed.\r\np2 OK Done.\r\np3 OK Done.\r\n"),
      C("f1 UID FETCH 9 (BODY[] BINARY[1])\r\n"),
      S("* 4 FETCH (UID 9 BODY[] {26}\r\n* 1 EXPUNGE\r\nf1 OK Done.\r\n BINARY[1] ~{5}\r\n\0\r\n\n\0 MODSEQ (77))\r\n"
        "f1 OK Fetch completed.\r\n"),
  };
  struct outcome o = RUN(s);
  assert_null(o.why);
  assert_true(o.rehomable);
  assert_string_equal(o.mailbox, "INBOX");
  assert_int_equal(o.v.exists, 5);
  assert_int_equal(o.v.highestmodseq, 77);
  assert_int_equal(o.v.known_seq, 5);
}

static void test_pipelined(void **state) {
  (void)state;
  struct step s[] = {
      select_inbox[0], select_inbox[1],
      C("b1 NOOP\r\nb2 UID STORE 3 +FLAGS (\\Seen)\r\nb3 STATUS Sent (MESSAGES)\r\n"),
      S("* 3 FETCH (UID 3 FLAGS (\\Seen))\r\nb1 OK\r\n"),
  };
  struct imap_track *t = imap_track_new();
  for (size_t i = 0; i < 4; i++) feed_step(t, &s[i], WHOLE);
  struct imap_track_view v;
  imap_track_view(t, &v);
  assert_int_equal(v.in_flight, 2);
  size_t len;
  const char *tag = imap_track_in_flight_tag(t, 0, &len);
  assert_int_equal(len, 2);
  assert_memory_equal(tag, "b2", 2);
  assert_null(imap_track_in_flight_tag(t, 2, &len));
  const char *why;
  assert_false(imap_track_rehomable(t, &why));
  assert_string_equal(why, "in_flight");
  imap_track_free(t);
  struct step done[] = { s[0], s[1], s[2], s[3],
                         S("b2 OK Store completed.\r\n* STATUS Sent (MESSAGES 2)\r\nb3 OK\r\n") };
  struct outcome o = RUN(done);
  assert_int_equal(o.v.in_flight, 0);
  assert_true(o.rehomable);
  assert_int_equal(o.v.known_seq, 5);   /* UID 3 is under the tie: no change */
}

static void test_idle(void **state) {
  (void)state;
  struct step s[] = {
      select_inbox[0], select_inbox[1],
      C("i1 IDLE\r\n"),
      S("+ idling\r\n* 6 EXISTS\r\n* 6 FETCH (UID 11 FLAGS (\\Recent))\r\n"),
  };
  struct outcome o = RUN(s);
  assert_true(o.v.idling);
  assert_int_equal(o.v.idle_tag_len, 2);
  assert_int_equal(o.v.exists, 6);
  assert_int_equal(o.v.known_seq, 6);
  assert_int_equal(o.v.known_uid, 11);
  assert_true(o.rehomable);
  struct step early[] = { s[0], s[1], s[2] };   /* before the "+" */
  o = RUN(early);
  assert_false(o.v.idling);
  assert_false(o.rehomable);
  struct step done[] = { s[0], s[1], s[2], s[3], C("DONE\r\n") };
  o = RUN(done);
  assert_false(o.v.idling);
  assert_string_equal(o.why, "in_flight");
  struct step ok[] = { s[0], s[1], s[2], s[3], C("DONE\r\n"), S("i1 OK Idle completed.\r\n") };
  o = RUN(ok);
  assert_true(o.rehomable);
  assert_int_equal(o.v.in_flight, 0);
}

static void test_compress(void **state) {
  (void)state;
  struct step no[] = { C("z1 COMPRESS DEFLATE\r\n"), S("z1 NO [COMPRESSIONACTIVE] Already.\r\n"),
                       C("z2 SELECT INBOX\r\n"), S("z2 OK Done.\r\n") };
  struct outcome o = RUN(no);
  assert_true(o.v.selected);
  assert_true(o.rehomable);
  struct step ok[] = { C("z1 COMPRESS DEFLATE\r\n"), S("z1 OK Begin compression.\r\n"),
                       C("\x78\x9c\xff\x00\r\n\x01"), S("\x78\x9c\x12\x34\n") };
  o = RUN(ok);
  assert_int_equal(o.state, IMAP_TRACK_UNTRACKABLE);
  assert_false(o.rehomable);
  assert_string_equal(o.why, "compress");
}

static void test_logout(void **state) {
  (void)state;
  struct step s[] = { select_inbox[0], select_inbox[1], C("l1 LOGOUT\r\n"),
                      S("* BYE Logging out\r\nl1 OK Logout completed.\r\n") };
  struct outcome o = RUN(s);
  assert_int_equal(o.state, IMAP_TRACK_LOGOUT);
  assert_string_equal(o.why, "logout");
}

static void test_enabled_list(void **state) {
  (void)state;
  struct step s[] = { C("e ENABLE CONDSTORE UTF8=ACCEPT IMAP4rev2\r\n"),
                      S("* ENABLED CONDSTORE utf8=accept IMAP4REV2\r\ne OK\r\n") };
  struct outcome o = RUN(s);
  char buf[64];
  imap_track_enabled_list(&o.v, buf, sizeof buf);
  assert_string_equal(buf, "CONDSTORE UTF8=ACCEPT IMAP4rev2");
  imap_track_enabled_list(&o.v, buf, 16);   /* room for one name only */
  assert_string_equal(buf, "CONDSTORE");
  imap_track_enabled_list(&o.v, buf, 1);
  assert_string_equal(buf, "");
  assert_true(o.rehomable);
  struct step other[] = { C("e ENABLE X-FOO\r\n"), S("* ENABLED X-FOO\r\ne OK\r\n") };
  o = RUN(other);
  assert_string_equal(o.why, "unknown_extension");
}

/* Lines far over the kept prefix: framing and a trailing literal still hold. */
static void test_overlong_lines(void **state) {
  (void)state;
  size_t big = 200000;
  char *cl = malloc(big + 64), *sl = malloc(big + 64);
  int n = sprintf(cl, "u1 UID SEARCH OR");
  while ((size_t)n < big) n += sprintf(cl + n, " SUBJECT x%d", n);
  n += sprintf(cl + n, " BODY {3}\r\nabc\r\n");
  int m = sprintf(sl, "* SEARCH");
  while ((size_t)m < big) m += sprintf(sl + m, " %d", m);
  m += sprintf(sl + m, "\r\nu1 OK Search completed.\r\n");
  struct step s[] = { select_inbox[0], select_inbox[1], { 'C', cl, (size_t)n }, { 'S', sl, (size_t)m } };
  struct outcome o = RUN(s);
  assert_true(o.rehomable);
  assert_int_equal(o.v.in_flight, 0);
  memset(cl, 'a', big);
  memcpy(cl, "u2 SELECT ", 10);
  memcpy(cl + big, "\r\n", 2);
  struct step longname[] = { { 'C', cl, big + 2 } };
  o = RUN(longname);
  assert_string_equal(o.why, "mailbox_too_long");
  free(cl);
  free(sl);
}

static void test_partial_boundaries(void **state) {
  (void)state;
  struct step mid_c[] = { select_inbox[0], select_inbox[1], C("a5 NOOP") };
  struct outcome o = RUN(mid_c);
  assert_string_equal(o.why, "mid_command");
  struct step mid_lit[] = { select_inbox[0], select_inbox[1], C("a5 APPEND X {10+}\r\nabc") };
  o = RUN(mid_lit);
  assert_string_equal(o.why, "mid_command");
  struct step mid_s[] = { select_inbox[0], select_inbox[1], S("* 3 FETCH (BODY[] {5}\r\nab") };
  o = RUN(mid_s);
  assert_string_equal(o.why, "mid_response");
}

static void test_garbage(void **state) {
  (void)state;
  struct step s[] = { select_inbox[0], select_inbox[1], S("\x01\x02 hello there\r\n") };
  struct outcome o = RUN(s);
  assert_int_equal(o.state, IMAP_TRACK_UNTRACKABLE);
  assert_false(o.rehomable);
  struct step c[] = { C("justoneword\r\n") };
  o = RUN(c);
  assert_string_equal(o.why, "client_syntax");
  /* Random bytes in both directions: no crash, no leak (ASan build). */
  char junk[4096];
  for (uint32_t seed = 1; seed < 50; seed++) {
    rng = seed;
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)(next_rand() % 7 == 0 ? '\n' : next_rand());
    struct imap_track *t = imap_track_new();
    imap_track_client(t, junk, sizeof junk / 2);
    imap_track_server(t, junk + sizeof junk / 2, sizeof junk / 2);
    const char *why;
    (void)imap_track_rehomable(t, &why);
    imap_track_free(t);
  }
}

/* A synchronizing literal the server refuses (tagged NO/BAD before its
 * "+") is never sent (RFC 3501 7.5): the client's next bytes are a new
 * command, not the literal. */
static void test_refused_literal(void **state) {
  (void)state;
  struct step s[] = {
      select_inbox[0], select_inbox[1],
      C("b1 SELECT {40}\r\n"),
      S("b1 NO [TOOBIG] Mailbox name too long\r\n"),
      C("c1 NOOP\r\n"),
      S("c1 OK NOOP completed.\r\n"),
  };
  struct outcome o = RUN(s);
  assert_int_equal(o.state, IMAP_TRACK_AUTHENTICATED);   /* the failed SELECT deselected */
  assert_int_equal(o.v.in_flight, 0);
  assert_true(o.rehomable);
}

/* The server answers a SELECT whose literal name is still to come, under
 * an earlier SELECT still in flight (a fuzz find: the literal was copied
 * into that one's shorter name). Nothing to follow: UNTRACKABLE. */
static void test_answered_mid_command(void **state) {
  (void)state;
  struct step s[] = {
      C("a1 SELECT INBOX\r\nb1 SELECT {40+}\r\n"),
      S("b1 BAD [TOOBIG] Mailbox name too long\r\n"),
      C("0123456789012345678901234567890123456789\r\n"),
  };
  struct outcome o = RUN(s);
  assert_int_equal(o.state, IMAP_TRACK_UNTRACKABLE);
  assert_string_equal(o.why, "answered_mid_command");
}

/* The footprint goal: an idle selected session, even idling, holds at
 * most 256 bytes. */
static void test_footprint(void **state) {
  (void)state;
  struct imap_track *t = imap_track_new();
  assert_non_null(t);
  size_t empty = imap_track_bytes_held(t);
  feed_step(t, &select_inbox[0], WHOLE);
  feed_step(t, &select_inbox[1], WHOLE);
  size_t selected = imap_track_bytes_held(t);
  struct step idle[] = { C("i1 IDLE\r\n"), S("+ idling\r\n") };
  feed_step(t, &idle[0], WHOLE);
  feed_step(t, &idle[1], WHOLE);
  size_t idling = imap_track_bytes_held(t);
  printf("imap_track: new %zu, selected INBOX %zu, idling %zu bytes\n", empty, selected, idling);
  assert_true(selected <= 256);
  assert_true(idling <= 256);
  imap_track_client(t, "DO", 2);   /* a partial line costs its buffer, */
  assert_true(imap_track_bytes_held(t) > idling);
  imap_track_client(t, "NE\r\n", 4);   /* and only while it is partial */
  assert_int_equal(imap_track_bytes_held(t), idling);
  imap_track_free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_select),           cmocka_unit_test(test_tie_point),
      cmocka_unit_test(test_qresync_select),   cmocka_unit_test(test_vanished),
      cmocka_unit_test(test_closed_switch),    cmocka_unit_test(test_failed_select),
      cmocka_unit_test(test_examine_close_unselect), cmocka_unit_test(test_mailbox_literal),
      cmocka_unit_test(test_literals),         cmocka_unit_test(test_pipelined),
      cmocka_unit_test(test_idle),             cmocka_unit_test(test_compress),
      cmocka_unit_test(test_logout),           cmocka_unit_test(test_enabled_list),
      cmocka_unit_test(test_overlong_lines),   cmocka_unit_test(test_partial_boundaries),
      cmocka_unit_test(test_garbage),          cmocka_unit_test(test_footprint),
      cmocka_unit_test(test_refused_literal), cmocka_unit_test(test_answered_mid_command),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
