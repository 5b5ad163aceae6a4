/* The pre-auth command parser (contract in imap_parser.h).
 *
 * Bytes arrive in line segments: everything up to an LF, or a literal's
 * announced number of bytes. A segment is collected whole (bounded by
 * max_line) and then tokenized, carrying the tokenizer's state (what comes
 * next, list depth) from one segment to the next across literals. Values
 * are copied, unescaped, into one growing store; the argument table keeps
 * offsets into it, turned into pointers only when a command is handed out,
 * so the store may move while it grows. */
#include "proxy/imap_parser.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

#define MAX_DEPTH 4
#define INITIAL_CAP 256

enum mode { M_LINE, M_LITERAL, M_SKIP };
enum expect { E_TAG, E_NAME, E_SEP, E_ARG };
enum seg_result { SEG_COMPLETE, SEG_LITERAL, SEG_ERROR };

struct arg_slot {
  enum imap_arg_type type;
  size_t off, len;
  int literal;
};

struct buf {
  char *p;
  size_t len, cap;
};

struct imap_parser {
  struct imap_limits lim;
  enum mode mode;
  int line_mode;
  struct buf seg;                 /* the segment being collected */
  struct buf store;               /* unescaped values, NUL-terminated */
  size_t cmd_bytes;               /* all bytes of this command so far */

  enum expect expect;
  int after_open;                 /* ")" may close an empty list */
  unsigned depth;
  size_t tag_off, name_off;
  int have_tag;
  struct arg_slot slots[IMAP_MAX_ARGS];
  unsigned nslots;

  size_t lit_left;                /* literal bytes still to come */
  int lit_sync;
  imap_literal_check_fn literal_check;
  void *literal_check_arg;
  int discard;                    /* skipping the rest of a refused command */

  enum imap_error err;
  int fatal;
  char err_tag[IMAP_MAX_TAG + 1];
  int has_err_tag;

  struct imap_command cmd;        /* handed out on IMAP_COMMAND */
};

/* ---- storage -------------------------------------------------------- */

static void buf_reserve(struct buf *b, size_t extra) {
  if (b->len + extra <= b->cap) return;
  size_t cap = b->cap ? b->cap : INITIAL_CAP;
  while (cap < b->len + extra) cap *= 2;
  /* Grow by copying, so the old block can be wiped: it may hold a password. */
  char *p = xmalloc(cap);
  if (b->len) memcpy(p, b->p, b->len);
  if (b->p) {
    wipe(b->p, b->cap);
    free(b->p);
  }
  b->p = p;
  b->cap = cap;
}

static void buf_append(struct buf *b, const void *data, size_t n) {
  if (n == 0) return;
  buf_reserve(b, n);
  memcpy(b->p + b->len, data, n);
  b->len += n;
}

static void buf_clear(struct buf *b) {
  if (b->p) wipe(b->p, b->len);
  b->len = 0;
}

static void buf_free(struct buf *b) {
  if (b->p) {
    wipe(b->p, b->cap);
    free(b->p);
  }
  b->p = NULL;
  b->len = b->cap = 0;
}

/* ---- character classes (RFC 9051 formal syntax) --------------------- */

static int is_atom_char(unsigned char c) {
  if (c <= 0x1f || c >= 0x7f) return 0;   /* CTL and 8-bit */
  return !strchr("(){ %*\"\\]", c);
}

static int is_astring_char(unsigned char c) {
  return is_atom_char(c) || c == ']';
}

static int is_tag_char(unsigned char c) {
  return is_astring_char(c) && c != '+';
}

/* ---- the tokenizer ---------------------------------------------------- */

static int fail(struct imap_parser *p, enum imap_error e, int fatal) {
  p->err = e;
  p->fatal = fatal;
  if (p->have_tag && !p->has_err_tag) {
    size_t n = strlen(p->store.p + p->tag_off);
    memcpy(p->err_tag, p->store.p + p->tag_off, n + 1);
    p->has_err_tag = 1;
  }
  return SEG_ERROR;
}

static int add_slot(struct imap_parser *p, enum imap_arg_type type, size_t off, size_t len,
                    int literal) {
  if (p->nslots == IMAP_MAX_ARGS) return -1;
  p->slots[p->nslots++] = (struct arg_slot){type, off, len, literal};
  return 0;
}

/* Stores s[0..n) plus a NUL; returns its offset. */
static size_t store_value(struct imap_parser *p, const char *s, size_t n) {
  size_t off = p->store.len;
  buf_append(&p->store, s, n);
  buf_append(&p->store, "", 1);
  return off;
}

static size_t span(const char *s, size_t i, size_t n, int (*ok)(unsigned char)) {
  size_t j = i;
  while (j < n && ok((unsigned char)s[j])) j++;
  return j - i;
}

