/* The metrics endpoint: GET /metrics answers the Prometheus text format
 * (version 0.0.4) from sessiond's counters. Everything is computed on
 * request from state sessiond keeps anyway; nothing on the login path pays
 * for it.
 *
 * It lives in sessiond, the process that holds the secrets and answers
 * every login, because that is where the numbers are: moving it into a
 * process of its own would need a new protocol to copy them out, and that
 * was more than this change could carry. So the endpoint is built to cost
 * sessiond little whatever arrives on it, and the HTTP it speaks is the
 * least a scraper needs, in this file, rather than libevent's evhttp
 * (whose connections cannot be counted or given a total deadline in
 * libevent 2.1, Debian 12's):
 *
 *  - at most [metrics] max_connections connections at once. One more
 *    closes the oldest, at once and without other work (as Dovecot's login
 *    processes close their oldest client when full): a flood of idle
 *    connections cannot keep a scraper out, whose connection lives for
 *    milliseconds, and sessiond's descriptors and loop stay for logins;
 *  - each connection gets [metrics] timeout for its whole life, request
 *    and answer: a slow client (one header byte a second, "slowloris") is
 *    closed as surely as an idle one;
 *  - the request's header block is at most [metrics] max_header_size;
 *    there is no body, one request per connection (Connection: close);
 *  - GET and HEAD of /metrics only; anything else is answered 4xx;
 *  - a render, O(sessions x backends), serves every scrape for [metrics]
 *    render_interval, so scraping in a loop costs at most one a period.
 *
 * What remains: the request parser (the request line, and a search for the
 * end of the headers) runs in the process with the secrets, and anyone who
 * can reach the endpoint can keep a legitimate scraper's connection from
 * lasting long by opening max_connections connections faster than it
 * sends its request, and can read what the metrics say. Bind it to
 * loopback or a management network. */
#include "sessiond/metrics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "common/log.h"
#include "common/util.h"
#include "auth/ldapdb.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/redis.h"
#include "sessiond/seats.h"
#include "sessiond/throttle.h"

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

/* How the workers' re-homes ended (rehome_stats.h): resumed, or ended by
 * reason, and the time to resume. */
static void render_rehome_done(struct evbuffer *b, const struct rehome_stats *s) {
  char l[80];
  counter(b, "usher_rehome_sessions_total", "Re-homed sessions, by outcome (and why they ended).",
          "{outcome=\"resumed\"}", s->resumed);
  for (unsigned i = 0; i < s->n_reasons; i++) {
    snprintf(l, sizeof l, "{outcome=\"ended\",reason=\"%s\"}", s->reasons[i].name);
    counter(b, "usher_rehome_sessions_total", NULL, l, s->reasons[i].n);
  }
  counter(b, "usher_rehome_sessions_total", NULL, "{outcome=\"ended\",reason=\"other\"}",
          s->ended_other);
  histogram(b, "usher_rehome_resume_seconds", "Time from a backend's loss to the relay going on.",
            rehome_stats_bounds_us, s->resume_buckets, REHOME_STATS_BUCKETS, s->resume_us_sum);
}

