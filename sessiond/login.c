/* A login, from the worker's LOGIN to its LOGIN_REPLY:
 *
 *   throttle (bans, in memory)  -> refused: THROTTLED
 *   auth cache, memory          -> fresh hit: seat   | negative: failed
 *   auth cache, Redis (MGET)    -> fresh hit: seat   | negative: failed
 *   password database (users file threads, or LDAP)
 *       ok: cache it, seat      | invalid: cache it, count the failure
 *       unavailable: a stale cache hit may still seat; else UNAVAILABLE
 *
 * The password is held only by the pending login and wiped when it ends.
 * The login is normalized first (common/username.h): every spelling of a
 * name is one user to everything below. Three names come out of a login:
 * the login (normalized), the canonical name (what the backend gets: the
 * users file's user=, LDAP's login_attribute, else the login) and the seat
 * name (the canonical name; with LDAP and no login_attribute, the DN of the
 * entry, so that every alias of one entry shares one seat).
 *
 * Redis entries (all under keys made of keyed hashes, never names):
 *   usher:{K}:authp  "GEN FP FRESH_UNTIL STALE_UNTIL BACKEND CANONICAL SEAT SEAL"
 *                    (CANONICAL is "=" when it is the login itself, SEAT "="
 *                    when it is the canonical name: Redis then holds no user
 *                    name at all, only aliases' targets)
 *   usher:{K}:authn  "GEN FP SEAL"  (expires after negative_ttl)
 *   usher:authgen    bumped by "auth flush --all": older entries are ignored
 * SEAL is authcache_seal() over K and the fields: an entry that someone
 * with write access to Redis made or edited (another user's name or pin,
 * or a copy under another key) does not match and is not used. */
#include "sessiond/login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "auth/passwd.h"
#include "common/log.h"
#include "common/username.h"
#include "common/util.h"
#include "auth/authcache.h"
#include "auth/ldapdb.h"
#include "auth/userfile.h"
#include "sessiond/authpool.h"
#include "sessiond/context.h"
#include "sessiond/redis.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/throttle.h"

enum source { SRC_MEMORY, SRC_REDIS, SRC_STALE, SRC_USERS_FILE, SRC_LDAP };
static const char *const source_names[] = {"cache_memory", "cache_redis", "cache_stale",
                                           "users_file", "ldap"};

struct pending {
  struct sessiond *sd;
  void *owner;             /* the session's owner in the seat table */
  const int *gone;         /* non-zero: nobody waits for the answer */
  login_done_fn done;
  void *cookie;
  uint32_t req;
  char session[17];
  char client[64];
  char ip_key[THROTTLE_KEY_MAX];
  char *login;             /* normalized */
  char *password;          /* wiped on free */
  char *canonical, *seat, *pinned;
  uint8_t key[AUTHCACHE_HASH_LEN], fp[AUTHCACHE_HASH_LEN];
  char key_hex[AUTHCACHE_HEX_LEN + 1], fp_hex[AUTHCACHE_HEX_LEN + 1];
  int have_stale;          /* a stale positive entry, used only if the database is down */
  char *stale_canonical, *stale_seat, *stale_pinned;
  long long gen;           /* usher:authgen as read; -1: not read (no Redis) */
  enum source source;      /* where the verdict came from, for the log */
};

/* The one way an answer leaves: through done, once. */
static void answer(struct pending *p, enum proto_result result, uint32_t delay_ms, int backend) {
  struct login_answer a = {.req = p->req, .session = p->session, .result = result,
                           .delay_ms = delay_ms, .user = p->canonical, .seat = p->seat,
                           .backend = backend};
  p->done(p->cookie, &a);
}

static void pending_free(struct pending *p) {
  free(p->login);
  if (p->password) wipe_free_str(p->password);
  free(p->canonical);
  free(p->seat);
  free(p->pinned);
  free(p->stale_canonical);
  free(p->stale_seat);
  free(p->stale_pinned);
  free(p);
}

/* The canonical name in the login's spelling rules: a directory attribute
 * or a users file field may be written "Alice" and is still alice. */
static char *normalized_copy(const struct sessiond *sd, const char *name) {
  char buf[USERNAME_MAX];
  if (username_normalize(sd->cfg->username_format, name, buf, sizeof buf) < 0) return xstrdup(name);
  return xstrdup(buf);
}

