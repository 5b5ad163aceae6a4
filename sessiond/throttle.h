/* Login throttling, shared by the cluster through Redis.
 *
 * Failures are counted per client address (IPv6 by its /64) and per user
 * (by the keyed hash of the login name, so unknown users are counted
 * exactly like known ones and the answer tells nothing) over `window`. The
 * same wrong password repeated by one user is not counted again: a phone
 * with a stale saved password is not an attack. Each counted failure makes
 * the next answer slower (failure_delay doubling up to max_delay); past
 * ip_failures or user_failures the address or user is refused for
 * `ban_time`, and the ban is published so every proxy refuses at once
 * without asking Redis on each login.
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
};

struct throttle *throttle_new(const struct config *cfg, struct rds *redis);
void throttle_free(struct throttle *t);
/* After a reload: the limits of the new configuration (cfg must outlive t). */
void throttle_set_config(struct throttle *t, const struct config *cfg);

/* The address key of a client: "1.2.3.4", or "2001:db8:1:2::/64" for IPv6. */
void throttle_ip_key(const char *client_addr, char out[THROTTLE_KEY_MAX]);

/* 1 when the address or the user is refused now. */
int throttle_banned(struct throttle *t, const char *ip_key, const char *user_hex, uint64_t wall_now);
/* Counts a failure; done(cookie, delay) follows once the counts are known
 * (at once without Redis). fp_hex identifies the password tried. */
void throttle_failure(struct throttle *t, const char *ip_key, const char *user_hex,
                      const char *fp_hex, throttle_done_fn done, void *cookie);
/* A successful login clears the user's count (not the address's). */
void throttle_success(struct throttle *t, const char *user_hex);
/* An event from the channel: "ban ip KEY UNTIL" or "ban user HEX UNTIL". */
void throttle_on_event(struct throttle *t, const char *payload, size_t len);
const struct throttle_stats *throttle_stats(const struct throttle *t);

#endif
