/* Redis connections (see redis.h). A link is one hiredis context plus its
 * reconnect timer; hiredis frees a context itself after a failed connect or
 * a disconnect, so a link only forgets its pointer then. */
#include "sessiond/redis.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>

#include "common/log.h"
#include "common/util.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TIMEOUTS_BEFORE_DROP 3

const uint64_t rds_latency_bounds_us[7] = {100, 250, 500, 1000, 5000, 25000, 100000};

struct rlink {
  struct rds *r;
  const char *role;
  redisAsyncContext *ac;
  int up;
  struct event *retry_ev, *connect_timer;
  uint64_t backoff_ms;
  void (*on_ready)(struct rlink *l);
  struct squery *query;   /* a Sentinel question in flight */
};

#define MAX_SENTINELS 8

struct sentinel_addr { char host[64]; int port; };

struct rds {
  struct event_base *base;
  char *host, *path, *password, *channel;
  int port;
  struct sentinel_addr sentinels[MAX_SENTINELS];
  unsigned n_sentinels, next_sentinel;
  char *master_name;
  uint64_t timeout_ms;
  struct rlink cmd, sub;
  unsigned timeouts_in_row;
  uint64_t down_since;
  int stopping;
  rds_message_fn on_message;
  rds_resync_fn on_resync;
  void *cookie;
  struct rds_stats st;
  char run_id[48];        /* the server process the command link last talked to */
  int server_changed;     /* a different one since: what it holds may be lost */
};

/* One command in flight. Freed when hiredis answers (or gives up on) it,
 * which may be after the caller was told "timeout". */
struct rcall {
  struct rds *r;
  rds_reply_fn fn;
  void *cookie;
  struct event *timer;
  uint64_t t0;
  int answered;
};

static void link_connect(evutil_socket_t fd, short what, void *arg);

/* A connect (or a Sentinel question) gets four command timeouts, at least
 * one second: connecting costs more round trips than a command. */
static void arm_connect_timer(const struct rds *r, struct event *timer) {
  struct timeval tv;
  ms_to_timeval(r->timeout_ms * 4 > 1000 ? r->timeout_ms * 4 : 1000, &tv);
  event_add(timer, &tv);
}

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void note_state(struct rds *r) {
  if (r->stopping) return;
  if (!r->cmd.up && !r->down_since) {
    r->down_since = now_ms();
    r->st.outages++;
    log_event(LOG_LVL_WARN, "redis_down", "outages=%llu", (unsigned long long)r->st.outages);
  } else if (r->cmd.up && r->down_since) {
    log_event(LOG_LVL_INFO, "redis_up", "outage_ms=%llu",
              (unsigned long long)(now_ms() - r->down_since));
    r->down_since = 0;
  }
}

static void link_retry_later(struct rlink *l) {
  l->up = 0;
  l->ac = NULL;
  event_del(l->connect_timer);
  if (l->r->stopping) return;
  struct timeval tv;
  ms_to_timeval(l->backoff_ms, &tv);
  event_add(l->retry_ev, &tv);
  l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
  if (l == &l->r->cmd) note_state(l->r);
}

/* Drops a link from our side (timeouts, a failed AUTH): hiredis answers the
 * outstanding calls with NULL. */
static void link_drop(struct rlink *l) {
  redisAsyncContext *ac = l->ac;
  if (!ac) return;
  l->ac = NULL;   /* the disconnect callback must not schedule twice */
  ac->data = NULL;
  redisAsyncFree(ac);
  link_retry_later(l);
}

static void link_ready(struct rlink *l) {
  l->up = 1;
  l->backoff_ms = BACKOFF_MIN_MS;
  if (l->on_ready) l->on_ready(l);
  if (l == &l->r->cmd) {
    note_state(l->r);
    /* Commands work again: state kept elsewhere meanwhile is re-read. */
    if (l->r->on_resync) l->r->on_resync(l->r->cookie);
  }
}

/* The command link learns which server process it reached (INFO's
 * run_id): a Redis restarted, or a replica promoted by Sentinel, is a new
 * process that may have lost what the old one held. The subscriber does
 * not need to know. */
static void on_info(redisAsyncContext *ac, void *reply, void *priv) {
  struct rlink *l = priv;
  redisReply *rep = reply;
  if (!ac->data) return;   /* being dropped */
  const char *id = rep && rep->type == REDIS_REPLY_STRING ? strstr(rep->str, "run_id:") : NULL;
  if (!id) {
    log_event(LOG_LVL_WARN, "redis_info", "error=\"no run_id\"");
    link_drop(l);
    return;
  }
  char now_id[48];
  size_t n = strcspn(id + 7, "\r\n");
  snprintf(now_id, sizeof now_id, "%.*s", (int)(n < sizeof now_id ? n : sizeof now_id - 1), id + 7);
  struct rds *r = l->r;
  if (r->run_id[0] && strcmp(r->run_id, now_id) != 0) {
    r->server_changed = 1;
    r->st.server_changes++;
    log_event(LOG_LVL_WARN, "redis_server_changed", "note=\"a restart or a failover: seats are "
              "written back before new ones are claimed\"");
  }
  snprintf(r->run_id, sizeof r->run_id, "%s", now_id);
  event_del(l->connect_timer);
  link_ready(l);
}

