/* The IMAP tracker (imap_track.h): a line framer per direction that finds
 * line ends with memchr, skips literals by count, and reads only the first
 * IMAP_TRACK_LINE_KEEP bytes of a line plus its last few (for a literal
 * marker). What a session rarely needs (a partial line, the commands in
 * flight, the mailbox name) lives outside the struct and is allocated on
 * demand, so an idle session holds little. */
#include "proxy/imap_track.h"

#include <stdlib.h>
#include <string.h>

#define TAIL_KEEP 32   /* "~{18446744073709551615+}\r" fits */

enum cmd_kind { CMD_OTHER, CMD_SELECT, CMD_EXAMINE, CMD_CLOSE, CMD_IDLE, CMD_COMPRESS,
                CMD_LOGOUT };

struct in_flight {              /* a command sent and not yet answered */
  char tag[IMAP_TRACK_TAG_MAX];
  uint8_t tag_len, kind;
  uint8_t idle_plus, idle_done; /* IDLE: the "+" came; DONE was sent */
  uint8_t form;                 /* SELECT/EXAMINE: how the name was written */
  char *mailbox; uint16_t mailbox_len;
};

struct partial {                /* a line that spans chunks */
  char head[IMAP_TRACK_LINE_KEEP];
  char tail[TAIL_KEEP];
  size_t kept, tail_len;
};

struct dir {
  uint64_t literal_left;        /* raw bytes still to skip */
  uint64_t line_len;            /* bytes of the current line so far */
  struct partial *part;         /* only while a line spans chunks */
  uint8_t in_message;           /* after a literal: the rest of the same command/response */
  uint8_t capture;              /* client: the literal is the SELECT's mailbox name */
  uint8_t sync_wait;            /* client: a synchronizing literal none of which came yet */
  uint32_t fetch_seq;           /* server: the FETCH being read, 0 if none */
};

struct mailbox_view { uint32_t uidvalidity, exists, uidnext, known_seq, known_uid; uint64_t hms; };

struct imap_track {
  struct dir client, server;
  struct mailbox_view mv;
  struct in_flight *fl; uint8_t nfl, capfl;
  uint8_t selected, examine, enabled, wait_closed, logout, client_parked;
  uint8_t form;
  const char *reason;           /* untrackable, for good */
  char *mailbox; uint16_t mailbox_len;
};

/* ---- small readers over a line's kept prefix ---------------------------------- */

struct cur { const char *p; size_t n; };

static int is_atom_end(char c) { return c == ' ' || c == '(' || c == ')' || c == '[' || c == ']'; }

static struct cur next_atom(struct cur *c) {
  while (c->n && *c->p == ' ') { c->p++; c->n--; }
  struct cur a = { c->p, 0 };
  while (a.n < c->n && !is_atom_end(c->p[a.n])) a.n++;
  c->p += a.n; c->n -= a.n;
  return a;
}

static int word_is(struct cur a, const char *w) {
  size_t n = strlen(w);
  if (a.n != n) return 0;
  for (size_t i = 0; i < n; i++) {
    char x = a.p[i];
    if (x >= 'a' && x <= 'z') x = (char)(x - 32);
    if (x != w[i]) return 0;
  }
  return 1;
}

/* A decimal number, the whole atom; -1 if not one or over max. */
static int atom_u64(struct cur a, uint64_t max, uint64_t *out) {
  if (a.n == 0 || a.n > 20) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < a.n; i++) {
    if (a.p[i] < '0' || a.p[i] > '9') return -1;
    unsigned d = (unsigned)(a.p[i] - '0');
    if (v > (max - d) / 10) return -1;
    v = v * 10 + d;
  }
  *out = v;
  return 0;
}

static int atom_u32(struct cur a, uint32_t *out) {
  uint64_t v;
  if (atom_u64(a, UINT32_MAX, &v) != 0) return -1;
  *out = (uint32_t)v;
  return 0;
}

