/* Login throttling, shared by the cluster through Redis.
 *
 * Failures are counted per client address (IPv6 by its /64), per user (by
 * the keyed hash of the normalized login, so unknown users are counted
 * exactly like known ones and the answer tells nothing) and per pair of
 * the two, over `window`. The same wrong password repeated by one user is
 * not counted again: a phone with a stale saved password is not an attack.
 * Each counted failure makes the next answer slower (failure_delay
 * doubling up to max_delay); past ip_failures or user_failures the address
 * or user is refused for `ban_time`, and the ban is published so every
 * proxy refuses at once without asking Redis on each login.
 *
 * A ban must not be a weapon against the owner. Whoever knows a login name
 * could otherwise keep its owner out by failing on purpose, so a user's ban
 * (and an address's) does not apply to a *known address* of that user: one
 * from which the user logged in with the right password within
 * known_address_ttl (the IMAP analogue of OWASP's device cookies: IMAP has
 * no cookies, the address is what a client brings every time). Guesses
 * from a known address count in the pair's own counter and ban that pair
 * past user_failures, so an attacker who shares the owner's address (a
 * NAT) still gets no more than that. What it costs: the owner on a new
 * address while the account is under attack is refused until the ban ends,
 * and a known address is not proof of the owner.
 *
 * With Redis down (or not configured) the same counting runs in this
 * proxy's memory only. */
#ifndef USHER_SESSIOND_THROTTLE_H
#define USHER_SESSIOND_THROTTLE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "sessiond/redis.h"

#define THROTTLE_KEY_MAX 80

struct throttle;
typedef void (*throttle_done_fn)(void *cookie, uint32_t delay_ms);

struct throttle_stats {
  uint64_t failures_counted, failures_repeated, refused, bans;
  uint64_t known_passed;   /* logins let through a ban: the address is known for the user */
};

struct throttle *throttle_new(const struct config *cfg, struct rds *redis);
void throttle_free(struct throttle *t);
/* After a reload: the limits of the new configuration (cfg must outlive t). */
void throttle_set_config(struct throttle *t, const struct config *cfg);

/* The address key of a client: "1.2.3.4", or "2001:db8:1:2::/64" for IPv6. */
void throttle_ip_key(const char *client_addr, char out[THROTTLE_KEY_MAX]);

/* Whether a login from ip_key as user_hex is refused now: done(cookie,
 * refused) follows, at once unless a ban is in force and Redis must say
 * whether the address is known for the user. */
typedef void (*throttle_check_fn)(void *cookie, int refused);
void throttle_check(struct throttle *t, const char *ip_key, const char *user_hex,
                    throttle_check_fn done, void *cookie);
/* Counts a failure; done(cookie, delay) follows once the counts are known
 * (at once without Redis). fp_hex identifies the password tried. */
void throttle_failure(struct throttle *t, const char *ip_key, const char *user_hex,
                      const char *fp_hex, throttle_done_fn done, void *cookie);
/* A successful login: the address becomes known for the user and the
 * pair's count is cleared. The user's count is not: the owner's success
 * must not hand a guesser a fresh allowance. */
void throttle_success(struct throttle *t, const char *ip_key, const char *user_hex);
/* An event from the channel: "ban ip KEY", "ban user HEX" or "ban pair HEX KEY". */
void throttle_on_event(struct throttle *t, const char *payload, size_t len);
const struct throttle_stats *throttle_stats(const struct throttle *t);

#endif
