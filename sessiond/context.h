/* sessiond's process context: what every module of the process reaches
 * through the one struct sessiond it is given. A header of its own that
 * includes no other module of sessiond: the modules are opaque here, each
 * defined by its own header, so no module needs another one's header just
 * to know the context (the old umbrella header made every module depend on
 * every other). */
#ifndef USHER_SESSIOND_CONTEXT_H
#define USHER_SESSIOND_CONTEXT_H

#include <stdint.h>

#include "common/config.h"
#include "common/proto.h"
#include "sessiond/rehome_stats.h"

struct event_base;
struct evconnlistener;
struct userfile;
struct authcache;
struct ldapdb;
struct seats;
struct session;
struct authpool;
struct rds;
struct throttle;
struct peers;
struct metrics;
struct backend_state;
struct wconn;

/* The process's counters, shown by usherctl status and the metrics. */
struct sessiond_counters {
  uint64_t logins_ok, logins_failed, logins_unavailable;
  uint64_t seats_created, seats_reused, seats_moved;
  uint64_t backend_failures, kicks;
  /* the auth cache, by layer and verdict */
  uint64_t cache_memory_hits, cache_redis_hits, cache_stale_hits, cache_negative_hits;
  uint64_t cache_misses, db_requests, shed;   /* throttled: throttle_stats() */
  uint64_t cache_bad_seals;   /* Redis entries ignored: not sealed with our secret */
  uint64_t bytes_in, bytes_out, sessions_ended, worker_hellos;
  uint64_t worker_refused;   /* worker messages refused (workers.c: who may say what) */
  /* live re-homing (rehome.c): asked, answered OK, refused (the checks
   * failed: also in worker_refused), no backend or re-homing off */
  uint64_t rehome_requests, rehome_routed, rehome_refused, rehome_unavailable;
  struct rehome_stats rehome_done;   /* how the workers' moves ended (REHOME_DONE) */
  /* backend verdicts shared through Redis (backends.c): our own published,
   * the peers' heeded */
  uint64_t verdicts_sent, verdicts_received;
};

struct sessiond {
  struct config *cfg;
  struct userfile *uf;
  struct event_base *base;
  struct seats *seats;
  struct authpool *pool;
  struct authcache *cache;      /* memory layer of the auth cache */
  struct rds *redis;            /* NULL without [redis] */
  struct ldapdb *ldap;          /* NULL: the users file is the database */
  struct throttle *throttle;
  struct peers *peers;          /* NULL without [peers] */
  struct backend_state *bstate; /* CONFIG_MAX_BACKENDS of them, by index in cfg (backends.h) */
  struct wconn *wconns;
  unsigned n_wconns;
  struct evconnlistener *worker_listener, *admin_listener;
  struct metrics *metrics;      /* the HTTP endpoint (metrics.c); NULL: off */
  uint64_t start_ms;
  struct sessiond_counters n;
  /* Closes one session with * BYE (installed by workers.c): the seat store
   * kicks stale sessions through it without knowing the worker links. */
  void (*kick)(struct sessiond *sd, struct session *s, const char *reason);
  /* Live re-homing (installed by rehome.c): whether it is on, and the
   * REHOME handler; workers.c reaches them without knowing rehome.c. */
  int (*rehome_enabled)(const struct sessiond *sd);
  void (*rehome_handler)(struct wconn *wc, const struct proto_msg *m);
  /* A backend was just found down by health checks or a peer's verdict
   * (installed by evacuate.c; NULL: nothing more to do). */
  void (*backend_down)(struct sessiond *sd, int idx, const char *why);
  /* Seals the tickets of LOGIN_REPLY OK (workers.c); from the master, so
   * the same after a restart of sessiond. */
  uint8_t session_key[PROTO_SESSION_KEY_LEN];
  /* The backends' master password ([routing] master_password_file), read
   * at start; NULL: no re-homing. Only this process holds it. */
  char *master_password;
};

#endif