/* A DN names its entry whatever the case the server wrote it in. */
static char *seat_of_dn(const char *dn) {
  char *s = xstrdup(dn);
  for (char *q = s; *q; q++)
    if (*q >= 'A' && *q <= 'Z') *q = (char)(*q - 'A' + 'a');
  return s;
}

/* From a database answer or a cache hit (already normalized: is_entry 0).
 * canonical, seat and pinned may point into p's own fields: copy, then free. */
static void set_identity(struct pending *p, const char *canonical, const char *seat,
                         const char *pinned, int from_database) {
  const struct sessiond *sd = p->sd;
  if (!canonical) canonical = p->login;
  char *c = from_database ? normalized_copy(sd, canonical) : xstrdup(canonical);
  char *e = NULL;
  if (seat && strcmp(seat, canonical) != 0)
    e = from_database ? seat_of_dn(seat) : xstrdup(seat);
  char *b = pinned && *pinned ? xstrdup(pinned) : NULL;
  free(p->canonical);
  free(p->seat);
  free(p->pinned);
  p->canonical = c;
  p->seat = e ? e : xstrdup(c);
  p->pinned = b;
}

/* ---- the end of a login ------------------------------------------------------ */

static void on_routed(void *cookie, int idx);

struct user_count { const char *user, *ip; size_t iplen; unsigned from_ip; };

static void count_user(struct session *s, void *arg) {
  struct user_count *u = arg;
  if (strcmp(s->user, u->user) != 0) return;
  if (!strncmp(s->client, u->ip, u->iplen) && s->client[u->iplen] == ':') u->from_ip++;
}

/* The session limits of this proxy: per user, and per user and address
 * (a client that opens a session per folder is normal; hundreds are not).
 * The seat counts the user's sessions here, so the common case is O(1);
 * sessions are walked only for a user who already has as many as the
 * per-address limit. */
static int over_session_limit(struct sessiond *sd, const struct pending *p) {
  const struct config *cfg = sd->cfg;
  struct seat *seat = seat_find(sd->seats, p->seat, now_ms());
  unsigned have = seat ? seat->sessions : 0;
  if (cfg->max_sessions_per_user && have >= cfg->max_sessions_per_user) return 1;
  if (!cfg->max_sessions_per_user_ip || have < cfg->max_sessions_per_user_ip) return 0;
  const char *colon = strrchr(p->client, ':');
  struct user_count u = {p->seat, p->client, colon ? (size_t)(colon - p->client) : 0, 0};
  sessions_foreach(sd->seats, count_user, &u);
  return u.from_ip >= cfg->max_sessions_per_user_ip;
}

static void finish_ok(struct pending *p, enum source src) {
  struct sessiond *sd = p->sd;
  if (*p->gone) {   /* nobody waits: the answer only returns the cookie */
    answer(p, PROTO_UNAVAILABLE, 0, -1);
    pending_free(p);
    return;
  }
  if (over_session_limit(sd, p)) {
    char user[LOG_QUOTE_MAX];
    log_event(LOG_LVL_INFO, "auth", "session=%s client=%s user=%s result=session_limit",
              p->session, p->client, log_quote(user, sizeof user, p->login, strlen(p->login)));
    answer(p, PROTO_LIMIT, 0, -1);
    pending_free(p);
    return;
  }
  throttle_success(sd->throttle, p->ip_key, p->key_hex);
  p->source = src;
  /* The seat's key is the keyed hash of the seat name: already made for
   * the login, unless it is an alias or an entry's DN. */
  const char *key = strcmp(p->seat, p->login) ? NULL : p->key_hex;
  seatstore_route(sd, p->owner, p->gone, p->session, p->client, p->seat, key, p->pinned, on_routed,
                  p);
}

