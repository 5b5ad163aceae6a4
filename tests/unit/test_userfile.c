/* Unit tests of the users file (auth/userfile) and password verification
 * (auth/passwd): parsing, errors naming file and line, lookup, aliases and
 * pinned backends, crypt(3) schemes, and the dummy hash for unknown users. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "auth/userfile.h"

static char path[64];

static void write_file(const char *text) {
  snprintf(path, sizeof path, "/tmp/usher-test-users-%d", (int)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

/* A fresh crypt(3) hash of pw with the given scheme prefix ("$6$", "$y$"). */
static char *make_hash(const char *prefix, const char *pw) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt));
  struct crypt_data cd;
  memset(&cd, 0, sizeof cd);
  const char *out = crypt_r(pw, salt, &cd);
  assert_non_null(out);
  assert_int_not_equal(out[0], '*');
  return strdup(out);
}

static void expect_error(const char *text, const char *line_and_problem) {
  char err[512] = "", want[600];
  write_file(text);
  struct userfile *uf = userfile_load(path, err, sizeof err);
  assert_null(uf);
  snprintf(want, sizeof want, "%s:%s", path, line_and_problem);
  if (strncmp(err, want, strlen(want))) fail_msg("got '%s', want prefix '%s'", err, want);
}

static void test_parse_and_lookup(void **state) {
  (void)state;
  char *h6 = make_hash("$6$", "secret"), *hy = make_hash("$y$", "other");
  char text[2048];
  snprintf(text, sizeof text,
           "# demo users\n"
           "\n"
           "alice:{SHA512-CRYPT}%s\n"
           "bob:%s:backend=b2\n"
           "bobby:%s:user=bob\n"
           "   \n"
           "carol:{CRYPT}%s::backend=b1:user=carol\n",
           h6, hy, hy, h6);
  write_file(text);
  char err[256] = "";
  struct userfile *uf = userfile_load(path, err, sizeof err);
  if (!uf) fail_msg("%s", err);
  assert_int_equal(userfile_count(uf), 4);

  const struct userfile_entry *a = userfile_lookup(uf, "alice");
  assert_non_null(a);
  assert_string_equal(a->user, "alice");
  assert_string_equal(a->canonical, "alice");
  assert_null(a->backend);
  assert_string_equal(a->hash, h6);   /* the {SCHEME} prefix is stripped */

  const struct userfile_entry *b = userfile_lookup(uf, "bob");
  assert_non_null(b);
  assert_string_equal(b->backend, "b2");
  const struct userfile_entry *alias = userfile_lookup(uf, "bobby");
  assert_non_null(alias);
  assert_string_equal(alias->canonical, "bob");
  const struct userfile_entry *c = userfile_lookup(uf, "carol");
  assert_non_null(c);
  assert_string_equal(c->backend, "b1");

  /* Names match exactly: no case folding, no prefix match. */
  assert_null(userfile_lookup(uf, "Alice"));
  assert_null(userfile_lookup(uf, "alic"));
  assert_null(userfile_lookup(uf, "alice "));
  assert_null(userfile_lookup(uf, ""));

  assert_int_equal(passwd_verify("secret", a->hash), PASSWD_MATCH);
  assert_int_equal(passwd_verify("Secret", a->hash), PASSWD_MISMATCH);
  assert_int_equal(passwd_verify("", a->hash), PASSWD_MISMATCH);
  assert_int_equal(passwd_verify("other", b->hash), PASSWD_MATCH);
  assert_int_equal(passwd_verify("secret", b->hash), PASSWD_MISMATCH);
  userfile_free(uf);
  free(h6);
  free(hy);
}

static void test_many_users(void **state) {
  (void)state;
  /* Enough entries to force the table to grow several times. */
  FILE *f;
  snprintf(path, sizeof path, "/tmp/usher-test-users-%d", (int)getpid());
  assert_non_null(f = fopen(path, "w"));
  for (int i = 0; i < 5000; i++) fprintf(f, "user%05d:$6$salt$hash%d\n", i, i);
  fclose(f);
  char err[256] = "";
  struct userfile *uf = userfile_load(path, err, sizeof err);
  if (!uf) fail_msg("%s", err);
  assert_int_equal(userfile_count(uf), 5000);
  for (int i = 0; i < 5000; i += 7) {
    char name[16], hash[32];
    snprintf(name, sizeof name, "user%05d", i);
    snprintf(hash, sizeof hash, "$6$salt$hash%d", i);
    const struct userfile_entry *e = userfile_lookup(uf, name);
    assert_non_null(e);
    assert_string_equal(e->hash, hash);
  }
  assert_null(userfile_lookup(uf, "user05000"));
  userfile_free(uf);
}

static void test_errors(void **state) {
  (void)state;
  expect_error("alice\n", "1: missing password hash");
  expect_error("# c\n\n:$6$x$y\n", "3: missing user name");
  expect_error("alice:plaintext\n", "1: password hash is not a crypt(3) string");
  expect_error("alice:{SHA512-CRYPT\n", "1: bad {SCHEME} prefix");
  expect_error("alice:$6$a$b\nalice:$6$c$d\n", "2: duplicate user");
  expect_error("alice:$6$a$b\nbob:$6$a$b:color=blue\n", "2: unknown extra field");
  char err[256] = "";
  assert_null(userfile_load("/nonexistent/usher-users", err, sizeof err));
  assert_non_null(strstr(err, "/nonexistent/usher-users:0: cannot open"));
}

static void test_bad_hash_and_dummy(void **state) {
  (void)state;
  assert_int_equal(passwd_verify("x", "plaintext"), PASSWD_BAD_HASH);
  assert_int_equal(passwd_verify("x", "$zz$abc$def"), PASSWD_BAD_HASH);

  /* The dummy hash has the scheme asked for, is stable, and no guess matches. */
  const char *d6 = passwd_dummy_hash("$6$rounds=5000$abc$def");
  assert_non_null(d6);
  assert_memory_equal(d6, "$6$", 3);
  assert_ptr_equal(d6, passwd_dummy_hash("{SHA512-CRYPT}$6$zz$yy"));
  const char *dy = passwd_dummy_hash(NULL);
  assert_non_null(dy);
  assert_memory_equal(dy, "$y$", 3);
  assert_int_equal(passwd_verify("", d6), PASSWD_MISMATCH);
  assert_int_equal(passwd_verify("password", dy), PASSWD_MISMATCH);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse_and_lookup),
      cmocka_unit_test(test_many_users),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_bad_hash_and_dummy),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  unlink(path);
  return rc;
}