int rds_take_server_changed(struct rds *r) {
  int changed = r && r->server_changed;
  if (r) r->server_changed = 0;
  return changed;
}

/* A link is up only once Redis has answered a PING: a TCP connect alone
 * proves nothing (the kernel completes it for a frozen process, and a
 * proxy that took that for Redis being back flapped down and up every few
 * hundred milliseconds). The connect timer stays armed until the answer,
 * so a Redis that does not answer is dropped and retried later. */
static void on_ping(redisAsyncContext *ac, void *reply, void *priv) {
  struct rlink *l = priv;
  redisReply *rep = reply;
  if (!ac->data) return;   /* being dropped */
  if (rep && rep->type != REDIS_REPLY_ERROR) {
    if (l == &l->r->cmd) {   /* the connect timer still runs: INFO must answer too */
      redisAsyncCommand(ac, on_info, l, "INFO server");
      return;
    }
    event_del(l->connect_timer);
    link_ready(l);
    return;
  }
  log_event(LOG_LVL_WARN, "redis_ping", "link=%s error=\"%s\"", l->role,
            rep && rep->str ? rep->str : "no answer");
  link_drop(l);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
  struct rlink *l = priv;
  redisReply *rep = reply;
  if (!ac->data) return;   /* being dropped */
  if (rep && rep->type != REDIS_REPLY_ERROR) {
    redisAsyncCommand(ac, on_ping, l, "PING");
    return;
  }
  log_event(LOG_LVL_ERROR, "redis_auth", "link=%s error=\"%s\"", l->role,
            rep && rep->str ? rep->str : "no answer");
  link_drop(l);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  struct rlink *l = ac->data;
  if (!l) return;
  if (status != REDIS_OK) {
    event_del(l->connect_timer);
    link_retry_later(l);   /* hiredis frees the context */
    return;
  }
  if (l->r->password)
    redisAsyncCommand((redisAsyncContext *)ac, on_auth, l, "AUTH %s", l->r->password);
  else
    redisAsyncCommand((redisAsyncContext *)ac, on_ping, l, "PING");
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  struct rlink *l = ac->data;
  if (!l) return;
  link_retry_later(l);   /* hiredis frees the context */
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct rlink *l = arg;
  if (l->ac && !l->up) link_drop(l);
}

static void link_connect_to(struct rlink *l, const char *host, int port);
static void sentinel_ask(struct rlink *l);

static void link_connect(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct rlink *l = arg;
  struct rds *r = l->r;
  if (r->n_sentinels) sentinel_ask(l);   /* who is the master now? */
  else link_connect_to(l, r->host, r->port);
}

/* ---- Sentinel: asking for the master's address, asynchronously ----------------- */

struct squery {
  struct rlink *l;
  redisAsyncContext *ac;
  struct event *timer;
  int done, connected;
};

static void squery_end(struct squery *q, const char *host, int port) {
  if (q->done) return;
  q->done = 1;
  event_del(q->timer);
  if (host) {
    log_event(LOG_LVL_DEBUG, "redis_sentinel", "master=%s:%d", host, port);
    link_connect_to(q->l, host, port);
  } else {
    link_retry_later(q->l);   /* the next attempt asks the next sentinel */
  }
}

static void squery_free(struct squery *q) {
  if (q->l->query == q) q->l->query = NULL;
  event_free(q->timer);
  free(q);
}

static void on_squery_reply(redisAsyncContext *ac, void *reply, void *priv) {
  struct squery *q = priv;
  redisReply *rep = reply;
  if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
      rep->element[0]->type == REDIS_REPLY_STRING && rep->element[1]->type == REDIS_REPLY_STRING) {
    char host[64];
    snprintf(host, sizeof host, "%s", rep->element[0]->str);
    squery_end(q, host, atoi(rep->element[1]->str));
  } else {
    squery_end(q, NULL, 0);
  }
  if (rep) redisAsyncDisconnect(ac);
}