/* A literal marker {n} {n+} {n-} ~{n} at the very end of a line (tail is
 * the line's last bytes, CR gone); -1 if there is none. *sync: a plain
 * {n}, for which the client waits for the server's "+". */
static int64_t literal_at_end(const char *tail, size_t n, int *sync) {
  if (n < 3 || tail[n - 1] != '}') return -1;
  size_t e = n - 1;
  *sync = !(tail[e - 1] == '+' || tail[e - 1] == '-');
  if (!*sync) e--;
  size_t b = e;
  while (b > 0 && tail[b - 1] >= '0' && tail[b - 1] <= '9') b--;
  if (b == e || b == 0 || tail[b - 1] != '{') return -1;
  uint64_t v;
  if (atom_u64((struct cur){ tail + b, e - b }, INT64_MAX, &v) != 0) return -1;
  return (int64_t)v;
}

/* ---- the parts that change the view ------------------------------------------- */

static void untrackable(struct imap_track *t, const char *why) {
  if (!t->reason) t->reason = why;
}

static void mailbox_reset(struct imap_track *t) {
  memset(&t->mv, 0, sizeof t->mv);
  t->selected = 0;
  t->examine = 0;
}

static struct in_flight *flight_push(struct imap_track *t) {
  if (t->nfl == t->capfl) {
    unsigned cap = t->capfl ? t->capfl * 2u : 1u;   /* mostly one: IDLE */
    if (cap > IMAP_TRACK_INFLIGHT_MAX) { untrackable(t, "too_many_in_flight"); return NULL; }
    struct in_flight *fl = realloc(t->fl, cap * sizeof *fl);
    if (!fl) { untrackable(t, "out_of_memory"); return NULL; }
    t->fl = fl;
    t->capfl = (uint8_t)cap;
  }
  struct in_flight *f = &t->fl[t->nfl++];
  memset(f, 0, sizeof *f);
  return f;
}

static void flight_drop(struct imap_track *t, unsigned i) {
  free(t->fl[i].mailbox);
  memmove(&t->fl[i], &t->fl[i + 1], (t->nfl - i - 1) * sizeof *t->fl);
  if (--t->nfl == 0) { free(t->fl); t->fl = NULL; t->capfl = 0; }
}

static struct in_flight *flight_last(struct imap_track *t) {
  return t->nfl ? &t->fl[t->nfl - 1] : NULL;
}

/* The SELECT/EXAMINE's name as an atom or a quoted string (unescaped);
 * a literal name is captured as it streams (see feed_literal). */
static void take_mailbox_arg(struct imap_track *t, struct in_flight *f, struct cur c,
                             int truncated) {
  while (c.n && *c.p == ' ') { c.p++; c.n--; }
  char buf[IMAP_TRACK_MAILBOX_MAX];
  size_t len = 0;
  if (c.n && *c.p == '{') { f->form = IMAP_TRACK_LITERAL; return; }
  if (c.n && *c.p == '"') {
    size_t i = 1;
    for (; i < c.n && c.p[i] != '"'; i++) {
      if (c.p[i] == '\\' && i + 1 < c.n) i++;
      if (len == sizeof buf) { untrackable(t, "mailbox_too_long"); return; }
      buf[len++] = c.p[i];
    }
    if (i >= c.n) { untrackable(t, truncated ? "mailbox_too_long" : "client_syntax"); return; }
    f->form = IMAP_TRACK_QUOTED;
  } else {
    while (len < c.n && c.p[len] != ' ' && c.p[len] != '(') len++;
    if (len == c.n && truncated) { untrackable(t, "mailbox_too_long"); return; }
    if (len == 0 || len > sizeof buf) { untrackable(t, "client_syntax"); return; }
    memcpy(buf, c.p, len);
    f->form = IMAP_TRACK_ATOM;
  }
  f->mailbox = malloc(len ? len : 1);
  if (!f->mailbox) { untrackable(t, "out_of_memory"); return; }
  memcpy(f->mailbox, buf, len);
  f->mailbox_len = (uint16_t)len;
}

