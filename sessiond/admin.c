/* The admin socket (runtime_dir/admin.sock, mode 0600): one command per
 * line, one line of JSON per answer.
 *
 *   status            version, uptime, workers, sessions, seats, counters, backends
 *   backends          each backend: address, state, weight, health, sessions here
 *   sessions --backend NAME   this proxy's sessions on one backend
 *   health            {"healthy":...}: workers up and a backend usable (VIP check)
 *   reload            asks the master to re-read the configuration (SIGHUP)
 *   sessions          every session on this proxy
 *   who USER          the user's seat and sessions
 *   kick USER         close all of the user's sessions (* BYE) on every proxy;
 *                     {"kicked":N} counts this proxy's
 *   backend NAME up|drain|down   the operator's state, on every proxy
 *   backend NAME weight N        share of new users, on every proxy
 *   backend NAME drain --migrate [--rate N]   drain, then move its users
 *                     seated here (N a second; status: "migration")
 *   move USER BACKEND [--kick]  re-seat the user (every proxy); their live
 *                     sessions are re-homed when re-homing is on ([routing]
 *                     rehome, master_user), else and with --kick closed;
 *                     {"kicked":N,"rehome":BOOL} counts this proxy's
 *   auth flush USER   forget USER in the auth cache on every proxy
 *   auth flush --all  forget everybody
 *   auth stats        the auth cache, LDAP, Redis and throttling counters
 */
#include "sessiond/admin.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "auth/authcache.h"
#include "auth/ldapdb.h"
#include "common/log.h"
#include "common/username.h"
#include "common/util.h"
#include "sessiond/authpool.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/drain.h"
#include "sessiond/login.h"
#include "sessiond/peers.h"
#include "sessiond/redis.h"
#include "sessiond/rehome.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/throttle.h"

#define ADMIN_MAX_LINE 4096
#define ADMIN_MAX_CONNS 64

static unsigned admin_conns;

/* Appends s as a JSON string. */
static void json_str(struct evbuffer *out, const char *s) {
  evbuffer_add(out, "\"", 1);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') evbuffer_add_printf(out, "\\%c", c);
    else if (c < 0x20 || c == 0x7f) evbuffer_add_printf(out, "\\u%04x", c);
    else evbuffer_add(out, s, 1);
  }
  evbuffer_add(out, "\"", 1);
}

static void json_session(struct evbuffer *out, const struct session *s, uint64_t now) {
  evbuffer_add_printf(out, "{\"session\":\"%s\",\"user\":", s->id);
  json_str(out, s->user);
  evbuffer_add_printf(out, ",\"backend\":");
  json_str(out, s->backend);
  evbuffer_add_printf(out, ",\"client\":");
  json_str(out, s->client);
  evbuffer_add_printf(out, ",\"age_s\":%llu}", (unsigned long long)((now - s->start_ms) / 1000));
}

struct listing {
  struct evbuffer *out;
  const char *user;       /* NULL: every session */
  const char *backend;    /* count sessions of this backend */
  unsigned n;
  uint64_t now;
};

static void list_one(struct session *s, void *arg) {
  struct listing *l = arg;
  if (l->user && strcmp(s->user, l->user) != 0) return;
  if (l->n++) evbuffer_add(l->out, ",", 1);
  json_session(l->out, s, l->now);
}

static void count_backend(struct session *s, void *arg) {
  struct listing *l = arg;
  if (!strcmp(s->backend, l->backend)) l->n++;
}

