/* Backend states and health checks (see backends.h). A check is a plain
 * TCP connect and, for backends without implicit TLS, an IMAP greeting
 * read within health_timeout: cheap enough to run every few seconds, and it
 * catches a backend that accepts but no longer answers. */
#include "sessiond/backends.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/hashring.h"
#include "sessiond/context.h"
#include "sessiond/redis.h"

static const char *const admin_names[] = {"up", "drain", "down"};

static void share_down(struct sessiond *sd, int idx);
static void share_up(struct sessiond *sd, int idx);

int sessiond_backend_index(const struct sessiond *sd, const char *name) {
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    if (!strcmp(sd->cfg->backends[i].name, name)) return (int)i;
  return -1;
}

void sessiond_backend_mark_down(struct sessiond *sd, int idx, const char *why) {
  uint64_t now = now_ms();
  if (sd->bstate[idx].down_until <= now)
    log_event(LOG_LVL_WARN, "backend_down", "backend=%s reason=%s retry_ms=%llu",
              sd->cfg->backends[idx].name, why, (unsigned long long)sd->cfg->backend_retry_ms);
  sd->bstate[idx].down_until = now + sd->cfg->backend_retry_ms;
  /* The penalty holds until health checks speak again: health_rise
   * passing probes from now on lift it (backends.c). */
  sd->bstate[idx].ok_in_row = 0;
  share_down(sd, idx);
}

int backend_usable(const struct sessiond *sd, int idx, uint64_t now) {
  if (idx < 0) return 0;
  const struct backend_state *b = &sd->bstate[idx];
  return b->admin != BA_DOWN && b->healthy && b->down_until <= now && b->shared_until <= now;
}

int backend_eligible(const struct sessiond *sd, int idx, uint64_t now) {
  return backend_usable(sd, idx, now) && sd->bstate[idx].admin == BA_UP &&
         !sd->cfg->backends[idx].retired &&
         sd->bstate[idx].weight > 0;
}

const char *backend_state_name(const struct sessiond *sd, int idx, uint64_t now) {
  const struct backend_state *b = &sd->bstate[idx];
  if (sd->cfg->backends[idx].retired) return "retired";
  if (b->admin != BA_UP) return admin_names[b->admin];
  if (!b->healthy) return "unhealthy";
  if (b->down_until > now) return "failed";
  if (b->shared_until > now) return "peer_down";
  return "up";
}

uint64_t backend_retry_left_ms(const struct sessiond *sd, int idx, uint64_t now) {
  const struct backend_state *b = &sd->bstate[idx];
  uint64_t until = b->down_until > b->shared_until ? b->down_until : b->shared_until;
  return until > now ? until - now : 0;
}

int backends_choose(const struct sessiond *sd, const char *user, const char *pinned) {
  const struct config *cfg = sd->cfg;
  uint64_t now = now_ms();
  if (pinned) {
    int i = sessiond_backend_index(sd, pinned);
    if (i >= 0 && !cfg->backends[i].retired) return backend_usable(sd, i, now) ? i : -1;
    /* A pin naming no configured backend falls back to hashing. */
  }
  struct hr_node nodes[CONFIG_MAX_BACKENDS];
  for (unsigned i = 0; i < cfg->n_backends; i++) {
    nodes[i].name = cfg->backends[i].name;
    nodes[i].weight = sd->bstate[i].weight;
    nodes[i].eligible = backend_eligible(sd, (int)i, now);
  }
  return hashring_pick(user, strlen(user), nodes, cfg->n_backends);
}

/* ---- health checks ---------------------------------------------------------- */

struct probe_ctx { struct sessiond *sd; int idx; };
static struct probe_ctx probe_ctx[CONFIG_MAX_BACKENDS];

