/* A proxy worker process: accepts on the inherited listeners, applies the
 * connection limits, and hands each connection to client.c. Also the
 * worker-wide tables (requests, sessions, per-address counts), signals and
 * the configuration reload. */
#include "proxy/worker.h"

#include <errno.h>
#include <malloc.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/sessiond_link.h"
#include "proxy/tickets.h"
#include "proxy/tls.h"

#define IP_TABLE_SIZE 4096
#define ACCEPT_PAUSE_MS 500     /* after EMFILE/ENFILE: breathe, then retry */
#define STOP_GRACE_MS 5000

struct ip_count {
  uint8_t key[16];
  unsigned n;
  struct ip_count *next;
};

struct retired_config {
  struct config *cfg;
  struct retired_config *next;
};
static struct retired_config *retired;

/* ---- tables --------------------------------------------------------- */

static unsigned bucket_of(uint64_t key) {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return (unsigned)(key % WORKER_TABLE_SIZE);
}

void worker_req_add(struct worker *w, struct client *c) {
  do c->req = ++w->next_req; while (c->req == 0 || worker_req_find(w, c->req));
  unsigned b = bucket_of(c->req);
  c->req_next = w->by_req[b];
  w->by_req[b] = c;
}

void worker_req_del(struct worker *w, struct client *c) {
  if (!c->req) return;
  for (struct client **p = &w->by_req[bucket_of(c->req)]; *p; p = &(*p)->req_next)
    if (*p == c) {
      *p = c->req_next;
      break;
    }
  c->req = 0;
  c->req_next = NULL;
}

struct client *worker_req_find(struct worker *w, uint32_t req) {
  for (struct client *c = w->by_req[bucket_of(req)]; c; c = c->req_next)
    if (c->req == req) return c;
  return NULL;
}

void worker_sid_add(struct worker *w, struct client *c) {
  unsigned b = bucket_of(c->sid);
  c->sid_next = w->by_sid[b];
  w->by_sid[b] = c;
}

void worker_sid_del(struct worker *w, struct client *c) {
  for (struct client **p = &w->by_sid[bucket_of(c->sid)]; *p; p = &(*p)->sid_next)
    if (*p == c) {
      *p = c->sid_next;
      return;
    }
}

struct client *worker_sid_find(struct worker *w, uint64_t sid) {
  for (struct client *c = w->by_sid[bucket_of(sid)]; c; c = c->sid_next)
    if (c->sid == sid) return c;
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

static struct ip_count **ip_slot(struct worker *w, const uint8_t key[16]) {
  uint64_t h;
  memcpy(&h, key + 8, 8);
  struct ip_count **p = &w->ip_table[bucket_of(h) % IP_TABLE_SIZE];
  while (*p && memcmp((*p)->key, key, 16) != 0) p = &(*p)->next;
  return p;
}

int worker_ip_acquire(struct worker *w, const struct netaddr *a) {
  unsigned limit = w->cfg->max_connections_per_ip;
  if (limit == 0) return 0;
  uint8_t key[16];
  ip_key(a, key);
  struct ip_count **p = ip_slot(w, key);
  if (!*p) {
    *p = xcalloc(1, sizeof **p);
    memcpy((*p)->key, key, 16);
  }
  if ((*p)->n >= limit) return -1;
  (*p)->n++;
  return 0;
}

void worker_ip_release(struct worker *w, const struct netaddr *a) {
  uint8_t key[16];
  ip_key(a, key);
  struct ip_count **p = ip_slot(w, key);
  if (!*p) return;
  if (--(*p)->n == 0) {
    struct ip_count *dead = *p;
    *p = dead->next;
    free(dead);
  }
}

/* ---- accepting ------------------------------------------------------ */

static const struct config_listener *listener_of(struct worker *w, struct evconnlistener *l) {
  for (unsigned i = 0; i < w->n_listeners; i++)
    if (w->listeners[i] == l) return &w->cfg->listeners[i];
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
  if (w->n_clients >= w->cfg->max_connections) {
    /* Over the limit nobody is served well; say so in IMAP and go. */
    static const char bye[] = "* BYE [UNAVAILABLE] Too many connections, try again later\r\n";
    if (ls->tls != TLS_IMPLICIT && write(fd, bye, sizeof bye - 1) < 0) { /* best effort */ }
    close(fd);
    log_event(LOG_LVL_WARN, "refused", "reason=max_connections limit=%u",
              w->cfg->max_connections);
    return;
  }
  client_accept(w, fd, ls, sa, salen);
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
  if (n != w->cfg->n_listeners) {
    log_event(LOG_LVL_ERROR, "listen_fds", "inherited=%u configured=%u", n, w->cfg->n_listeners);
    return -1;
  }
  for (unsigned i = 0; i < n; i++) {
    int fd = 3 + (int)i;
    fd_set_nonblock_cloexec(fd);
    /* Backlog 0: the master has called listen() with [limits]
     * listen_backlog. A negative one makes libevent call listen(fd, 128)
     * again, and a reconnect storm then overflows the queue: the kernel
     * drops SYNs and each such client waits a second for its retry. */
    w->listeners[i] = evconnlistener_new(w->base, on_accept, w, LEV_OPT_CLOSE_ON_FREE, 0, fd);
    if (!w->listeners[i]) return -1;
    evconnlistener_set_error_cb(w->listeners[i], on_accept_error);
  }
  w->n_listeners = n;
  return 0;
}

/* ---- privileges --------------------------------------------------------- */

/* After the listeners, TLS keys and ticket keys are in hand, a worker needs
 * no privilege: it becomes [usher] user, for good (a root worker that
 * could get root back would defeat the point), and never dumps core (it
 * holds a password for the length of a login). */
static int worker_drop_privileges(const struct config *cfg) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0);
  if (!cfg->user) return 0;
  struct passwd *pw = getpwnam(cfg->user);
  if (!pw) {
    log_event(LOG_LVL_ERROR, "privileges", "user=%s error=\"no such user\"", cfg->user);
    return -1;
  }
  if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 ||
      (pw->pw_uid != 0 && setuid(0) == 0)) {
    log_event(LOG_LVL_ERROR, "privileges", "user=%s error=\"%s\"", cfg->user, strerror(errno));
    return -1;
  }
  log_event(LOG_LVL_DEBUG, "privileges", "user=%s uid=%d", cfg->user, (int)pw->pw_uid);
  return 0;
}

