/* LDAP as the password database, asynchronous, in sessiond's event loop.
 *
 * A pool of connections, each doing one login at a time (an LDAP bind
 * changes the identity of its whole connection, so binds cannot share one).
 * Setting a connection up (TCP, ldaps or StartTLS, the service bind) is
 * blocking in libldap, so it runs on a short-lived thread with the network
 * timeout; the ready handle then comes back to the loop. Every operation on
 * the loop is asynchronous, with the descriptor in the event loop and a
 * timer: a connection whose operation times out is dropped and rebuilt with
 * back-off (100 ms doubling up to reconnect_max).
 *
 * Modes: search-then-bind (bind_dn searches base with filter, then a bind
 * as the entry found checks the password; no entry or two entries mean
 * INVALID) and DN-template bind (dn_template with %u). Login names are
 * escaped per RFC 4515 in filters and per RFC 4514 in DNs. An empty password
 * is INVALID without asking (an LDAP bind with an empty password is an
 * anonymous bind, which succeeds).
 *
 * Admission: at most max_inflight logins use LDAP at once; the rest wait in
 * a queue of queue_max (those flagged `first`, users who already hold a
 * seat, ahead of the others) for at most the operation timeout; past that
 * the answer is BUSY. */
#ifndef USHER_LDAPDB_H
#define USHER_LDAPDB_H

#include <stdint.h>

#include <event2/event.h>

#include "common/config.h"

enum ldapdb_result {
  LDAPDB_OK = 0,
  LDAPDB_INVALID,       /* no such user, or wrong password */
  LDAPDB_UNAVAILABLE,   /* LDAP unreachable, timed out or failing */
  LDAPDB_BUSY,          /* admission control: queue full or wait too long */
};

/* canonical, entry and backend are valid during the call only. canonical
 * is the login_attribute's value (else the login): the name the backend
 * gets. entry names the directory entry the login matched: the
 * login_attribute's value when there is one, else the entry's DN; every
 * login of one entry (aliases too) gives the same entry, and the seat is
 * kept under it. backend is the backend_attribute's value (else NULL). */
typedef void (*ldapdb_done_fn)(void *cookie, enum ldapdb_result r, const char *canonical,
                               const char *entry, const char *backend);

#define LDAPDB_LATENCY_BUCKETS 12
extern const uint64_t ldapdb_latency_bounds_us[LDAPDB_LATENCY_BUCKETS];

struct ldapdb_stats {
  uint64_t requests, ok, invalid, unavailable, busy, timeouts, connects, connect_failures;
  uint64_t latency_us_sum;
  uint64_t latency_buckets[LDAPDB_LATENCY_BUCKETS + 1];   /* last: above every bound */
  unsigned inflight, queued, conns_ready;
};

struct ldapdb;

/* Copies what it needs from cfg; bind_password (NULL: none) is copied and
 * wiped on free. Starts connecting at once. */
struct ldapdb *ldapdb_new(struct event_base *base, const struct config *cfg,
                          const char *bind_password);
/* Answers every waiting login UNAVAILABLE, closes the connections. */
void ldapdb_free(struct ldapdb *db);

/* Checks login/password; done is called exactly once, possibly before this
 * returns (empty password, no connection at all, queue full). The password
 * is copied and the copy wiped as soon as the bind is sent. */
void ldapdb_verify(struct ldapdb *db, const char *login, const char *password, int first,
                   ldapdb_done_fn done, void *cookie);

const struct ldapdb_stats *ldapdb_stats(const struct ldapdb *db);
/* 1 when at least one connection is ready or busy (LDAP is reachable). */
int ldapdb_up(const struct ldapdb *db);

#endif
