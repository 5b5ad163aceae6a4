/* The restore dialogue (restore.h): one step at a time, each command
 * answered by its tagged OK before the next goes. The backend's untagged
 * answers fill in what the new mailbox looks like; the verdict comes once
 * the last needed answer is in. */
#include "proxy/restore.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

/* What the client is told at the end (EXISTS, and with QRESYNC the FETCH
 * lines of flag changes) is bounded: a mailbox that changed that much is
 * better resynchronised by the client itself. */
#define RESTORE_TEXT_MAX (64 * 1024)

enum restore_step { STEP_ENABLE, STEP_SELECT, STEP_COUNT, STEP_IDLE, STEP_DONE };

struct restore {
  struct restore_plan plan;     /* strings owned */
  enum restore_step step;
  int sent;                     /* the step's command has gone */
  char cmd[1100];
  const char *failure;
  /* The new mailbox, from the SELECT's answers. */
  int64_t exists;               /* -1: not told */
  uint32_t uidvalidity;
  int vanished;                 /* VANISHED (EARLIER) named some UID */
  int64_t counted;              /* STEP_COUNT's answer; -1: not told */
  int judged;                   /* the verdict is in: news go to the client as they come */
  char *text;                   /* for the client */
  size_t text_len;
};

static enum restore_step next_step(const struct restore *r, enum restore_step s);

static char *dup_or_null(const char *s) {
  return s && *s ? xstrdup(s) : NULL;
}

struct restore *restore_new(const struct restore_plan *plan) {
  struct restore *r = xcalloc(1, sizeof *r);
  r->plan = *plan;
  r->plan.enable = dup_or_null(plan->enable);
  r->plan.mailbox = dup_or_null(plan->mailbox);
  r->plan.idle_tag = dup_or_null(plan->idle_tag);
  r->exists = -1;
  r->counted = -1;
  r->step = r->plan.enable ? STEP_ENABLE : STEP_SELECT;
  return r;
}

void restore_free(struct restore *r) {
  if (!r) return;
  free((char *)r->plan.enable);
  free((char *)r->plan.mailbox);
  free((char *)r->plan.idle_tag);
  free(r->text);
  free(r);
}

enum restore_status restore_status(const struct restore *r) {
  if (r->failure) return RESTORE_FAILED;
  if (r->step == STEP_SELECT && !r->plan.mailbox && next_step(r, STEP_SELECT) == STEP_DONE)
    return RESTORE_DONE;
  return r->step == STEP_DONE ? RESTORE_DONE : RESTORE_MORE;
}

const char *restore_failure(const struct restore *r) {
  return r->failure ? r->failure : "none";
}

const char *restore_client_text(const struct restore *r, size_t *len) {
  *len = r->text_len;
  return r->text ? r->text : "";
}

/* ---- the steps ------------------------------------------------------------- */

/* The step after `s` that the plan needs. */
static enum restore_step next_step(const struct restore *r, enum restore_step s) {
  switch (s) {
  case STEP_ENABLE:
    return STEP_SELECT;
  case STEP_SELECT:
    if (r->plan.mailbox && r->plan.known_uid > 0) return STEP_COUNT;
    /* fall through */
  case STEP_COUNT:
    if (r->plan.idle_tag) return STEP_IDLE;
    /* fall through */
  default:
    return STEP_DONE;
  }
}

