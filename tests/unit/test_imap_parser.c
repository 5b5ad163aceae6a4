/* Unit tests of the pre-auth IMAP parser: every token kind, literals, every
 * limit, error recovery; and that feeding byte by byte gives the same
 * result as feeding everything at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/imap_parser.h"

static const struct imap_limits LIM = {.max_line = 100, .max_literal = 32, .max_command = 160};

/* Feeds all of s (len bytes), answering continuations; returns the final
 * status and sets *used to the bytes consumed in total. With bytewise, one
 * byte per call. */
static enum imap_status feed(struct imap_parser *p, const char *s, size_t len, int bytewise,
                             size_t *used, int *continuations) {
  size_t off = 0;
  *continuations = 0;
  while (off < len) {
    size_t n = bytewise ? 1 : len - off, c = 0;
    enum imap_status st = imap_parser_feed(p, s + off, n, &c);
    off += c;
    if (st == IMAP_CONTINUE) {
      (*continuations)++;
      continue;
    }
    if (st != IMAP_NEED_MORE) {
      *used = off;
      return st;
    }
  }
  *used = off;
  return IMAP_NEED_MORE;
}

/* Parses one complete command both ways and checks the two agree. */
static struct imap_parser *parse_ok(const char *s, size_t len, int want_cont) {
  struct imap_parser *ref = NULL;
  for (int bytewise = 0; bytewise <= 1; bytewise++) {
    struct imap_parser *p = imap_parser_new(&LIM);
    size_t used;
    int cont;
    assert_int_equal(feed(p, s, len, bytewise, &used, &cont), IMAP_COMMAND);
    assert_int_equal(used, len);
    assert_int_equal(cont, want_cont);
    if (!ref) {
      ref = p;
      continue;
    }
    const struct imap_command *a = imap_parser_command(ref), *b = imap_parser_command(p);
    assert_string_equal(a->tag, b->tag);
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->nargs, b->nargs);
    for (unsigned i = 0; i < a->nargs; i++) {
      assert_int_equal(a->args[i].type, b->args[i].type);
      assert_int_equal(a->args[i].len, b->args[i].len);
      assert_memory_equal(a->args[i].s, b->args[i].s, a->args[i].len);
    }
    imap_parser_free(p);
  }
  return ref;
}

#define PARSE(lit, cont) parse_ok(lit, sizeof(lit) - 1, cont)

static void test_atoms_and_case(void **state) {
  (void)state;
  struct imap_parser *p = PARSE("a001 login alice s3cret]\r\n", 0);
  const struct imap_command *c = imap_parser_command(p);
  assert_string_equal(c->tag, "a001");
  assert_string_equal(c->name, "login");   /* case preserved */
  assert_int_equal(c->nargs, 2);
  assert_int_equal(c->args[0].type, IMAP_ARG_ATOM);
  assert_string_equal(c->args[0].s, "alice");
  assert_string_equal(c->args[1].s, "s3cret]");
  imap_parser_free(p);

  p = PARSE("x CAPABILITY\n", 0);   /* a bare LF ends a line too */
  assert_int_equal(imap_parser_command(p)->nargs, 0);
  imap_parser_free(p);
}

static void test_quoted(void **state) {
  (void)state;
  struct imap_parser *p = PARSE("t LOGIN \"al ice\" \"p\\\"w\\\\d\" \"\"\r\n", 0);
  const struct imap_command *c = imap_parser_command(p);
  assert_int_equal(c->nargs, 3);
  assert_int_equal(c->args[0].type, IMAP_ARG_STRING);
  assert_string_equal(c->args[0].s, "al ice");
  assert_string_equal(c->args[1].s, "p\"w\\d");
  assert_int_equal(c->args[2].len, 0);
  imap_parser_free(p);
  p = PARSE("t LOGIN \"caf\xc3\xa9\" x\r\n", 0);   /* UTF-8 inside quotes */
  assert_string_equal(imap_parser_command(p)->args[0].s, "caf\xc3\xa9");
  imap_parser_free(p);
}