static void on_squery_connect(const redisAsyncContext *ac, int status) {
  struct squery *q = ac->data;
  if (status != REDIS_OK) {   /* hiredis frees the context */
    squery_end(q, NULL, 0);
    squery_free(q);
    return;
  }
  q->connected = 1;
  redisAsyncCommand((redisAsyncContext *)ac, on_squery_reply, q,
                    "SENTINEL get-master-addr-by-name %s", q->l->r->master_name);
}

static void on_squery_disconnect(const redisAsyncContext *ac, int status) {
  (void)status;
  struct squery *q = ac->data;
  squery_end(q, NULL, 0);
  squery_free(q);
}

static void on_squery_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct squery *q = arg;
  squery_end(q, NULL, 0);
  int connected = q->connected;
  redisAsyncFree(q->ac);   /* calls the disconnect callback (which frees q) if connected */
  if (!connected) squery_free(q);
}

static void sentinel_ask(struct rlink *l) {
  struct rds *r = l->r;
  const struct sentinel_addr *s = &r->sentinels[r->next_sentinel++ % r->n_sentinels];
  redisAsyncContext *ac = redisAsyncConnect(s->host, s->port);
  if (!ac || ac->err) {
    if (ac) redisAsyncFree(ac);
    link_retry_later(l);
    return;
  }
  struct squery *q = xcalloc(1, sizeof *q);
  q->l = l;
  q->ac = ac;
  q->timer = evtimer_new(r->base, on_squery_timeout, q);
  l->query = q;
  ac->data = q;
  redisLibeventAttach(ac, r->base);
  redisAsyncSetConnectCallback(ac, on_squery_connect);
  redisAsyncSetDisconnectCallback(ac, on_squery_disconnect);
  arm_connect_timer(r, q->timer);
}

static void link_connect_to(struct rlink *l, const char *host, int port) {
  struct rds *r = l->r;
  redisAsyncContext *ac = r->path && !r->n_sentinels ? redisAsyncConnectUnix(r->path)
                                                     : redisAsyncConnect(host, port);
  if (!ac || ac->err) {
    if (ac) redisAsyncFree(ac);
    link_retry_later(l);
    return;
  }
  ac->data = l;
  l->ac = ac;
  redisLibeventAttach(ac, r->base);
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  arm_connect_timer(r, l->connect_timer);
}

/* ---- the subscriber -------------------------------------------------------- */

static void on_sub_message(redisAsyncContext *ac, void *reply, void *priv) {
  struct rds *r = priv;
  redisReply *rep = reply;
  if (!ac->data || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
  const redisReply *kind = rep->element[0], *payload = rep->element[2];
  if (kind->type != REDIS_REPLY_STRING) return;
  if (!strcmp(kind->str, "subscribe")) {
    if (r->on_resync) r->on_resync(r->cookie);
  } else if (!strcmp(kind->str, "message") && payload->type == REDIS_REPLY_STRING) {
    r->st.messages++;
    if (r->on_message) r->on_message(r->cookie, payload->str, payload->len);
  }
}

static void sub_ready(struct rlink *l) {
  redisAsyncCommand(l->ac, on_sub_message, l->r, "SUBSCRIBE %s", l->r->channel);
}

/* ---- commands --------------------------------------------------------------- */

static void call_answer(struct rcall *k, const redisReply *reply) {
  k->answered = 1;
  if (k->fn) k->fn(k->cookie, reply);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv) {
  (void)ac;
  struct rcall *k = priv;
  struct rds *r = k->r;
  if (!k->answered) {
    event_del(k->timer);
    if (reply) {
      uint64_t us = now_us() - k->t0;
      unsigned b = 0;
      while (b < 7 && us > rds_latency_bounds_us[b]) b++;
      r->st.latency_buckets[b]++;
      r->st.latency_us_sum += us;
      r->st.replies++;
      r->timeouts_in_row = 0;
      if (((redisReply *)reply)->type == REDIS_REPLY_ERROR) r->st.errors++;
    }
    call_answer(k, reply);
  }
  event_free(k->timer);
  free(k);
}

static void on_call_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct rcall *k = arg;
  struct rds *r = k->r;
  r->st.timeouts++;
  call_answer(k, NULL);   /* k stays until hiredis lets go of it */
  if (++r->timeouts_in_row >= TIMEOUTS_BEFORE_DROP) {
    log_event(LOG_LVL_WARN, "redis_timeout", "in_a_row=%u action=reconnect", r->timeouts_in_row);
    r->timeouts_in_row = 0;
    link_drop(&r->cmd);   /* may free k: do not touch it after this */
  }
}

static struct rcall *call_new(struct rds *r, rds_reply_fn fn, void *cookie) {
  struct rcall *k = xcalloc(1, sizeof *k);
  k->r = r;
  k->fn = fn;
  k->cookie = cookie;
  k->t0 = now_us();
  k->timer = evtimer_new(r->base, on_call_timeout, k);
  return k;
}

