/* The seat table and the session table, in sessiond's memory.
 *
 * A seat answers "which backend serves this user now". It exists while the
 * user has sessions (from sessiond's LOGIN OK on, while the worker still
 * logs in at the backend too) and for seat_expire after the last one
 * ends; then it may be
 * re-chosen. Sessions are keyed by the worker's session id.
 * All operations on the login path are O(1) on average. */
#ifndef USHER_SESSIOND_SEATS_H
#define USHER_SESSIOND_SEATS_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "common/htable.h"

struct seat {
  char *user;                 /* canonical user name */
  char *backend;
  uint64_t created_ms;
  unsigned sessions;          /* the user's sessions on this proxy */
  uint64_t expires_ms;        /* when sessions == 0 */
  uint64_t gen;               /* the seat's generation in Redis (0: not known there) */
  int fenced;                 /* confirmed in Redis; 0: chosen while Redis was away */
  int owes_ack;               /* kicked stale sessions here: tell Redis once they are gone */
  char key_hex[65];           /* the keyed hash naming the user in Redis */
  struct htable_node node;    /* by user */
};

struct session {
  char id[17];
  char *user;
  char *backend;
  void *owner;                /* the worker connection that holds it */
  char client[64];            /* "addr:port" */
  uint64_t start_ms;
  uint64_t gen;               /* the seat's generation when it was routed */
  int kicked;                 /* closed as stale: gone once its SESSION_END arrives */
  struct htable_node node;    /* by id */
};

struct seats;

struct seats *seats_new(void);
void seats_free(struct seats *t);

/* The live seat of user, or NULL (an expired seat is dropped here). */
struct seat *seat_find(struct seats *t, const char *user, uint64_t now);
struct seat *seat_create(struct seats *t, const char *user, const char *backend, uint64_t now);
/* Re-seats a user on another backend (the caller keeps the seat rule). */
void seat_move(struct seat *s, const char *backend);
/* Frees seats whose expiry has passed. Returns how many. */
size_t seats_sweep(struct seats *t, uint64_t now);
size_t seats_count(const struct seats *t);
/* Calls fn for every seat; fn may not add or remove seats. */
void seats_foreach(struct seats *t, void (*fn)(struct seat *, void *), void *arg);

/* Adds a session of user on backend, from client ("addr:port"); the
 * user's seat must exist. */
struct session *session_add(struct seats *t, const char *id, const char *user,
                            const char *backend, const char *client, void *owner, uint64_t now);
struct session *session_find(struct seats *t, const char *id);
/* Removes and frees; starts the seat's expiry when it was the user's last. */
void session_remove(struct seats *t, struct session *s, uint64_t now, uint64_t seat_expire_ms);
size_t sessions_count(const struct seats *t);
/* Calls fn for every session; fn may not add or remove sessions. */
void sessions_foreach(struct seats *t, void (*fn)(struct session *, void *), void *arg);


#endif
