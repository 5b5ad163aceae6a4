/* The master: listeners, children, signals. Children are this same binary,
 * exec'd with --role so each starts with a clean address space (nothing of
 * the master's memory leaks into a worker). Listening sockets are handed to
 * workers as fds 3..3+n-1; USHER_LISTEN_FDS says how many. */
#include "master/master.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/sha.h>

#include "common/log.h"
#include "common/proto.h"
#include "proxy/tickets.h"
#include "common/util.h"

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define STABLE_AFTER_MS 10000   /* a child that lived this long restarts fast */
#define STOP_GRACE_MS 10000     /* past the drain time: then SIGKILL */

struct child {
  struct master *m;
  const char *role;             /* "sessiond" or "worker" */
  unsigned id;
  pid_t pid;                    /* 0 while not running */
  int keys_fd;                  /* workers: the pipe their ticket keys go down; -1 */
  uint64_t started_ms;
  uint64_t backoff_ms;
  struct event *restart;
};

struct master {
  struct config *cfg;
  const char *config_path;
  struct event_base *base;
  int listen_fds[CONFIG_MAX_LISTENERS];
  unsigned n_listen;
  struct child *children;       /* [0] is sessiond, then the workers */
  unsigned n_children;
  int stopping;
  struct event *kill_timer;
  /* The secret the ticket keys derive from (tickets.h), and the timer
   * that sends the workers new keys at each period's start. */
  unsigned char ticket_secret[TICKET_SECRET_LEN];
  struct event *ticket_timer;
  /* The key sessiond seals its LOGIN_REPLY OKs with (a ticket per
   * session, common/proto.h). It is made here, where it outlives sessiond:
   * a restarted sessiond gets the same key and can check the tickets that
   * workers present when they re-register their sessions. No worker ever
   * holds it: it goes down a pipe to sessiond alone. */
  unsigned char session_key[PROTO_SESSION_KEY_LEN];
};

static int listener_bind(const struct config_listener *ls, unsigned backlog) {
  int fd = socket(ls->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  /* Accepted sockets inherit it on Linux: no setsockopt per connection. */
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (ls->addr.ss.ss_family == AF_INET6)
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (const struct sockaddr *)&ls->addr.ss, ls->addr.len) != 0 ||
      listen(fd, (int)backlog) != 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

/* In the child, before exec: listeners to fds 3.., the key pipe (ticket
 * keys for a worker, the session key for sessiond) after them, its number
 * in keys_env; everything else closed by CLOEXEC. Two passes so that no
 * dup2 overwrites a listener not yet moved. */
static void child_setup_fds(struct master *m, int pass_listeners, int keys_fd,
                            const char *keys_env) {
  int high[CONFIG_MAX_LISTENERS + 1];
  unsigned n = pass_listeners ? m->n_listen : 0;
  for (unsigned i = 0; i < n; i++) high[i] = fcntl(m->listen_fds[i], F_DUPFD, 100);
  if (keys_fd >= 0) high[n] = fcntl(keys_fd, F_DUPFD, 100);
  for (unsigned i = 0; i < n + (keys_fd >= 0); i++) {
    dup2(high[i], 3 + (int)i);   /* dup2 clears FD_CLOEXEC on the copy */
    close(high[i]);
  }
  char count[16];
  snprintf(count, sizeof count, "%u", n);
  setenv("USHER_LISTEN_FDS", count, 1);
  if (keys_fd >= 0) {
    snprintf(count, sizeof count, "%u", 3 + n);
    setenv(keys_env, count, 1);
  }
}

static uint64_t ticket_period(const struct master *m) {
  return wall_ms() / m->cfg->tls_ticket_lifetime_ms;
}

/* The keys of this period down one worker's pipe. A worker that does not
 * read (stuck, dying) just misses this round: the pipe never blocks us. */
static void ticket_keys_send(struct master *m, struct child *ch) {
  if (ch->keys_fd < 0) return;
  struct ticket_keys k;
  tickets_derive(m->ticket_secret, ticket_period(m), &k);
  if (write(ch->keys_fd, &k, sizeof k) != (ssize_t)sizeof k)
    log_event(LOG_LVL_WARN, "ticket_keys", "worker=%u error=\"%s\"", ch->id,
              strerror(errno));
  wipe(&k, sizeof k);
}

static void ticket_timer_arm(struct master *m) {
  uint64_t life = m->cfg->tls_ticket_lifetime_ms;
  struct timeval tv;
  ms_to_timeval(life - wall_ms() % life + 10, &tv);
  evtimer_add(m->ticket_timer, &tv);
}

static void on_ticket_period(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct master *m = arg;
  for (unsigned i = 1; i < m->n_children; i++) ticket_keys_send(m, &m->children[i]);
  log_event(LOG_LVL_DEBUG, "ticket_keys", "period=%llu", (unsigned long long)ticket_period(m));
  ticket_timer_arm(m);
}

/* A worker's pipe for ticket keys, the first set already in it. */
static int ticket_pipe(struct master *m, struct child *ch) {
  int p[2];
  if (!m->cfg->tls_ticket_lifetime_ms || pipe2(p, O_CLOEXEC) != 0) return -1;
  ch->keys_fd = p[1];
  ticket_keys_send(m, ch);
  fcntl(p[1], F_SETFL, O_NONBLOCK);
  return p[0];
}

/* sessiond's pipe: the session key waits in it, the write end is closed
 * at once (sessiond reads it once, at start). */
static int session_key_pipe(struct master *m) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return -1;
  ssize_t n = write(p[1], m->session_key, sizeof m->session_key);
  close(p[1]);
  if (n != (ssize_t)sizeof m->session_key) {
    close(p[0]);
    return -1;
  }
  return p[0];
}

