/* Throttling (see throttle.h). Local state is one small hash table of
 * counters and bans, keyed "ip:KEY", "u:HEX", "p:HEX:KEY" (a user at an
 * address) or "k:HEX:KEY" (that address is known for the user), on the
 * common hash table. An expired entry met by a lookup is freed, and the
 * whole table is swept every SWEEP_EVERY new entries; it never holds more
 * than LOCAL_MAX entries (past that, new keys are not counted locally:
 * failing open on a memory limit is better than failing closed for
 * everyone). */
#include "sessiond/throttle.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/htable.h"
#include "common/log.h"
#include "common/util.h"

#define LOCAL_MAX 200000
#define SWEEP_EVERY 4096

/* Room for "p:" HEX ":" KEY. */
#define ENTRY_KEY_MAX (THROTTLE_KEY_MAX + 72)

struct tentry {
  char key[ENTRY_KEY_MAX];
  unsigned count;
  uint64_t window_until, ban_until;
  char last_fp[17];        /* the first 16 hex digits of the last failure */
  struct htable_node node;
};

struct throttle {
  const struct config *cfg;
  struct rds *redis;
  struct htable entries;
  unsigned created_since_sweep;
  struct throttle_stats st;
};

/* Counts in Redis: KEYS ip counter, user counter, user's last password,
 * pair counter; ARGV fp, window, ip limit, user limit, ban. A repeated
 * password is not counted. Over a limit, the counter's expiry becomes the
 * ban's (the pair's limit is the user's). */
static const char FAILURE_LUA[] =
    "local rep = redis.call('GET', KEYS[3]) == ARGV[1]\n"
    "local ipc, uc, pc\n"
    "if rep then\n"
    "  ipc = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "  uc = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "  pc = tonumber(redis.call('GET', KEYS[4]) or '0')\n"
    "else\n"
    "  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])\n"
    "  ipc = redis.call('INCR', KEYS[1])\n"
    "  if ipc == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "  uc = redis.call('INCR', KEYS[2])\n"
    "  if uc == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end\n"
    "  if tonumber(ARGV[3]) > 0 and ipc >= tonumber(ARGV[3]) then\n"
    "    redis.call('PEXPIRE', KEYS[1], ARGV[5]) end\n"
    "  pc = redis.call('INCR', KEYS[4])\n"
    "  if pc == 1 then redis.call('PEXPIRE', KEYS[4], ARGV[2]) end\n"
    "  if tonumber(ARGV[4]) > 0 and uc >= tonumber(ARGV[4]) then\n"
    "    redis.call('PEXPIRE', KEYS[2], ARGV[5]) end\n"
    "  if tonumber(ARGV[4]) > 0 and pc >= tonumber(ARGV[4]) then\n"
    "    redis.call('PEXPIRE', KEYS[4], ARGV[5]) end\n"
    "end\n"
    "return {ipc, uc, rep and 1 or 0, pc}\n";

static int expired(const struct tentry *e, uint64_t now) {
  return e->window_until <= now && e->ban_until <= now;
}

static void sweep(struct throttle *t, uint64_t now) {
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->entries, &it); n;
       n = htable_iter_next(&t->entries, &it)) {
    struct tentry *e = HTABLE_ENTRY(n, struct tentry, node);
    if (expired(e, now)) {
      htable_remove(&t->entries, n);
      free(e);
    }
  }
  t->created_since_sweep = 0;
}

