/* backend NAME drain --migrate: the backend is drained (no new users) and
 * every user seated on it here is moved, paced, to the backend the hash
 * chooses among the eligible ones; their live sessions are re-homed when
 * re-homing is on (rehome.h), else closed. One migration at a time. */
#ifndef USHER_SESSIOND_DRAIN_H
#define USHER_SESSIOND_DRAIN_H

#include <stddef.h>

struct sessiond;
struct evbuffer;

/* Starts moving the users seated on backend (already marked draining by
 * the caller), rate users a second (0: [routing] drain_rate). Returns the
 * number of users to move, or -1 with err set. */
int drain_migrate_start(struct sessiond *sd, const char *backend, unsigned rate, char *err,
                        size_t errlen);
/* "migration":{...} or null, for usherctl status: the backend, users
 * left, moved, not movable (no backend, or the move refused). */
void drain_migrate_status(struct evbuffer *out);
void drain_migrate_stop(void);

#endif