static void render(struct sessiond *sd, struct evbuffer *b) {
  const struct sessiond_counters *n = &sd->n;
  char l[160];
  counter(b, "usher_logins_total", "Logins answered, by result.", "{result=\"ok\"}", n->logins_ok);
  counter(b, "usher_logins_total", NULL, "{result=\"failed\"}", n->logins_failed);
  counter(b, "usher_logins_total", NULL, "{result=\"unavailable\"}", n->logins_unavailable);
  counter(b, "usher_logins_total", NULL, "{result=\"throttled\"}",
          throttle_stats(sd->throttle)->refused);
  counter(b, "usher_logins_known_address_passed_total",
          "Logins let through a ban because the address is known for the user.", NULL,
          throttle_stats(sd->throttle)->known_passed);
  counter(b, "usher_logins_shed_total", "Logins refused by admission control.", NULL, n->shed);
  counter(b, "usher_auth_cache_hits_total", "Auth cache hits, by layer.", "{layer=\"memory\"}",
          n->cache_memory_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"redis\"}", n->cache_redis_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"stale\"}", n->cache_stale_hits);
  counter(b, "usher_auth_cache_hits_total", NULL, "{layer=\"negative\"}", n->cache_negative_hits);
  counter(b, "usher_auth_cache_bad_seals_total",
          "Redis cache entries ignored because their seal did not match.", NULL, n->cache_bad_seals);
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
  counter(b, "usher_rehome_total", "Live re-homing requests of sessions, by outcome.",
          "{result=\"requested\"}", n->rehome_requests);
  counter(b, "usher_rehome_total", NULL, "{result=\"routed\"}", n->rehome_routed);
  counter(b, "usher_rehome_total", NULL, "{result=\"refused\"}", n->rehome_refused);
  counter(b, "usher_rehome_total", NULL, "{result=\"unavailable\"}", n->rehome_unavailable);
  render_rehome_done(b, &n->rehome_done);
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


/* ---- the server ------------------------------------------------------ */

#define ACCEPT_PAUSE_MS 1000       /* after EMFILE: accepting again at once would spin */
#define BUSY_LOG_INTERVAL_MS 60000 /* "metrics_busy" at most this often */

struct mconn {
  struct metrics *m;
  struct bufferevent *bev;
  struct event *deadline;          /* [metrics] timeout from accept, for everything */
  int answered;                    /* the answer is written (draining, then lingering) */
  size_t searched;                 /* bytes of input known to hold no end of headers */
  struct mconn *prev, *next;       /* m's connections, oldest first */
};

struct metrics {
  struct sessiond *sd;
  struct evconnlistener *listener;
  struct event *accept_resume;
  struct mconn *oldest, *newest;
  unsigned n_conns;
  uint64_t evicted, timed_out, last_busy_log_ms;   /* before an answer */
  struct evbuffer *rendered;       /* the last render, reused for render_interval */
  uint64_t rendered_ms;
};

static void mconn_close(struct mconn *c) {
  struct metrics *m = c->m;
  if (c->prev) c->prev->next = c->next; else m->oldest = c->next;
  if (c->next) c->next->prev = c->prev; else m->newest = c->prev;
  event_free(c->deadline);
  /* Closed here, not by bufferevent_free: libevent 2.1 frees a bufferevent
   * later in the loop turn, and a burst of accepts would hold every evicted
   * socket open until then, past max_connections. */
  evutil_socket_t fd = bufferevent_getfd(c->bev);
  bufferevent_free(c->bev);
  close(fd);
  m->n_conns--;
  free(c);
}

static void render_self(const struct metrics *m, struct evbuffer *b) {
  counter(b, "usher_metrics_connections_closed_total",
          "Metrics connections closed without an answer, by reason.", "{reason=\"evicted\"}",
          m->evicted);
  counter(b, "usher_metrics_connections_closed_total", NULL, "{reason=\"timeout\"}",
          m->timed_out);
  gauge(b, "usher_metrics_connections", "Connections open on the metrics endpoint.", m->n_conns);
}

static void on_conn_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev; (void)what;   /* EOF or an error: nobody left to answer */
  mconn_close(arg);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct mconn *c = arg;
  if (!c->answered) c->m->timed_out++;
  mconn_close(c);
}

/* After the answer, what the client still sends is read and dropped until
 * it closes (or the deadline): closing with unread bytes would send a reset
 * that can destroy the answer before the client reads it. */
static void on_linger_read(struct bufferevent *bev, void *arg) {
  (void)arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  evbuffer_drain(in, evbuffer_get_length(in));
}

/* The whole answer has gone out: one request per connection. */
static void on_drained(struct bufferevent *bev, void *arg) {
  shutdown(bufferevent_getfd(bev), SHUT_WR);
  bufferevent_setcb(bev, on_linger_read, NULL, on_conn_event, arg);
  on_linger_read(bev, arg);
  bufferevent_enable(bev, EV_READ);
}

static void answer(struct mconn *c, int status, const char *reason, const char *extra_header,
                   struct evbuffer *body, int head_only) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n%s\r\n", status, reason,
                      status == 200 ? "text/plain; version=0.0.4" : "text/plain",
                      evbuffer_get_length(body), extra_header ? extra_header : "");
  if (!head_only) evbuffer_add_buffer(out, body);
  c->answered = 1;
  bufferevent_disable(c->bev, EV_READ);
  bufferevent_setcb(c->bev, NULL, on_drained, on_conn_event, c);
}