/* A quoted string starting at s[*i] == '"'. */
static int quoted(struct imap_parser *p, const char *s, size_t n, size_t *i) {
  size_t off = p->store.len, j = *i + 1;
  for (; j < n && s[j] != '"'; j++) {
    char c = s[j];
    if (c == '\0' || c == '\r') return -1;
    if (c == '\\') {
      if (j + 1 >= n || (s[j + 1] != '"' && s[j + 1] != '\\')) return -1;
      c = s[++j];
    }
    buf_append(&p->store, &c, 1);
  }
  if (j >= n) return -1;   /* unterminated */
  size_t len = p->store.len - off;
  buf_append(&p->store, "", 1);
  *i = j + 1;
  return add_slot(p, IMAP_ARG_STRING, off, len, 0) == 0 ? 0 : -2;
}

/* "{" digits ["+"] "}" closing the segment. */
static int literal_marker(struct imap_parser *p, const char *s, size_t n, size_t i) {
  size_t j = i + 1, len = 0;
  if (j >= n || s[j] < '0' || s[j] > '9') return -1;
  for (; j < n && s[j] >= '0' && s[j] <= '9'; j++) {
    if (len > (SIZE_MAX - 9) / 10) return -1;
    len = len * 10 + (size_t)(s[j] - '0');
  }
  p->lit_sync = 1;
  if (j < n && s[j] == '+') {
    p->lit_sync = 0;
    j++;
  }
  if (j + 1 != n || s[j] != '}') return -1;
  p->lit_left = len;
  return 0;
}

static int tokenize(struct imap_parser *p, const char *s, size_t n) {
  size_t i = 0, k;
  for (;;) {
    switch (p->expect) {
    case E_TAG:
      k = span(s, i, n, is_tag_char);
      if (k == 0 || k > IMAP_MAX_TAG) return fail(p, IMAP_ERR_SYNTAX, 0);
      p->tag_off = store_value(p, s + i, k);
      p->have_tag = 1;
      i += k;
      if (i >= n || s[i] != ' ') return fail(p, IMAP_ERR_SYNTAX, 0);
      i++;
      p->expect = E_NAME;
      break;
    case E_NAME:
      k = span(s, i, n, is_atom_char);
      if (k == 0) return fail(p, IMAP_ERR_SYNTAX, 0);
      p->name_off = store_value(p, s + i, k);
      i += k;
      p->expect = E_SEP;
      break;
    case E_SEP:
      if (i == n) return p->depth == 0 ? SEG_COMPLETE : fail(p, IMAP_ERR_SYNTAX, 0);
      if (s[i] == ')' && p->depth > 0) {
        p->depth--;
        if (add_slot(p, IMAP_ARG_LIST_END, store_value(p, "", 0), 0, 0) != 0)
          return fail(p, IMAP_ERR_TOO_MANY_ARGS, 0);
        i++;
        break;
      }
      if (s[i] != ' ') return fail(p, IMAP_ERR_SYNTAX, 0);
      i++;
      p->expect = E_ARG;
      p->after_open = 0;
      break;
    case E_ARG:
      if (i == n) return fail(p, IMAP_ERR_SYNTAX, 0);
      if (s[i] == '(') {
        if (++p->depth > MAX_DEPTH) return fail(p, IMAP_ERR_SYNTAX, 0);
        if (add_slot(p, IMAP_ARG_LIST_START, store_value(p, "", 0), 0, 0) != 0)
          return fail(p, IMAP_ERR_TOO_MANY_ARGS, 0);
        i++;
        p->after_open = 1;
        break;
      }
      if (s[i] == ')' && p->after_open) {
        p->expect = E_SEP;   /* "()" : let E_SEP close it */
        break;
      }
      p->after_open = 0;
      if (s[i] == '"') {
        int r = quoted(p, s, n, &i);
        if (r == -2) return fail(p, IMAP_ERR_TOO_MANY_ARGS, 0);
        if (r != 0) return fail(p, IMAP_ERR_SYNTAX, 0);
      } else if (s[i] == '{') {
        if (literal_marker(p, s, n, i) != 0) return fail(p, IMAP_ERR_SYNTAX, 0);
        if (p->nslots == IMAP_MAX_ARGS) return fail(p, IMAP_ERR_TOO_MANY_ARGS, 0);
        return SEG_LITERAL;
      } else {
        k = span(s, i, n, is_astring_char);
        if (k == 0) return fail(p, IMAP_ERR_SYNTAX, 0);
        if (add_slot(p, IMAP_ARG_ATOM, store_value(p, s + i, k), k, 0) != 0)
          return fail(p, IMAP_ERR_TOO_MANY_ARGS, 0);
        i += k;
      }
      p->expect = E_SEP;
      break;
    }
  }
}

/* ---- feeding ---------------------------------------------------------- */