const char *restore_next(struct restore *r) {
  if (r->step == STEP_SELECT && !r->plan.mailbox) r->step = next_step(r, STEP_SELECT);
  if (r->sent || r->step == STEP_DONE || r->failure) return NULL;
  int n = 0;
  switch (r->step) {
  case STEP_ENABLE:
    n = snprintf(r->cmd, sizeof r->cmd, "U1 ENABLE %s\r\n", r->plan.enable);
    break;
  case STEP_SELECT:
    if (r->plan.modseq && r->plan.uidvalidity)
      n = snprintf(r->cmd, sizeof r->cmd, "U2 %s %s (QRESYNC (%u %llu))\r\n",
                   r->plan.examine ? "EXAMINE" : "SELECT", r->plan.mailbox,
                   (unsigned)r->plan.uidvalidity, (unsigned long long)r->plan.modseq);
    else
      n = snprintf(r->cmd, sizeof r->cmd, "U2 %s %s\r\n", r->plan.examine ? "EXAMINE" : "SELECT",
                   r->plan.mailbox);
    break;
  case STEP_COUNT:
    n = snprintf(r->cmd, sizeof r->cmd, "U3 UID SEARCH RETURN (COUNT) UID 1:%u\r\n",
                 (unsigned)r->plan.known_uid);
    break;
  case STEP_IDLE:
    n = snprintf(r->cmd, sizeof r->cmd, "%s IDLE\r\n", r->plan.idle_tag);
    break;
  default:
    return NULL;
  }
  if (n <= 0 || (size_t)n >= sizeof r->cmd) {
    r->failure = "command_too_long";
    return NULL;
  }
  r->sent = 1;
  return r->cmd;
}

/* ---- reading the answers ------------------------------------------------------- */

/* Case-insensitive: does the line at p start with word w? Advances p. */
static int take(const char **p, const char *end, const char *w) {
  size_t n = strlen(w);
  if ((size_t)(end - *p) < n || strncasecmp(*p, w, n) != 0) return 0;
  *p += n;
  return 1;
}

static int take_number(const char **p, const char *end, uint64_t *v) {
  const char *s = *p;
  uint64_t x = 0;
  while (s < end && isdigit((unsigned char)*s) && x < (UINT64_C(1) << 60)) x = x * 10 + (uint64_t)(*s++ - '0');
  if (s == *p) return 0;
  *v = x;
  *p = s;
  return 1;
}

static int add_text(struct restore *r, const char *s, size_t n) {
  if (r->text_len + n > RESTORE_TEXT_MAX) {
    r->failure = "too_many_changes";
    return -1;
  }
  r->text = xrealloc(r->text, r->text_len + n + 1);
  memcpy(r->text + r->text_len, s, n);
  r->text_len += n;
  r->text[r->text_len] = 0;
  return 0;
}

/* "* ESEARCH (TAG "U3") UID COUNT n", or a plain "* SEARCH 1 2 3"; 0 if
 * the line is neither. */
static int read_count(struct restore *r, const char *p, const char *end) {
  uint64_t v;
  if (take(&p, end, "SEARCH")) {
    int64_t n = 0;
    while (p < end) {
      while (p < end && *p == ' ') p++;
      if (!take_number(&p, end, &v)) break;
      n++;
    }
    r->counted = n;
    return 1;
  }
  if (!take(&p, end, "ESEARCH")) return 0;
  if (r->counted < 0) r->counted = 0;   /* no COUNT: none matched */
  for (; p < end; p++)
    if ((end - p) > 6 && strncasecmp(p, " COUNT ", 7) == 0) {
      p += 7;
      if (take_number(&p, end, &v)) r->counted = (int64_t)v;
      return 1;
    }
  return 1;
}

/* The mailbox changing under the dialogue, after the SELECT's answer has
 * begun: new mail and flag changes reach the client (after the verdict,
 * in the order they came); an expunge would renumber what the verdict
 * is about, so the session ends instead. */
static void read_news(struct restore *r, const char *line, const char *p, const char *end) {
  uint64_t v;
  if (take(&p, end, "VANISHED ")) {   /* not EARLIER: one just now */
    r->failure = "expunged";
    return;
  }
  if (!take_number(&p, end, &v) || !take(&p, end, " ")) return;
  if (take(&p, end, "EXPUNGE")) {
    r->failure = "expunged";
  } else if (take(&p, end, "EXISTS")) {
    r->exists = (int64_t)v;
    if (r->judged) {
      char exists[48];
      int n = snprintf(exists, sizeof exists, "* %llu EXISTS\r\n", (unsigned long long)v);
      add_text(r, exists, (size_t)n);
    }
  } else if (take(&p, end, "FETCH ") && (r->plan.modseq || r->step != STEP_SELECT)) {
    if (add_text(r, line, (size_t)(end - line)) == 0) add_text(r, "\r\n", 2);
  }
}

