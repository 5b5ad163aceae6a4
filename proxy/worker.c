/* A proxy worker process: accepts on the inherited listeners, applies the
 * connection limits, and starts each connection's first stage (proxied.h
 * or preauth.h). It sits on top of a connection's modules: it makes the
 * environment they read (env.h), the link to sessiond whose answers it
 * hands to the login (login.h), and the hooks that let go of a client.
 * Also the worker-wide tables (sessions by id, per-address counts), the
 * list of clients, signals and the configuration reload. */
#include "proxy/worker.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <event2/listener.h>

#include "common/htable.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/env.h"
#include "proxy/login.h"
#include "proxy/preauth.h"
#include "proxy/proxied.h"
#include "proxy/rehome.h"
#include "proxy/relay.h"
#include "proxy/sessiond_link.h"
#include "proxy/tickets.h"
#include "proxy/tls.h"
#include "proxy/tlsaccept.h"
#include "proxy/workerproc.h"

#define ACCEPT_PAUSE_MS 500     /* after EMFILE/ENFILE: breathe, then retry */
#define STOP_GRACE_MS 5000

struct ip_count;

struct worker {
  struct proxy_env env;              /* what every connection reads; first, see worker_of */
  int tickets_fd;                    /* the master's ticket-key pipe; -1: no tickets */
  struct event *tickets_ev;
  struct evconnlistener *listeners[CONFIG_MAX_LISTENERS];
  unsigned n_listeners;
  struct event *sig_term, *sig_hup, *accept_resume;

  struct client *clients;            /* all clients, newest first */
  unsigned n_clients;
  int stopping;

  struct htable by_sid;              /* clients by session id, through client->sid_node */
  struct htable ip_table;            /* per-address connection counts (struct ip_count) */
};

struct ip_count {
  struct htable_node node;
  uint8_t key[16];
  unsigned n;
};

struct retired_config {
  struct config *cfg;
  struct retired_config *next;
};
static struct retired_config *retired;

/* ---- tables --------------------------------------------------------- */

/* Session ids are random (session_id_new), so no client aims at a chain. */
static uint64_t sid_hash(uint64_t sid) {
  return htable_hash_bytes(&sid, sizeof sid);
}

static void sid_add(struct worker *w, struct client *c) {
  htable_insert(&w->by_sid, &c->sid_node, sid_hash(c->sid));
}

static void sid_del(struct worker *w, struct client *c) {
  htable_remove(&w->by_sid, &c->sid_node);
}

static struct client *sid_find(struct worker *w, uint64_t sid) {
  for (struct htable_node *n = htable_first_with(&w->by_sid, sid_hash(sid)); n;
       n = htable_next_same(n)) {
    struct client *c = HTABLE_ENTRY(n, struct client, sid_node);
    if (c->sid == sid) return c;
  }
  return NULL;
}

/* IPv4 and IPv4-mapped IPv6 count as the same address. */
static void ip_key(const struct netaddr *a, uint8_t key[16]) {
  memset(key, 0, 16);
  if (a->ss.ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
    key[10] = key[11] = 0xff;
    memcpy(key + 12, &s4->sin_addr, 4);
  } else if (a->ss.ss_family == AF_INET6) {
    memcpy(key, &((const struct sockaddr_in6 *)&a->ss)->sin6_addr, 16);
  }
}

static struct ip_count *ip_find(struct worker *w, const uint8_t key[16], uint64_t hash) {
  for (struct htable_node *n = htable_first_with(&w->ip_table, hash); n; n = htable_next_same(n)) {
    struct ip_count *ic = HTABLE_ENTRY(n, struct ip_count, node);
    if (memcmp(ic->key, key, 16) == 0) return ic;
  }
  return NULL;
}

static int ip_acquire(struct worker *w, const struct netaddr *a) {
  unsigned limit = w->env.cfg->max_connections_per_ip;
  if (limit == 0) return 0;
  uint8_t key[16];
  ip_key(a, key);
  uint64_t hash = htable_hash_bytes(key, 16);
  struct ip_count *ic = ip_find(w, key, hash);
  if (!ic) {
    ic = xcalloc(1, sizeof *ic);
    memcpy(ic->key, key, 16);
    htable_insert(&w->ip_table, &ic->node, hash);
  }
  if (ic->n >= limit) return -1;
  ic->n++;
  return 0;
}

