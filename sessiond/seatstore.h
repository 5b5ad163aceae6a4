/* Seats shared by the cluster through Redis (see DESIGN.md, "Seats").
 *
 *   usher:{H}:seat    hash: backend, gen, created (H: keyed hash of the user)
 *   usher:{H}:leases  sorted set: proxy name -> lease expiry (Redis time)
 *
 * Every change is one Lua script reading Redis's clock:
 *   attach    at login: the seat (created with the proposed backend if
 *             absent: losing that race means using the winner's seat), plus
 *             this proxy's lease
 *   replace   the seated backend is down: compare-and-set (backend, gen) to a
 *             new backend with gen + 1; the old generation's sessions are kicked
 *   heartbeat every seat_lease/3, pipelined, for each user with sessions
 *             here: renews the lease; recreates a seat Redis lost (after an
 *             outage); answers the current seat, so sessions of an older
 *             generation or another backend are closed
 *   detach    the user's last session here ended
 *   move/kick bump the generation (move also sets the backend) and publish
 *             "kick H GEN": every proxy closes that user's older sessions
 * A seat expires seat_expire after its last lease.
 *
 * Redis configured but unreachable, on_redis_down = refuse (the default):
 * only users who hold sessions on this proxy under a seat Redis confirmed
 * get in (on that seat); everyone else gets NO [UNAVAILABLE], since no
 * proxy can prove alone that no other proxy serves them elsewhere.
 *
 * Without Redis (not configured, or unreachable with on_redis_down =
 * fallback) seats live in this proxy's memory and are chosen by the same
 * consistent hash, so proxies agree on everyone whose backends are all
 * healthy; those seats are unfenced and written back when Redis returns.
 * With several proxies, fallback can seat one user on two backends during
 * an outage (one proxy's memory against another's hash): it trades the
 * seat rule for availability, and is not the default. */
#ifndef USHER_SESSIOND_SEATSTORE_H
#define USHER_SESSIOND_SEATSTORE_H

#include <stddef.h>
#include <stdint.h>

struct sessiond;

/* idx: the backend's index, or -1 (no backend can take the user). */
typedef void (*seatstore_done_fn)(void *cookie, int idx);

/* Seats user for a new session (from client, "addr:port") and adds the
 * session (on success) with owner as its holder, unless *gone has turned
 * non-zero meanwhile. done is called exactly once, possibly before this
 * returns; owner and gone must outlive it. key_hex: the user's keyed hash
 * if the caller has it, else NULL. */
void seatstore_route(struct sessiond *sd, void *owner, const int *gone, const char *session,
                     const char *client, const char *user, const char *key_hex,
                     const char *pinned, seatstore_done_fn done, void *cookie);
/* The worker could not reach the seated backend for this session: re-seat
 * (compare-and-set) when it is the user's only session here; gone as for
 * seatstore_route, the holder's. */
void seatstore_backend_failed(struct sessiond *sd, const char *session, const int *gone,
                              seatstore_done_fn done, void *cookie);
/* A session ended; detaches the lease with the user's last one. */
void seatstore_session_ended(struct sessiond *sd, const char *session);

/* Operator actions, cluster-wide when Redis is up. Return the number of
 * sessions closed (or, for a move with rehome, asked to re-home: KICK
 * with PT_REHOME when re-homing is on) on this proxy at once, or -1 with
 * err set. Other proxies learn a re-homing move from "kick H GEN rehome";
 * an older proxy reads it as a kick and closes. */
int seatstore_kick(struct sessiond *sd, const char *user, char *err, size_t errlen);
int seatstore_move(struct sessiond *sd, const char *user, const char *backend, int rehome,
                   char *err, size_t errlen);

void seatstore_start(struct sessiond *sd);
void seatstore_stop(struct sessiond *sd);
/* Redis is back: heartbeat every seat now (writes back unfenced seats). */
void seatstore_resync(struct sessiond *sd);
void seatstore_on_event(struct sessiond *sd, const char *payload, size_t len);

struct seatstore_stats {
  uint64_t attaches, claims_won, replaces, heartbeats, conflicts_kicked, fallback_routes, detaches;
  uint64_t refused_routes;   /* Redis away, on_redis_down = refuse, user not held here */
  uint64_t refills;          /* refill windows opened by this proxy */
  uint64_t moves_refused;    /* moves Redis refused during a refill */
  uint64_t peer_routes;      /* seats agreed with the peers while Redis was away */
  uint64_t refill_waits, refill_refused;   /* logins that waited (a refill, or a move's acks); refused at the bound */
};
const struct seatstore_stats *seatstore_stats(void);

#endif
