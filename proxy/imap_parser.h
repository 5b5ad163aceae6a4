/* An incremental parser for IMAP client commands before authentication
 * (RFC 9051 / RFC 3501 syntax, RFC 7888 LITERAL+).
 *
 * It accumulates one command at a time:
 *     tag SP name *(SP arg) CRLF
 * where an arg is an atom (ASTRING-CHARs; NIL is an atom), a quoted string
 * (escapes \" and \\ only; no CR, LF or NUL), a literal ({n} synchronizing,
 * {n+} non-synchronizing, may hold any byte), or a parenthesized list of
 * those (nesting at most 4 deep; only ID uses lists before login). A bare
 * LF is accepted as a line end, like most servers do.
 *
 * Limits (struct imap_limits): each line segment (the bytes between literals,
 * CRLF included) <= max_line; each literal <= max_literal; the whole command
 * (segments and literals) <= max_command; at most IMAP_MAX_ARGS args.
 *
 * The parser owns copies of everything it returns (unescaped, NUL-terminated)
 * and wipes its memory on reset and free, because LOGIN carries passwords.
 */
#ifndef USHER_IMAP_PARSER_H
#define USHER_IMAP_PARSER_H

#include <stddef.h>

#define IMAP_MAX_ARGS 64
#define IMAP_MAX_TAG 64   /* longer tags are a syntax error */

struct imap_limits {
  size_t max_line;
  size_t max_literal;
  size_t max_command;
};

enum imap_arg_type {
  IMAP_ARG_ATOM,        /* includes NIL */
  IMAP_ARG_STRING,      /* quoted or literal */
  IMAP_ARG_LIST_START,  /* "(" */
  IMAP_ARG_LIST_END,    /* ")" */
};

struct imap_arg {
  enum imap_arg_type type;
  const char *s;        /* NUL-terminated; "" for list markers */
  size_t len;           /* bytes in s (a literal may hold NULs) */
  int literal;          /* 1 if it came as a literal */
};

struct imap_command {
  const char *tag;
  const char *name;     /* as sent: compare case-insensitively */
  unsigned nargs;
  struct imap_arg args[IMAP_MAX_ARGS];
};

enum imap_status {
  IMAP_NEED_MORE,   /* everything given was consumed; no command yet */
  IMAP_COMMAND,     /* a whole command: imap_parser_command() */
  IMAP_LINE,        /* in line mode: a whole line, imap_parser_line() */
  IMAP_CONTINUE,    /* a synchronizing literal was announced and fits the
                       limits: send "+ ..." to the client, then feed on */
  IMAP_ERROR,       /* a bad command: imap_parser_error() says why */
};

enum imap_error {
  IMAP_ERR_NONE = 0,
  IMAP_ERR_SYNTAX,          /* the rest of the line has been consumed */
  IMAP_ERR_LINE_TOO_LONG,   /* reported as soon as the limit is crossed; the
                               parser then silently skips to the line end */
  IMAP_ERR_LITERAL_TOO_BIG, /* {n} over the limit: the client will not send
                               it (it waits for "+"): not fatal.
                               {n+} over the limit: fatal (RFC 7888 4.) */
  IMAP_ERR_COMMAND_TOO_BIG, /* the whole command over max_command: fatal */
  IMAP_ERR_TOO_MANY_ARGS,   /* the rest of the line has been consumed */
  IMAP_ERR_LITERAL_REFUSED, /* the literal check said no (see below) */
};

struct imap_parser;

struct imap_parser *imap_parser_new(const struct imap_limits *lim);
/* Wipes and frees. NULL is fine. */
void imap_parser_free(struct imap_parser *p);

/* Feeds len bytes. *consumed says how many were used: on IMAP_COMMAND,
 * IMAP_LINE and IMAP_CONTINUE it stops right after the CRLF that completed
 * the command, line or literal announcement, so the caller keeps what
 * follows (pipelined commands; bytes behind STARTTLS, which it discards).
 * On IMAP_NEED_MORE everything was consumed. On IMAP_ERROR, up to where the
 * error was detected (the caller just keeps feeding what is left: in skip
 * mode the parser eats the rest of the line).
 * After IMAP_COMMAND, IMAP_LINE or IMAP_ERROR call imap_parser_reset()
 * before feeding again. Feeding after a fatal error is not allowed. */
enum imap_status imap_parser_feed(struct imap_parser *p, const char *data,
                                  size_t len, size_t *consumed);

/* Asked for each literal a command announces, once its tag and name are
 * known and before IMAP_CONTINUE would have the caller invite the bytes:
 * nonzero refuses the literal. (preauth.c refuses a password on a line
 * that may not carry one, so that the client is never invited to send it.)
 * A refused literal ends the command with IMAP_ERROR and
 * IMAP_ERR_LITERAL_REFUSED, its tag known, not fatal: the caller answers
 * the tag, resets and feeds on, as after any error. A synchronizing
 * literal that was not invited is not sent, so the next line is a new
 * command. A non-synchronizing one ({n+}) comes anyway, and the rest of
 * its command after it: the parser skips all of that, further LITERAL+
 * literals included, without keeping any of it, up to the line that ends
 * the command (or announces a synchronizing literal, which the client
 * waits for in vain: its command was answered). */
typedef int (*imap_literal_check_fn)(void *arg, const char *tag, const char *name);
void imap_parser_set_literal_check(struct imap_parser *p, imap_literal_check_fn fn, void *arg);

/* Valid after IMAP_COMMAND until reset. */
const struct imap_command *imap_parser_command(const struct imap_parser *p);

/* Line mode, for the client's answer to an AUTHENTICATE continuation: the
 * next feed collects one raw line (<= max_line, CRLF or LF stripped, no
 * literal processing) and returns IMAP_LINE. Cleared by reset. */
void imap_parser_expect_line(struct imap_parser *p);
const char *imap_parser_line(const struct imap_parser *p, size_t *len);

/* After IMAP_ERROR. The tag is NULL when none could be parsed (answer with
 * "* BAD"). */
enum imap_error imap_parser_error(const struct imap_parser *p);
const char *imap_parser_error_tag(const struct imap_parser *p);
int imap_parser_error_fatal(const struct imap_parser *p);
const char *imap_error_text(enum imap_error e);

/* Forgets the current command (wiping its bytes); keeps skip mode if the
 * parser is still skipping the rest of an over-long line or of a command
 * whose literal was refused. */
void imap_parser_reset(struct imap_parser *p);

#endif