static void ip_release(struct worker *w, const struct netaddr *a) {
  uint8_t key[16];
  ip_key(a, key);
  struct ip_count *ic = ip_find(w, key, htable_hash_bytes(key, 16));
  if (!ic) return;
  if (--ic->n == 0) {
    htable_remove(&w->ip_table, &ic->node);
    free(ic);
  }
}

/* ---- a connection's start and end ----------------------------------------- */

static struct worker *worker_of(const struct client *c) {
  return (struct worker *)c->env;   /* env is the worker's first member */
}

/* With the client's real address known: the per-address limit, then the
 * pre-auth stage. */
static void begin(struct client *c) {
  struct worker *w = worker_of(c);
  const struct config_listener *ls = c->listener;
  char peer[NETADDR_STRLEN], via[NETADDR_STRLEN] = "";
  if (c->via.len) netaddr_str(&c->via, via, sizeof via);
  log_event(LOG_LVL_INFO, "connect", "session=%s client=%s listener=%s%s%s", c->sid_hex,
            netaddr_str(&c->peer, peer, sizeof peer), ls->name, *via ? " via=" : "", via);

  if (ip_acquire(w, &c->peer) != 0) {
    if (ls->tls == TLS_IMPLICIT) {   /* no plaintext words on a TLS port */
      client_free(c, "max_connections_per_ip");
      return;
    }
    client_open_plain(c);
    client_close(c, "* BYE [UNAVAILABLE] Too many connections from your address\r\n",
                 "max_connections_per_ip");
    return;
  }
  c->counted = 1;
  preauth_start(c);
}

/* client_free: every stage lets go of c, then the worker forgets it. */
static void release(struct client *c, const char *reason) {
  struct worker *w = worker_of(c);
  login_release(c, reason);
  rehome_release(c);
  relay_free(c);
  tls_accept_free(c);
  proxied_free(c);
  preauth_free(c);
  sid_del(w, c);
  if (c->counted) ip_release(w, &c->peer);
  if (c->prev) c->prev->next = c->next;
  else w->clients = c->next;
  if (c->next) c->next->prev = c->prev;
  w->n_clients--;
  if (w->stopping && w->n_clients == 0) event_base_loopbreak(w->env.base);
}

static int backend_lost(struct client *c) {
  return rehome_begin(c, "backend_failed");
}

static const struct client_hooks client_hooks = {.release = release, .backend_lost = backend_lost};

static void worker_accept(struct worker *w, int fd, const struct config_listener *ls,
                          const struct sockaddr *sa, int salen) {
  struct client *c = client_new(&w->env, &client_hooks, fd, ls, sa, salen);
  c->next = w->clients;
  if (w->clients) w->clients->prev = c;
  w->clients = c;
  w->n_clients++;
  sid_add(w, c);
  if (ls->proxy_protocol) proxied_start(c, begin);
  else begin(c);
}

/* ---- the link's news ------------------------------------------------------ */

static void on_link_reply(void *arg, struct client *c, const struct proto_msg *m) {
  (void)arg;
  if (c->state == CS_REHOME) rehome_reply(c, m);
  else login_reply(c, m);
}

static int on_link_lost(void *arg, struct client *c) {
  (void)arg;
  if (c->state == CS_REHOME) {
    rehome_lost(c);
    return 0;
  }
  return login_lost(c);
}

/* A restarted sessiond learns the sessions that outlived it (a re-home
 * that its predecessor routed among them); then the logins that waited
 * for it go. */
static void on_link_up(void *arg) {
  struct worker *w = arg;
  log_event(LOG_LVL_INFO, "sessiond_up", "sessions=%u held_logins=%u", w->n_clients,
            logins_held(w->env.logins));
  for (struct client *c = w->clients; c; c = c->next)
    if (c->state == CS_RELAY || rehome_routed(c)) sessiond_link_session_up(w->env.link, c);
  logins_link_up(w->env.logins);
}

static void on_link_kick(void *arg, uint64_t sid, const char *reason, int rehome) {
  struct worker *w = arg;
  struct client *c = sid_find(w, sid);
  if (!c) return;
  if (rehome && c->state == CS_RELAY && rehome_begin(c, "moved")) return;
  log_event(LOG_LVL_INFO, "kick", "session=%s reason=%s", c->sid_hex, reason ? reason : "-");
  client_close(c, "* BYE [UNAVAILABLE] Session closed by the administrator.\r\n", "kicked");
}

/* ---- accepting ------------------------------------------------------ */