/* The seat is known (or there is none to be had). */
static void on_routed(void *cookie, int idx) {
  struct pending *p = cookie;
  struct sessiond *sd = p->sd;
  enum source src = p->source;
  char user[LOG_QUOTE_MAX];
  log_quote(user, sizeof user, p->login, strlen(p->login));
  if (*p->gone) {   /* nobody waits: the answer only returns the cookie */
    answer(p, PROTO_UNAVAILABLE, 0, -1);
    pending_free(p);
    return;
  }
  if (idx < 0) {
    sd->n.logins_unavailable++;
    log_event(LOG_LVL_WARN, "auth", "session=%s client=%s user=%s result=ok source=%s route=none",
              p->session, p->client, user, source_names[src]);
    answer(p, PROTO_UNAVAILABLE, 0, -1);
  } else {
    sd->n.logins_ok++;
    log_event(LOG_LVL_INFO, "auth", "session=%s client=%s user=%s result=ok source=%s backend=%s",
              p->session, p->client, user, source_names[src], sd->cfg->backends[idx].name);
    answer(p, PROTO_OK, 0, idx);
  }
  pending_free(p);
}

static void on_failure_counted(void *cookie, uint32_t delay_ms) {
  struct pending *p = cookie;
  answer(p, PROTO_AUTH_FAILED, delay_ms, -1);
  pending_free(p);
}

static void finish_failed(struct pending *p, const char *why) {
  struct sessiond *sd = p->sd;
  char user[LOG_QUOTE_MAX];
  sd->n.logins_failed++;
  log_event(LOG_LVL_INFO, "auth", "session=%s client=%s user=%s result=failed source=%s",
            p->session, p->client, log_quote(user, sizeof user, p->login, strlen(p->login)), why);
  throttle_failure(sd->throttle, p->ip_key, p->key_hex, p->fp_hex, on_failure_counted, p);
}

static void finish_unavailable(struct pending *p, const char *why) {
  struct sessiond *sd = p->sd;
  char user[LOG_QUOTE_MAX];
  sd->n.logins_unavailable++;
  log_event(LOG_LVL_WARN, "auth", "session=%s client=%s user=%s result=unavailable reason=%s",
            p->session, p->client, log_quote(user, sizeof user, p->login, strlen(p->login)), why);
  answer(p, PROTO_UNAVAILABLE, 0, -1);
  pending_free(p);
}

/* ---- writing the cache -------------------------------------------------------- */

/* An entry's fields, without the seal (longer ones are not written). */
#define ENTRY_MAX 1280

/* The fields of a positive entry in Redis, without the seal, into buf. */
static int positive_fields(const struct pending *p, long long gen, uint64_t fresh, uint64_t stale,
                           char *buf, size_t cap) {
  int n = snprintf(buf, cap, "%lld\t%s\t%llu\t%llu\t%s\t%s\t%s", gen, p->fp_hex,
                   (unsigned long long)fresh, (unsigned long long)stale,
                   p->pinned ? p->pinned : "-", strcmp(p->canonical, p->login) ? p->canonical : "=",
                   strcmp(p->seat, p->canonical) ? p->seat : "=");
  return n > 0 && (size_t)n < cap ? n : -1;
}

/* The seal covers the key the entry is stored under and its kind. */
static void entry_seal(const struct pending *p, char kind, const char *fields,
                       char out[AUTHCACHE_HEX_LEN + 1]) {
  char text[AUTHCACHE_HEX_LEN + 4 + ENTRY_MAX];
  snprintf(text, sizeof text, "%s\t%c\t%.*s", p->key_hex, kind, ENTRY_MAX - 1, fields);
  authcache_seal(p->sd->cache, text, out);
}

static void cache_store_positive(struct pending *p) {
  struct sessiond *sd = p->sd;
  const struct config *cfg = sd->cfg;
  uint64_t now = wall_ms();
  uint64_t fresh = now + cfg->cache_positive_ttl_ms, stale = fresh + cfg->cache_stale_max_ms;
  authcache_put_positive(sd->cache, p->key, p->fp, p->canonical, p->seat, p->pinned, fresh, stale);
  char fields[ENTRY_MAX], seal[AUTHCACHE_HEX_LEN + 1];
  if (p->gen < 0 || strpbrk(p->canonical, " \t\r\n") || strpbrk(p->seat, "\t\r\n") ||
      (p->pinned && strpbrk(p->pinned, " \t\r\n")) ||
      positive_fields(p, p->gen, fresh, stale, fields, sizeof fields) < 0)
    return;
  entry_seal(p, 'p', fields, seal);
  rds_command(sd->redis, NULL, NULL, "SET usher:{%s}:authp %s\t%s PX %llu", p->key_hex, fields,
              seal, (unsigned long long)(stale - now));
  rds_command(sd->redis, NULL, NULL, "DEL usher:{%s}:authn", p->key_hex);
}

