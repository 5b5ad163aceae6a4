/* libFuzzer target: the pre-auth IMAP parser. The input is split at the
 * first byte into two feeds (so commands cut anywhere are exercised), and
 * fed the way the worker does: reset after every command, line or error,
 * stop at a fatal error; byte 0 also switches on line mode now and then,
 * and the literal check that refuses LOGIN's literals (as preauth.c does
 * on a plaintext line), so refused commands are skipped too. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "proxy/imap_parser.h"
#include "common/util.h"

static int refuse_login(void *arg, const char *tag, const char *name) {
  (void)arg;
  if (!tag || !name) __builtin_trap();
  return ascii_casecmp(name, "LOGIN") == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  const struct imap_limits lim = {.max_line = 256, .max_literal = 128, .max_command = 1024};
  struct imap_parser *p = imap_parser_new(&lim);
  size_t cut = 1 + (size > 1 ? data[0] % (size - 1) : 0);
  if (data[0] & 0x80) imap_parser_expect_line(p);
  if (data[0] & 0x40) imap_parser_set_literal_check(p, refuse_login, NULL);
  const char *parts[2] = {(const char *)data + 1, (const char *)data + cut};
  size_t lens[2] = {cut - 1, size - cut};
  for (int k = 0; k < 2; k++) {
    const char *d = parts[k];
    size_t left = lens[k];
    while (left > 0) {
      size_t used = 0;
      enum imap_status st = imap_parser_feed(p, d, left, &used);
      if (used > left) __builtin_trap();   /* must never claim more than it got */
      d += used;
      left -= used;
      if (st == IMAP_COMMAND) {
        const struct imap_command *c = imap_parser_command(p);
        if (!c) __builtin_trap();
        imap_parser_reset(p);
      } else if (st == IMAP_LINE) {
        size_t n;
        (void)imap_parser_line(p, &n);
        imap_parser_reset(p);
      } else if (st == IMAP_ERROR) {
        (void)imap_error_text(imap_parser_error(p));
        if (imap_parser_error_fatal(p)) goto done;
        imap_parser_reset(p);
      } else if (used == 0 && st != IMAP_CONTINUE) {
        break;
      }
    }
  }
done:
  imap_parser_free(p);
  return 0;
}