static void build_command(struct imap_parser *p) {
  struct imap_command *c = &p->cmd;
  c->tag = p->store.p + p->tag_off;
  c->name = p->store.p + p->name_off;
  c->nargs = p->nslots;
  for (unsigned i = 0; i < p->nslots; i++) {
    c->args[i].type = p->slots[i].type;
    c->args[i].s = p->store.p + p->slots[i].off;
    c->args[i].len = p->slots[i].len;
    c->args[i].literal = p->slots[i].literal;
  }
}

/* The tag at the start of a line that never ended (for "tag BAD"): the
 * segment collected so far followed by the chunk that overflowed it. */
static void error_tag_from_line(struct imap_parser *p, const char *chunk, size_t chunk_len) {
  if (p->have_tag || p->has_err_tag) return;
  char head[IMAP_MAX_TAG + 2];
  size_t n = p->seg.len < sizeof head ? p->seg.len : sizeof head;
  if (n) memcpy(head, p->seg.p, n);
  size_t more = sizeof head - n < chunk_len ? sizeof head - n : chunk_len;
  memcpy(head + n, chunk, more);
  n += more;
  size_t k = span(head, 0, n, is_tag_char);
  if (k == 0 || k > IMAP_MAX_TAG || k >= n || head[k] != ' ') return;
  memcpy(p->err_tag, head, k);
  p->err_tag[k] = '\0';
  p->has_err_tag = 1;
}

static void literal_begin(struct imap_parser *p) {
  add_slot(p, IMAP_ARG_STRING, p->store.len, p->lit_left, 1);
  p->mode = M_LITERAL;
}

static void literal_end(struct imap_parser *p) {
  buf_append(&p->store, "", 1);
  p->mode = M_LINE;
  p->expect = E_SEP;
}

static int literal_refused(struct imap_parser *p) {
  return p->literal_check &&
         p->literal_check(p->literal_check_arg, p->store.p + p->tag_off, p->store.p + p->name_off);
}

/* The refused command is over: what follows is a new one. */
static enum imap_status discard_end(struct imap_parser *p) {
  p->discard = 0;
  imap_parser_reset(p);
  return IMAP_NEED_MORE;
}

/* A segment of a refused command whose LITERAL+ literal came anyway: the
 * tokenizer follows it only to find where it ends, after the last literal
 * that the client sends uninvited. Nothing of it is kept. */
static enum imap_status discard_segment(struct imap_parser *p, int r) {
  buf_clear(&p->store);
  p->nslots = 0;
  if (r != SEG_LITERAL || p->lit_sync) return discard_end(p);   /* a sync one is not sent */
  if (p->lit_left > p->lim.max_literal) {
    fail(p, IMAP_ERR_LITERAL_TOO_BIG, 1);
    return IMAP_ERROR;
  }
  if (p->cmd_bytes + p->lit_left > p->lim.max_command) {
    fail(p, IMAP_ERR_COMMAND_TOO_BIG, 1);
    return IMAP_ERROR;
  }
  literal_begin(p);
  if (p->lit_left == 0) literal_end(p);
  return IMAP_NEED_MORE;
}

/* A whole segment (CRLF included) is in p->seg. */
static enum imap_status segment_done(struct imap_parser *p) {
  size_t n = p->seg.len - 1;   /* drop LF, then an optional CR */
  if (n > 0 && p->seg.p[n - 1] == '\r') n--;
  if (p->line_mode) {
    p->seg.p[n] = '\0';
    p->seg.len = n + 1;
    return IMAP_LINE;
  }
  int r = tokenize(p, p->seg.p, n);
  buf_clear(&p->seg);
  if (p->discard) return discard_segment(p, r);
  if (r == SEG_COMPLETE) {
    build_command(p);
    return IMAP_COMMAND;
  }
  if (r == SEG_ERROR) return IMAP_ERROR;
  /* SEG_LITERAL */
  if (p->lit_left > p->lim.max_literal) {
    fail(p, IMAP_ERR_LITERAL_TOO_BIG, !p->lit_sync);
    return IMAP_ERROR;
  }
  if (p->cmd_bytes + p->lit_left > p->lim.max_command) {
    fail(p, IMAP_ERR_COMMAND_TOO_BIG, 1);
    return IMAP_ERROR;
  }
  if (literal_refused(p)) {
    fail(p, IMAP_ERR_LITERAL_REFUSED, 0);
    /* Uninvited, a synchronizing literal is not sent: the next line is a
     * new command. A LITERAL+ one comes anyway, and what follows it. */
    if (p->lit_sync) return IMAP_ERROR;
    p->discard = 1;
    literal_begin(p);
    if (p->lit_left == 0) literal_end(p);
    return IMAP_ERROR;
  }
  literal_begin(p);
  if (p->lit_left == 0) literal_end(p);
  return p->lit_sync ? IMAP_CONTINUE : IMAP_NEED_MORE;
}

