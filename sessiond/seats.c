/* Seats and sessions: two chained hash tables that double when full. */
#include "sessiond/seats.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "common/util.h"

struct seats {
  struct seat **seat_tab;
  size_t seat_cap, n_seats;
  struct session **sess_tab;
  size_t sess_cap, n_sessions;
};

static uint64_t str_hash(const char *s) {
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++) {
    h ^= (unsigned char)*s;
    h *= 1099511628211ULL;
  }
  return h ^ (h >> 29);
}

struct seats *seats_new(void) {
  struct seats *t = xcalloc(1, sizeof *t);
  t->seat_cap = t->sess_cap = 1024;
  t->seat_tab = xcalloc(t->seat_cap, sizeof *t->seat_tab);
  t->sess_tab = xcalloc(t->sess_cap, sizeof *t->sess_tab);
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
  for (size_t i = 0; i < t->seat_cap; i++)
    for (struct seat *s = t->seat_tab[i], *n; s; s = n) {
      n = s->next;
      seat_free(s);
    }
  for (size_t i = 0; i < t->sess_cap; i++)
    for (struct session *s = t->sess_tab[i], *n; s; s = n) {
      n = s->next;
      session_free(s);
    }
  free(t->seat_tab);
  free(t->sess_tab);
  free(t);
}

/* ---- seats -------------------------------------------------------------- */

static void seat_tab_grow(struct seats *t) {
  size_t cap = t->seat_cap * 2;
  struct seat **tab = xcalloc(cap, sizeof *tab);
  for (size_t i = 0; i < t->seat_cap; i++)
    for (struct seat *s = t->seat_tab[i], *n; s; s = n) {
      n = s->next;
      size_t k = str_hash(s->user) % cap;
      s->next = tab[k];
      tab[k] = s;
    }
  free(t->seat_tab);
  t->seat_tab = tab;
  t->seat_cap = cap;
}

static int seat_expired(const struct seat *s, uint64_t now) {
  return s->sessions == 0 && s->expires_ms <= now;
}

struct seat *seat_find(struct seats *t, const char *user, uint64_t now) {
  struct seat **p = &t->seat_tab[str_hash(user) % t->seat_cap];
  for (; *p; p = &(*p)->next) {
    if (strcmp((*p)->user, user) != 0) continue;
    if (!seat_expired(*p, now)) return *p;
    struct seat *dead = *p;
    *p = dead->next;
    seat_free(dead);
    t->n_seats--;
    return NULL;
  }
  return NULL;
}

struct seat *seat_create(struct seats *t, const char *user, const char *backend, uint64_t now) {
  if (t->n_seats >= t->seat_cap) seat_tab_grow(t);
  struct seat *s = xcalloc(1, sizeof *s);
  s->user = xstrdup(user);
  s->backend = xstrdup(backend);
  s->created_ms = now;
  s->expires_ms = UINT64_MAX;   /* the caller adds the first session at once */
  size_t k = str_hash(user) % t->seat_cap;
  s->next = t->seat_tab[k];
  t->seat_tab[k] = s;
  t->n_seats++;
  return s;
}

void seat_move(struct seat *s, const char *backend) {
  free(s->backend);
  s->backend = xstrdup(backend);
}

size_t seats_sweep(struct seats *t, uint64_t now) {
  size_t freed = 0;
  for (size_t i = 0; i < t->seat_cap; i++)
    for (struct seat **p = &t->seat_tab[i]; *p;) {
      if (seat_expired(*p, now)) {
        struct seat *dead = *p;
        *p = dead->next;
        seat_free(dead);
        t->n_seats--;
        freed++;
      } else {
        p = &(*p)->next;
      }
    }
  return freed;
}

void seats_foreach(struct seats *t, void (*fn)(struct seat *, void *), void *arg) {
  for (size_t i = 0; i < t->seat_cap; i++)
    for (struct seat *s = t->seat_tab[i]; s; s = s->next) fn(s, arg);
}

size_t seats_count(const struct seats *t) {
  return t->n_seats;
}

/* ---- sessions ------------------------------------------------------------ */

static void sess_tab_grow(struct seats *t) {
  size_t cap = t->sess_cap * 2;
  struct session **tab = xcalloc(cap, sizeof *tab);
  for (size_t i = 0; i < t->sess_cap; i++)
    for (struct session *s = t->sess_tab[i], *n; s; s = n) {
      n = s->next;
      size_t k = str_hash(s->id) % cap;
      s->next = tab[k];
      tab[k] = s;
    }
  free(t->sess_tab);
  t->sess_tab = tab;
  t->sess_cap = cap;
}

struct session *session_add(struct seats *t, const char *id, const char *user,
                            const char *backend, const char *client, void *owner, uint64_t now) {
  if (t->n_sessions >= t->sess_cap) sess_tab_grow(t);
  struct session *s = xcalloc(1, sizeof *s);
  snprintf(s->id, sizeof s->id, "%s", id);
  snprintf(s->client, sizeof s->client, "%s", client);
  s->user = xstrdup(user);
  s->backend = xstrdup(backend);
  s->owner = owner;
  s->start_ms = now;
  size_t k = str_hash(s->id) % t->sess_cap;
  s->next = t->sess_tab[k];
  t->sess_tab[k] = s;
  t->n_sessions++;
  struct seat *seat = seat_find(t, user, now);
  if (seat) {
    seat->sessions++;
    s->gen = seat->gen;
  }
  return s;
}

struct session *session_find(struct seats *t, const char *id) {
  for (struct session *s = t->sess_tab[str_hash(id) % t->sess_cap]; s; s = s->next)
    if (!strcmp(s->id, id)) return s;
  return NULL;
}

void session_remove(struct seats *t, struct session *s, uint64_t now, uint64_t seat_expire_ms) {
  for (struct session **p = &t->sess_tab[str_hash(s->id) % t->sess_cap]; *p; p = &(*p)->next)
    if (*p == s) {
      *p = s->next;
      break;
    }
  t->n_sessions--;
  struct seat *seat = seat_find(t, s->user, now);
  if (seat && seat->sessions > 0 && --seat->sessions == 0) seat->expires_ms = now + seat_expire_ms;
  session_free(s);
}

size_t sessions_count(const struct seats *t) {
  return t->n_sessions;
}

void sessions_foreach(struct seats *t, void (*fn)(struct session *, void *), void *arg) {
  for (size_t i = 0; i < t->sess_cap; i++)
    for (struct session *s = t->sess_tab[i]; s; s = s->next) fn(s, arg);
}