/* ---- scheduling ---------------------------------------------------------- */

/* Workers run as SCHED_BATCH unless the operator says otherwise. A worker
 * wakes for every few packets and does tens to hundreds of microseconds of
 * work each time (a LOGIN line, a TLS handshake's flight). Under the
 * normal policy each such wake-up may preempt whatever runs on that core:
 * the other workers, sessiond, whatever else the machine does. Every
 * preemption is a context switch and cold caches for both, and with as
 * many workers as cores it happens on every login. A batch task does not
 * preempt on wake-up; it runs when the core is free or at the next
 * scheduler tick. That costs a woken worker up to about a millisecond of
 * wait, and only when every core is busy; it saved about 12% of the CPU
 * per TLS login and per plaintext login with 2 workers here (README,
 * Performance). It needs no privilege and leaves the nice level alone; a
 * reload may switch it. */
static void worker_set_scheduling(const struct config *cfg) {
  struct sched_param none = {0};
  if (sched_setscheduler(0, cfg->worker_batch ? SCHED_BATCH : SCHED_OTHER, &none) != 0)
    log_event(LOG_LVL_WARN, "scheduling", "policy=%s error=\"%s\"",
              cfg->worker_batch ? "batch" : "normal", strerror(errno));
}

/* ---- memory --------------------------------------------------------------- */

/* The relay reads up to 64 KiB at a time into libevent chains of 128 KiB,
 * and up to 256 KiB wait per direction. With glibc's defaults each such
 * chain is above the 128 KiB mmap threshold, or, once glibc has raised
 * that, sits at the top of a heap that free() trims back as soon as 256
 * KiB are free there: either way the next read faults its pages in again.
 * On a VM a page fault is dear (about 20 us here): a FETCH through a fresh
 * worker took 93,000 faults and 1.9 CPU seconds per GiB, against 400 and
 * 0.5-0.6 with the thresholds below. A worker keeps up to 8 MiB of freed heap
 * for the next burst; big allocations (none on our paths) still get their
 * own mapping. */
static void worker_malloc_setup(void) {
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
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
  w->tickets_ev = event_new(w->base, w->tickets_fd, EV_READ | EV_PERSIST, on_tickets, w);
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
  if (w->tls_backend)
    for (unsigned i = 0; i < w->cfg->n_backends; i++) SSL_CTX_free(w->tls_backend[i]);
  free(w->tls_backend);
  if (server && w->tickets_fd >= 0) tickets_install(server);
  else if (server) SSL_CTX_set_options(server, SSL_OP_NO_TICKET);
  SSL_CTX_free(w->tls_server);
  w->tls_server = server;
  w->tls_backend = backend;
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
  struct config *fresh = config_load(w->cfg->path, err, sizeof err);
  if (!fresh) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    return;
  }
  if (fresh->n_listeners != w->cfg->n_listeners) {
    log_event(LOG_LVL_WARN, "reload", "note=\"listener changes need a restart\"");
    config_free(fresh);
    return;
  }
  struct config *old = w->cfg;
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
  w->cfg = fresh;
  log_set_level(fresh->log_level);
  worker_set_scheduling(fresh);
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
  event_base_loopbreak(((struct worker *)arg)->base);
}