static void cache_store_negative(struct pending *p) {
  struct sessiond *sd = p->sd;
  uint64_t ttl = sd->cfg->cache_negative_ttl_ms;
  authcache_put_negative(sd->cache, p->key, p->fp, wall_ms() + ttl);
  if (p->gen < 0) return;
  char fields[128], seal[AUTHCACHE_HEX_LEN + 1];
  snprintf(fields, sizeof fields, "%lld\t%s", p->gen, p->fp_hex);
  entry_seal(p, 'n', fields, seal);
  rds_command(sd->redis, NULL, NULL, "SET usher:{%s}:authn %s\t%s PX %llu", p->key_hex, fields,
              seal, (unsigned long long)ttl);
}

/* ---- the password database ------------------------------------------------------- */

/* canonical NULL: the identity was set when the job started (users file). */
static void db_answer(struct pending *p, enum ldapdb_result r, const char *canonical,
                      const char *entry, const char *pinned, enum source src) {
  struct sessiond *sd = p->sd;
  wipe_free_str(p->password);
  p->password = NULL;
  switch (r) {
  case LDAPDB_OK:
    if (canonical) set_identity(p, canonical, entry, pinned, 1);
    cache_store_positive(p);
    finish_ok(p, src);
    return;
  case LDAPDB_INVALID:
    cache_store_negative(p);
    finish_failed(p, source_names[src]);
    return;
  case LDAPDB_UNAVAILABLE:
  case LDAPDB_BUSY:
    if (p->have_stale) {   /* the database is down: a known password still works */
      sd->n.cache_stale_hits++;
      set_identity(p, p->stale_canonical, p->stale_seat, p->stale_pinned, 0);
      finish_ok(p, SRC_STALE);
      return;
    }
    if (r == LDAPDB_BUSY) sd->n.shed++;
    finish_unavailable(p, r == LDAPDB_BUSY ? "overloaded" : "database_down");
    return;
  }
}

static void on_ldap_done(void *cookie, enum ldapdb_result r, const char *canonical,
                         const char *entry, const char *backend) {
  db_answer(cookie, r, canonical, entry, backend, SRC_LDAP);
}

static void on_hash_checked(void *cookie, enum passwd_result r) {
  struct pending *p = cookie;
  if (r == PASSWD_BAD_HASH) {
    char user[LOG_QUOTE_MAX];
    log_event(LOG_LVL_ERROR, "users_file", "user=%s error=\"unusable password hash\"",
              log_quote(user, sizeof user, p->login, strlen(p->login)));
  }
  /* canonical and pinned were taken from the entry when the job started. */
  db_answer(p, r == PASSWD_MATCH ? LDAPDB_OK : LDAPDB_INVALID, NULL, NULL, NULL, SRC_USERS_FILE);
}

static void ask_database(struct pending *p) {
  struct sessiond *sd = p->sd;
  sd->n.cache_misses++;
  sd->n.db_requests++;
  if (sd->ldap) {
    /* Users who hold a seat (their other sessions are live) go first. */
    int first = seat_find(sd->seats, p->login, now_ms()) != NULL;
    ldapdb_verify(sd->ldap, p->login, p->password, first, on_ldap_done, p);
    return;
  }
  const struct userfile_entry *e = userfile_lookup(sd->uf, p->login);
  /* Unknown users cost a hash check too: the answer's timing must not
   * tell whether the user exists. */
  const char *hash = e ? e->hash : passwd_dummy_hash(NULL);
  set_identity(p, e ? e->canonical : p->login, NULL, e ? e->backend : NULL, 1);
  if (authpool_submit(sd->pool, p->password, hash, on_hash_checked, p) != 0) {
    sd->n.shed++;
    finish_unavailable(p, "overloaded");
  }
}

/* ---- the Redis layer of the cache -------------------------------------------------- */

