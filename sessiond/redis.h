/* sessiond's Redis client: hiredis, asynchronous, on the libevent loop.
 *
 * Two connections: one for commands and one subscribed to the cluster's
 * event channel (kicks, auth flushes, bans). Both reconnect on their own with
 * back-off (100 ms doubling up to 5 s). Every command has a deadline (the
 * configured timeout): a caller is answered exactly once, with the reply or
 * with NULL (Redis down, timeout, connection lost), and never waits longer,
 * so a login never blocks on Redis. Three timeouts in a row drop the
 * connection (a hung Redis is treated as a dead one).
 *
 * An outage is logged once when it starts (event=redis_down) and once when
 * it ends (event=redis_up with its length); the counters say the rest. */
#ifndef USHER_SESSIOND_REDIS_H
#define USHER_SESSIOND_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "common/config.h"

/* reply is NULL when there is no answer; an error reply is passed as is. */
typedef void (*rds_reply_fn)(void *cookie, const redisReply *reply);
/* A message on the event channel. */
typedef void (*rds_message_fn)(void *cookie, const char *payload, size_t len);
/* The subscription is (re)established: events may have been missed. */
typedef void (*rds_resync_fn)(void *cookie);

struct rds_stats {
  uint64_t commands, replies, errors, timeouts, refused, outages, messages;
  uint64_t server_changes;   /* reconnects that found another server process */
  uint64_t latency_us_sum;
  uint64_t latency_buckets[8];   /* <=100us 250us 500us 1ms 5ms 25ms 100ms, more */
};
extern const uint64_t rds_latency_bounds_us[7];

struct rds;

struct rds *rds_new(struct event_base *base, const struct config *cfg, const char *password,
                    const char *channel, rds_message_fn on_message, rds_resync_fn on_resync,
                    void *cookie);
/* Answers every outstanding command with NULL and closes both connections. */
void rds_free(struct rds *r);

/* Sends a command (hiredis format). Returns 0 and later calls fn (which may
 * be NULL: fire and forget), or -1 at once when Redis is down (fn is not
 * called). */
int rds_command(struct rds *r, rds_reply_fn fn, void *cookie, const char *fmt, ...);
int rds_command_argv(struct rds *r, rds_reply_fn fn, void *cookie, int argc, const char **argv,
                     const size_t *argvlen);

int rds_is_up(const struct rds *r);
/* 1 once after the command link reached another server process than the
 * one before it (a restart, a Sentinel failover): what that one held may
 * be gone. Read by the resync that follows the reconnect. */
int rds_take_server_changed(struct rds *r);
const struct rds_stats *rds_stats(const struct rds *r);

#endif