static void child_spawn(struct child *ch) {
  struct master *m = ch->m;
  int is_worker = !strcmp(ch->role, "worker");
  int keys_rd = is_worker ? ticket_pipe(m, ch) : session_key_pipe(m);
  pid_t pid = fork();
  if (pid < 0) {
    log_event(LOG_LVL_ERROR, "spawn_failed", "role=%s id=%u errno=%d", ch->role, ch->id, errno);
    if (keys_rd >= 0) close(keys_rd);
    if (ch->keys_fd >= 0) close(ch->keys_fd);
    ch->keys_fd = -1;
    return;
  }
  if (pid == 0) {
    child_setup_fds(m, is_worker, keys_rd,
                    is_worker ? "USHER_TICKET_KEY_FD" : "USHER_SESSION_KEY_FD");
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    char id[16];
    snprintf(id, sizeof id, "%u", ch->id);
    char *argv[] = {"usher", "--role", (char *)ch->role, "--id", id,
                    "-c", (char *)m->config_path, NULL};
    execv("/proc/self/exe", argv);
    fprintf(stderr, "usher: exec failed: %s\n", strerror(errno));
    _exit(127);
  }
  if (keys_rd >= 0) close(keys_rd);
  ch->pid = pid;
  ch->started_ms = now_ms();
  log_event(LOG_LVL_INFO, "child_start", "role=%s id=%u pid=%d", ch->role, ch->id, (int)pid);
}

static void on_restart(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct child *ch = arg;
  if (!ch->m->stopping) child_spawn(ch);
}

/* Stopping goes in order: the workers first (they drain their sessions and
 * report each end to sessiond, which detaches the seats), then sessiond,
 * then the master itself. */
static void stop_progress(struct master *m) {
  for (unsigned i = 1; i < m->n_children; i++)
    if (m->children[i].pid) return;
  struct child *sessiond = &m->children[0];
  if (sessiond->pid) {
    kill(sessiond->pid, SIGTERM);
    return;
  }
  event_base_loopbreak(m->base);
}

