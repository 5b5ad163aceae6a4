/* The metrics endpoint: GET /metrics answers the Prometheus text format
 * (version 0.0.4) from sessiond's counters. Everything is computed on
 * request from state sessiond keeps anyway; nothing on the login path pays
 * for it. Other paths get 404. */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/state.h"

static void counter(struct evbuffer *b, const char *name, const char *help, const char *labels,
                    uint64_t v) {
  if (help) evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
  evbuffer_add_printf(b, "%s%s %llu\n", name, labels ? labels : "", (unsigned long long)v);
}

static void gauge(struct evbuffer *b, const char *name, const char *help, uint64_t v) {
  evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s %llu\n", name, help, name, name,
                      (unsigned long long)v);
}

/* A histogram from per-bucket counts (the last bucket: above every bound). */
static void histogram(struct evbuffer *b, const char *name, const char *help,
                      const uint64_t *bounds_us, const uint64_t *counts, unsigned n,
                      uint64_t sum_us) {
  evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
  uint64_t cum = 0;
  for (unsigned i = 0; i < n; i++) {
    cum += counts[i];
    evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds_us[i] / 1e6,
                        (unsigned long long)cum);
  }
  cum += counts[n];
  evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                      (unsigned long long)cum, name, sum_us / 1e6, name, (unsigned long long)cum);
}

struct per_backend { const char *name; unsigned n; };

static void count_sessions(struct session *s, void *arg) {
  struct per_backend *p = arg;
  if (!strcmp(s->backend, p->name)) p->n++;
}

static void render(struct sessiond *sd, struct evbuffer *b) {
  const struct sessiond_counters *n = &sd->n;
  char l[160];
  counter(b, "usher_logins_total", "Logins answered, by result.", "{result=\"ok\"}", n->logins_ok);
  counter(b, "usher_logins_total", NULL, "{result=\"failed\"}", n->logins_failed);
  counter(b, "usher_logins_total", NULL, "{result=\"unavailable\"}", n->logins_unavailable);
  counter(b, "usher_logins_total", NULL, "{result=\"throttled\"}",
          throttle_stats(sd->throttle)->refused);
  counter(b, "usher_logins_shed_total", "Logins refused by admission control.", NULL, n->shed);
  counter(b, "usher_auth_cache_hits_total", "Auth cache hits, by layer.", "{layer=\"memory\"}",
          n->cache_memory_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"redis\"}", n->cache_redis_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"stale\"}", n->cache_stale_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"negative\"}", n->cache_negative_hits);
  counter(b, "usher_auth_cache_misses_total", "Logins that went to the password database.", NULL,
          n->cache_misses);
  counter(b, "usher_seats_total", "Seat decisions, by kind.", "{kind=\"created\"}", n->seats_created);
  counter(b, "usher_seats_total", NULL, "{kind=\"reused\"}", n->seats_reused);
  counter(b, "usher_seats_total", NULL, "{kind=\"moved\"}", n->seats_moved);
  counter(b, "usher_bytes_relayed_total", "Bytes relayed by ended sessions.",
          "{direction=\"client_to_backend\"}", n->bytes_in);
  counter(b, "usher_bytes_relayed_total", NULL, "{direction=\"backend_to_client\"}", n->bytes_out);
  counter(b, "usher_backend_failures_total", "Backend connects or logins that failed.", NULL,
          n->backend_failures);
  counter(b, "usher_kicks_total", "Sessions closed by kicks and moves.", NULL, n->kicks);
  counter(b, "usher_worker_messages_refused_total",
          "Worker messages sessiond did not believe (a forged session, another's session, "
          "no worker).", NULL, n->worker_refused);
  uint64_t restarts = n->worker_hellos > sd->cfg->workers ? n->worker_hellos - sd->cfg->workers : 0;
  counter(b, "usher_worker_restarts_total", "Worker (re)connections beyond the first of each.",
          NULL, restarts);
  gauge(b, "usher_sessions", "Sessions on this proxy.", sessions_count(sd->seats));
  gauge(b, "usher_seats", "Seats held in this proxy's memory.", seats_count(sd->seats));
  gauge(b, "usher_workers", "Workers connected to sessiond.", sd->n_wconns);
  evbuffer_add_printf(b, "# HELP usher_backend_sessions Sessions per backend.\n"
                         "# TYPE usher_backend_sessions gauge\n");
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    struct per_backend p = {sd->cfg->backends[i].name, 0};
    sessions_foreach(sd->seats, count_sessions, &p);
    evbuffer_add_printf(b, "usher_backend_sessions{backend=\"%s\"} %u\n", p.name, p.n);
  }
  evbuffer_add_printf(b, "# HELP usher_backend_up 1 when the backend may take users.\n"
                         "# TYPE usher_backend_up gauge\n");
  for (unsigned i = 0; i < sd->cfg->n_backends; i++) {
    snprintf(l, sizeof l, "{backend=\"%s\",state=\"%s\"}", sd->cfg->backends[i].name,
             backend_state_name(sd, (int)i, now_ms()));
    evbuffer_add_printf(b, "usher_backend_up%s %d\n", l, backend_usable(sd, (int)i, now_ms()));
  }
  evbuffer_add_printf(b, "# HELP usher_backend_retry_seconds How long a failed connect's penalty "
                         "still excludes the backend (health checks may lift it sooner).\n"
                         "# TYPE usher_backend_retry_seconds gauge\n");
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    evbuffer_add_printf(b, "usher_backend_retry_seconds{backend=\"%s\"} %.3f\n",
                        sd->cfg->backends[i].name,
                        backend_retry_left_ms(sd, (int)i, now_ms()) / 1000.0);
  if (sd->ldap) {
    const struct ldapdb_stats *s = ldapdb_stats(sd->ldap);
    counter(b, "usher_ldap_requests_total", "LDAP logins, by result.", "{result=\"ok\"}", s->ok);
    counter(b, "usher_ldap_requests_total", NULL, "{result=\"invalid\"}", s->invalid);
    counter(b, "usher_ldap_requests_total", NULL, "{result=\"unavailable\"}", s->unavailable);
    counter(b, "usher_ldap_requests_total", NULL, "{result=\"busy\"}", s->busy);
    histogram(b, "usher_ldap_latency_seconds", "LDAP login latency.", ldapdb_latency_bounds_us,
              s->latency_buckets, LDAPDB_LATENCY_BUCKETS, s->latency_us_sum);
    gauge(b, "usher_ldap_up", "LDAP connections ready.", s->conns_ready);
  }
  if (sd->redis) {
    const struct rds_stats *s = rds_stats(sd->redis);
    gauge(b, "usher_redis_up", "1 when Redis answers.", (uint64_t)rds_is_up(sd->redis));
    counter(b, "usher_redis_timeouts_total", "Redis commands that timed out.", NULL, s->timeouts);
    counter(b, "usher_redis_outages_total", "Times Redis became unreachable.", NULL, s->outages);
    histogram(b, "usher_redis_latency_seconds", "Redis command latency.", rds_latency_bounds_us,
              s->latency_buckets, 7, s->latency_us_sum);
  }
}

