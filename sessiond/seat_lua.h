/* The Lua scripts that decide seats on Redis's own clock, each run with a
 * user's keys: KEYS[1] usher:{K}:seat (backend, gen, created), KEYS[2]
 * usher:{K}:leases (proxy -> lease end), KEYS[3] usher:refill, KEYS[4]
 * usher:{K}:moving. Their ARGV and answers are written above each one in
 * seat_lua.c; seatstore.c is their only user. */
#ifndef USHER_SESSIOND_SEAT_LUA_H
#define USHER_SESSIOND_SEAT_LUA_H

#include <stddef.h>

#include "sessiond/redis.h"

struct sessiond;

#define REFILL_KEY "usher:refill"

extern const char SEAT_ATTACH_LUA[], SEAT_REPLACE_LUA[], SEAT_HEARTBEAT_LUA[], SEAT_DETACH_LUA[],
    SEAT_MOVE_LUA[];

/* Sends one script with the user's keys (key_hex names the user); the ARGV
 * strings follow. 0, or -1 when Redis is not there. */
int seat_script(struct sessiond *sd, const char *lua, const char *key_hex, rds_reply_fn fn,
                void *cookie, int argc, const char **args);

/* A script's answer {string, string[, integer]} (n elements), checked
 * before use. */
int seat_reply_ok(const redisReply *rep, size_t n);

#endif