/* An untagged answer ("* " taken). */
static void read_untagged(struct restore *r, const char *line, const char *p, const char *end) {
  uint64_t v;
  if (r->step == STEP_COUNT && read_count(r, p, end)) return;
  if (r->step < STEP_SELECT || !r->plan.mailbox) return;
  if (r->step == STEP_SELECT && take(&p, end, "OK [UIDVALIDITY ")) {
    if (take_number(&p, end, &v)) r->uidvalidity = (uint32_t)v;
    return;
  }
  if (r->step == STEP_SELECT && take(&p, end, "VANISHED (EARLIER) ")) {
    r->vanished = 1;
    return;
  }
  read_news(r, line, p, end);
}

/* The answers are in: does the client's view hold on the new backend? */
static void judge(struct restore *r) {
  const struct restore_plan *pl = &r->plan;
  char exists[48];
  r->judged = 1;
  if (pl->uidvalidity && r->uidvalidity != pl->uidvalidity) {
    r->failure = "uidvalidity_changed";
    return;
  }
  if (r->exists < 0) {
    r->failure = "no_exists";
    return;
  }
  if (pl->known_uid > 0 && r->counted != (int64_t)pl->known_seq) {
    r->failure = "expunged";   /* a message the client knows has gone */
    return;
  }
  if (r->vanished || r->exists < (int64_t)pl->count) {
    r->failure = "expunged";
    return;
  }
  if (pl->count > pl->known_seq && !pl->modseq) {
    r->failure = "unknown_uids";   /* announced messages whose survival usher cannot prove */
    return;
  }
  if (r->exists > (int64_t)pl->count) {
    /* EXISTS goes before the FETCH lines, whose numbers may be beyond the
     * client's count. */
    int n = snprintf(exists, sizeof exists, "* %lld EXISTS\r\n", (long long)r->exists);
    char *fetches = r->text;
    size_t fetches_len = r->text_len;
    r->text = NULL;
    r->text_len = 0;
    add_text(r, exists, (size_t)n);
    if (fetches_len) add_text(r, fetches, fetches_len);
    free(fetches);
  }
}

/* A tagged answer to our own step; returns the status. */
static enum restore_status read_tagged(struct restore *r, const char *p, const char *end) {
  if (!take(&p, end, "OK")) {
    static const char *why[] = {"enable_refused", "select_refused", "search_refused",
                                "idle_refused"};
    r->failure = why[r->step];
    return RESTORE_FAILED;
  }
  enum restore_step done = r->step;
  if (done == STEP_SELECT && !r->plan.known_uid) judge(r);
  if (done == STEP_COUNT) judge(r);
  if (r->failure) return RESTORE_FAILED;
  r->step = next_step(r, done);
  r->sent = 0;
  if (r->step == STEP_SELECT && !r->plan.mailbox) r->step = next_step(r, STEP_SELECT);
  return r->step == STEP_DONE ? RESTORE_DONE : RESTORE_MORE;
}

enum restore_status restore_line(struct restore *r, const char *line, size_t len) {
  const char *end = line + len, *p = line;
  if (r->failure) return RESTORE_FAILED;
  if (r->step == STEP_DONE) return RESTORE_DONE;
  if (len && line[len - 1] == '}') {   /* no answer of ours carries a literal */
    r->failure = "unexpected_literal";
    return RESTORE_FAILED;
  }
  if (take(&p, end, "* ")) {
    read_untagged(r, line, p, end);
    return r->failure ? RESTORE_FAILED : RESTORE_MORE;
  }
  if (take(&p, end, "+")) {
    if (r->step != STEP_IDLE) {
      r->failure = "unexpected_continuation";
      return RESTORE_FAILED;
    }
    r->step = STEP_DONE;
    return RESTORE_DONE;
  }
  static const char *tags[] = {"U1 ", "U2 ", "U3 "};
  if (r->step == STEP_IDLE) {
    if (take(&p, end, r->plan.idle_tag) && take(&p, end, " ")) {
      r->failure = "idle_refused";
      return RESTORE_FAILED;
    }
    return RESTORE_MORE;
  }
  if (take(&p, end, tags[r->step])) return read_tagged(r, p, end);
  return RESTORE_MORE;   /* someone else's tag: not ours to judge */
}