static void answer_error(struct mconn *c, int status, const char *reason,
                         const char *extra_header) {
  struct evbuffer *body = evbuffer_new();
  evbuffer_add_printf(body, "%s\n", reason);
  answer(c, status, reason, extra_header, body, 0);
  evbuffer_free(body);
}

/* The length of the header block at the start of the input (request line
 * and headers, up to the empty line), or 0 while it has not all arrived.
 * Each byte is looked at about once, however slowly the bytes come. */
static size_t header_block_length(struct mconn *c) {
  struct evbuffer *in = bufferevent_get_input(c->bev);
  struct evbuffer_ptr from;
  if (evbuffer_ptr_set(in, &from, c->searched, EVBUFFER_PTR_SET) != 0) return 0;
  struct evbuffer_ptr crlf = evbuffer_search(in, "\r\n\r\n", 4, &from);
  struct evbuffer_ptr lf = evbuffer_search(in, "\n\n", 2, &from);
  if (crlf.pos >= 0 && (lf.pos < 0 || crlf.pos < lf.pos)) return (size_t)crlf.pos + 4;
  if (lf.pos >= 0) return (size_t)lf.pos + 2;
  size_t have = evbuffer_get_length(in);
  c->searched = have > 3 ? have - 3 : 0;   /* an end may straddle the next read */
  return 0;
}

/* "GET /metrics HTTP/1.1": its method and target, cut in place; 0 when the
 * line is not an HTTP/1 request line. */
static int parse_request_line(char *line, const char **method, const char **target) {
  char *sp1 = strchr(line, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp2 || sp2 == sp1 + 1 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) return 0;
  *sp1 = *sp2 = '\0';
  *method = line;
  *target = sp1 + 1;
  return 1;
}

static int is_metrics_path(const char *target) {
  return !strncmp(target, "/metrics", 8) && (target[8] == '\0' || target[8] == '?');
}

/* The metrics into body, rendered at most once per [metrics] render_interval:
 * a client that scrapes in a loop costs sessiond no more than that. */
static void fresh_render(struct metrics *m, struct evbuffer *body) {
  uint64_t now = now_ms();
  if (!m->rendered || now - m->rendered_ms >= m->sd->cfg->metrics_render_interval_ms) {
    if (m->rendered) evbuffer_free(m->rendered);
    m->rendered = evbuffer_new();
    render(m->sd, m->rendered);
    render_self(m, m->rendered);
    m->rendered_ms = now;
  }
  size_t len = evbuffer_get_length(m->rendered);
  evbuffer_add(body, evbuffer_pullup(m->rendered, -1), len);
}