static const struct config_listener *listener_of(struct worker *w, struct evconnlistener *l) {
  for (unsigned i = 0; i < w->n_listeners; i++)
    if (w->listeners[i] == l) return &w->env.cfg->listeners[i];
  return NULL;
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg) {
  struct worker *w = arg;
  const struct config_listener *ls = listener_of(w, l);
  if (w->stopping || !ls) {
    close(fd);
    return;
  }
  if (w->n_clients >= w->env.cfg->max_connections) {
    /* Over the limit nobody is served well; say so in IMAP and go. */
    static const char bye[] = "* BYE [UNAVAILABLE] Too many connections, try again later\r\n";
    if (ls->tls != TLS_IMPLICIT && write(fd, bye, sizeof bye - 1) < 0) { /* best effort */ }
    close(fd);
    log_event(LOG_LVL_WARN, "refused", "reason=max_connections limit=%u",
              w->env.cfg->max_connections);
    return;
  }
  worker_accept(w, fd, ls, sa, salen);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  if (w->stopping) return;
  for (unsigned i = 0; i < w->n_listeners; i++) evconnlistener_enable(w->listeners[i]);
}

/* EMFILE/ENFILE: accepting again at once would spin; pause all listeners. */
static void on_accept_error(struct evconnlistener *l, void *arg) {
  (void)l;
  struct worker *w = arg;
  int e = EVUTIL_SOCKET_ERROR();
  log_event(LOG_LVL_WARN, "accept_error", "error=\"%s\" pause_ms=%d", strerror(e),
            ACCEPT_PAUSE_MS);
  for (unsigned i = 0; i < w->n_listeners; i++) evconnlistener_disable(w->listeners[i]);
  struct timeval tv;
  ms_to_timeval(ACCEPT_PAUSE_MS, &tv);
  evtimer_add(w->accept_resume, &tv);
}

static int worker_listen(struct worker *w) {
  const char *env = getenv("USHER_LISTEN_FDS");
  unsigned n = env ? (unsigned)atoi(env) : 0;
  if (n != w->env.cfg->n_listeners) {
    log_event(LOG_LVL_ERROR, "listen_fds", "inherited=%u configured=%u", n, w->env.cfg->n_listeners);
    return -1;
  }
  for (unsigned i = 0; i < n; i++) {
    int fd = 3 + (int)i;
    fd_set_nonblock_cloexec(fd);
    /* Backlog 0: the master has called listen() with [limits]
     * listen_backlog. A negative one makes libevent call listen(fd, 128)
     * again, and a reconnect storm then overflows the queue: the kernel
     * drops SYNs and each such client waits a second for its retry. */
    w->listeners[i] = evconnlistener_new(w->env.base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!w->listeners[i]) return -1;
    evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
  }
  w->n_listeners = n;
  return 0;
}

/* ---- TLS contexts and reload ---------------------------------------- */

/* Ticket keys from the master: one set at start, then one at each new
 * period (tickets.h). Records are small and written whole, so a read
 * returns whole ones; the last read is the newest. Returns 1 with new
 * keys, 0 when there is nothing to read yet, -1 when the pipe is done
 * (the master is gone) or broken. */
static int tickets_read(struct worker *w) {
  struct ticket_keys k[4];
  ssize_t n = read(w->tickets_fd, k, sizeof k);
  int rc = n < 0 && (errno == EAGAIN || errno == EINTR) ? 0 : -1;
  if (n > 0 && n % (ssize_t)sizeof k[0] == 0) {
    tickets_set(&k[n / (ssize_t)sizeof k[0] - 1]);
    rc = 1;
  }
  wipe(k, sizeof k);
  return rc;
}

static void on_tickets(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  if (tickets_read(w) < 0) event_del(w->tickets_ev);   /* at EOF it would wake us forever */
}

static void worker_tickets_start(struct worker *w) {
  const char *env = getenv("USHER_TICKET_KEY_FD");
  w->tickets_fd = env ? atoi(env) : -1;
  unsetenv("USHER_TICKET_KEY_FD");
  if (w->tickets_fd < 0) return;
  fd_set_nonblock_cloexec(w->tickets_fd);
  if (tickets_read(w) != 1)
    log_event(LOG_LVL_WARN, "ticket_keys", "error=\"none from the master\"");
  w->tickets_ev = event_new(w->env.base, w->tickets_fd, EV_READ | EV_PERSIST, on_tickets, w);
  event_add(w->tickets_ev, NULL);
}