static void probe_verdict(struct sessiond *sd, int idx, int ok) {
  struct backend_state *b = &sd->bstate[idx];
  const struct config *cfg = sd->cfg;
  if (b->probe) {
    bufferevent_free(b->probe);
    b->probe = NULL;
  }
  if (ok) {
    b->failed_in_row = 0;
    if (++b->ok_in_row >= cfg->health_rise && !b->healthy) {
      b->healthy = 1;
      log_event(LOG_LVL_INFO, "backend_health", "backend=%s state=healthy",
                cfg->backends[idx].name);
    }
    /* One verdict on availability: a failed connect's retry penalty
     * (sessiond_backend_mark_down) applies only until health checks have
     * spoken since. Without this, a rolling restart of the backends left
     * each restarted one excluded for backend_retry though its checks
     * passed, and with all of them penalised, every login was refused. */
    if (b->ok_in_row >= cfg->health_rise && b->down_until) {
      b->down_until = 0;
      log_event(LOG_LVL_INFO, "backend_retry", "backend=%s reason=health_check_passed",
                cfg->backends[idx].name);
    }
    /* A peer's verdict, too, yields to what this proxy sees itself. */
    if (b->ok_in_row >= cfg->health_rise && b->shared_until > now_ms()) {
      b->shared_until = 0;
      log_event(LOG_LVL_INFO, "backend_shared",
                "backend=%s verdict=lifted reason=health_check_passed", cfg->backends[idx].name);
    }
    if (b->ok_in_row >= cfg->health_rise) share_up(sd, idx);
  } else {
    b->ok_in_row = 0;
    if (++b->failed_in_row >= cfg->health_fall && b->healthy) {
      b->healthy = 0;
      log_event(LOG_LVL_WARN, "backend_health", "backend=%s state=unhealthy",
                cfg->backends[idx].name);
      if (sd->backend_down) sd->backend_down(sd, idx, "health");
    }
    if (!b->healthy) share_down(sd, idx);   /* also renews it while it stands */
  }
}

static void on_probe_read(struct bufferevent *bev, void *arg) {
  struct probe_ctx *pc = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  if (evbuffer_get_length(in) < 4) return;
  unsigned char *p = evbuffer_pullup(in, 4);
  probe_verdict(pc->sd, pc->idx, memcmp(p, "* OK", 4) == 0);
}

static void on_probe_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct probe_ctx *pc = arg;
  if (what & BEV_EVENT_CONNECTED) {
    if (pc->sd->cfg->backends[pc->idx].tls == TLS_IMPLICIT) probe_verdict(pc->sd, pc->idx, 1);
    return;
  }
  probe_verdict(pc->sd, pc->idx, 0);   /* error, EOF or timeout */
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct probe_ctx *pc = arg;
  struct sessiond *sd = pc->sd;
  struct backend_state *b = &sd->bstate[pc->idx];
  if (b->probe) return;   /* still waiting: its own timeout gives the verdict */
  const struct netaddr *a = &sd->cfg->backends[pc->idx].addr;
  b->probe = bufferevent_socket_new(sd->base, -1, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(b->probe, on_probe_read, NULL, on_probe_event, pc);
  struct timeval tv;
  ms_to_timeval(sd->cfg->health_timeout_ms, &tv);
  bufferevent_set_timeouts(b->probe, &tv, &tv);
  bufferevent_enable(b->probe, EV_READ);
  if (bufferevent_socket_connect(b->probe, (struct sockaddr *)&a->ss, (int)a->len) != 0)
    probe_verdict(sd, pc->idx, 0);
}

static void probes_start(struct sessiond *sd) {
  if (sd->cfg->health_interval_ms == 0) return;
  struct timeval tv;
  ms_to_timeval(sd->cfg->health_interval_ms, &tv);
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    probe_ctx[i] = (struct probe_ctx){sd, (int)i};
    sd->bstate[i].probe_timer = event_new(sd->base, -1, EV_PERSIST, on_probe_timer, &probe_ctx[i]);
    event_add(sd->bstate[i].probe_timer, &tv);
  }
}

static void probes_stop(struct sessiond *sd) {
  for (unsigned i = 0; i < CONFIG_MAX_BACKENDS; i++) {
    struct backend_state *b = &sd->bstate[i];
    if (b->probe) bufferevent_free(b->probe);
    if (b->probe_timer) event_free(b->probe_timer);
    b->probe = NULL;
    b->probe_timer = NULL;
  }
}

/* ---- life ------------------------------------------------------------------ */

void backends_start(struct sessiond *sd) {
  if (!sd->bstate) sd->bstate = xcalloc(CONFIG_MAX_BACKENDS, sizeof *sd->bstate);
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    sd->bstate[i] = (struct backend_state){.weight = sd->cfg->backends[i].weight, .healthy = 1};
  probes_start(sd);
}

void backends_stop(struct sessiond *sd) {
  if (!sd->bstate) return;
  probes_stop(sd);
  free(sd->bstate);
  sd->bstate = NULL;
}

void backends_reconfigure(struct sessiond *sd, const struct config *old_cfg) {
  struct backend_state next[CONFIG_MAX_BACKENDS];
  memset(next, 0, sizeof next);   /* slots past n_backends stay empty */
  probes_stop(sd);
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    next[i] = (struct backend_state){.weight = sd->cfg->backends[i].weight, .healthy = 1};
    for (unsigned j = 0; j < old_cfg->n_backends; j++)
      if (!strcmp(old_cfg->backends[j].name, sd->cfg->backends[i].name)) {
        next[i] = sd->bstate[j];
        if (!next[i].weight_set) next[i].weight = sd->cfg->backends[i].weight;
      }
    next[i].probe = NULL;
    next[i].probe_timer = NULL;
  }
  memcpy(sd->bstate, next, sizeof next);
  probes_start(sd);
}