static void answer_request(struct mconn *c, char *line) {
  const char *method, *target;
  if (!parse_request_line(line, &method, &target)) {
    answer_error(c, 400, "Bad Request", NULL);
    return;
  }
  int head = !strcmp(method, "HEAD");
  if (!head && strcmp(method, "GET") != 0) {
    answer_error(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n");
    return;
  }
  if (!is_metrics_path(target)) {
    answer_error(c, 404, "Not Found", NULL);
    return;
  }
  struct evbuffer *body = evbuffer_new();
  fresh_render(c->m, body);
  answer(c, 200, "OK", NULL, body, head);
  evbuffer_free(body);
}

static void on_conn_read(struct bufferevent *bev, void *arg) {
  struct mconn *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t max = c->m->sd->cfg->metrics_max_header_size;
  size_t len = header_block_length(c);
  if (len > max || (len == 0 && evbuffer_get_length(in) > max)) {
    answer_error(c, 431, "Request Header Fields Too Large", NULL);
    return;
  }
  if (len == 0) return;   /* more to come, within the deadline */
  char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
  if (line) answer_request(c, line);
  else answer_error(c, 400, "Bad Request", NULL);
  free(line);
}

static void log_busy(struct metrics *m) {
  uint64_t now = now_ms();
  if (m->last_busy_log_ms && now - m->last_busy_log_ms < BUSY_LOG_INTERVAL_MS) return;
  m->last_busy_log_ms = now;
  log_event(LOG_LVL_WARN, "metrics_busy", "max_connections=%u evicted=%llu",
            m->sd->cfg->metrics_max_connections, (unsigned long long)m->evicted);
}

/* Room for one more connection: the oldest goes. A scraper's connection
 * lives milliseconds, so a flood has to be very fast to evict it. */
static void make_room(struct metrics *m) {
  log_busy(m);
  while (m->n_conns >= m->sd->cfg->metrics_max_connections && m->oldest) {
    if (!m->oldest->answered) m->evicted++;
    mconn_close(m->oldest);
  }
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg) {
  (void)l; (void)sa; (void)salen;
  struct metrics *m = arg;
  if (m->n_conns >= m->sd->cfg->metrics_max_connections) make_room(m);
  struct event_base *base = m->sd->base;
  struct bufferevent *bev = bufferevent_socket_new(base, fd, 0);   /* closed by mconn_close */
  if (!bev) {
    close(fd);
    return;
  }
  struct mconn *c = xcalloc(1, sizeof *c);
  c->m = m;
  c->bev = bev;
  c->deadline = evtimer_new(base, on_deadline, c);
  c->prev = m->newest;
  if (m->newest) m->newest->next = c; else m->oldest = c;
  m->newest = c;
  m->n_conns++;
  struct timeval tv;
  ms_to_timeval(m->sd->cfg->metrics_timeout_ms, &tv);
  evtimer_add(c->deadline, &tv);
  /* Reading stops just past the limit: a header block that long is refused. */
  bufferevent_setwatermark(c->bev, EV_READ, 0, m->sd->cfg->metrics_max_header_size + 1);
  bufferevent_setcb(c->bev, on_conn_read, NULL, on_conn_event, c);
  bufferevent_enable(c->bev, EV_READ);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  evconnlistener_enable(((struct metrics *)arg)->listener);
}

/* EMFILE/ENFILE: accepting again at once would spin the loop logins need. */
static void on_accept_error(struct evconnlistener *l, void *arg) {
  struct metrics *m = arg;
  log_event(LOG_LVL_WARN, "metrics_accept_error", "error=\"%s\" pause_ms=%d",
            strerror(EVUTIL_SOCKET_ERROR()), ACCEPT_PAUSE_MS);
  evconnlistener_disable(l);
  struct timeval tv;
  ms_to_timeval(ACCEPT_PAUSE_MS, &tv);
  evtimer_add(m->accept_resume, &tv);
}

static int listen_tcp(const struct netaddr *addr) {
  int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (fd < 0 || bind(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 ||
      listen(fd, 128) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

int metrics_start(struct sessiond *sd) {
  if (sd->cfg->metrics.len == 0) return 0;
  char addr[NETADDR_STRLEN];
  netaddr_str(&sd->cfg->metrics, addr, sizeof addr);
  struct metrics *m = xcalloc(1, sizeof *m);
  m->sd = sd;
  int fd = listen_tcp(&sd->cfg->metrics);
  if (fd >= 0)   /* backlog 0: listening already */
    m->listener = evconnlistener_new(sd->base, on_accept, m, LEV_OPT_CLOSE_ON_FREE, 0, fd);
  if (!m->listener) {
    log_event(LOG_LVL_ERROR, "metrics", "address=%s error=\"cannot listen\"", addr);
    if (fd >= 0) close(fd);
    free(m);
    return -1;
  }
  evconnlistener_set_error_cb(m->listener, on_accept_error);
  m->accept_resume = evtimer_new(sd->base, on_accept_resume, m);
  sd->metrics = m;
  log_event(LOG_LVL_INFO, "metrics", "address=%s max_connections=%u timeout_ms=%llu", addr,
            sd->cfg->metrics_max_connections, (unsigned long long)sd->cfg->metrics_timeout_ms);
  return 0;
}

void metrics_stop(struct sessiond *sd) {
  struct metrics *m = sd->metrics;
  if (!m) return;
  evconnlistener_free(m->listener);
  while (m->oldest) mconn_close(m->oldest);
  event_free(m->accept_resume);
  if (m->rendered) evbuffer_free(m->rendered);
  free(m);
  sd->metrics = NULL;
}
