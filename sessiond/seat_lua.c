/* The seat scripts that Redis runs (see seat_lua.h), and how they are sent. */
#include "sessiond/seat_lua.h"

#include <stdio.h>

#include "sessiond/context.h"

/* ---- the scripts (KEYS[1] = seat hash, KEYS[2] = leases, KEYS[3] = refill,
 *      KEYS[4] = moving) --------------------------------------------------------- */

/* usher:{K}:moving holds, after a move to another backend, the proxies that
 * held leases on the seat then: each may still relay sessions on the old
 * backend (one whose link to Redis was down missed the kick, and goes on
 * until it reconnects). The seat is not given out until each has said its
 * stale sessions are gone (SREM, seatstore's ack) or its lease ran out;
 * a login meanwhile waits as in a refill. */
#define LUA_MOVING_WAIT \
  "if redis.call('SCARD', KEYS[4]) > 0 then\n" \
  "  for _, p in ipairs(redis.call('SMEMBERS', KEYS[4])) do\n" \
  "    local sc = redis.call('ZSCORE', KEYS[2], p)\n" \
  "    if not sc or tonumber(sc) <= now then redis.call('SREM', KEYS[4], p) end\n" \
  "  end\n" \
  "  if redis.call('SCARD', KEYS[4]) > 0 then return {100} end\n" \
  "end\n"

/* usher:refill exists for refill_time after a proxy found Redis to be
 * another server process than before (restarted, possibly empty, or a
 * replica promoted that missed the last writes). Meanwhile every proxy
 * writes its seats back (the heartbeat) and no seat is created where none
 * is: a missing seat may be one that a proxy holding sessions has not
 * written back yet. The answer is then {PTTL}: ask again after that. */
#define LUA_REFILL_WAIT "if redis.call('EXISTS', KEYS[3]) == 1 then return {redis.call('PTTL', KEYS[3])} end\n"

#define LUA_NOW "local t = redis.call('TIME') local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"
#define LUA_LEASE(proxy, lease, expire)                                     \
  "redis.call('ZADD', KEYS[2], now + " lease ", " proxy ")\n"                \
  "redis.call('PEXPIRE', KEYS[1], " lease " + " expire ")\n"                 \
  "redis.call('PEXPIRE', KEYS[2], " lease " + " expire ")\n"

/* ARGV: proposed backend ('' none), proxy, lease, expire -> {backend, gen, created} */
const char SEAT_ATTACH_LUA[] =
    LUA_NOW
    LUA_MOVING_WAIT
    "local b = redis.call('HGET', KEYS[1], 'backend')\n"
    "local g, created = redis.call('HGET', KEYS[1], 'gen'), 0\n"
    "if not b then\n"
    "  " LUA_REFILL_WAIT
    "  if ARGV[1] == '' then return {} end\n"
    "  b, g, created = ARGV[1], '1', 1\n"
    "  redis.call('HSET', KEYS[1], 'backend', b, 'gen', g, 'created', now)\n"
    "end\n"
    LUA_LEASE("ARGV[2]", "ARGV[3]", "ARGV[4]")
    "return {b, g, created}\n";

/* ARGV: old backend, old gen, new backend, proxy, lease, expire -> {backend, gen, replaced} */
const char SEAT_REPLACE_LUA[] =
    LUA_NOW
    "local b = redis.call('HGET', KEYS[1], 'backend')\n"
    "local g = redis.call('HGET', KEYS[1], 'gen')\n"
    "local replaced = 0\n"
    "if not b then " LUA_REFILL_WAIT "end\n"
    "if (not b) or (b == ARGV[1] and g == ARGV[2]) then\n"
    "  b, g, replaced = ARGV[3], tostring((tonumber(g) or 0) + 1), 1\n"
    "  redis.call('HSET', KEYS[1], 'backend', b, 'gen', g, 'created', now)\n"
    "end\n"
    LUA_LEASE("ARGV[4]", "ARGV[5]", "ARGV[6]")
    "return {b, g, replaced}\n";

/* ARGV: backend, gen, proxy, lease, expire, unconfirmed -> {backend, gen};
 * writes back a lost seat. An unconfirmed seat (agreed with the peers while
 * Redis was away) also replaces a different one that no other proxy's live
 * lease holds: nobody has sessions there, and ours are live. */