/* The entry for key; created when `create` and there is room. */
static struct tentry *local_get(struct throttle *t, const char *key, int create, uint64_t now) {
  uint64_t h = htable_hash_str(key);
  for (struct htable_node *n = htable_first_with(&t->entries, h); n; n = htable_next_same(n)) {
    struct tentry *e = HTABLE_ENTRY(n, struct tentry, node);
    if (strcmp(e->key, key) != 0) continue;
    if (!expired(e, now)) return e;
    htable_remove(&t->entries, n);
    free(e);
    break;
  }
  if (!create) return NULL;
  if (t->created_since_sweep >= SWEEP_EVERY || t->entries.count >= LOCAL_MAX) sweep(t, now);
  if (t->entries.count >= LOCAL_MAX) return NULL;
  struct tentry *e = xcalloc(1, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  e->window_until = now + t->cfg->throttle_window_ms;
  htable_insert(&t->entries, &e->node, h);
  t->created_since_sweep++;
  return e;
}

static void local_ban(struct throttle *t, const char *key, uint64_t until) {
  struct tentry *e = local_get(t, key, 1, wall_ms());
  if (e && e->ban_until < until) {
    e->ban_until = until;
    t->st.bans++;
  }
}

void throttle_ip_key(const char *addr, char out[THROTTLE_KEY_MAX]) {
  struct in6_addr a6;
  if (strchr(addr, ':') && inet_pton(AF_INET6, addr, &a6) == 1) {
    memset(a6.s6_addr + 8, 0, 8);
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    snprintf(out, THROTTLE_KEY_MAX, "%s/64", buf);
  } else {
    snprintf(out, THROTTLE_KEY_MAX, "%s", addr);
  }
}

struct throttle *throttle_new(const struct config *cfg, struct rds *redis) {
  struct throttle *t = xcalloc(1, sizeof *t);
  t->cfg = cfg;
  t->redis = redis;
  htable_init(&t->entries, 4096);
  return t;
}

void throttle_set_config(struct throttle *t, const struct config *cfg) { t->cfg = cfg; }

void throttle_free(struct throttle *t) {
  if (!t) return;
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&t->entries, &it); n;
       n = htable_iter_next(&t->entries, &it))
    free(HTABLE_ENTRY(n, struct tentry, node));
  htable_destroy(&t->entries);
  free(t);
}

/* The local keys of a user at an address: kind 'p' (its counter and ban)
 * or 'k' (known). */
static void pair_key(char kind, const char *ip_key, const char *user_hex, char out[ENTRY_KEY_MAX]) {
  snprintf(out, ENTRY_KEY_MAX, "%c:%.64s:%s", kind, user_hex, ip_key);
}

static int banned_key(struct throttle *t, const char *key, uint64_t now) {
  struct tentry *e = local_get(t, key, 0, now);
  return e && e->ban_until > now;
}

/* The address is known for the user from now on, here (until the TTL)
 * and in Redis; Redis is written again only once half the TTL has gone. */
static void remember_known(struct throttle *t, const char *ip_key, const char *user_hex,
                           int write_redis) {
  uint64_t ttl = t->cfg->throttle_known_ms, now = wall_ms();
  char k[ENTRY_KEY_MAX];
  pair_key('k', ip_key, user_hex, k);
  struct tentry *e = local_get(t, k, 1, now);
  if (e && e->window_until > now + ttl / 2) return;   /* fresh enough everywhere */
  if (e) e->window_until = now + ttl;
  if (write_redis)
    rds_command(t->redis, NULL, NULL, "SET usher:thr:k:%s:%s 1 PX %llu", user_hex, ip_key,
                (unsigned long long)ttl);
}

struct known_call {
  struct throttle *t;
  char ip_key[THROTTLE_KEY_MAX], user_hex[65];
  throttle_check_fn done;
  void *cookie;
};

static void on_known_reply(void *cookie, const redisReply *r) {
  struct known_call *q = cookie;
  struct throttle *t = q->t;
  int known = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
  if (known) {
    t->st.known_passed++;
    remember_known(t, q->ip_key, q->user_hex, 0);
  } else {
    t->st.refused++;
  }
  q->done(q->cookie, !known);
  free(q);
}

void throttle_check(struct throttle *t, const char *ip_key, const char *user_hex,
                    throttle_check_fn done, void *cookie) {
  uint64_t now = wall_ms();
  char k[ENTRY_KEY_MAX];
  pair_key('p', ip_key, user_hex, k);
  int pair_banned = banned_key(t, k, now);
  snprintf(k, sizeof k, "ip:%s", ip_key);
  int ip_banned = banned_key(t, k, now);
  snprintf(k, sizeof k, "u:%.64s", user_hex);
  int user_banned = banned_key(t, k, now);
  if (!pair_banned && !ip_banned && !user_banned) {
    done(cookie, 0);
    return;
  }
  /* A ban: only the user's known addresses still get in, and not one that
   * guessed its own way into a ban. */
  pair_key('k', ip_key, user_hex, k);
  if (pair_banned || !t->cfg->throttle_known_ms) {
    t->st.refused++;
    done(cookie, 1);
    return;
  }
  if (local_get(t, k, 0, now)) {
    t->st.known_passed++;
    done(cookie, 0);
    return;
  }
  struct known_call *q = xcalloc(1, sizeof *q);
  q->t = t;
  snprintf(q->ip_key, sizeof q->ip_key, "%s", ip_key);
  snprintf(q->user_hex, sizeof q->user_hex, "%.64s", user_hex);
  q->done = done;
  q->cookie = cookie;
  if (rds_command(t->redis, on_known_reply, q, "EXISTS usher:thr:k:%s:%s", q->user_hex,
                  q->ip_key) != 0) {
    t->st.refused++;   /* nobody can tell: the ban holds */
    free(q);
    done(cookie, 1);
  }
}