static void cmd_status(struct sessiond *sd, struct evbuffer *out) {
  uint64_t now = now_ms();
  const struct sessiond_counters *n = &sd->n;
  evbuffer_add_printf(out,
                      "{\"version\":\"0.1.0\",\"name\":");
  json_str(out, sd->cfg->name);
  evbuffer_add_printf(out,
                      ",\"uptime_s\":%llu,\"workers\":%u,\"sessions\":%zu,\"seats\":%zu,"
                      "\"auth_queue\":%u,\"logins_ok\":%llu,\"logins_failed\":%llu,"
                      "\"logins_unavailable\":%llu,\"seats_created\":%llu,\"seats_reused\":%llu,"
                      "\"seats_moved\":%llu,\"backend_failures\":%llu,\"kicks\":%llu,"
                      "\"worker_refused\":%llu,\"rehome_requests\":%llu,\"rehome_routed\":%llu,"
                      "\"rehome_refused\":%llu,\"rehome_unavailable\":%llu,"
                      "\"verdicts_sent\":%llu,\"verdicts_received\":%llu,",
                      (unsigned long long)((now - sd->start_ms) / 1000), sd->n_wconns,
                      sessions_count(sd->seats), seats_count(sd->seats), authpool_queued(sd->pool),
                      (unsigned long long)n->logins_ok, (unsigned long long)n->logins_failed,
                      (unsigned long long)n->logins_unavailable,
                      (unsigned long long)n->seats_created, (unsigned long long)n->seats_reused,
                      (unsigned long long)n->seats_moved, (unsigned long long)n->backend_failures,
                      (unsigned long long)n->kicks, (unsigned long long)n->worker_refused,
                      (unsigned long long)n->rehome_requests, (unsigned long long)n->rehome_routed,
                      (unsigned long long)n->rehome_refused,
                      (unsigned long long)n->rehome_unavailable,
                      (unsigned long long)n->verdicts_sent,
                      (unsigned long long)n->verdicts_received);
  drain_migrate_status(out);
  rehome_stats_json(&n->rehome_done, out);
  evbuffer_add_printf(out, ",\"backends\":[");
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    struct listing l = {.backend = sd->cfg->backends[i].name};
    sessions_foreach(sd->seats, count_backend, &l);
    evbuffer_add_printf(out, "%s{\"name\":", i ? "," : "");
    json_str(out, sd->cfg->backends[i].name);
    evbuffer_add_printf(out, ",\"state\":\"%s\",\"weight\":%u,\"sessions\":%u}",
                        backend_state_name(sd, (int)i, now), sd->bstate[i].weight, l.n);
  }
  const struct seatstore_stats *ss = seatstore_stats();
  evbuffer_add_printf(out,
                      "],\"redis\":%s,\"cluster_seats\":{\"attaches\":%llu,\"claims_won\":%llu,"
                      "\"replaces\":%llu,\"heartbeats\":%llu,\"conflicts_kicked\":%llu,"
                      "\"fallback_routes\":%llu,\"refused_routes\":%llu,\"refills\":%llu,"
                      "\"refill_waits\":%llu,\"refill_refused\":%llu,\"peer_routes\":%llu,"
                      "\"moves_refused\":%llu}",
                      sd->redis ? (rds_is_up(sd->redis) ? "\"up\"" : "\"down\"") : "null",
                      (unsigned long long)ss->attaches, (unsigned long long)ss->claims_won,
                      (unsigned long long)ss->replaces, (unsigned long long)ss->heartbeats,
                      (unsigned long long)ss->conflicts_kicked,
                      (unsigned long long)ss->fallback_routes,
                      (unsigned long long)ss->refused_routes, (unsigned long long)ss->refills,
                      (unsigned long long)ss->refill_waits, (unsigned long long)ss->refill_refused,
                      (unsigned long long)ss->peer_routes, (unsigned long long)ss->moves_refused);
  if (sd->peers) {
    const struct peers_stats *ps = peers_stats(sd->peers);
    evbuffer_add_printf(out,
                        ",\"peers\":{\"asked\":%llu,\"agreed\":%llu,\"followed\":%llu,"
                        "\"refused_conflict\":%llu,\"refused_timeout\":%llu,\"refused_redis\":%llu,"
                        "\"answered\":%llu,\"bad_messages\":%llu}",
                        (unsigned long long)ps->asked, (unsigned long long)ps->agreed,
                        (unsigned long long)ps->followed, (unsigned long long)ps->refused_conflict,
                        (unsigned long long)ps->refused_timeout,
                        (unsigned long long)ps->refused_redis, (unsigned long long)ps->answered,
                        (unsigned long long)ps->bad_messages);
  }
  evbuffer_add_printf(out, "}");
}

static void list_backend(struct session *s, void *arg) {
  struct listing *l = arg;
  if (strcmp(s->backend, l->backend) != 0) return;
  if (l->n++) evbuffer_add(l->out, ",", 1);
  json_session(l->out, s, l->now);
}

