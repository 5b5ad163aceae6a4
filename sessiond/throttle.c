/* Throttling (see throttle.h). Local state is one small hash table of
 * counters and bans, keyed "ip:KEY" or "u:HEX"; it is swept of expired
 * entries as it is walked and never holds more than LOCAL_MAX entries (past
 * that, new keys are not counted locally: failing open on a memory limit is
 * better than failing closed for everyone). */
#include "sessiond/throttle.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

#define LOCAL_MAX 200000
#define NBUCKETS 4096

struct tentry {
  char key[THROTTLE_KEY_MAX + 4];
  unsigned count;
  uint64_t window_until, ban_until;
  char last_fp[17];        /* the first 16 hex digits of the last failure */
  struct tentry *next;
};

struct throttle {
  const struct config *cfg;
  struct rds *redis;
  struct tentry *buckets[NBUCKETS];
  size_t count;
  struct throttle_stats st;
};

/* Counts in Redis: KEYS ip counter, user counter, user's last password;
 * ARGV fp, window, ip limit, user limit, ban. A repeated password is not
 * counted. Over a limit, the counter's expiry becomes the ban's. */
static const char FAILURE_LUA[] =
    "local rep = redis.call('GET', KEYS[3]) == ARGV[1]\n"
    "local ipc, uc\n"
    "if rep then\n"
    "  ipc = tonumber(redis.call('GET', KEYS[1]) or '0')\n"
    "  uc = tonumber(redis.call('GET', KEYS[2]) or '0')\n"
    "else\n"
    "  redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])\n"
    "  ipc = redis.call('INCR', KEYS[1])\n"
    "  if ipc == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"
    "  uc = redis.call('INCR', KEYS[2])\n"
    "  if uc == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end\n"
    "  if tonumber(ARGV[3]) > 0 and ipc >= tonumber(ARGV[3]) then\n"
    "    redis.call('PEXPIRE', KEYS[1], ARGV[5]) end\n"
    "  if tonumber(ARGV[4]) > 0 and uc >= tonumber(ARGV[4]) then\n"
    "    redis.call('PEXPIRE', KEYS[2], ARGV[5]) end\n"
    "end\n"
    "return {ipc, uc, rep and 1 or 0}\n";

static size_t key_hash(const char *s) {
  size_t h = 5381;
  for (; *s; s++) h = h * 33 + (unsigned char)*s;
  return h % NBUCKETS;
}

/* The entry for key; created when `create` and there is room. Expired
 * entries met on the way are freed. */
static struct tentry *local_get(struct throttle *t, const char *key, int create, uint64_t now) {
  struct tentry **pp = &t->buckets[key_hash(key)];
  while (*pp) {
    struct tentry *e = *pp;
    if (e->window_until <= now && e->ban_until <= now) {
      *pp = e->next;
      free(e);
      t->count--;
      continue;
    }
    if (!strcmp(e->key, key)) return e;
    pp = &e->next;
  }
  if (!create || t->count >= LOCAL_MAX) return NULL;
  struct tentry *e = xcalloc(1, sizeof *e);
  snprintf(e->key, sizeof e->key, "%s", key);
  e->window_until = now + t->cfg->throttle_window_ms;
  e->next = t->buckets[key_hash(key)];
  t->buckets[key_hash(key)] = e;
  t->count++;
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
  return t;
}

void throttle_set_config(struct throttle *t, const struct config *cfg) { t->cfg = cfg; }

void throttle_free(struct throttle *t) {
  if (!t) return;
  for (size_t i = 0; i < NBUCKETS; i++)
    for (struct tentry *e = t->buckets[i], *n; e; e = n) {
      n = e->next;
      free(e);
    }
  free(t);
}

int throttle_banned(struct throttle *t, const char *ip_key, const char *user_hex, uint64_t now) {
  char k[THROTTLE_KEY_MAX + 4];
  snprintf(k, sizeof k, "ip:%s", ip_key);
  struct tentry *ip = local_get(t, k, 0, now);
  snprintf(k, sizeof k, "u:%.64s", user_hex);
  struct tentry *u = local_get(t, k, 0, now);
  int banned = (ip && ip->ban_until > now) || (u && u->ban_until > now);
  if (banned) t->st.refused++;
  return banned;
}

/* The delay after n counted failures: failure_delay doubling, capped. */
static uint32_t delay_for(const struct config *cfg, unsigned n) {
  uint64_t d = cfg->failure_delay_ms;
  for (unsigned i = 1; i < n && d < cfg->throttle_max_delay_ms; i++) d *= 2;
  if (d > cfg->throttle_max_delay_ms) d = cfg->throttle_max_delay_ms;
  return (uint32_t)d;
}