/* Splits s at tabs into at most n fields; returns how many. */
static int split_tabs(char *s, char **f, int n) {
  int k = 0;
  for (char *save = NULL, *t = strtok_r(s, "\t", &save); t && k < n; t = strtok_r(NULL, "\t", &save))
    f[k++] = t;
  return k;
}

/* Whether the entry text (its fields, then a tab and seal, which is the
 * last field) carries the seal this proxy would have given it. */
static int sealed(struct pending *p, char kind, const char *text, const char *seal) {
  size_t fields_len = strlen(text) - strlen(seal);
  if (fields_len < 1 || strlen(seal) != AUTHCACHE_HEX_LEN) return 0;
  char fields[ENTRY_MAX], want[AUTHCACHE_HEX_LEN + 1];
  if (fields_len > sizeof fields) return 0;
  snprintf(fields, sizeof fields, "%.*s", (int)(fields_len - 1), text);
  entry_seal(p, kind, fields, want);
  if (CRYPTO_memcmp(want, seal, AUTHCACHE_HEX_LEN) == 0) return 1;
  p->sd->n.cache_bad_seals++;
  return 0;
}

/* The reply of MGET usher:authgen authp authn. */
static void on_redis_entry(void *cookie, const redisReply *r) {
  struct pending *p = cookie;
  struct sessiond *sd = p->sd;
  if (*p->gone) {   /* nobody waits: the answer only returns the cookie */
    answer(p, PROTO_UNAVAILABLE, 0, -1);
    pending_free(p);
    return;
  }
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) {
    p->gen = -1;   /* no Redis answer: do not write there either */
    ask_database(p);
    return;
  }
  const redisReply *gen = r->element[0], *pos = r->element[1], *neg = r->element[2];
  p->gen = gen->type == REDIS_REPLY_STRING ? atoll(gen->str) : 0;
  uint64_t now = wall_ms();
  char buf[ENTRY_MAX + AUTHCACHE_HEX_LEN + 2], *f[8];
  if (pos->type == REDIS_REPLY_STRING && pos->len < sizeof buf) {
    memcpy(buf, pos->str, pos->len + 1);
    if (split_tabs(buf, f, 8) == 8 && atoll(f[0]) == p->gen && !strcmp(f[1], p->fp_hex) &&
        sealed(p, 'p', pos->str, f[7])) {
      uint64_t fresh = strtoull(f[2], NULL, 10), stale = strtoull(f[3], NULL, 10);
      const char *pinned = strcmp(f[4], "-") ? f[4] : NULL;
      if (!strcmp(f[5], "=")) f[5] = p->login;
      if (!strcmp(f[6], "=")) f[6] = f[5];
      if (stale > now)
        authcache_put_positive(sd->cache, p->key, p->fp, f[5], f[6], pinned, fresh, stale);
      if (fresh > now) {
        sd->n.cache_redis_hits++;
        set_identity(p, f[5], f[6], pinned, 0);
        finish_ok(p, SRC_REDIS);
        return;
      }
      if (stale > now) {
        p->have_stale = 1;
        p->stale_canonical = xstrdup(f[5]);
        p->stale_seat = xstrdup(f[6]);
        p->stale_pinned = pinned ? xstrdup(pinned) : NULL;
      }
    }
  }
  if (neg->type == REDIS_REPLY_STRING && neg->len < sizeof buf) {
    memcpy(buf, neg->str, neg->len + 1);
    if (split_tabs(buf, f, 3) == 3 && atoll(f[0]) == p->gen && !strcmp(f[1], p->fp_hex) &&
        sealed(p, 'n', neg->str, f[2])) {
      sd->n.cache_negative_hits++;
      authcache_put_negative(sd->cache, p->key, p->fp, now + sd->cfg->cache_negative_ttl_ms);
      finish_failed(p, "cache_redis");
      return;
    }
  }
  ask_database(p);
}

/* ---- the start -------------------------------------------------------------------- */

static struct pending *pending_new(struct sessiond *sd, const struct proto_msg *m, const char *login) {
  struct pending *p = xcalloc(1, sizeof *p);
  p->sd = sd;
  p->req = m->req;
  p->gen = -1;
  snprintf(p->session, sizeof p->session, "%s", m->session);
  snprintf(p->client, sizeof p->client, "%s:%u", m->client_addr ? m->client_addr : "?",
           m->client_port);
  throttle_ip_key(m->client_addr ? m->client_addr : "?", p->ip_key);
  p->login = xstrdup(login);
  p->password = xstrdup(m->password);
  authcache_key(sd->cache, p->login, p->key);
  authcache_fingerprint(sd->cache, p->login, p->password, p->fp);
  authcache_hex(p->key, p->key_hex);
  authcache_hex(p->fp, p->fp_hex);
  return p;
}

