/* sessiond: the process. Loads the configuration and the users file, opens
 * the worker and admin sockets, runs the loop, reloads on SIGHUP, and sweeps
 * expired seats and recovered backends on a timer. */
#include "sessiond/sessiond.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "common/log.h"
#include "sessiond/peers.h"
#include "common/username.h"
#include "common/util.h"
#include "auth/authcache.h"
#include "auth/ldapdb.h"
#include "auth/userfile.h"
#include "sessiond/admin.h"
#include "sessiond/authpool.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/events.h"
#include "sessiond/metrics.h"
#include "sessiond/redis.h"
#include "sessiond/drain.h"
#include "sessiond/evacuate.h"
#include "sessiond/rehome.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/throttle.h"
#include "sessiond/workers.h"

#define SWEEP_INTERVAL_MS 5000

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
  return evconnlistener_new(sd->base, cb, sd, LEV_OPT_CLOSE_ON_FREE, 0, fd);   /* listening already */
}

static void on_sweep(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond *sd = arg;
  uint64_t now = now_ms();
  size_t freed = seats_sweep(sd->seats, now);
  if (freed) log_event(LOG_LVL_DEBUG, "seats_expired", "count=%zu", freed);
  for (unsigned i = 0; i < sd->cfg->n_backends; i++)
    if (sd->bstate[i].down_until && sd->bstate[i].down_until <= now) {
      log_event(LOG_LVL_INFO, "backend_retry", "backend=%s", sd->cfg->backends[i].name);
      sd->bstate[i].down_until = 0;
    }
}

struct session_probe {
  const char *backend;
  int found;
};

static void probe_session(struct session *s, void *arg) {
  struct session_probe *p = arg;
  if (!strcmp(s->backend, p->backend)) p->found = 1;
}

/* A backend removed from the file stays, retired, while sessions live there. */
static int backend_has_sessions(const char *backend, void *arg) {
  struct sessiond *sd = arg;
  struct session_probe p = {backend, 0};
  sessions_foreach(sd->seats, probe_session, &p);
  return p.found;
}

/* New configuration and users file, or neither. Backend down-marks follow
 * their backends by name. */
/* A users file name that normalization would change can never log in. */
static void warn_unreachable(const struct userfile_entry *e, void *arg) {
  const struct config *cfg = arg;
  char name[USERNAME_MAX], quoted[LOG_QUOTE_MAX];
  if (username_normalize(cfg->username_format, e->user, name, sizeof name) >= 0 &&
      !strcmp(name, e->user))
    return;
  log_event(LOG_LVL_WARN, "users_file", "user=%s note=\"not in the form username_format "
            "gives logins: nobody can log in as this entry\"",
            log_quote(quoted, sizeof quoted, e->user, strlen(e->user)));
}

static struct userfile *users_file_load(const struct config *cfg, char *err, size_t errlen) {
  struct userfile *uf = userfile_load(cfg->users_file, err, errlen);
  if (uf) userfile_foreach(uf, warn_unreachable, (void *)cfg);
  return uf;
}

static void on_sighup(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond *sd = arg;
  char err[512];
  struct config *cfg = config_load(sd->cfg->path, err, sizeof err);
  if (!cfg) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    return;
  }
  struct userfile *uf = cfg->users_file ? users_file_load(cfg, err, sizeof err) : NULL;
  if (cfg->users_file && !uf) {
    log_event(LOG_LVL_ERROR, "reload_refused", "error=\"%s\"", err);
    config_free(cfg);
    return;
  }
  struct config *old = sd->cfg;
  config_carry_retired(cfg, old, backend_has_sessions, sd);
  userfile_free(sd->uf);
  sd->cfg = cfg;
  sd->uf = uf;
  backends_reconfigure(sd, old);
  config_free(old);
  throttle_set_config(sd->throttle, cfg);
  log_set_level(cfg->log_level);
  /* Passwords in the users file may have changed: forget what was verified. */
  authcache_clear(sd->cache);
  log_event(LOG_LVL_INFO, "reload", "backends=%u users=%zu", cfg->n_backends,
            uf ? userfile_count(uf) : 0);
}

static void on_sigterm(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  event_base_loopbreak(((struct sessiond *)arg)->base);
}