/* The delay after n counted failures: failure_delay doubling, capped. */
static uint32_t delay_for(const struct config *cfg, unsigned n) {
  uint64_t d = cfg->failure_delay_ms;
  for (unsigned i = 1; i < n && d < cfg->throttle_max_delay_ms; i++) d *= 2;
  if (d > cfg->throttle_max_delay_ms) d = cfg->throttle_max_delay_ms;
  return (uint32_t)d;
}

static void publish_ban(struct throttle *t, const char *kind, const char *key) {
  char msg[ENTRY_KEY_MAX + 16];
  snprintf(msg, sizeof msg, "ban %s %s", kind, key);
  rds_command(t->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
}

/* Both counts known: ban past the limits (publishing the ban), and answer. */
static uint32_t judge(struct throttle *t, const char *ip_key, const char *user_hex,
                      unsigned ipc, unsigned uc, unsigned pc) {
  const struct config *cfg = t->cfg;
  uint64_t until = wall_ms() + cfg->throttle_ban_ms;
  char k[ENTRY_KEY_MAX];
  if (cfg->throttle_ip_failures && ipc >= cfg->throttle_ip_failures) {
    snprintf(k, sizeof k, "ip:%s", ip_key);
    local_ban(t, k, until);
    publish_ban(t, "ip", ip_key);
    log_event(LOG_LVL_WARN, "throttle_ban", "ip=%s failures=%u", ip_key, ipc);
  }
  if (cfg->throttle_user_failures && uc >= cfg->throttle_user_failures) {
    snprintf(k, sizeof k, "u:%.64s", user_hex);
    local_ban(t, k, until);
    publish_ban(t, "user", user_hex);
    log_event(LOG_LVL_WARN, "throttle_ban", "user_key=%.16s failures=%u", user_hex, uc);
  }
  if (cfg->throttle_user_failures && pc >= cfg->throttle_user_failures) {
    char pair[ENTRY_KEY_MAX];
    pair_key('p', ip_key, user_hex, k);
    local_ban(t, k, until);
    snprintf(pair, sizeof pair, "%.64s %s", user_hex, ip_key);
    publish_ban(t, "pair", pair);
    log_event(LOG_LVL_WARN, "throttle_ban", "user_key=%.16s ip=%s failures=%u", user_hex, ip_key, pc);
  }
  /* Scale the address's count to the user's limit: both reach the longest
   * delay as they reach their ban. */
  unsigned n = uc;
  if (cfg->throttle_ip_failures && cfg->throttle_user_failures) {
    unsigned scaled = (unsigned)((uint64_t)ipc * cfg->throttle_user_failures /
                                 cfg->throttle_ip_failures);
    if (scaled > n) n = scaled;
  }
  return delay_for(cfg, n);
}

/* The same counting in this proxy's memory. */
static void local_count(struct throttle *t, const char *key, const char *fp, unsigned *out) {
  struct tentry *e = local_get(t, key, 1, wall_ms());
  if (!e) {
    *out = 0;
    return;
  }
  if (fp && !strncmp(e->last_fp, fp, 16)) {
    *out = e->count;
    return;
  }
  if (fp) snprintf(e->last_fp, sizeof e->last_fp, "%.16s", fp);
  *out = ++e->count;
}

struct failure_call {
  struct throttle *t;
  char ip_key[THROTTLE_KEY_MAX], user_hex[65], fp_hex[65];
  throttle_done_fn done;
  void *cookie;
};

static void failure_local(struct failure_call *f) {
  struct throttle *t = f->t;
  char k[ENTRY_KEY_MAX];
  unsigned ipc, uc, pc;
  snprintf(k, sizeof k, "u:%.64s", f->user_hex);
  struct tentry *ue = local_get(t, k, 0, wall_ms());
  int repeated = ue && !strncmp(ue->last_fp, f->fp_hex, 16);
  local_count(t, k, f->fp_hex, &uc);
  snprintf(k, sizeof k, "ip:%s", f->ip_key);
  char kp[ENTRY_KEY_MAX];
  pair_key('p', f->ip_key, f->user_hex, kp);
  if (repeated) {
    struct tentry *ie = local_get(t, k, 0, wall_ms()), *pe = local_get(t, kp, 0, wall_ms());
    ipc = ie ? ie->count : 0;
    pc = pe ? pe->count : 0;
    t->st.failures_repeated++;
  } else {
    local_count(t, k, NULL, &ipc);
    local_count(t, kp, NULL, &pc);
    t->st.failures_counted++;
  }
  f->done(f->cookie, judge(t, f->ip_key, f->user_hex, ipc, uc, pc));
}

static void on_failure_reply(void *cookie, const redisReply *r) {
  struct failure_call *f = cookie;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
    if (r && r->type == REDIS_REPLY_ERROR)
      log_event(LOG_LVL_ERROR, "throttle_script", "error=\"%s\"", r->str);
    failure_local(f);   /* Redis failed us: count here */
  } else {
    if (r->element[2]->integer) f->t->st.failures_repeated++;
    else f->t->st.failures_counted++;
    f->done(f->cookie, judge(f->t, f->ip_key, f->user_hex, (unsigned)r->element[0]->integer,
                             (unsigned)r->element[1]->integer, (unsigned)r->element[3]->integer));
  }
  free(f);
}