static enum cmd_kind command_kind(struct cur name) {
  if (word_is(name, "SELECT")) return CMD_SELECT;
  if (word_is(name, "EXAMINE")) return CMD_EXAMINE;
  if (word_is(name, "CLOSE") || word_is(name, "UNSELECT")) return CMD_CLOSE;
  if (word_is(name, "IDLE")) return CMD_IDLE;
  if (word_is(name, "COMPRESS")) return CMD_COMPRESS;
  if (word_is(name, "LOGOUT")) return CMD_LOGOUT;
  return CMD_OTHER;
}

/* The first line of a client command: "tag SP name args", or DONE. */
static void client_command(struct imap_track *t, struct cur c, int truncated) {
  struct in_flight *last = flight_last(t);
  if (last && last->kind == CMD_IDLE && !last->idle_done) {
    struct cur w = next_atom(&c);
    if (word_is(w, "DONE") && c.n == 0) { last->idle_done = 1; return; }
  }
  if (c.n == 0) return;   /* an empty line: the server says BAD, nothing changes */
  struct cur tag = next_atom(&c);
  if (tag.n == 0 || c.n == 0 || *c.p != ' ') { untrackable(t, "client_syntax"); return; }
  if (tag.n > IMAP_TRACK_TAG_MAX) { untrackable(t, "tag_too_long"); return; }
  struct cur name = next_atom(&c);
  if (word_is(name, "UID")) name = next_atom(&c);
  struct in_flight *f = flight_push(t);
  if (!f) return;
  memcpy(f->tag, tag.p, tag.n);
  f->tag_len = (uint8_t)tag.n;
  f->kind = (uint8_t)command_kind(name);
  if (f->kind == CMD_SELECT || f->kind == CMD_EXAMINE) {
    take_mailbox_arg(t, f, c, truncated);
    /* With CONDSTORE/QRESYNC the server marks the old mailbox's end with
       [CLOSED] (RFC 7162 3.2.11); otherwise it is gone from now on. */
    if (t->selected && (t->enabled & (IMAP_TRACK_EXT_CONDSTORE | IMAP_TRACK_EXT_QRESYNC)))
      t->wait_closed = 1;
    else mailbox_reset(t);
  }
  if (f->kind == CMD_COMPRESS) t->client_parked = 1;   /* next bytes may be deflated */
}

/* "* s FETCH (... UID u ... MODSEQ (m) ...)": the tie point and modseq. */
static void fetch_items(struct imap_track *t, uint32_t seq, struct cur c) {
  int depth = 0;
  while (c.n) {
    char ch = *c.p;
    if (ch == '[') depth++;
    else if (ch == ']') depth -= depth > 0;
    if (ch == '"') {        /* a quoted string may say anything */
      size_t i = 1;
      while (i < c.n && c.p[i] != '"') i += (c.p[i] == '\\') ? 2 : 1;
      i = i < c.n ? i + 1 : c.n;
      c.p += i; c.n -= i;
      continue;
    }
    if (is_atom_end(ch)) { c.p++; c.n--; continue; }
    struct cur a = next_atom(&c);
    if (depth) continue;
    uint32_t u;
    uint64_t m;
    if (word_is(a, "UID") && atom_u32(next_atom(&c), &u) == 0 && u > t->mv.known_uid) {
      t->mv.known_seq = seq;
      t->mv.known_uid = u;
    } else if (word_is(a, "MODSEQ")) {
      while (c.n && (*c.p == ' ' || *c.p == '(')) { c.p++; c.n--; }
      if (atom_u64(next_atom(&c), UINT64_MAX, &m) == 0 && m > t->mv.hms) t->mv.hms = m;
    }
  }
}

/* VANISHED uid-set: the count goes down by its size, the tie point by its
 * UIDs at or under known_uid. */