static void cmd_backends(struct sessiond *sd, struct evbuffer *out) {
  uint64_t now = now_ms();
  evbuffer_add_printf(out, "{\"backends\":[");
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    struct listing l = {.backend = sd->cfg->backends[i].name};
    sessions_foreach(sd->seats, count_backend, &l);
    char addr[NETADDR_STRLEN];
    evbuffer_add_printf(out, "%s{\"name\":", i ? "," : "");
    json_str(out, sd->cfg->backends[i].name);
    /* Why it is unusable, and until when: state says who decided (drain
     * and down: an operator; unhealthy: health checks; failed: a failed
     * connect's retry penalty), retry_ms how long that penalty still runs
     * unless health checks lift it first. */
    evbuffer_add_printf(out, ",\"address\":\"%s\",\"state\":\"%s\",\"weight\":%u,\"healthy\":%s,"
                        "\"retry_ms\":%llu,\"sessions\":%u}",
                        netaddr_str(&sd->cfg->backends[i].addr, addr, sizeof addr),
                        backend_state_name(sd, (int)i, now), sd->bstate[i].weight,
                        sd->bstate[i].healthy ? "true" : "false",
                        (unsigned long long)backend_retry_left_ms(sd, (int)i, now), l.n);
  }
  evbuffer_add_printf(out, "]}");
}

/* Should this proxy hold the VIP? Workers up (they hold the listeners) and
 * at least one backend usable. */
static void cmd_health(struct sessiond *sd, struct evbuffer *out) {
  unsigned usable = 0;
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) usable += backend_usable(sd, (int)i, now_ms());
  int healthy = sd->n_wconns > 0 && usable > 0;
  evbuffer_add_printf(out, "{\"healthy\":%s,\"workers\":%u,\"backends_usable\":%u}",
                      healthy ? "true" : "false", sd->n_wconns, usable);
}

static void cmd_sessions_of_backend(struct sessiond *sd, struct evbuffer *out, const char *b) {
  struct listing l = {.out = out, .backend = b, .now = now_ms()};
  evbuffer_add_printf(out, "{\"sessions\":[");
  sessions_foreach(sd->seats, list_backend, &l);
  evbuffer_add_printf(out, "]}");
}

static void cmd_sessions(struct sessiond *sd, struct evbuffer *out, const char *user) {
  struct listing l = {.out = out, .user = user, .now = now_ms()};
  if (user) {
    struct seat *seat = seat_find(sd->seats, user, l.now);
    evbuffer_add_printf(out, "{\"user\":");
    json_str(out, user);
    evbuffer_add_printf(out, ",\"seat\":");
    if (seat) json_str(out, seat->backend);
    else evbuffer_add_printf(out, "null");
    evbuffer_add_printf(out, ",\"sessions\":[");
  } else {
    evbuffer_add_printf(out, "{\"sessions\":[");
  }
  sessions_foreach(sd->seats, list_one, &l);
  evbuffer_add_printf(out, "]}");
}

/* backend NAME drain --migrate [--rate N]: drained as by "drain", then
 * its users moved, paced (drain.c). */
static void cmd_drain_migrate(struct sessiond *sd, struct evbuffer *out, const char *name,
                              const char *opt, const char *rate_s) {
  char err[160] = "usage: backend NAME drain --migrate [--rate N]";
  char *end = NULL;
  long rate = rate_s ? strtol(rate_s, &end, 10) : 0;
  int n = -1;
  if ((!opt && !rate_s) || (opt && !strcmp(opt, "--rate") && rate_s && *rate_s && !*end &&
                            rate > 0 && rate <= 100000)) {
    if (backends_admin(sd, name, "drain", -1, err, sizeof err) == 0)
      n = drain_migrate_start(sd, name, (unsigned)rate, err, sizeof err);
  }
  if (n < 0) {
    evbuffer_add_printf(out, "{\"error\":");
    json_str(out, err);
    evbuffer_add_printf(out, "}");
    return;
  }
  evbuffer_add_printf(out, "{\"backend\":");
  json_str(out, name);
  evbuffer_add_printf(out, ",\"state\":\"drain\",\"migrating\":%d}", n);
}

static void cmd_backend(struct sessiond *sd, struct evbuffer *out, const char *name,
                        const char *what, const char *value) {
  char err[160] = "usage: backend NAME up|drain|down|weight N";
  int rc = -1;
  char *end = NULL;
  long weight = value ? strtol(value, &end, 10) : -1;
  if (name && what && strcmp(what, "weight"))
    rc = backends_admin(sd, name, what, -1, err, sizeof err);
  else if (name && what && value && *value && !*end && weight >= 0 && weight <= 1000)
    rc = backends_admin(sd, name, NULL, (int)weight, err, sizeof err);
  else if (name && what && value)
    snprintf(err, sizeof err, "weight must be a whole number from 0 to 1000");
  if (rc != 0) {
    evbuffer_add_printf(out, "{\"error\":");
    json_str(out, err);
    evbuffer_add_printf(out, "}");
    return;
  }
  int i = sessiond_backend_index(sd, name);
  evbuffer_add_printf(out, "{\"backend\":");
  json_str(out, name);
  evbuffer_add_printf(out, ",\"state\":\"%s\",\"weight\":%u}", backend_state_name(sd, i, now_ms()),
                      sd->bstate[i].weight);
}