void throttle_failure(struct throttle *t, const char *ip_key, const char *user_hex,
                      const char *fp_hex, throttle_done_fn done, void *cookie) {
  struct failure_call *f = xcalloc(1, sizeof *f);
  f->t = t;
  snprintf(f->ip_key, sizeof f->ip_key, "%s", ip_key);
  snprintf(f->user_hex, sizeof f->user_hex, "%s", user_hex);
  snprintf(f->fp_hex, sizeof f->fp_hex, "%.16s", fp_hex);   /* enough to tell repeats */
  f->done = done;
  f->cookie = cookie;
  char kip[THROTTLE_KEY_MAX + 16], ku[96], kl[96], kp[ENTRY_KEY_MAX + 16];
  char win[24], lip[16], lu[16], ban[24];
  snprintf(kip, sizeof kip, "usher:thr:ip:%s", ip_key);
  snprintf(ku, sizeof ku, "usher:thr:u:%s", user_hex);
  snprintf(kl, sizeof kl, "usher:thr:last:%s", user_hex);
  snprintf(kp, sizeof kp, "usher:thr:p:%s:%s", user_hex, ip_key);
  snprintf(win, sizeof win, "%llu", (unsigned long long)t->cfg->throttle_window_ms);
  snprintf(lip, sizeof lip, "%u", t->cfg->throttle_ip_failures);
  snprintf(lu, sizeof lu, "%u", t->cfg->throttle_user_failures);
  snprintf(ban, sizeof ban, "%llu", (unsigned long long)t->cfg->throttle_ban_ms);
  const char *argv[] = {"EVAL", FAILURE_LUA, "4", kip, ku, kl, kp, f->fp_hex, win, lip, lu, ban};
  if (rds_command_argv(t->redis, on_failure_reply, f, (int)ARRAY_SIZE(argv), argv, NULL) != 0) {
    failure_local(f);
    free(f);
  }
}

void throttle_success(struct throttle *t, const char *ip_key, const char *user_hex) {
  char k[ENTRY_KEY_MAX];
  pair_key('p', ip_key, user_hex, k);
  struct tentry *e = local_get(t, k, 0, wall_ms());
  if (e && e->ban_until <= wall_ms()) {
    e->count = 0;
    e->last_fp[0] = '\0';
  }
  rds_command(t->redis, NULL, NULL, "DEL usher:thr:p:%s:%s", user_hex, ip_key);
  if (t->cfg->throttle_known_ms) remember_known(t, ip_key, user_hex, 1);
}

void throttle_on_event(struct throttle *t, const char *payload, size_t len) {
  char buf[ENTRY_KEY_MAX + 32], kind[8], key[80], ip[THROTTLE_KEY_MAX];
  if (len >= sizeof buf) return;
  memcpy(buf, payload, len);
  buf[len] = '\0';
  int n = sscanf(buf, "ban %7s %79s %79s", kind, key, ip);
  char k[ENTRY_KEY_MAX];
  if (n == 2 && !strcmp(kind, "ip")) snprintf(k, sizeof k, "ip:%s", key);
  else if (n == 2 && !strcmp(kind, "user")) snprintf(k, sizeof k, "u:%.64s", key);
  else if (n == 3 && !strcmp(kind, "pair")) pair_key('p', ip, key, k);
  else return;
  local_ban(t, k, wall_ms() + t->cfg->throttle_ban_ms);
}

const struct throttle_stats *throttle_stats(const struct throttle *t) { return &t->st; }