/* Past the throttle: the cache layers, then the password database. */
static void on_throttle_checked(void *cookie, int refused) {
  struct pending *p = cookie;
  struct sessiond *sd = p->sd;
  if (*p->gone) {   /* nobody waits: the answer only returns the cookie */
    answer(p, PROTO_UNAVAILABLE, 0, -1);
    pending_free(p);
    return;
  }
  if (refused) {
    log_event(LOG_LVL_INFO, "auth", "session=%s client=%s result=throttled", p->session, p->client);
    answer(p, PROTO_THROTTLED, (uint32_t)sd->cfg->failure_delay_ms, -1);
    pending_free(p);
    return;
  }
  struct authcache_hit hit;
  switch (authcache_lookup(sd->cache, p->key, p->fp, wall_ms(), &hit)) {
  case AC_POSITIVE:
    sd->n.cache_memory_hits++;
    set_identity(p, hit.canonical, hit.seat, hit.backend, 0);
    finish_ok(p, SRC_MEMORY);
    return;
  case AC_NEGATIVE:
    sd->n.cache_negative_hits++;
    finish_failed(p, "cache_memory");
    return;
  case AC_STALE:
    p->have_stale = 1;
    p->stale_canonical = xstrdup(hit.canonical);
    p->stale_seat = xstrdup(hit.seat);
    p->stale_pinned = hit.backend ? xstrdup(hit.backend) : NULL;
    break;
  case AC_MISS:
    break;
  }
  if (rds_command(sd->redis, on_redis_entry, p, "MGET usher:authgen usher:{%s}:authp usher:{%s}:authn",
                  p->key_hex, p->key_hex) != 0)
    ask_database(p);   /* no Redis (down or not configured): straight on */
}

void login_start(struct sessiond *sd, const struct proto_msg *m, void *owner, const int *gone,
                 login_done_fn done, void *cookie) {
  char login[USERNAME_MAX];
  if (!m->session || !m->user || !m->password || strlen(m->session) != 16 ||
      username_normalize(sd->cfg->username_format, m->user, login, sizeof login) < 0) {
    struct login_answer a = {.req = m->req, .session = m->session, .result = PROTO_AUTH_FAILED,
                             .delay_ms = (uint32_t)sd->cfg->failure_delay_ms, .backend = -1};
    done(cookie, &a);
    return;
  }
  struct pending *p = pending_new(sd, m, login);
  p->owner = owner;
  p->gone = gone;
  p->done = done;
  p->cookie = cookie;
  throttle_check(sd->throttle, p->ip_key, p->key_hex, on_throttle_checked, p);
}

/* ---- flushes and events -------------------------------------------------------------- */

void login_auth_flush(struct sessiond *sd, const char *user) {
  if (!user) {
    authcache_clear(sd->cache);
    rds_command(sd->redis, NULL, NULL, "INCR usher:authgen");
    rds_command(sd->redis, NULL, NULL, "PUBLISH usher:events flushall");
    log_event(LOG_LVL_INFO, "auth_flush", "scope=all");
    return;
  }
  uint8_t key[AUTHCACHE_HASH_LEN];
  char hex[AUTHCACHE_HEX_LEN + 1], msg[AUTHCACHE_HEX_LEN + 8], name[USERNAME_MAX];
  if (username_normalize(sd->cfg->username_format, user, name, sizeof name) >= 0) user = name;
  authcache_key(sd->cache, user, key);
  authcache_hex(key, hex);
  authcache_forget(sd->cache, key);
  rds_command(sd->redis, NULL, NULL, "DEL usher:{%s}:authp usher:{%s}:authn", hex, hex);
  snprintf(msg, sizeof msg, "flush %s", hex);
  rds_command(sd->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
  log_event(LOG_LVL_INFO, "auth_flush", "scope=user user_key=%.16s", hex);
}