/* A move re-homes the user's live sessions unless re-homing is off or the
 * operator said --kick (the old way: they are closed). */
static void cmd_move_or_kick(struct sessiond *sd, struct evbuffer *out, const char *user,
                             const char *backend, const char *how) {
  char err[160];
  if (how && strcmp(how, "--kick")) {
    evbuffer_add_printf(out, "{\"error\":\"move USER BACKEND [--kick]\"}");
    return;
  }
  int rehome = backend && !how && rehome_on(sd);
  int n = backend ? seatstore_move(sd, user, backend, rehome, err, sizeof err)
                  : seatstore_kick(sd, user, err, sizeof err);
  if (n < 0) {
    evbuffer_add_printf(out, "{\"error\":");
    json_str(out, err);
    evbuffer_add_printf(out, "}");
  } else {
    evbuffer_add_printf(out, "{\"kicked\":%d,\"cluster\":%s,\"rehome\":%s}", n,
                        rds_is_up(sd->redis) ? "true" : "false", rehome ? "true" : "false");
  }
}

static void cmd_auth_stats(struct sessiond *sd, struct evbuffer *out) {
  const struct sessiond_counters *n = &sd->n;
  evbuffer_add_printf(out,
                      "{\"cache\":{\"entries\":%zu,\"memory_hits\":%llu,\"redis_hits\":%llu,"
                      "\"stale_hits\":%llu,\"negative_hits\":%llu,\"misses\":%llu,\"bad_seals\":%llu},"
                      "\"db_requests\":%llu,\"throttled\":%llu,\"shed\":%llu",
                      authcache_count(sd->cache), (unsigned long long)n->cache_memory_hits,
                      (unsigned long long)n->cache_redis_hits, (unsigned long long)n->cache_stale_hits,
                      (unsigned long long)n->cache_negative_hits, (unsigned long long)n->cache_misses,
                      (unsigned long long)n->cache_bad_seals,
                      (unsigned long long)n->db_requests, (unsigned long long)throttle_stats(sd->throttle)->refused,
                      (unsigned long long)n->shed);
  if (sd->ldap) {
    const struct ldapdb_stats *l = ldapdb_stats(sd->ldap);
    evbuffer_add_printf(out,
                        ",\"ldap\":{\"up\":%s,\"conns_ready\":%u,\"requests\":%llu,\"ok\":%llu,"
                        "\"invalid\":%llu,\"unavailable\":%llu,\"busy\":%llu,\"timeouts\":%llu,"
                        "\"inflight\":%u,\"queued\":%u,\"latency_us_sum\":%llu}",
                        ldapdb_up(sd->ldap) ? "true" : "false", l->conns_ready,
                        (unsigned long long)l->requests, (unsigned long long)l->ok,
                        (unsigned long long)l->invalid, (unsigned long long)l->unavailable,
                        (unsigned long long)l->busy, (unsigned long long)l->timeouts, l->inflight,
                        l->queued, (unsigned long long)l->latency_us_sum);
  }
  if (sd->redis) {
    const struct rds_stats *r = rds_stats(sd->redis);
    evbuffer_add_printf(out,
                        ",\"redis\":{\"up\":%s,\"commands\":%llu,\"timeouts\":%llu,"
                        "\"refused\":%llu,\"outages\":%llu,\"messages\":%llu}",
                        rds_is_up(sd->redis) ? "true" : "false", (unsigned long long)r->commands,
                        (unsigned long long)r->timeouts, (unsigned long long)r->refused,
                        (unsigned long long)r->outages, (unsigned long long)r->messages);
  }
  const struct throttle_stats *t = throttle_stats(sd->throttle);
  evbuffer_add_printf(out,
                      ",\"throttle\":{\"failures_counted\":%llu,\"failures_repeated\":%llu,"
                      "\"refused\":%llu,\"bans\":%llu,\"known_passed\":%llu}}",
                      (unsigned long long)t->failures_counted,
                      (unsigned long long)t->failures_repeated, (unsigned long long)t->refused,
                      (unsigned long long)t->bans, (unsigned long long)t->known_passed);
}