static void vanished(struct imap_track *t, struct cur c, int truncated) {
  while (c.n && *c.p == ' ') { c.p++; c.n--; }
  if (truncated) { untrackable(t, "vanished_too_long"); return; }
  uint64_t gone = 0, under = 0;
  while (c.n) {
    size_t i = 0;
    while (i < c.n && c.p[i] != ',') i++;
    struct cur r = { c.p, i }, lo = r, hi = r;
    const char *colon = memchr(r.p, ':', r.n);
    if (colon) { lo.n = (size_t)(colon - r.p); hi.p = colon + 1; hi.n = r.n - lo.n - 1; }
    uint32_t a, b;
    if (atom_u32(lo, &a) != 0 || atom_u32(hi, &b) != 0) { untrackable(t, "server_syntax"); return; }
    if (a > b) { uint32_t x = a; a = b; b = x; }
    gone += (uint64_t)b - a + 1;
    if (a <= t->mv.known_uid) under += (uint64_t)(b < t->mv.known_uid ? b : t->mv.known_uid) - a + 1;
    c.p += i + (i < c.n); c.n -= i + (i < c.n);
  }
  t->mv.exists = gone > t->mv.exists ? 0 : t->mv.exists - (uint32_t)gone;
  t->mv.known_seq = under > t->mv.known_seq ? 0 : t->mv.known_seq - (uint32_t)under;
}

/* A response code "[NAME value]" after OK/NO/BAD/PREAUTH/BYE. */
static void response_code(struct imap_track *t, struct cur c, int *read_only) {
  while (c.n && *c.p == ' ') { c.p++; c.n--; }
  if (!c.n || *c.p != '[') return;
  c.p++; c.n--;
  struct cur name = next_atom(&c), val = next_atom(&c);
  uint32_t u;
  uint64_t m;
  if (word_is(name, "UIDVALIDITY") && atom_u32(val, &u) == 0) t->mv.uidvalidity = u;
  else if (word_is(name, "UIDNEXT") && atom_u32(val, &u) == 0) t->mv.uidnext = u;
  else if (word_is(name, "HIGHESTMODSEQ") && atom_u64(val, UINT64_MAX, &m) == 0) t->mv.hms = m;
  else if (word_is(name, "READ-ONLY") && read_only) *read_only = 1;
  else if (word_is(name, "CLOSED") && t->wait_closed) { t->wait_closed = 0; mailbox_reset(t); }
}

static unsigned extension_bit(struct cur a) {
  if (word_is(a, "CONDSTORE")) return IMAP_TRACK_EXT_CONDSTORE;
  if (word_is(a, "QRESYNC")) return IMAP_TRACK_EXT_QRESYNC;
  if (word_is(a, "UTF8=ACCEPT")) return IMAP_TRACK_EXT_UTF8_ACCEPT;
  if (word_is(a, "IMAP4REV2")) return IMAP_TRACK_EXT_IMAP4REV2;
  return IMAP_TRACK_EXT_OTHER;
}

static void untagged(struct imap_track *t, struct cur c, int truncated) {
  struct cur w = next_atom(&c);
  uint32_t n;
  if (atom_u32(w, &n) == 0) {
    struct cur what = next_atom(&c);
    if (word_is(what, "EXISTS")) t->mv.exists = n;
    else if (word_is(what, "EXPUNGE")) {
      t->mv.exists -= t->mv.exists > 0;
      if (n <= t->mv.known_seq && t->mv.known_seq) t->mv.known_seq--;
    } else if (word_is(what, "FETCH")) {
      t->server.fetch_seq = n;
      fetch_items(t, n, c);
    }
  } else if (word_is(w, "OK") || word_is(w, "NO") || word_is(w, "BAD")) {
    response_code(t, c, NULL);
  } else if (word_is(w, "BYE")) {
    t->logout = 1;
  } else if (word_is(w, "ENABLED")) {
    for (struct cur a = next_atom(&c); a.n; a = next_atom(&c)) t->enabled |= (uint8_t)extension_bit(a);
  } else if (word_is(w, "VANISHED")) {
    while (c.n && *c.p == ' ') { c.p++; c.n--; }
    if (c.n >= 9 && c.p[0] == '(' && word_is((struct cur){ c.p + 1, 7 }, "EARLIER")) return;
    vanished(t, c, truncated);
  }
}

