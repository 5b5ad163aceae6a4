/* Seats and sessions: two tables of the common hash table (common/htable.h),
 * seats by user, sessions by id. */
#include "sessiond/seats.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

struct seats {
  struct htable seats, sessions;
};

struct seats *seats_new(void) {
  struct seats *t = xcalloc(1, sizeof *t);
  htable_init(&t->seats, 1024);
  htable_init(&t->sessions, 1024);
  return t;
}

static void seat_free(struct seat *s) {
  free(s->user);
  free(s->backend);
  free(s);
}

static void session_free(struct session *s) {
  free(s->user);
  free(s->backend);
  free(s);
}

void seats_free(struct seats *t) {
  if (!t) return;
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->seats, &it); n; n = htable_iter_next(&t->seats, &it))
    seat_free(HTABLE_ENTRY(n, struct seat, node));
  for (struct htable_node *n = htable_iter_first(&t->sessions, &it); n;
       n = htable_iter_next(&t->sessions, &it))
    session_free(HTABLE_ENTRY(n, struct session, node));
  htable_destroy(&t->seats);
  htable_destroy(&t->sessions);
  free(t);
}

/* ---- seats -------------------------------------------------------------- */

static int seat_expired(const struct seat *s, uint64_t now) {
  return s->sessions == 0 && s->expires_ms <= now;
}

static void seat_drop(struct seats *t, struct seat *s) {
  htable_remove(&t->seats, &s->node);
  seat_free(s);
}

struct seat *seat_find(struct seats *t, const char *user, uint64_t now) {
  uint64_t h = htable_hash_str(user);
  for (struct htable_node *n = htable_first_with(&t->seats, h); n; n = htable_next_same(n)) {
    struct seat *s = HTABLE_ENTRY(n, struct seat, node);
    if (strcmp(s->user, user) != 0) continue;
    if (!seat_expired(s, now)) return s;
    seat_drop(t, s);
    return NULL;
  }
  return NULL;
}

struct seat *seat_create(struct seats *t, const char *user, const char *backend, uint64_t now) {
  struct seat *s = xcalloc(1, sizeof *s);
  s->user = xstrdup(user);
  s->backend = xstrdup(backend);
  s->created_ms = now;
  s->expires_ms = UINT64_MAX;   /* the caller adds the first session at once */
  htable_insert(&t->seats, &s->node, htable_hash_str(user));
  return s;
}

void seat_move(struct seat *s, const char *backend) {
  free(s->backend);
  s->backend = xstrdup(backend);
}

size_t seats_sweep(struct seats *t, uint64_t now) {
  size_t freed = 0;
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->seats, &it); n; n = htable_iter_next(&t->seats, &it)) {
    struct seat *s = HTABLE_ENTRY(n, struct seat, node);
    if (seat_expired(s, now)) {
      seat_drop(t, s);
      freed++;
    }
  }
  return freed;
}

void seats_foreach(struct seats *t, void (*fn)(struct seat *, void *), void *arg) {
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->seats, &it); n; n = htable_iter_next(&t->seats, &it))
    fn(HTABLE_ENTRY(n, struct seat, node), arg);
}

size_t seats_count(const struct seats *t) { return t->seats.count; }

/* ---- sessions ------------------------------------------------------------ */

struct session *session_add(struct seats *t, const char *id, const char *user,
                            const char *backend, const char *client, void *owner, uint64_t now) {
  struct session *s = xcalloc(1, sizeof *s);
  snprintf(s->id, sizeof s->id, "%s", id);
  snprintf(s->client, sizeof s->client, "%s", client);
  s->user = xstrdup(user);
  s->backend = xstrdup(backend);
  s->owner = owner;
  s->start_ms = now;
  htable_insert(&t->sessions, &s->node, htable_hash_str(s->id));
  struct seat *seat = seat_find(t, user, now);
  if (seat) {
    seat->sessions++;
    s->gen = seat->gen;
  }
  return s;
}

struct session *session_find(struct seats *t, const char *id) {
  uint64_t h = htable_hash_str(id);
  for (struct htable_node *n = htable_first_with(&t->sessions, h); n; n = htable_next_same(n)) {
    struct session *s = HTABLE_ENTRY(n, struct session, node);
    if (!strcmp(s->id, id)) return s;
  }
  return NULL;
}

void session_remove(struct seats *t, struct session *s, uint64_t now, uint64_t seat_expire_ms) {
  htable_remove(&t->sessions, &s->node);
  struct seat *seat = seat_find(t, s->user, now);
  if (seat && seat->sessions > 0 && --seat->sessions == 0) seat->expires_ms = now + seat_expire_ms;
  session_free(s);
}

size_t sessions_count(const struct seats *t) { return t->sessions.count; }

void sessions_foreach(struct seats *t, void (*fn)(struct session *, void *), void *arg) {
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->sessions, &it); n;
       n = htable_iter_next(&t->sessions, &it))
    fn(HTABLE_ENTRY(n, struct session, node), arg);
}
