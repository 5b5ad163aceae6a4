/* Seats agreed among the proxies of a cluster while Redis is away.
 *
 * Redis is where a seat is decided. Without it, a proxy cannot know
 * whether another proxy holds sessions of a user on some backend, so by
 * default it refuses every user it does not hold itself. With [peers], it
 * asks the others instead, over UDP, each message sealed with the cluster
 * secret (the auth cache's): "may user K be seated on backend B?" A peer
 * answers
 *   HELD b     it holds sessions of K, on b;
 *   CLAIMED b  it agreed to (or itself asked for) K on b a moment ago;
 *   FREE       neither: it records the claim for claim_time and agrees;
 *   REDIS      it reaches Redis, which then is the one to decide.
 * The login goes through only when every peer has answered within
 * `timeout`: on B when all say FREE, on b when every other answer names
 * the same b; anything else (a conflict, REDIS, a peer that does not
 * answer) refuses, as without peers. Two proxies asking at once for
 * different backends: the one whose name sorts first wins at both ends,
 * and the other follows it. A dead peer therefore stops every new seat
 * until Redis is back: no guess about its sessions is safe.
 *
 * Seats agreed this way are unconfirmed (not fenced): when Redis is back,
 * the heartbeat writes them there, over an older seat that no live lease
 * holds. */
#ifndef USHER_SESSIOND_PEERS_H
#define USHER_SESSIOND_PEERS_H

#include <stdint.h>

struct sessiond;
struct peers;

/* idx: the backend every peer agreed on, or -1 (refused). */
typedef void (*peers_done_fn)(void *cookie, int idx);

struct peers_stats {
  uint64_t asked, agreed, followed, refused_conflict, refused_timeout, refused_redis;
  uint64_t answered, bad_messages;
};

/* NULL when [peers] is not configured; on a socket error too (logged). */
struct peers *peers_new(struct sessiond *sd);
void peers_free(struct peers *p);

/* Asks every peer about seating the user named key_hex on backend idx. */
void peers_claim(struct peers *p, const char *key_hex, int idx, peers_done_fn done, void *cookie);
/* The backend a live claim of a peer names for key_hex, or -1: a seat
 * created in Redis meanwhile should not contradict what peers agreed. */
int peers_claimed_backend(struct peers *p, const char *key_hex);
const struct peers_stats *peers_stats(const struct peers *p);

#endif