static int worker_load_tls(struct worker *w, struct config *cfg) {
  char err[512];
  SSL_CTX *server = NULL;
  int need = 0;
  for (unsigned i = 0; i < cfg->n_listeners; i++) need |= cfg->listeners[i].tls != TLS_NONE;
  if (need && !(server = tls_server_ctx_new(cfg, err, sizeof err))) {
    log_event(LOG_LVL_ERROR, "tls", "error=\"%s\"", err);
    return -1;
  }
  SSL_CTX **backend = xcalloc(cfg->n_backends ? cfg->n_backends : 1, sizeof *backend);
  for (unsigned i = 0; i < cfg->n_backends; i++) {
    if (cfg->backends[i].tls == TLS_NONE) continue;
    backend[i] = tls_backend_ctx_new(&cfg->backends[i], err, sizeof err);
    if (!backend[i]) {
      log_event(LOG_LVL_ERROR, "tls", "backend=%s error=\"%s\"", cfg->backends[i].name, err);
      for (unsigned j = 0; j < i; j++) SSL_CTX_free(backend[j]);
      free(backend);
      SSL_CTX_free(server);
      return -1;
    }
  }
  /* Live connections hold their own references to the old contexts. */
  if (w->env.tls_backend)
    for (unsigned i = 0; i < w->env.cfg->n_backends; i++) SSL_CTX_free(w->env.tls_backend[i]);
  free(w->env.tls_backend);
  if (server && w->tickets_fd >= 0) tickets_install(server);
  else if (server) SSL_CTX_set_options(server, SSL_OP_NO_TICKET);
  SSL_CTX_free(w->env.tls_server);
  w->env.tls_server = server;
  w->env.tls_backend = backend;
  return 0;
}

static int keep_always(const char *name, void *arg) {
  (void)name; (void)arg;
  return 1;
}

static void on_sighup(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  char err[512];
  struct config *fresh = config_load(w->env.cfg->path, err, sizeof err);
  if (!fresh) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    return;
  }
  if (fresh->n_listeners != w->env.cfg->n_listeners) {
    log_event(LOG_LVL_WARN, "reload", "note=\"listener changes need a restart\"");
    config_free(fresh);
    return;
  }
  struct config *old = w->env.cfg;
  /* sessiond decides which removed backends still serve someone; here
   * they all stay known, so that its answers can always be followed. */
  config_carry_retired(fresh, old, keep_always, NULL);
  if (worker_load_tls(w, fresh) != 0) {
    config_free(fresh);
    return;
  }
  /* Clients point into the old configuration; keep it until exit. */
  struct retired_config *r = xmalloc(sizeof *r);
  r->cfg = old;
  r->next = retired;
  retired = r;
  w->env.cfg = fresh;
  log_set_level(fresh->log_level);
  workerproc_scheduling(fresh);
  log_event(LOG_LVL_INFO, "reload", "backends=%u", fresh->n_backends);
}

/* Tells clients BYE; with spare_relayed, sessions in the relay stay. */
static void worker_close_all(struct worker *w, int spare_relayed) {
  for (struct client *c = w->clients, *next; c; c = next) {
    next = c->next;
    if (spare_relayed && c->state == CS_RELAY) continue;
    client_close(c, "* BYE [UNAVAILABLE] Server shutting down\r\n", "shutdown");
  }
}

/* The drain is over: whoever is still here hears BYE; past the grace
 * after that, the loop ends and what is left is freed. */
static void on_stop_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  event_base_loopbreak(((struct worker *)arg)->env.base);
}

static void on_drain_end(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  log_event(LOG_LVL_INFO, "drain_end", "clients=%u", w->n_clients);
  worker_close_all(w, 0);
  if (w->n_clients == 0) {
    event_base_loopbreak(w->env.base);
    return;
  }
  struct timeval tv;
  ms_to_timeval(STOP_GRACE_MS, &tv);
  event_base_once(w->env.base, -1, EV_TIMEOUT, on_stop_timeout, w, &tv);
}

/* SIGTERM: accept nothing more; clients that have not reached a backend
 * are told BYE now, relayed sessions may finish what they are doing for
 * [usher] drain_time and then hear BYE too. The worker exits as soon as
 * its last client is gone. */