static int call_sent(struct rds *r, struct rcall *k, int rc) {
  if (rc != REDIS_OK) {
    event_free(k->timer);
    free(k);
    r->st.refused++;
    return -1;
  }
  r->st.commands++;
  struct timeval tv;
  ms_to_timeval(r->timeout_ms, &tv);
  event_add(k->timer, &tv);
  return 0;
}

int rds_command(struct rds *r, rds_reply_fn fn, void *cookie, const char *fmt, ...) {
  if (!r || !r->cmd.up) {
    if (r) r->st.refused++;
    return -1;
  }
  struct rcall *k = call_new(r, fn, cookie);
  va_list ap;
  va_start(ap, fmt);
  int rc = redisvAsyncCommand(r->cmd.ac, on_reply, k, fmt, ap);
  va_end(ap);
  return call_sent(r, k, rc);
}

int rds_command_argv(struct rds *r, rds_reply_fn fn, void *cookie, int argc, const char **argv,
                     const size_t *argvlen) {
  if (!r || !r->cmd.up) {
    if (r) r->st.refused++;
    return -1;
  }
  struct rcall *k = call_new(r, fn, cookie);
  return call_sent(r, k, redisAsyncCommandArgv(r->cmd.ac, on_reply, k, argc, argv, argvlen));
}

/* ---- life ------------------------------------------------------------------- */

static void link_init(struct rds *r, struct rlink *l, const char *role,
                      void (*on_ready)(struct rlink *)) {
  l->r = r;
  l->role = role;
  l->backoff_ms = BACKOFF_MIN_MS;
  l->on_ready = on_ready;
  l->retry_ev = evtimer_new(r->base, link_connect, l);
  l->connect_timer = evtimer_new(r->base, on_connect_timeout, l);
  link_connect(-1, 0, l);
}

struct rds *rds_new(struct event_base *base, const struct config *cfg, const char *password,
                    const char *channel, rds_message_fn on_message, rds_resync_fn on_resync,
                    void *cookie) {
  struct rds *r = xcalloc(1, sizeof *r);
  r->base = base;
  r->timeout_ms = cfg->redis_timeout_ms;
  if (cfg->redis_sentinels) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", cfg->redis_sentinels);
    for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t && r->n_sentinels < MAX_SENTINELS;
         t = strtok_r(NULL, " ,", &save)) {
      struct sentinel_addr *a = &r->sentinels[r->n_sentinels++];
      char *colon = strrchr(t, ':');
      *colon = '\0';
      snprintf(a->host, sizeof a->host, "%s", t[0] == '[' ? t + 1 : t);
      a->host[strcspn(a->host, "]")] = '\0';
      a->port = atoi(colon + 1);
    }
    r->master_name = xstrdup(cfg->redis_master_name);
  } else if (cfg->redis_address[0] == '/') {
    r->path = xstrdup(cfg->redis_address);
  } else {
    const char *colon = strrchr(cfg->redis_address, ':');
    size_t hl = (size_t)(colon - cfg->redis_address);
    const char *h = cfg->redis_address;
    if (h[0] == '[') { h++; hl -= 2; }   /* [::1]:6379 */
    r->host = xmalloc(hl + 1);
    memcpy(r->host, h, hl);
    r->host[hl] = '\0';
    r->port = atoi(colon + 1);
  }
  r->password = password && *password ? xstrdup(password) : NULL;
  r->channel = xstrdup(channel);
  r->on_message = on_message;
  r->on_resync = on_resync;
  r->cookie = cookie;
  r->down_since = now_ms();   /* down until the first connect: no "down" line at start */
  link_init(r, &r->cmd, "command", NULL);
  link_init(r, &r->sub, "subscribe", sub_ready);
  return r;
}

static void link_free(struct rlink *l) {
  if (l->query) {
    struct squery *q = l->query;
    q->done = 1;
    int connected = q->connected;
    redisAsyncFree(q->ac);
    if (!connected) squery_free(q);
  }
  if (l->ac) {
    redisAsyncContext *ac = l->ac;
    l->ac = NULL;
    ac->data = NULL;
    redisAsyncFree(ac);
  }
  event_free(l->retry_ev);
  event_free(l->connect_timer);
}

void rds_free(struct rds *r) {
  if (!r) return;
  r->stopping = 1;
  link_free(&r->cmd);
  link_free(&r->sub);
  if (r->password) wipe_free_str(r->password);
  free(r->host);
  free(r->path);
  free(r->channel);
  free(r->master_name);
  free(r);
}

int rds_is_up(const struct rds *r) { return r && r->cmd.up; }

const struct rds_stats *rds_stats(const struct rds *r) { return &r->st; }