static void on_request(struct evhttp_request *req, void *arg) {
  struct sessiond *sd = arg;
  const char *uri = evhttp_request_get_uri(req);
  if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || strncmp(uri, "/metrics", 8) ||
      (uri[8] && uri[8] != '?')) {
    evhttp_send_error(req, 404, "Not Found");
    return;
  }
  struct evbuffer *b = evbuffer_new();
  render(sd, b);
  evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                    "text/plain; version=0.0.4");
  evhttp_send_reply(req, 200, "OK", b);
  evbuffer_free(b);
}

int metrics_start(struct sessiond *sd) {
  if (sd->cfg->metrics.len == 0) return 0;
  char addr[NETADDR_STRLEN];
  netaddr_str(&sd->cfg->metrics, addr, sizeof addr);
  sd->metrics = evhttp_new(sd->base);
  int fd = socket(sd->cfg->metrics.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (struct sockaddr *)&sd->cfg->metrics.ss, sd->cfg->metrics.len) != 0 ||
      listen(fd, 64) != 0 || !evhttp_accept_socket_with_handle(sd->metrics, fd)) {
    log_event(LOG_LVL_ERROR, "metrics", "address=%s error=\"cannot listen\"", addr);
    if (fd >= 0) close(fd);
    evhttp_free(sd->metrics);
    sd->metrics = NULL;
    return -1;
  }
  evhttp_set_gencb(sd->metrics, on_request, sd);
  evhttp_set_timeout(sd->metrics, 10);
  evhttp_set_max_headers_size(sd->metrics, 8192);   /* a scrape is a short GET */
  evhttp_set_max_body_size(sd->metrics, 0);
  evhttp_set_allowed_methods(sd->metrics, EVHTTP_REQ_GET);
  log_event(LOG_LVL_INFO, "metrics", "address=%s", addr);
  return 0;
}

void metrics_stop(struct sessiond *sd) {
  if (sd->metrics) evhttp_free(sd->metrics);
  sd->metrics = NULL;
}
