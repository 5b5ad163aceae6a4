/* sessiond: the process. Loads the configuration and the users file, opens
 * the worker and admin sockets, runs the loop, reloads on SIGHUP, and sweeps
 * expired seats and recovered backends on a timer. */
#include "sessiond/sessiond.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/state.h"

#define SWEEP_INTERVAL_MS 5000

int sessiond_backend_index(const struct sessiond *sd, const char *name) {
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    if (!strcmp(sd->cfg->backends[i].name, name)) return (int)i;
  return -1;
}

void sessiond_backend_mark_down(struct sessiond *sd, int idx, const char *why) {
  uint64_t now = now_ms();
  if (sd->down_until[idx] <= now)
    log_event(LOG_LVL_WARN, "backend_down", "backend=%s reason=%s retry_ms=%llu",
              sd->cfg->backends[idx].name, why, (unsigned long long)sd->cfg->backend_retry_ms);
  sd->down_until[idx] = now + sd->cfg->backend_retry_ms;
}

static struct evconnlistener *listen_unix(struct sessiond *sd, const char *name,
                                          evconnlistener_cb cb) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s/%s", sd->cfg->runtime_dir, name);
  unlink(sun.sun_path);   /* a stale socket from a previous run */
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  mode_t old = umask(0177);   /* 0600 from birth, no window */
  int ok = fd >= 0 && bind(fd, (struct sockaddr *)&sun, sizeof sun) == 0 && listen(fd, 512) == 0;
  umask(old);
  if (!ok) {
    log_event(LOG_LVL_ERROR, "listen_failed", "path=%s error=\"%s\"", sun.sun_path, strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  return evconnlistener_new(sd->base, cb, sd, LEV_OPT_CLOSE_ON_FREE, -1, fd);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond *sd = arg;
  uint64_t now = now_ms();
  size_t freed = seats_sweep(sd->seats, now);
  if (freed) log_event(LOG_LVL_DEBUG, "seats_expired", "count=%zu", freed);
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    if (sd->down_until[i] && sd->down_until[i] <= now) {
      log_event(LOG_LVL_INFO, "backend_retry", "backend=%s", sd->cfg->backends[i].name);
      sd->down_until[i] = 0;
    }
}

/* New configuration and users file, or neither. Backend down-marks follow
 * their backends by name. */
static void on_sighup(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond *sd = arg;
  char err[512];
  struct config *cfg = config_load(sd->cfg->path, err, sizeof err);
  if (!cfg) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    return;
  }
  struct userfile *uf = userfile_load(cfg->users_file, err, sizeof err);
  if (!uf) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    config_free(cfg);
    return;
  }
  uint64_t down[CONFIG_MAX_BACKENDS] = {0};
  for (unsigned i = 0; i < cfg->n_backends; i++) {
    int old = sessiond_backend_index(sd, cfg->backends[i].name);
    if (old >= 0) down[i] = sd->down_until[old];
  }
  memcpy(sd->down_until, down, sizeof down);
  config_free(sd->cfg);
  userfile_free(sd->uf);
  sd->cfg = cfg;
  sd->uf = uf;
  log_set_level(cfg->log_level);
  log_event(LOG_LVL_INFO, "reload", "backends=%u users=%zu", cfg->n_backends, userfile_count(uf));
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  event_base_loopbreak(((struct sessiond *)arg)->base);
}

static int sessiond_open(struct sessiond *sd, const char *config_path) {
  char err[512];
  sd->cfg = config_load(config_path, err, sizeof err);
  if (!sd->cfg) {
    fprintf(stderr, "usher sessiond: %s\n", err);
    return -1;
  }
  log_init("sessiond", sd->cfg->log_level, sd->cfg->syslog);
  sd->uf = userfile_load(sd->cfg->users_file, err, sizeof err);
  if (!sd->uf) {
    log_event(LOG_LVL_ERROR, "users_file", "error=\"%s\"", err);
    return -1;
  }
  if (mkdir(sd->cfg->runtime_dir, 0700) != 0 && errno != EEXIST) {
    log_event(LOG_LVL_ERROR, "runtime_dir", "path=%s error=\"%s\"", sd->cfg->runtime_dir,
              strerror(errno));
    return -1;
  }
  passwd_dummy_hash(NULL);   /* made now, not on the first unknown user's login */
  sd->base = event_base_new();
  sd->seats = seats_new();
  sd->pool = authpool_new(sd->base, sd->cfg->auth_threads, 4096);
  sd->start_ms = now_ms();
  sd->worker_listener = listen_unix(sd, "sessiond.sock", workers_accept);
  sd->admin_listener = listen_unix(sd, "admin.sock", admin_accept);
  return sd->pool && sd->worker_listener && sd->admin_listener ? 0 : -1;
}

int sessiond_main(const char *config_path) {
  struct sessiond sd = {0};
  prctl(PR_SET_PDEATHSIG, SIGTERM);   /* never outlive the master */
  prctl(PR_SET_DUMPABLE, 0);          /* no core dumps: this process sees passwords */
  signal(SIGPIPE, SIG_IGN);
  int rc = 1;
  if (sessiond_open(&sd, config_path) == 0) {
    struct event *ev_term = evsignal_new(sd.base, SIGTERM, on_sigterm, &sd);
    struct event *ev_int = evsignal_new(sd.base, SIGINT, on_sigterm, &sd);
    struct event *ev_hup = evsignal_new(sd.base, SIGHUP, on_sighup, &sd);
    struct event *sweep = event_new(sd.base, -1, EV_PERSIST, on_sweep, &sd);
    struct timeval tv;
    ms_to_timeval(SWEEP_INTERVAL_MS, &tv);
    event_add(ev_term, NULL);
    event_add(ev_int, NULL);
    event_add(ev_hup, NULL);
    event_add(sweep, &tv);
    log_event(LOG_LVL_INFO, "sessiond_start", "users=%zu backends=%u", userfile_count(sd.uf),
              sd.cfg->n_backends);
    event_base_dispatch(sd.base);
    event_free(ev_term);
    event_free(ev_int);
    event_free(ev_hup);
    event_free(sweep);
    rc = 0;
  }
  if (sd.worker_listener) evconnlistener_free(sd.worker_listener);
  if (sd.admin_listener) evconnlistener_free(sd.admin_listener);
  if (sd.base) workers_close_all(&sd);
  authpool_free(sd.pool);
  seats_free(sd.seats);
  userfile_free(sd.uf);
  if (sd.base) event_base_free(sd.base);
  if (sd.cfg) log_event(LOG_LVL_INFO, "sessiond_stop", "ok=%d", rc == 0);
  config_free(sd.cfg);
  return rc;
}