static void cmd_auth(struct sessiond *sd, struct evbuffer *out, const char *sub, const char *arg) {
  if (sub && !strcmp(sub, "stats")) {
    cmd_auth_stats(sd, out);
  } else if (sub && !strcmp(sub, "flush") && arg) {
    login_auth_flush(sd, strcmp(arg, "--all") ? arg : NULL);
    evbuffer_add_printf(out, "{\"flushed\":");
    json_str(out, arg);
    evbuffer_add_printf(out, ",\"cluster\":%s}", rds_is_up(sd->redis) ? "true" : "false");
  } else {
    evbuffer_add_printf(out, "{\"error\":\"usage: auth flush USER|--all, auth stats\"}");
  }
}

/* A user named on the admin socket is spelled as logins are (alice and
 * Alice are one seat); a name that does not normalize is taken as given. */
static const char *admin_user(const struct sessiond *sd, const char *name, char *buf, size_t cap) {
  return name && username_normalize(sd->cfg->username_format, name, buf, cap) >= 0 ? buf : name;
}

static void admin_command(struct sessiond *sd, char *line, struct evbuffer *out) {
  char *save = NULL, user_buf[USERNAME_MAX];
  char *cmd = strtok_r(line, " \t", &save);
  char *arg = strtok_r(NULL, " \t", &save);
  const char *user = admin_user(sd, arg, user_buf, sizeof user_buf);
  char *arg2 = strtok_r(NULL, " \t", &save);
  char *arg3 = strtok_r(NULL, " \t", &save);
  char *arg4 = strtok_r(NULL, " \t", &save);
  char *arg5 = strtok_r(NULL, " \t", &save);
  if (!cmd) evbuffer_add_printf(out, "{\"error\":\"empty command\"}");
  else if (!strcmp(cmd, "status")) cmd_status(sd, out);
  else if (!strcmp(cmd, "sessions") && arg && arg2 && !strcmp(arg, "--backend"))
    cmd_sessions_of_backend(sd, out, arg2);
  else if (!strcmp(cmd, "sessions")) cmd_sessions(sd, out, NULL);
  else if (!strcmp(cmd, "backends")) cmd_backends(sd, out);
  else if (!strcmp(cmd, "health")) cmd_health(sd, out);
  else if (!strcmp(cmd, "reload")) {
    /* The master checks the file, then re-reads it everywhere (SIGHUP). */
    int ok = kill(getppid(), SIGHUP) == 0;
    evbuffer_add_printf(out, ok ? "{\"reload\":\"requested\"}" : "{\"error\":\"cannot signal the master\"}");
  }
  else if (!strcmp(cmd, "who") && arg) cmd_sessions(sd, out, user);
  else if (!strcmp(cmd, "auth")) cmd_auth(sd, out, arg, arg2);
  else if (!strcmp(cmd, "kick") && arg) cmd_move_or_kick(sd, out, user, NULL, NULL);
  else if (!strcmp(cmd, "move") && arg && arg2) cmd_move_or_kick(sd, out, user, arg2, arg3);
  else if (!strcmp(cmd, "backend") && arg && arg2 && arg3 && !strcmp(arg2, "drain") &&
           !strcmp(arg3, "--migrate"))
    cmd_drain_migrate(sd, out, arg, arg4, arg5);
  else if (!strcmp(cmd, "backend")) cmd_backend(sd, out, arg, arg2, arg3);
  else {
    evbuffer_add_printf(out, "{\"error\":\"unknown command or missing argument\"}");
  }
  evbuffer_add(out, "\n", 1);
}

static void admin_close(struct bufferevent *bev) {
  bufferevent_free(bev);
  admin_conns--;
}

static void on_admin_read(struct bufferevent *bev, void *arg) {
  struct sessiond *sd = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  char *line;
  size_t n;
  while ((line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) {
    admin_command(sd, line, bufferevent_get_output(bev));
    free(line);
  }
  if (evbuffer_get_length(in) > ADMIN_MAX_LINE) admin_close(bev);
}

static void on_admin_event(struct bufferevent *bev, short what, void *arg) {
  (void)arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) admin_close(bev);
}

void admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg) {
  (void)l; (void)sa; (void)salen;
  struct sessiond *sd = arg;
  struct bufferevent *bev = bufferevent_socket_new(sd->base, fd, BEV_OPT_CLOSE_ON_FREE);
  if (admin_conns >= ADMIN_MAX_CONNS) {
    bufferevent_free(bev);
    return;
  }
  admin_conns++;
  bufferevent_setcb(bev, on_admin_read, NULL, on_admin_event, sd);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}