/* The server answered the command the client is still sending (the last
 * in flight, past a literal marker). A synchronizing literal it refused
 * is never sent (RFC 3501 7.5), so the command ends here; any other such
 * answer is a dialogue the tracker cannot follow. Either way no literal
 * is captured for the entry about to go. */
static void answered_while_sending(struct imap_track *t) {
  struct dir *d = &t->client;
  if (!d->sync_wait) { untrackable(t, "answered_mid_command"); return; }
  d->literal_left = 0;
  d->in_message = d->capture = d->sync_wait = 0;
}

/* "tag OK/NO/BAD ...": completes the command of that tag. */
static void tagged(struct imap_track *t, struct cur c) {
  struct cur tag = next_atom(&c), status = next_atom(&c);
  unsigned i = 0;
  while (i < t->nfl && !(t->fl[i].tag_len == tag.n && memcmp(t->fl[i].tag, tag.p, tag.n) == 0)) i++;
  if (i == t->nfl) { untrackable(t, "unknown_tag"); return; }
  struct in_flight *f = &t->fl[i];
  int ok = word_is(status, "OK"), read_only = 0;
  response_code(t, c, &read_only);
  if (f->kind == CMD_SELECT || f->kind == CMD_EXAMINE) {
    t->wait_closed = 0;
    if (!ok) mailbox_reset(t);   /* RFC 3501 6.3.1: no mailbox selected after a failure */
    else if (!f->mailbox) untrackable(t, "client_syntax");   /* a name we never saw whole */
    else {
      free(t->mailbox);
      t->mailbox = f->mailbox; t->mailbox_len = f->mailbox_len; t->form = f->form;
      f->mailbox = NULL;
      t->selected = 1;
      t->examine = f->kind == CMD_EXAMINE || read_only;
      int tie = t->mv.uidnext > 0;
      t->mv.known_seq = tie ? t->mv.exists : 0;
      t->mv.known_uid = tie ? t->mv.uidnext - 1 : 0;
    }
  } else if (f->kind == CMD_CLOSE && ok) mailbox_reset(t);
  else if (f->kind == CMD_COMPRESS) {
    if (ok) untrackable(t, "compress");
    t->client_parked = 0;
  } else if (f->kind == CMD_LOGOUT && ok) t->logout = 1;
  if (i + 1 == t->nfl && t->client.in_message) answered_while_sending(t);
  flight_drop(t, i);
}

static void server_response(struct imap_track *t, struct cur c, int truncated) {
  t->server.fetch_seq = 0;
  if (c.n && *c.p == '+') {
    struct in_flight *f = flight_last(t);
    if (f && f->kind == CMD_IDLE && !f->idle_done) f->idle_plus = 1;
  } else if (c.n && *c.p == '*') {
    c.p++; c.n--;
    untagged(t, c, truncated);
  } else if (c.n) tagged(t, c);
}

/* ---- framing ------------------------------------------------------------------- */

/* One line (up to LF): head is its kept prefix, tail its last bytes, len
 * its whole length, all with the LF gone. */
static void line_done(struct imap_track *t, struct dir *d, const char *head, size_t head_n,
                      const char *tail, size_t tail_n, uint64_t len) {
  if (tail_n && tail[tail_n - 1] == '\r') { tail_n--; len--; if (head_n > len) head_n = (size_t)len; }
  int truncated = len > head_n;
  struct cur c = { head, head_n };
  int sync = 0;
  int64_t lit = literal_at_end(tail, tail_n, &sync);
  if (d == &t->client) {
    if (!d->in_message) client_command(t, c, truncated);
    struct in_flight *f = flight_last(t);
    d->capture = lit >= 0 && !d->in_message && f && f->form == IMAP_TRACK_LITERAL && !f->mailbox &&
                 (f->kind == CMD_SELECT || f->kind == CMD_EXAMINE);
    if (d->capture && lit > IMAP_TRACK_MAILBOX_MAX) { untrackable(t, "mailbox_too_long"); return; }
    if (d->capture && !(f->mailbox = malloc(lit ? (size_t)lit : 1))) untrackable(t, "out_of_memory");
  } else if (!d->in_message) server_response(t, c, truncated);
  else if (d->fetch_seq) fetch_items(t, d->fetch_seq, c);
  d->in_message = lit >= 0;
  d->literal_left = lit >= 0 ? (uint64_t)lit : 0;
  d->sync_wait = d == &t->client && sync && lit > 0;
}