/* ---- shared verdicts (see backends.h) ---------------------------------------- */

/* Deletes usher:health:NAME only while it still holds our verdict: another
 * proxy's standing verdict is not ours to end. */
static const char UNSHARE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
    "return 0";
/* A live verdict: {proxy, ms left}, or nil. */
static const char VERDICT_LUA[] =
    "local v = redis.call('GET', KEYS[1]) if not v then return nil end "
    "return {v, redis.call('PTTL', KEYS[1])}";

static int sharing(const struct sessiond *sd) {
  return sd->redis && sd->cfg->share_health && sd->cfg->backend_retry_ms > 0;
}

static void publish_verdict(struct sessiond *sd, int idx, const char *verdict, uint64_t ms) {
  char msg[CONFIG_NAME_MAX * 2 + 64];
  snprintf(msg, sizeof msg, "backend %s health %s %llu %s", sd->cfg->backends[idx].name, verdict,
           (unsigned long long)ms, sd->cfg->name);
  rds_command(sd->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
  sd->n.verdicts_sent++;
}

/* Our own verdict: down. Said once per half its life, however many failed
 * connects and checks repeat it, so that it is renewed while it stands
 * and a flood of failures is not a flood of messages. */
static void share_down(struct sessiond *sd, int idx) {
  struct backend_state *b = &sd->bstate[idx];
  uint64_t now = now_ms(), ttl = sd->cfg->backend_retry_ms;
  if (!sharing(sd) || b->published_until > now + ttl / 2) return;
  char ms[24];
  snprintf(ms, sizeof ms, "%llu", (unsigned long long)ttl);
  rds_command(sd->redis, NULL, NULL, "SET usher:health:%s %s PX %s", sd->cfg->backends[idx].name,
              sd->cfg->name, ms);
  publish_verdict(sd, idx, "down", ttl);
  b->published_until = now + ttl;
}

/* Our own checks see the backend healthy again: a down verdict of ours
 * that still lives is withdrawn. */
static void share_up(struct sessiond *sd, int idx) {
  struct backend_state *b = &sd->bstate[idx];
  if (!sharing(sd) || b->published_until <= now_ms()) return;
  b->published_until = 0;
  rds_command(sd->redis, NULL, NULL, "EVAL %s 1 usher:health:%s %s", UNSHARE_LUA,
              sd->cfg->backends[idx].name, sd->cfg->name);
  publish_verdict(sd, idx, "up", 0);
}

/* A peer's "down": the same effect as a failed connect here, for the
 * verdict's life left but never longer than our own backend_retry. */
static void learn_down(struct sessiond *sd, int idx, uint64_t ms, const char *from) {
  struct backend_state *b = &sd->bstate[idx];
  uint64_t now = now_ms();
  if (ms > sd->cfg->backend_retry_ms) ms = sd->cfg->backend_retry_ms;
  if (ms == 0) return;
  int news = b->shared_until <= now;
  if (news)
    log_event(LOG_LVL_WARN, "backend_shared", "backend=%s verdict=down from=%s retry_ms=%llu",
              sd->cfg->backends[idx].name, from, (unsigned long long)ms);
  if (b->shared_until < now + ms) b->shared_until = now + ms;
  b->ok_in_row = 0;   /* our own checks lift it only by passing from now on */
  sd->n.verdicts_received++;
  if (news && sd->backend_down) sd->backend_down(sd, idx, "shared");
}

static void learn_up(struct sessiond *sd, int idx, const char *from) {
  struct backend_state *b = &sd->bstate[idx];
  if (b->shared_until > now_ms())
    log_event(LOG_LVL_INFO, "backend_shared", "backend=%s verdict=up from=%s",
              sd->cfg->backends[idx].name, from);
  b->shared_until = 0;
  sd->n.verdicts_received++;
}

/* "backend NAME health down|up MS PROXY" from the event bus. Our own
 * message comes back to us too: ignored. */
static void heed_verdict(struct sessiond *sd, const char *msg) {
  char name[CONFIG_NAME_MAX], verdict[8];
  unsigned long long ms;
  int from = 0;
  if (!sharing(sd) ||
      sscanf(msg, "backend %63s health %7s %llu %n", name, verdict, &ms, &from) != 3 ||
      !from || !msg[from] || !strcmp(msg + from, sd->cfg->name))
    return;
  int idx = sessiond_backend_index(sd, name);
  if (idx < 0) return;   /* a backend this proxy does not have */
  if (!strcmp(verdict, "down")) learn_down(sd, idx, ms, msg + from);
  else if (!strcmp(verdict, "up")) learn_up(sd, idx, msg + from);
}

/* The verdicts that live in Redis now, for a proxy that starts or whose
 * subscription was down: one EVAL per backend. The cookie names the
 * backend, since a reload may renumber them before the answer comes. */
struct verdict_query { struct sessiond *sd; char name[CONFIG_NAME_MAX]; };
static struct verdict_query verdict_queries[CONFIG_MAX_BACKENDS];

static void on_verdict(void *cookie, const redisReply *r) {
  struct verdict_query *q = cookie;
  struct sessiond *sd = q->sd;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
      r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER)
    return;
  int idx = sessiond_backend_index(sd, q->name);
  if (idx >= 0 && sharing(sd) && strcmp(r->element[0]->str, sd->cfg->name) != 0 &&
      r->element[1]->integer > 0)
    learn_down(sd, idx, (uint64_t)r->element[1]->integer, r->element[0]->str);
}