static void child_exited(struct master *m, struct child *ch, int status) {
  uint64_t lived = now_ms() - ch->started_ms;
  ch->pid = 0;
  if (ch->keys_fd >= 0) close(ch->keys_fd);
  ch->keys_fd = -1;
  if (WIFSIGNALED(status))
    log_event(m->stopping ? LOG_LVL_INFO : LOG_LVL_ERROR, "child_exit",
              "role=%s id=%u signal=%d lived_ms=%llu", ch->role, ch->id, WTERMSIG(status),
              (unsigned long long)lived);
  else
    log_event(m->stopping ? LOG_LVL_INFO : LOG_LVL_ERROR, "child_exit",
              "role=%s id=%u status=%d lived_ms=%llu", ch->role, ch->id, WEXITSTATUS(status),
              (unsigned long long)lived);
  if (m->stopping) {
    stop_progress(m);
    return;
  }
  /* A child that keeps dying right away must not become a fork loop. */
  ch->backoff_ms = lived >= STABLE_AFTER_MS ? BACKOFF_MIN_MS
                   : ch->backoff_ms ? (ch->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                                          : ch->backoff_ms * 2)
                                    : BACKOFF_MIN_MS;
  struct timeval tv;
  ms_to_timeval(ch->backoff_ms, &tv);
  evtimer_add(ch->restart, &tv);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct master *m = arg;
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
    for (unsigned i = 0; i < m->n_children; i++)
      if (m->children[i].pid == pid) child_exited(m, &m->children[i], status);
}

static void signal_children(struct master *m, int sig) {
  for (unsigned i = 0; i < m->n_children; i++)
    if (m->children[i].pid) kill(m->children[i].pid, sig);
}

static void on_kill_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct master *m = arg;
  log_event(LOG_LVL_WARN, "stop_timeout", "action=sigkill");
  signal_children(m, SIGKILL);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct master *m = arg;
  if (m->stopping) return;
  m->stopping = 1;
  log_event(LOG_LVL_INFO, "stopping", "children=%u", m->n_children);
  for (unsigned i = 0; i < m->n_children; i++) evtimer_del(m->children[i].restart);
  /* Closed here too, so that new clients are refused at once rather than
   * left in a backlog nobody accepts from; they go to a twin instead. */
  for (unsigned i = 0; i < m->n_listen; i++) close(m->listen_fds[i]);
  m->n_listen = 0;
  for (unsigned i = 1; i < m->n_children; i++)
    if (m->children[i].pid) kill(m->children[i].pid, SIGTERM);
  stop_progress(m);
  struct timeval tv;
  ms_to_timeval(m->cfg->drain_ms + STOP_GRACE_MS, &tv);
  evtimer_add(m->kill_timer, &tv);
}

static void on_sighup(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct master *m = arg;
  char err[512];
  struct config *fresh = config_load(m->config_path, err, sizeof err);
  if (!fresh) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    return;
  }
  m->cfg->drain_ms = fresh->drain_ms;   /* the one setting the master itself uses */
  config_free(fresh);
  log_event(LOG_LVL_INFO, "reload", "path=%s", m->config_path);
  signal_children(m, SIGHUP);
}

static int master_bind_all(struct master *m) {
  for (unsigned i = 0; i < m->cfg->n_listeners; i++) {
    const struct config_listener *ls = &m->cfg->listeners[i];
    char a[NETADDR_STRLEN];
    int fd = listener_bind(ls, m->cfg->listen_backlog);
    if (fd < 0) {
      log_event(LOG_LVL_ERROR, "listen_failed", "listener=%s address=%s error=\"%s\"", ls->name,
                netaddr_str(&ls->addr, a, sizeof a), strerror(errno));
      return -1;
    }
    m->listen_fds[m->n_listen++] = fd;
    log_event(LOG_LVL_INFO, "listen", "listener=%s address=%s tls=%s", ls->name,
              netaddr_str(&ls->addr, a, sizeof a), tls_mode_name(ls->tls));
  }
  return 0;
}

