/* The in-memory layer of the auth cache: a size-bounded LRU of recent
 * verdicts, keyed by a keyed hash of the login name.
 *
 * Nothing here can give a password back. An entry holds
 *   key  = HMAC-SHA-256(secret, "u" 0 login)
 *   fp   = HMAC-SHA-256(secret, "p" 0 login 0 password)   (positive, negative)
 * so someone who reads the cache (or the Redis layer, which stores the same
 * values in hex) learns nothing usable without the cluster secret, and even
 * with it can only test guesses at full speed of HMAC, which is why the
 * secret lives in a file only sessiond can read.
 *
 * A positive entry is fresh until fresh_until, then stale until
 * stale_until: stale entries are served only while the password database is
 * unreachable. A negative entry remembers the last wrong password of a login
 * for a short time, so a client retrying a stale saved password does not
 * reach the database every time. Times are wall-clock milliseconds, the
 * same on every proxy of a cluster. */
#ifndef USHER_AUTHCACHE_H
#define USHER_AUTHCACHE_H

#include <stddef.h>
#include <stdint.h>

#define AUTHCACHE_HASH_LEN 32
#define AUTHCACHE_HEX_LEN (2 * AUTHCACHE_HASH_LEN)

struct authcache;

enum authcache_verdict {
  AC_MISS = 0,        /* nothing known for this login and password */
  AC_POSITIVE,        /* the password is right (fresh) */
  AC_STALE,           /* the password was right, but the entry is past its TTL */
  AC_NEGATIVE,        /* this exact password was wrong a moment ago */
};

struct authcache_hit {
  const char *canonical;   /* valid until the next call into the cache */
  const char *seat;        /* the name the seat is kept under (often == canonical) */
  const char *backend;     /* NULL: not pinned */
};

/* max_entries 0 disables the memory layer (every lookup misses). */
struct authcache *authcache_new(const uint8_t *secret, size_t secret_len, size_t max_entries);
void authcache_free(struct authcache *c);

void authcache_key(const struct authcache *c, const char *login, uint8_t key[AUTHCACHE_HASH_LEN]);
void authcache_fingerprint(const struct authcache *c, const char *login, const char *password,
                           uint8_t fp[AUTHCACHE_HASH_LEN]);

/* The seal of a Redis entry: lowercase hex of HMAC(secret, "e" 0 text),
 * where text is the entry's fields and the key it is stored under. An
 * entry whose seal does not match was not written by a proxy that holds
 * the secret (or was written for another key) and is ignored: whoever can
 * write to Redis cannot point a valid entry at another user or backend. */
void authcache_seal(const struct authcache *c, const char *text, char out[AUTHCACHE_HEX_LEN + 1]);

enum authcache_verdict authcache_lookup(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                                        uint64_t now, struct authcache_hit *hit);
void authcache_put_positive(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                            const char *canonical, const char *seat, const char *backend,
                            uint64_t fresh_until, uint64_t stale_until);
void authcache_put_negative(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                            uint64_t until);
void authcache_forget(struct authcache *c, const uint8_t *key);
void authcache_clear(struct authcache *c);
size_t authcache_count(const struct authcache *c);

/* Lowercase hex of a hash (out: AUTHCACHE_HEX_LEN + 1 bytes); and back
 * (returns 0, or -1 when hex is not exactly that). */
void authcache_hex(const uint8_t *hash, char *out);
int authcache_unhex(const char *hex, size_t len, uint8_t *hash);

#endif