static void load_verdicts(struct sessiond *sd) {
  if (!sharing(sd)) return;
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    struct verdict_query *q = &verdict_queries[i];
    q->sd = sd;
    snprintf(q->name, sizeof q->name, "%s", sd->cfg->backends[i].name);
    rds_command(sd->redis, on_verdict, q, "EVAL %s 1 usher:health:%s", VERDICT_LUA, q->name);
  }
}

/* ---- operator changes --------------------------------------------------------- */

static int apply(struct sessiond *sd, const char *name, const char *state, int weight,
                 char *err, size_t errlen) {
  int idx = sessiond_backend_index(sd, name);
  if (idx < 0) {
    snprintf(err, errlen, "no backend named '%s'", name);
    return -1;
  }
  struct backend_state *b = &sd->bstate[idx];
  if (state) {
    int k = -1;
    for (int i = 0; i < 3; i++)
      if (!strcmp(state, admin_names[i])) k = i;
    if (k < 0) {
      snprintf(err, errlen, "state must be up, drain or down, not '%s'", state);
      return -1;
    }
    if (b->admin != (enum backend_admin)k)
      log_event(LOG_LVL_INFO, "backend_state", "backend=%s state=%s", name, admin_names[k]);
    b->admin = (enum backend_admin)k;
    if (k == BA_UP) b->down_until = b->shared_until = 0;   /* the operator says it is back */
  }
  if (weight >= 0) {
    if (weight > 1000) {
      snprintf(err, errlen, "weight must be 0..1000");
      return -1;
    }
    b->weight = (unsigned)weight;
    b->weight_set = 1;
  }
  return 0;
}

int backends_admin(struct sessiond *sd, const char *name, const char *state, int weight,
                   char *err, size_t errlen) {
  if (apply(sd, name, state, weight, err, errlen) != 0) return -1;
  int idx = sessiond_backend_index(sd, name);
  const struct backend_state *b = &sd->bstate[idx];
  char value[32], msg[CONFIG_NAME_MAX + 48];
  snprintf(value, sizeof value, "%s %u", admin_names[b->admin], b->weight);
  snprintf(msg, sizeof msg, "backend %s %s", name, value);
  rds_command(sd->redis, NULL, NULL, "HSET usher:backends %s %s", name, value);
  rds_command(sd->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
  return 0;
}

void backends_on_event(struct sessiond *sd, const char *payload, size_t len) {
  char buf[256], name[CONFIG_NAME_MAX], state[8], err[128];
  int weight;
  if (len >= sizeof buf) return;
  memcpy(buf, payload, len);
  buf[len] = '\0';
  if (sscanf(buf, "backend %63s %7s %d", name, state, &weight) == 3)
    apply(sd, name, state, weight, err, sizeof err);
  else
    heed_verdict(sd, buf);
}

static void on_backends_hash(void *cookie, const redisReply *r) {
  struct sessiond *sd = cookie;
  if (!r || r->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i + 1 < r->elements; i += 2) {
    char state[8], err[128];
    int weight;
    if (r->element[i]->type != REDIS_REPLY_STRING || r->element[i + 1]->type != REDIS_REPLY_STRING)
      continue;
    if (sscanf(r->element[i + 1]->str, "%7s %d", state, &weight) == 2)
      apply(sd, r->element[i]->str, state, weight, err, sizeof err);
  }
}

void backends_load(struct sessiond *sd) {
  rds_command(sd->redis, on_backends_hash, sd, "HGETALL usher:backends");
  load_verdicts(sd);
}