static void on_drain_end(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct worker *w = arg;
  log_event(LOG_LVL_INFO, "drain_end", "clients=%u", w->n_clients);
  worker_close_all(w, 0);
  if (w->n_clients == 0) {
    event_base_loopbreak(w->base);
    return;
  }
  struct timeval tv;
  ms_to_timeval(STOP_GRACE_MS, &tv);
  event_base_once(w->base, -1, EV_TIMEOUT, on_stop_timeout, w, &tv);
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
  for (unsigned i = 0; i < w->n_listeners; i++) {
    evconnlistener_free(w->listeners[i]);
    w->listeners[i] = NULL;
  }
  log_event(LOG_LVL_INFO, "stopping", "clients=%u drain_ms=%llu", w->n_clients,
            (unsigned long long)w->cfg->drain_ms);
  worker_close_all(w, 1);
  if (w->n_clients == 0) {
    event_base_loopbreak(w->base);
    return;
  }
  struct timeval tv;
  ms_to_timeval(w->cfg->drain_ms, &tv);
  event_base_once(w->base, -1, EV_TIMEOUT, on_drain_end, w, &tv);
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
  worker_set_scheduling(cfg);
  worker_malloc_setup();

  struct worker *w = xcalloc(1, sizeof *w);
  w->id = id;
  w->cfg = cfg;
  /* The changelist folds an event added and removed in one loop turn
   * (a write queued and flushed at once) into no epoll_ctl at all. */
  struct event_config *ec = event_config_new();
  event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  w->base = event_base_new_with_config(ec);
  event_config_free(ec);
  w->ip_table = xcalloc(IP_TABLE_SIZE, sizeof *w->ip_table);
  struct timeval idle;
  ms_to_timeval(cfg->idle_timeout_ms, &idle);
  w->idle_tv = event_base_init_common_timeout(w->base, &idle);
  w->accept_resume = evtimer_new(w->base, on_accept_resume, w);
  worker_tickets_start(w);
  if (worker_load_tls(w, cfg) != 0 || worker_listen(w) != 0) return 1;
  if (worker_drop_privileges(cfg) != 0) return 1;
  w->link = sessiond_link_new(w);

  w->sig_term = evsignal_new(w->base, SIGTERM, on_sigterm, w);
  w->sig_hup = evsignal_new(w->base, SIGHUP, on_sighup, w);
  struct event *sig_int = evsignal_new(w->base, SIGINT, on_sigterm, w);
  event_add(w->sig_term, NULL);
  event_add(w->sig_hup, NULL);
  event_add(sig_int, NULL);

  log_event(LOG_LVL_INFO, "worker_start", "listeners=%u", w->n_listeners);
  event_base_dispatch(w->base);

  while (w->clients) client_free(w->clients, "shutdown");
  sessiond_link_free(w->link);
  event_free(w->sig_term);
  event_free(w->sig_hup);
  event_free(sig_int);
  event_free(w->accept_resume);
  if (w->tickets_ev) event_free(w->tickets_ev);
  if (w->tickets_fd >= 0) close(w->tickets_fd);
  tickets_forget();
  for (unsigned i = 0; i < w->n_listeners; i++)
    if (w->listeners[i]) evconnlistener_free(w->listeners[i]);
  for (unsigned i = 0; i < w->cfg->n_backends; i++) SSL_CTX_free(w->tls_backend[i]);
  free(w->tls_backend);
  SSL_CTX_free(w->tls_server);
  for (unsigned i = 0; i < IP_TABLE_SIZE; i++)
    while (w->ip_table[i]) {
      struct ip_count *n = w->ip_table[i]->next;
      free(w->ip_table[i]);
      w->ip_table[i] = n;
    }
  free(w->ip_table);
  event_base_free(w->base);
  while (retired) {
    struct retired_config *n = retired->next;
    config_free(retired->cfg);
    free(retired);
    retired = n;
  }
  config_free(w->cfg);
  free(w);
  log_event(LOG_LVL_INFO, "worker_stop", "ok=1");
  return 0;
}