static void test_lists_and_nil(void **state) {
  (void)state;
  struct imap_parser *p = PARSE("i ID (\"name\" \"x\" \"version\" NIL)\r\n", 0);
  const struct imap_command *c = imap_parser_command(p);
  assert_int_equal(c->nargs, 6);
  assert_int_equal(c->args[0].type, IMAP_ARG_LIST_START);
  assert_int_equal(c->args[4].type, IMAP_ARG_ATOM);
  assert_string_equal(c->args[4].s, "NIL");
  assert_int_equal(c->args[5].type, IMAP_ARG_LIST_END);
  imap_parser_free(p);
  p = PARSE("i ID ()\r\n", 0);
  assert_int_equal(imap_parser_command(p)->nargs, 2);
  imap_parser_free(p);
  p = PARSE("i ID NIL\r\n", 0);
  assert_string_equal(imap_parser_command(p)->args[0].s, "NIL");
  imap_parser_free(p);
}

static void test_literals(void **state) {
  (void)state;
  static const char sync[] = "a LOGIN {5}\r\nalice {6}\r\nx\r\ny\0z\r\n";
  struct imap_parser *p = parse_ok(sync, sizeof sync - 1, 2);
  const struct imap_command *c = imap_parser_command(p);
  assert_int_equal(c->nargs, 2);
  assert_string_equal(c->args[0].s, "alice");
  assert_int_equal(c->args[0].literal, 1);
  assert_int_equal(c->args[1].len, 6);
  assert_memory_equal(c->args[1].s, "x\r\ny\0z", 6);
  imap_parser_free(p);

  p = PARSE("a LOGIN {5+}\r\nalice {0+}\r\n\r\n", 0);   /* LITERAL+: no "+" needed */
  c = imap_parser_command(p);
  assert_string_equal(c->args[0].s, "alice");
  assert_int_equal(c->args[1].len, 0);
  imap_parser_free(p);

  p = PARSE("a LOGIN {0}\r\n \"pw\"\r\n", 1);
  assert_int_equal(imap_parser_command(p)->args[0].len, 0);
  imap_parser_free(p);
}

static void test_pipelined_and_leftover(void **state) {
  (void)state;
  static const char two[] = "a STARTTLS\r\nb LOGIN x y\r\n";
  struct imap_parser *p = imap_parser_new(&LIM);
  size_t used;
  assert_int_equal(imap_parser_feed(p, two, sizeof two - 1, &used), IMAP_COMMAND);
  assert_int_equal(used, strlen("a STARTTLS\r\n"));   /* the rest stays with the caller */
  assert_string_equal(imap_parser_command(p)->name, "STARTTLS");
  imap_parser_reset(p);
  assert_int_equal(imap_parser_feed(p, two + used, sizeof two - 1 - used, &used), IMAP_COMMAND);
  assert_string_equal(imap_parser_command(p)->tag, "b");
  imap_parser_free(p);
}

static void expect_error(const char *s, enum imap_error want, int fatal, const char *tag) {
  for (int bytewise = 0; bytewise <= 1; bytewise++) {
    struct imap_parser *p = imap_parser_new(&LIM);
    size_t used;
    int cont;
    enum imap_status st = feed(p, s, strlen(s), bytewise, &used, &cont);
    if (st != IMAP_ERROR) fail_msg("'%s' gave status %d, not an error", s, st);
    if (imap_parser_error(p) != want)
      fail_msg("'%s' gave error %d, wanted %d", s, imap_parser_error(p), want);
    assert_int_equal(imap_parser_error_fatal(p), fatal);
    if (tag) assert_string_equal(imap_parser_error_tag(p), tag);
    else assert_null(imap_parser_error_tag(p));
    assert_non_null(imap_error_text(want));
    imap_parser_free(p);
  }
}