enum imap_status imap_parser_feed(struct imap_parser *p, const char *data, size_t len,
                                  size_t *consumed) {
  size_t i = 0;
  if (p->fatal) {
    *consumed = 0;
    return IMAP_ERROR;
  }
  while (i < len) {
    if (p->mode == M_LITERAL) {
      size_t take = len - i < p->lit_left ? len - i : p->lit_left;
      if (!p->discard) buf_append(&p->store, data + i, take);
      i += take;
      p->cmd_bytes += take;
      if ((p->lit_left -= take) == 0) literal_end(p);
      continue;
    }
    const char *lf = memchr(data + i, '\n', len - i);
    size_t chunk = lf ? (size_t)(lf - (data + i)) + 1 : len - i;
    if (p->mode == M_SKIP) {
      i += chunk;
      if (lf) p->mode = M_LINE;
      continue;
    }
    if (p->seg.len + chunk > p->lim.max_line) {
      error_tag_from_line(p, data + i, chunk);
      fail(p, IMAP_ERR_LINE_TOO_LONG, 0);
      p->discard = 0;   /* its end, skipped to, ends the command */
      buf_clear(&p->seg);
      if (!lf) p->mode = M_SKIP;
      *consumed = i + chunk;
      return IMAP_ERROR;
    }
    if (!p->line_mode && p->cmd_bytes + chunk > p->lim.max_command) {
      fail(p, IMAP_ERR_COMMAND_TOO_BIG, 1);
      *consumed = i;
      return IMAP_ERROR;
    }
    buf_append(&p->seg, data + i, chunk);
    p->cmd_bytes += chunk;
    i += chunk;
    if (!lf) continue;
    enum imap_status st = segment_done(p);
    if (st != IMAP_NEED_MORE) {
      *consumed = i;
      return st;
    }
  }
  *consumed = len;
  return IMAP_NEED_MORE;
}

/* ---- the rest of the contract ------------------------------------------ */

struct imap_parser *imap_parser_new(const struct imap_limits *lim) {
  struct imap_parser *p = xcalloc(1, sizeof *p);
  p->lim = *lim;
  return p;
}

void imap_parser_free(struct imap_parser *p) {
  if (!p) return;
  buf_free(&p->seg);
  buf_free(&p->store);
  wipe(p, sizeof *p);
  free(p);
}

const struct imap_command *imap_parser_command(const struct imap_parser *p) {
  return &p->cmd;
}

void imap_parser_set_literal_check(struct imap_parser *p, imap_literal_check_fn fn, void *arg) {
  p->literal_check = fn;
  p->literal_check_arg = arg;
}

void imap_parser_expect_line(struct imap_parser *p) {
  p->line_mode = 1;
}

const char *imap_parser_line(const struct imap_parser *p, size_t *len) {
  *len = p->seg.len ? p->seg.len - 1 : 0;
  return p->seg.p ? p->seg.p : "";
}

enum imap_error imap_parser_error(const struct imap_parser *p) {
  return p->err;
}

const char *imap_parser_error_tag(const struct imap_parser *p) {
  return p->has_err_tag ? p->err_tag : NULL;
}

int imap_parser_error_fatal(const struct imap_parser *p) {
  return p->fatal;
}

const char *imap_error_text(enum imap_error e) {
  switch (e) {
  case IMAP_ERR_NONE: return "No error.";
  case IMAP_ERR_SYNTAX: return "Syntax error in the command.";
  case IMAP_ERR_LINE_TOO_LONG: return "Line too long.";
  case IMAP_ERR_LITERAL_TOO_BIG: return "Literal too big.";
  case IMAP_ERR_COMMAND_TOO_BIG: return "Command too big.";
  case IMAP_ERR_TOO_MANY_ARGS: return "Too many arguments.";
  case IMAP_ERR_LITERAL_REFUSED: return "Literal refused.";
  }
  return "Error.";
}

void imap_parser_reset(struct imap_parser *p) {
  buf_clear(&p->seg);
  buf_clear(&p->store);
  wipe(&p->cmd, sizeof p->cmd);
  wipe(p->slots, sizeof p->slots);
  p->line_mode = 0;
  p->have_tag = 0;
  p->nslots = 0;
  p->err = IMAP_ERR_NONE;
  p->has_err_tag = 0;
  p->fatal = 0;
  /* A refused command still being skipped keeps where its tokenizer is:
   * in a literal, or between arguments, and its size so far. */
  if (p->discard) return;
  p->mode = p->mode == M_SKIP ? M_SKIP : M_LINE;
  p->cmd_bytes = 0;
  p->expect = E_TAG;
  p->after_open = 0;
  p->depth = 0;
  p->lit_left = 0;
}