/* From [tls] ticket_key_file (shared by a failover pair or a cluster:
 * any proxy then resumes the others' sessions), or random for this run. */
static int ticket_secret_load(struct master *m) {
  const char *path = m->cfg->tls_ticket_key_file;
  if (!path) {
    random_bytes(m->ticket_secret, sizeof m->ticket_secret);
    return 0;
  }
  char *text = secret_file_read("ticket key", path);
  if (!text) return -1;
  if (strlen(text) < 16) {
    log_event(LOG_LVL_ERROR, "secret_file", "what=ticket key path=%s error=\"shorter than 16 characters\"",
              path);
    wipe_free_str(text);
    return -1;
  }
  SHA256((const unsigned char *)text, strlen(text), m->ticket_secret);
  wipe_free_str(text);
  return 0;
}

int master_main(struct config *cfg, const char *config_path) {
  struct master m = {.cfg = cfg, .config_path = config_path};
  log_init("master", cfg->log_level, cfg->syslog);
  signal(SIGPIPE, SIG_IGN);

  if (mkdir(cfg->runtime_dir, 0700) != 0 && errno != EEXIST) {
    log_event(LOG_LVL_ERROR, "runtime_dir", "path=%s error=\"%s\"", cfg->runtime_dir,
              strerror(errno));
    return 1;
  }
  if (master_bind_all(&m) != 0) return 1;

  if (ticket_secret_load(&m) != 0) return 1;
  random_bytes(m.session_key, sizeof m.session_key);
  m.base = event_base_new();
  m.n_children = 1 + cfg->workers;
  m.children = xcalloc(m.n_children, sizeof *m.children);
  for (unsigned i = 0; i < m.n_children; i++) {
    struct child *ch = &m.children[i];
    ch->m = &m;
    ch->role = i == 0 ? "sessiond" : "worker";
    ch->id = i;
    ch->keys_fd = -1;
    ch->restart = evtimer_new(m.base, on_restart, ch);
  }
  struct event *ev_chld = evsignal_new(m.base, SIGCHLD, on_sigchld, &m);
  struct event *ev_term = evsignal_new(m.base, SIGTERM, on_sigterm, &m);
  struct event *ev_int = evsignal_new(m.base, SIGINT, on_sigterm, &m);
  struct event *ev_hup = evsignal_new(m.base, SIGHUP, on_sighup, &m);
  m.kill_timer = evtimer_new(m.base, on_kill_timer, &m);
  m.ticket_timer = evtimer_new(m.base, on_ticket_period, &m);
  if (cfg->tls_ticket_lifetime_ms) ticket_timer_arm(&m);
  event_add(ev_chld, NULL);
  event_add(ev_term, NULL);
  event_add(ev_int, NULL);
  event_add(ev_hup, NULL);

  log_event(LOG_LVL_INFO, "start", "version=0.1.0 workers=%u config=%s", cfg->workers,
            config_path);
  for (unsigned i = 0; i < m.n_children; i++) child_spawn(&m.children[i]);

  event_base_dispatch(m.base);

  for (unsigned i = 0; i < m.n_children; i++) event_free(m.children[i].restart);
  event_free(ev_chld);
  event_free(ev_term);
  event_free(ev_int);
  event_free(ev_hup);
  event_free(m.kill_timer);
  event_free(m.ticket_timer);
  for (unsigned i = 0; i < m.n_children; i++)
    if (m.children[i].keys_fd >= 0) close(m.children[i].keys_fd);
  wipe(m.ticket_secret, sizeof m.ticket_secret);
  wipe(m.session_key, sizeof m.session_key);
  event_base_free(m.base);
  for (unsigned i = 0; i < m.n_listen; i++) close(m.listen_fds[i]);
  free(m.children);
  log_event(LOG_LVL_INFO, "stopped", "ok=1");
  config_free(cfg);
  return 0;
}