static void test_syntax_errors(void **state) {
  (void)state;
  expect_error("\r\n", IMAP_ERR_SYNTAX, 0, NULL);
  expect_error("tagonly\r\n", IMAP_ERR_SYNTAX, 0, "tagonly");
  expect_error("t \r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("+x NOOP\r\n", IMAP_ERR_SYNTAX, 0, NULL);
  expect_error("t LOGIN \"unterminated\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN \"bad\\escape\"\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN {5\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN {5} x\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN {x}\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN a  b\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN a \r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t ID (\"a\"\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t ID ((((((x)))))\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN a\x01 b\r\n", IMAP_ERR_SYNTAX, 0, "t");
  expect_error("t LOGIN caf\xc3\xa9 b\r\n", IMAP_ERR_SYNTAX, 0, "t");
}

static void test_limits(void **state) {
  (void)state;
  char line[200];
  /* A line exactly max_line long (CRLF included) passes; one more fails. */
  memset(line, 'a', sizeof line);
  memcpy(line, "t NOOP ", 7);
  memcpy(line + LIM.max_line - 2, "\r\n", 3);
  struct imap_parser *p = parse_ok(line, LIM.max_line, 0);
  imap_parser_free(p);
  memset(line, 'a', sizeof line);
  memcpy(line, "t NOOP ", 7);
  memcpy(line + LIM.max_line - 1, "\r\n", 3);
  expect_error(line, IMAP_ERR_LINE_TOO_LONG, 0, "t");

  expect_error("t LOGIN {33}\r\n", IMAP_ERR_LITERAL_TOO_BIG, 0, "t");
  expect_error("t LOGIN {33+}\r\n", IMAP_ERR_LITERAL_TOO_BIG, 1, "t");
  expect_error("t LOGIN {99999999999999999999999}\r\n", IMAP_ERR_SYNTAX, 0, "t");
  p = PARSE("t LOGIN {32+}\r\n12345678901234567890123456789012 x\r\n", 0);
  assert_int_equal(imap_parser_command(p)->args[0].len, 32);
  imap_parser_free(p);
  /* Four literals of 32 bytes and their lines exceed max_command (160). */
  expect_error("t X {32+}\r\n12345678901234567890123456789012 {32+}\r\n"
               "12345678901234567890123456789012 {32+}\r\n12345678901234567890123456789012 {32+}\r\n"
               "12345678901234567890123456789012\r\n",
               IMAP_ERR_COMMAND_TOO_BIG, 1, "t");

  char tag[IMAP_MAX_TAG + 16];
  memset(tag, 't', IMAP_MAX_TAG + 1);
  strcpy(tag + IMAP_MAX_TAG + 1, " NOOP\r\n");
  expect_error(tag, IMAP_ERR_SYNTAX, 0, NULL);

  struct imap_limits wide = {.max_line = 4096, .max_literal = 32, .max_command = 8192};
  char many[4096] = "t X";
  for (int i = 0; i < IMAP_MAX_ARGS + 1; i++) strcat(many, " a");
  strcat(many, "\r\n");
  p = imap_parser_new(&wide);
  size_t used;
  assert_int_equal(imap_parser_feed(p, many, strlen(many), &used), IMAP_ERROR);
  assert_int_equal(imap_parser_error(p), IMAP_ERR_TOO_MANY_ARGS);
  assert_int_equal(used, strlen(many));   /* the rest of the line is consumed */
  imap_parser_free(p);
}

static void test_skip_after_long_line(void **state) {
  (void)state;
  struct imap_parser *p = imap_parser_new(&LIM);
  char junk[300];
  memset(junk, 'x', sizeof junk);
  memcpy(junk, "tag1 NOOP ", 10);
  size_t used, total = 0;
  assert_int_equal(imap_parser_feed(p, junk, sizeof junk, &used), IMAP_ERROR);
  assert_int_equal(imap_parser_error(p), IMAP_ERR_LINE_TOO_LONG);
  assert_string_equal(imap_parser_error_tag(p), "tag1");
  imap_parser_reset(p);
  total = used;
  while (total < sizeof junk) {   /* still the same line: silently skipped */
    assert_int_equal(imap_parser_feed(p, junk + total, sizeof junk - total, &used), IMAP_NEED_MORE);
    total += used;
  }
  static const char rest[] = "xxxx\r\nn2 NOOP\r\n";
  assert_int_equal(imap_parser_feed(p, rest, sizeof rest - 1, &used), IMAP_COMMAND);
  assert_int_equal(used, sizeof rest - 1);
  assert_string_equal(imap_parser_command(p)->tag, "n2");
  imap_parser_free(p);
}

static void test_line_mode(void **state) {
  (void)state;
  struct imap_parser *p = imap_parser_new(&LIM);
  imap_parser_expect_line(p);
  size_t used, n;
  static const char in[] = "AGFsaWNlAHB3\r\nnext";
  assert_int_equal(imap_parser_feed(p, in, sizeof in - 1, &used), IMAP_LINE);
  assert_int_equal(used, sizeof in - 1 - 4);
  assert_string_equal(imap_parser_line(p, &n), "AGFsaWNlAHB3");
  assert_int_equal(n, 12);
  imap_parser_reset(p);   /* back to commands */
  assert_int_equal(imap_parser_feed(p, "a NOOP\r\n", 8, &used), IMAP_COMMAND);
  imap_parser_free(p);
}

static void test_fatal_stops_feeding(void **state) {
  (void)state;
  struct imap_parser *p = imap_parser_new(&LIM);
  size_t used;
  assert_int_equal(imap_parser_feed(p, "t X {99+}\r\n", 11, &used), IMAP_ERROR);
  assert_true(imap_parser_error_fatal(p));
  assert_int_equal(imap_parser_feed(p, "a NOOP\r\n", 8, &used), IMAP_ERROR);
  assert_int_equal(used, 0);
  imap_parser_free(p);
}

/* The literal check as preauth.c uses it: LOGIN's literals are refused. */
static int refuse_login(void *arg, const char *tag, const char *name) {
  int *asked = arg;
  (*asked)++;
  assert_non_null(tag);
  return strcmp(name, "LOGIN") == 0;
}

/* Feeds s as a client would, bytewise or at once; returns the statuses
 * seen in order (C command, E error, + continuation), the reset after
 * every command or error included. */
static void feed_refusing(const char *s, int bytewise, char *seen, size_t seen_len,
                          char tags[][8]) {
  struct imap_parser *p = imap_parser_new(&LIM);
  int asked = 0;
  size_t len = strlen(s), off = 0, k = 0;
  imap_parser_set_literal_check(p, refuse_login, &asked);
  while (off < len) {
    size_t n = bytewise ? 1 : len - off, used = 0;
    enum imap_status st = imap_parser_feed(p, s + off, n, &used);
    off += used;
    if (st == IMAP_NEED_MORE) continue;
    assert_true(k + 1 < seen_len);
    if (st == IMAP_CONTINUE) {
      seen[k++] = '+';
      continue;
    }
    seen[k] = st == IMAP_COMMAND ? 'C' : 'E';
    const char *tag = st == IMAP_COMMAND ? imap_parser_command(p)->tag : imap_parser_error_tag(p);
    snprintf(tags[k++], 8, "%s", tag ? tag : "*");
    if (st == IMAP_ERROR) {
      assert_int_equal(imap_parser_error(p), IMAP_ERR_LITERAL_REFUSED);
      assert_false(imap_parser_error_fatal(p));
    }
    imap_parser_reset(p);
  }
  seen[k] = '\0';
  assert_true(asked > 0);
  imap_parser_free(p);
}

static void expect_refusing(const char *s, const char *want_seen, const char *const *want_tags) {
  for (int bytewise = 0; bytewise <= 1; bytewise++) {
    char seen[16], tags[16][8];
    feed_refusing(s, bytewise, seen, sizeof seen, tags);
    if (strcmp(seen, want_seen) != 0)
      fail_msg("'%s' (bytewise %d) gave %s, wanted %s", s, bytewise, seen, want_seen);
    for (size_t i = 0; want_seen[i]; i++)
      if (want_tags[i]) assert_string_equal(tags[i], want_tags[i]);
  }
}

static void test_refused_literal(void **state) {
  (void)state;
  /* Synchronizing: refused before any "+"; the client sends nothing of the
   * literal, so the next line is the next command. */
  expect_refusing("a LOGIN {5}\r\nb CAPABILITY\r\n", "EC", (const char *[]){"a", "b"});
  expect_refusing("a LOGIN alice {8}\r\nb NOOP\r\n", "EC", (const char *[]){"a", "b"});
  /* Non-synchronizing: the literal and the rest of its command come anyway
   * and are skipped, never taken for a command, however they look. */
  expect_refusing("a LOGIN {5+}\r\nalice pass\r\nb CAPABILITY\r\n", "EC",
                  (const char *[]){"a", "b"});
  expect_refusing("a LOGIN {7+}\r\nx NOOP\n {10+}\r\ny LOGOUT\n\r\nb NOOP\r\n", "EC",
                  (const char *[]){"a", "b"});
  expect_refusing("a LOGIN alice {0+}\r\n\r\nb NOOP\r\n", "EC", (const char *[]){"a", "b"});
  /* A synchronizing literal behind a refused LITERAL+ one: the client waits
   * for a "+" that does not come; the command was answered. */
  expect_refusing("a LOGIN {5+}\r\nalice {4}\r\nb NOOP\r\n", "EC", (const char *[]){"a", "b"});
  /* Other commands' literals are still invited. */
  expect_refusing("a ID ({4}\r\nname NIL)\r\nb LOGIN {1}\r\n", "+CE",
                  (const char *[]){NULL, "a", "b"});
}

static void test_refused_literal_limits(void **state) {
  (void)state;
  /* The skipped rest still counts against max_command: fatal past it. */
  struct imap_parser *p = imap_parser_new(&LIM);
  int asked = 0;
  size_t used;
  imap_parser_set_literal_check(p, refuse_login, &asked);
  assert_int_equal(imap_parser_feed(p, "a LOGIN {30+}\r\n", 16, &used), IMAP_ERROR);
  assert_int_equal(imap_parser_error(p), IMAP_ERR_LITERAL_REFUSED);
  imap_parser_reset(p);
  char lit[30];
  memset(lit, 'x', sizeof lit);
  size_t fed = 16;
  enum imap_status st = IMAP_NEED_MORE;
  while (st == IMAP_NEED_MORE && fed < 1000) {   /* literal after literal, 38 bytes each */
    st = imap_parser_feed(p, lit, sizeof lit, &used);
    if (st == IMAP_NEED_MORE) st = imap_parser_feed(p, " {30+}\r\n", 8, &used);
    fed += sizeof lit + 8;
  }
  assert_int_equal(st, IMAP_ERROR);
  assert_true(fed <= LIM.max_command + 38);
  assert_int_equal(imap_parser_error(p), IMAP_ERR_COMMAND_TOO_BIG);
  assert_true(imap_parser_error_fatal(p));
  imap_parser_free(p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_atoms_and_case),     cmocka_unit_test(test_quoted),
      cmocka_unit_test(test_lists_and_nil),      cmocka_unit_test(test_literals),
      cmocka_unit_test(test_pipelined_and_leftover), cmocka_unit_test(test_syntax_errors),
      cmocka_unit_test(test_limits),             cmocka_unit_test(test_skip_after_long_line),
      cmocka_unit_test(test_line_mode),          cmocka_unit_test(test_fatal_stops_feeding),
      cmocka_unit_test(test_refused_literal),    cmocka_unit_test(test_refused_literal_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