/* The auth cache, Redis, LDAP and throttling, as the configuration asks. */
static int sessiond_open_auth(struct sessiond *sd) {
  const struct config *cfg = sd->cfg;
  uint8_t key[SHA256_DIGEST_LENGTH];
  if (cfg->cache_secret_file) {
    char *secret = secret_file_read("cache secret", cfg->cache_secret_file);
    if (!secret) return -1;
    if (strlen(secret) < 16) {
      log_event(LOG_LVL_ERROR, "secret_file", "what=\"cache secret\" error=\"shorter than 16 bytes\"");
      wipe_free_str(secret);
      return -1;
    }
    SHA256((const unsigned char *)secret, strlen(secret), key);
    wipe_free_str(secret);
  } else {
    random_bytes(key, sizeof key);   /* this process's memory cache only */
  }
  sd->cache = authcache_new(key, sizeof key, cfg->cache_memory_entries);
  wipe(key, sizeof key);
  if (cfg->redis_address) {
    char *pw = cfg->redis_password_file ? secret_file_read("redis password", cfg->redis_password_file)
                                        : NULL;
    if (cfg->redis_password_file && !pw) return -1;
    sd->redis = rds_new(sd->base, cfg, pw, "usher:events", events_on_message, events_on_resync, sd);
    if (pw) wipe_free_str(pw);
  }
  if (rehome_load_password(sd) != 0) return -1;
  sd->throttle = throttle_new(cfg, sd->redis);
  if (cfg->peers_listen.len && !(sd->peers = peers_new(sd))) return -1;
  if (cfg->ldap_uri) {
    char *pw = cfg->ldap_bind_password_file
                   ? secret_file_read("ldap bind password", cfg->ldap_bind_password_file) : NULL;
    if (cfg->ldap_bind_password_file && !pw) return -1;
    sd->ldap = ldapdb_new(sd->base, cfg, pw);
    if (pw) wipe_free_str(pw);
    if (!sd->ldap) return -1;
  }
  return 0;
}

/* Workers that dropped to [usher] user must still reach sessiond.sock: the
 * runtime directory becomes traversable by that user's group (0710) and the
 * socket theirs. admin.sock stays root's alone (0600). */
static int sessiond_share_socket(struct sessiond *sd) {
  const struct config *cfg = sd->cfg;
  if (!cfg->user) return 0;
  struct passwd *pw = getpwnam(cfg->user);
  char path[256];
  snprintf(path, sizeof path, "%s/sessiond.sock", cfg->runtime_dir);
  if (!pw || chown(cfg->runtime_dir, getuid(), pw->pw_gid) != 0 ||
      chmod(cfg->runtime_dir, 0710) != 0 || chown(path, pw->pw_uid, pw->pw_gid) != 0) {
    log_event(LOG_LVL_ERROR, "runtime_dir", "user=%s error=\"cannot share sessiond.sock\"",
              cfg->user);
    return -1;
  }
  return 0;
}

/* The session key, from the pipe the master made for us (master.c). A
 * sessiond started by hand makes its own: then the workers' sessions are
 * not re-registered after it restarts (their tickets do not check). */
static void sessiond_read_session_key(struct sessiond *sd) {
  const char *fd_s = getenv("USHER_SESSION_KEY_FD");
  int fd = fd_s ? atoi(fd_s) : -1;
  size_t got = 0;
  while (fd >= 0 && got < sizeof sd->session_key) {
    ssize_t n = read(fd, sd->session_key + got, sizeof sd->session_key - got);
    if (n <= 0) break;
    got += (size_t)n;
  }
  if (fd >= 0) close(fd);
  unsetenv("USHER_SESSION_KEY_FD");
  if (got == sizeof sd->session_key) return;
  random_bytes(sd->session_key, sizeof sd->session_key);
  log_event(LOG_LVL_WARN, "session_key", "source=random note=\"not started by the master: "
            "sessions are not re-registered after a restart\"");
}

static int sessiond_open(struct sessiond *sd, const char *config_path) {
  char err[512];
  sd->cfg = config_load(config_path, err, sizeof err);
  if (!sd->cfg) {
    fprintf(stderr, "usher sessiond: %s\n", err);
    return -1;
  }
  log_init("sessiond", sd->cfg->log_level, sd->cfg->syslog);
  sessiond_read_session_key(sd);
  if (sd->cfg->users_file) {
    sd->uf = users_file_load(sd->cfg, err, sizeof err);
    if (!sd->uf) {
      log_event(LOG_LVL_ERROR, "users_file", "error=\"%s\"", err);
      return -1;
    }
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
  workers_init(sd);
  rehome_init(sd);
  evacuate_init(sd);
  if (sessiond_open_auth(sd) != 0) return -1;
  backends_start(sd);
  seatstore_start(sd);
  if (metrics_start(sd) != 0) return -1;
  sd->worker_listener = listen_unix(sd, "sessiond.sock", workers_accept);
  if (sd->worker_listener && sessiond_share_socket(sd) != 0) return -1;
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
    log_event(LOG_LVL_INFO, "sessiond_start", "database=%s users=%zu backends=%u redis=%s",
              sd.ldap ? "ldap" : "users_file", sd.uf ? userfile_count(sd.uf) : 0,
              sd.cfg->n_backends, sd.redis ? "yes" : "no");
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
  metrics_stop(&sd);
  drain_migrate_stop();
  seatstore_stop(&sd);
  backends_stop(&sd);
  authpool_free(sd.pool);
  ldapdb_free(sd.ldap);
  throttle_free(sd.throttle);
  peers_free(sd.peers);
  rds_free(sd.redis);
  authcache_free(sd.cache);
  seats_free(sd.seats);
  userfile_free(sd.uf);
  wipe(sd.session_key, sizeof sd.session_key);
  rehome_forget_password(&sd);
  if (sd.base) event_base_free(sd.base);
  if (sd.cfg) log_event(LOG_LVL_INFO, "sessiond_stop", "ok=%d", rc == 0);
  config_free(sd.cfg);
  return rc;
}