/* Keeps what a line spanning chunks needs: its prefix and its last bytes. */
static int partial_add(struct imap_track *t, struct dir *d, const char *p, size_t n) {
  if (!d->part && !(d->part = calloc(1, sizeof *d->part))) { untrackable(t, "out_of_memory"); return -1; }
  struct partial *s = d->part;
  size_t room = sizeof s->head - s->kept, k = n < room ? n : room;
  memcpy(s->head + s->kept, p, k);
  s->kept += k;
  if (n >= TAIL_KEEP) { memcpy(s->tail, p + n - TAIL_KEEP, TAIL_KEEP); s->tail_len = TAIL_KEEP; }
  else {
    size_t keep = s->tail_len + n > TAIL_KEEP ? TAIL_KEEP - n : s->tail_len;
    memmove(s->tail, s->tail + s->tail_len - keep, keep);
    memcpy(s->tail + keep, p, n);
    s->tail_len = keep + n;
  }
  return 0;
}

static void feed_literal(struct imap_track *t, struct dir *d, const char *p, size_t k) {
  struct in_flight *f = d->capture ? flight_last(t) : NULL;
  if (f && f->mailbox) memcpy(f->mailbox + f->mailbox_len, p, k), f->mailbox_len += (uint16_t)k;
  d->literal_left -= k;
  d->sync_wait = 0;
}

static void feed(struct imap_track *t, struct dir *d, const char *p, size_t n) {
  while (n && !t->reason) {
    /* After COMPRESS the client waits for its answer (RFC 4978 3); past
       an OK its bytes are deflated, so none is read until the answer. */
    if (d == &t->client && t->client_parked) return;
    if (d->literal_left) {
      size_t k = d->literal_left < n ? (size_t)d->literal_left : n;
      feed_literal(t, d, p, k);
      p += k; n -= k;
      continue;
    }
    const char *lf = memchr(p, '\n', n);
    size_t k = lf ? (size_t)(lf - p) : n;
    if (!lf) { partial_add(t, d, p, n); d->line_len += n; return; }
    if (!d->line_len) {         /* the whole line is here: read it in place */
      size_t head = k < IMAP_TRACK_LINE_KEEP ? k : IMAP_TRACK_LINE_KEEP;
      size_t tail = k < TAIL_KEEP ? k : TAIL_KEEP;
      line_done(t, d, p, head, p + k - tail, tail, k);
    } else if (partial_add(t, d, p, k) == 0) {
      line_done(t, d, d->part->head, d->part->kept, d->part->tail, d->part->tail_len, d->line_len + k);
      d->part->kept = d->part->tail_len = 0;
    }
    d->line_len = 0;
    p += k + 1; n -= k + 1;
  }
  if (d->part && !d->line_len) { free(d->part); d->part = NULL; }
}

/* ---- the contract -------------------------------------------------------------- */

struct imap_track *imap_track_new(void) { return calloc(1, sizeof(struct imap_track)); }

void imap_track_free(struct imap_track *t) {
  if (!t) return;
  while (t->nfl) flight_drop(t, t->nfl - 1);
  free(t->client.part);
  free(t->server.part);
  free(t->mailbox);
  free(t);
}

void imap_track_client(struct imap_track *t, const char *p, size_t n) { feed(t, &t->client, p, n); }
void imap_track_server(struct imap_track *t, const char *p, size_t n) { feed(t, &t->server, p, n); }