static void on_sigterm(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  if (w->stopping) return;
  w->stopping = 1;
  w->env.stopping = 1;
  for (unsigned i = 0; i < w->n_listeners; i++) {
    evconnlistener_free(w->listeners[i]);
    w->listeners[i] = NULL;
  }
  log_event(LOG_LVL_INFO, "stopping", "clients=%u drain_ms=%llu", w->n_clients,
            (unsigned long long)w->env.cfg->drain_ms);
  worker_close_all(w, 1);
  if (w->n_clients == 0) {
    event_base_loopbreak(w->env.base);
    return;
  }
  struct timeval tv;
  ms_to_timeval(w->env.cfg->drain_ms, &tv);
  event_base_once(w->env.base, -1, EV_TIMEOUT, on_drain_end, w, &tv);
}

int worker_main(const char *config_path, unsigned id) {
  char err[512], proc[32];
  snprintf(proc, sizeof proc, "worker%u", id);
  struct config *cfg = config_load(config_path, err, sizeof err);
  if (!cfg) {
    fprintf(stderr, "usher %s: %s\n", proc, err);
    return 1;
  }
  log_init(proc, cfg->log_level, cfg->syslog);
  prctl(PR_SET_PDEATHSIG, SIGTERM);   /* never outlive the master */
  signal(SIGPIPE, SIG_IGN);
  workerproc_scheduling(cfg);
  workerproc_malloc();

  struct worker *w = xcalloc(1, sizeof *w);
  w->env.worker_id = id;
  w->env.cfg = cfg;
  const struct sessiond_link_handlers link_handlers = {
    .arg = w, .reply = on_link_reply, .lost = on_link_lost, .up = on_link_up,
    .kick = on_link_kick};
  /* The changelist folds an event added and removed in one loop turn
   * (a write queued and flushed at once) into no epoll_ctl at all. */
  struct event_config *ec = event_config_new();
  event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  w->env.base = event_base_new_with_config(ec);
  event_config_free(ec);
  htable_init(&w->by_sid, 1024);
  htable_init(&w->ip_table, 1024);
  struct timeval idle;
  ms_to_timeval(cfg->idle_timeout_ms, &idle);
  w->env.idle_tv = event_base_init_common_timeout(w->env.base, &idle);
  w->accept_resume = evtimer_new(w->env.base, on_accept_resume, w);
  worker_tickets_start(w);
  if (worker_load_tls(w, cfg) != 0 || worker_listen(w) != 0) return 1;
  if (workerproc_drop_privileges(cfg) != 0) return 1;
  preauth_setup(login_begin);
  w->env.logins = logins_new(&w->env);
  w->env.link = sessiond_link_new(&w->env, &link_handlers);

  w->sig_term = evsignal_new(w->env.base, SIGTERM, on_sigterm, w);
  w->sig_hup = evsignal_new(w->env.base, SIGHUP, on_sighup, w);
  struct event *sig_int = evsignal_new(w->env.base, SIGINT, on_sigterm, w);
  event_add(w->sig_term, NULL);
  event_add(w->sig_hup, NULL);
  event_add(sig_int, NULL);

  log_event(LOG_LVL_INFO, "worker_start", "listeners=%u", w->n_listeners);
  event_base_dispatch(w->env.base);

  while (w->clients) client_free(w->clients, "shutdown");
  sessiond_link_free(w->env.link);
  logins_free(w->env.logins);
  event_free(w->sig_term);
  event_free(w->sig_hup);
  event_free(sig_int);
  event_free(w->accept_resume);
  if (w->tickets_ev) event_free(w->tickets_ev);
  if (w->tickets_fd >= 0) close(w->tickets_fd);
  tickets_forget();
  for (unsigned i = 0; i < w->n_listeners; i++)
    if (w->listeners[i]) evconnlistener_free(w->listeners[i]);
  for (unsigned i = 0; i < w->env.cfg->n_backends; i++) SSL_CTX_free(w->env.tls_backend[i]);
  free(w->env.tls_backend);
  SSL_CTX_free(w->env.tls_server);
  struct htable_iter it;   /* every client is gone: no count is left, but be sure */
  for (struct htable_node *n = htable_iter_first(&w->ip_table, &it); n;
       n = htable_iter_next(&w->ip_table, &it))
    free(HTABLE_ENTRY(n, struct ip_count, node));
  htable_destroy(&w->ip_table);
  htable_destroy(&w->by_sid);
  event_base_free(w->env.base);
  while (retired) {
    struct retired_config *n = retired->next;
    config_free(retired->cfg);
    free(retired);
    retired = n;
  }
  config_free(w->env.cfg);
  free(w);
  log_event(LOG_LVL_INFO, "worker_stop", "ok=1");
  return 0;
}