static void publish_ban(struct throttle *t, const char *kind, const char *key) {
  char msg[THROTTLE_KEY_MAX + 16];
  snprintf(msg, sizeof msg, "ban %s %s", kind, key);
  rds_command(t->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
}

/* Both counts known: ban past the limits (publishing the ban), and answer. */
static uint32_t judge(struct throttle *t, const char *ip_key, const char *user_hex,
                      unsigned ipc, unsigned uc) {
  const struct config *cfg = t->cfg;
  uint64_t until = wall_ms() + cfg->throttle_ban_ms;
  char k[THROTTLE_KEY_MAX + 4];
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
  char k[THROTTLE_KEY_MAX + 4];
  unsigned ipc, uc;
  snprintf(k, sizeof k, "u:%.64s", f->user_hex);
  struct tentry *ue = local_get(t, k, 0, wall_ms());
  int repeated = ue && !strncmp(ue->last_fp, f->fp_hex, 16);
  local_count(t, k, f->fp_hex, &uc);
  snprintf(k, sizeof k, "ip:%s", f->ip_key);
  if (repeated) {
    struct tentry *ie = local_get(t, k, 0, wall_ms());
    ipc = ie ? ie->count : 0;
    t->st.failures_repeated++;
  } else {
    local_count(t, k, NULL, &ipc);
    t->st.failures_counted++;
  }
  f->done(f->cookie, judge(t, f->ip_key, f->user_hex, ipc, uc));
}

static void on_failure_reply(void *cookie, const redisReply *r) {
  struct failure_call *f = cookie;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
    if (r && r->type == REDIS_REPLY_ERROR)
      log_event(LOG_LVL_ERROR, "throttle_script", "error=\"%s\"", r->str);
    failure_local(f);   /* Redis failed us: count here */
  } else {
    if (r->element[2]->integer) f->t->st.failures_repeated++;
    else f->t->st.failures_counted++;
    f->done(f->cookie, judge(f->t, f->ip_key, f->user_hex, (unsigned)r->element[0]->integer,
                             (unsigned)r->element[1]->integer));
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
  char kip[THROTTLE_KEY_MAX + 16], ku[96], kl[96], win[24], lip[16], lu[16], ban[24];
  snprintf(kip, sizeof kip, "usher:thr:ip:%s", ip_key);
  snprintf(ku, sizeof ku, "usher:thr:u:%s", user_hex);
  snprintf(kl, sizeof kl, "usher:thr:last:%s", user_hex);
  snprintf(win, sizeof win, "%llu", (unsigned long long)t->cfg->throttle_window_ms);
  snprintf(lip, sizeof lip, "%u", t->cfg->throttle_ip_failures);
  snprintf(lu, sizeof lu, "%u", t->cfg->throttle_user_failures);
  snprintf(ban, sizeof ban, "%llu", (unsigned long long)t->cfg->throttle_ban_ms);
  const char *argv[] = {"EVAL", FAILURE_LUA, "3", kip, ku, kl, f->fp_hex, win, lip, lu, ban};
  if (rds_command_argv(t->redis, on_failure_reply, f, (int)ARRAY_SIZE(argv), argv, NULL) != 0) {
    failure_local(f);
    free(f);
  }
}

void throttle_success(struct throttle *t, const char *user_hex) {
  char k[THROTTLE_KEY_MAX + 4];
  snprintf(k, sizeof k, "u:%.64s", user_hex);
  struct tentry *e = local_get(t, k, 0, wall_ms());
  if (e && e->ban_until <= wall_ms()) {
    e->count = 0;
    e->last_fp[0] = '\0';
  }
  rds_command(t->redis, NULL, NULL, "DEL usher:thr:u:%s usher:thr:last:%s", user_hex, user_hex);
}

void throttle_on_event(struct throttle *t, const char *payload, size_t len) {
  char buf[160], kind[8], key[THROTTLE_KEY_MAX];
  if (len >= sizeof buf) return;
  memcpy(buf, payload, len);
  buf[len] = '\0';
  if (sscanf(buf, "ban %7s %79s", kind, key) != 2) return;
  char k[THROTTLE_KEY_MAX + 4];
  if (!strcmp(kind, "ip")) snprintf(k, sizeof k, "ip:%s", key);
  else if (!strcmp(kind, "user")) snprintf(k, sizeof k, "u:%.64s", key);
  else return;
  local_ban(t, k, wall_ms() + t->cfg->throttle_ban_ms);
}

const struct throttle_stats *throttle_stats(const struct throttle *t) { return &t->st; }