enum imap_track_state imap_track_state(const struct imap_track *t) {
  if (t->reason) return IMAP_TRACK_UNTRACKABLE;
  if (t->logout) return IMAP_TRACK_LOGOUT;
  return t->selected ? IMAP_TRACK_SELECTED : IMAP_TRACK_AUTHENTICATED;
}

const char *imap_track_reason(const struct imap_track *t) { return t->reason; }

static const struct in_flight *idle_in_progress(const struct imap_track *t) {
  const struct in_flight *f = t->nfl ? &t->fl[t->nfl - 1] : NULL;
  return f && f->kind == CMD_IDLE && f->idle_plus && !f->idle_done ? f : NULL;
}

void imap_track_view(const struct imap_track *t, struct imap_track_view *v) {
  memset(v, 0, sizeof *v);
  v->selected = t->selected;
  if (t->selected) {
    v->mailbox = t->mailbox; v->mailbox_len = t->mailbox_len;
    v->mailbox_form = (enum imap_track_form)t->form;
  }
  v->examine = t->examine;
  v->uidvalidity = t->mv.uidvalidity;
  v->exists = t->mv.exists;
  v->uidnext = t->mv.uidnext;
  v->known_seq = t->mv.known_seq;
  v->known_uid = t->mv.known_uid;
  v->enabled = t->enabled;
  v->qresync = (t->enabled & IMAP_TRACK_EXT_QRESYNC) != 0;
  v->highestmodseq = t->mv.hms;
  const struct in_flight *idle = idle_in_progress(t);
  v->idling = idle != NULL;
  if (idle) { v->idle_tag = idle->tag; v->idle_tag_len = idle->tag_len; }
  v->in_flight = t->nfl;
}

size_t imap_track_bytes_held(const struct imap_track *t) {
  size_t n = sizeof *t + t->capfl * sizeof *t->fl + t->mailbox_len;
  for (unsigned i = 0; i < t->nfl; i++) n += t->fl[i].mailbox_len;
  if (t->client.part) n += sizeof *t->client.part;
  if (t->server.part) n += sizeof *t->server.part;
  return n;
}

const char *imap_track_in_flight_tag(const struct imap_track *t, unsigned i, size_t *len) {
  if (i >= t->nfl) return NULL;
  *len = t->fl[i].tag_len;
  return t->fl[i].tag;
}

void imap_track_enabled_list(const struct imap_track_view *v, char *buf, size_t cap) {
  static const struct { unsigned bit; const char *name; } names[] = {
    { IMAP_TRACK_EXT_CONDSTORE, "CONDSTORE" }, { IMAP_TRACK_EXT_QRESYNC, "QRESYNC" },
    { IMAP_TRACK_EXT_UTF8_ACCEPT, "UTF8=ACCEPT" }, { IMAP_TRACK_EXT_IMAP4REV2, "IMAP4rev2" },
  };
  size_t used = 0;
  if (cap == 0) return;
  buf[0] = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (!(v->enabled & names[i].bit)) continue;
    size_t need = strlen(names[i].name) + (used ? 1 : 0);
    if (used + need >= cap) return;   /* a whole name or none */
    if (used) buf[used++] = ' ';
    memcpy(buf + used, names[i].name, strlen(names[i].name) + 1);
    used += strlen(names[i].name);
  }
}

static int dir_at_boundary(const struct dir *d) {
  return !d->literal_left && !d->line_len && !d->in_message;
}

int imap_track_rehomable(const struct imap_track *t, const char **why) {
  const char *w = NULL;
  if (t->reason) w = t->reason;
  else if (t->logout) w = "logout";
  else if (t->enabled & IMAP_TRACK_EXT_OTHER) w = "unknown_extension";
  else if (!dir_at_boundary(&t->client)) w = "mid_command";
  else if (!dir_at_boundary(&t->server)) w = "mid_response";
  else if (t->nfl > 1 || (t->nfl == 1 && !idle_in_progress(t))) w = "in_flight";
  if (why) *why = w;
  return w == NULL;
}