const char SEAT_HEARTBEAT_LUA[] =
    LUA_NOW
    "local b = redis.call('HGET', KEYS[1], 'backend')\n"
    "local g = redis.call('HGET', KEYS[1], 'gen')\n"
    "if not b then\n"
    "  b, g = ARGV[1], ARGV[2]\n"
    "  if g == '0' then g = '1' end\n"
    "  redis.call('HSET', KEYS[1], 'backend', b, 'gen', g, 'created', now)\n"
    "elseif b ~= ARGV[1] and ARGV[6] == '1' then\n"
    "  local held = false\n"
    "  for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do\n"
    "    if p ~= ARGV[3] then held = true end\n"
    "  end\n"
    "  if not held then\n"
    "    b, g = ARGV[1], tostring((tonumber(g) or 0) + 1)\n"
    "    redis.call('HSET', KEYS[1], 'backend', b, 'gen', g, 'created', now)\n"
    "  end\n"
    "end\n"
    LUA_LEASE("ARGV[3]", "ARGV[4]", "ARGV[5]")
    "return {b, g}\n";

/* ARGV: proxy, expire: the seat lives expire past the last remaining lease */
const char SEAT_DETACH_LUA[] =
    LUA_NOW
    "redis.call('ZREM', KEYS[2], ARGV[1])\n"
    "local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')\n"
    "local until_ = now\n"
    "if last[2] and tonumber(last[2]) > now then until_ = tonumber(last[2]) end\n"
    "local ttl = until_ - now + ARGV[2]\n"
    "if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ttl) end\n"
    "return 1\n";

/* ARGV: backend ('' = kick only), expire, lease -> the new gen (0: no seat
 * to kick; -1: refused while refilling, when a proxy still cut off may hold
 * sessions under a lease Redis has lost, so no one could wait for it) */
const char SEAT_MOVE_LUA[] =
    LUA_NOW
    "if ARGV[1] ~= '' and redis.call('EXISTS', KEYS[3]) == 1 then return -1 end\n"
    "if ARGV[1] == '' and redis.call('EXISTS', KEYS[1]) == 0 then return 0 end\n"
    "local old = redis.call('HGET', KEYS[1], 'backend')\n"
    "local g = redis.call('HINCRBY', KEYS[1], 'gen', 1)\n"
    "if ARGV[1] ~= '' and old and old ~= ARGV[1] then\n"
    "  for _, p in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now, '+inf')) do\n"
    "    redis.call('SADD', KEYS[4], p)\n"
    "  end\n"
    "  if redis.call('EXISTS', KEYS[4]) == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[3]) end\n"
    "end\n"
    "if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'backend', ARGV[1]) end\n"
    "if redis.call('HEXISTS', KEYS[1], 'created') == 0 then\n"
    "  redis.call('HSET', KEYS[1], 'created', now) end\n"
    "if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "return g\n";

/* Sends one script with both of a user's keys; the ARGV strings follow. */
int seat_script(struct sessiond *sd, const char *lua, const char *key_hex, rds_reply_fn fn,
                void *cookie, int argc, const char **args) {
  char seat_key[96], lease_key[96], moving_key[96];
  snprintf(seat_key, sizeof seat_key, "usher:{%s}:seat", key_hex);
  snprintf(lease_key, sizeof lease_key, "usher:{%s}:leases", key_hex);
  snprintf(moving_key, sizeof moving_key, "usher:{%s}:moving", key_hex);
  const char *argv[14] = {"EVAL", lua, "4", seat_key, lease_key, REFILL_KEY, moving_key};
  for (int i = 0; i < argc && i < 7; i++) argv[7 + i] = args[i];
  return rds_command_argv(sd->redis, fn, cookie, 7 + argc, argv, NULL);
}


int seat_reply_ok(const redisReply *rep, size_t n) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != n) return 0;
  for (size_t i = 0; i < 2; i++)
    if (rep->element[i]->type != REDIS_REPLY_STRING) return 0;
  return n < 3 || rep->element[2]->type == REDIS_REPLY_INTEGER;
}
