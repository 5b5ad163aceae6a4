/* sessiond's state, shared by its files: the worker connections
 * (workers.c), the admin socket (admin.c) and the process (sessiond.c). */
#ifndef USHER_SESSIOND_STATE_H
#define USHER_SESSIOND_STATE_H

#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "auth/authcache.h"
#include "auth/ldapdb.h"
#include "auth/userfile.h"
#include "common/config.h"
#include "common/proto.h"
#include "sessiond/authpool.h"
#include "sessiond/backends.h"
#include "sessiond/redis.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/throttle.h"

struct wconn {
  struct sessiond *sd;
  struct bufferevent *bev;
  struct proto_batch *out;  /* replies, sent at the end of each loop turn */
  unsigned worker_id;    /* as its HELLO said */
  int pid;               /* the peer's, as the kernel says (SO_PEERCRED); 0: unknown */
  int said_hello;        /* a HELLO was accepted: other messages may follow */
  uint64_t refused;      /* messages refused on this connection (the first is logged) */
  int refs;              /* pending logins hold references */
  int closed;
  struct wconn *prev, *next;
  uint8_t body[PROTO_MAX_BODY];
};

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
  struct backend_state bstate[CONFIG_MAX_BACKENDS];   /* by backend index in cfg */
  struct wconn *wconns;
  unsigned n_wconns;
  struct evconnlistener *worker_listener, *admin_listener;
  struct metrics *metrics;      /* the HTTP endpoint (metrics.c); NULL: off */
  uint64_t start_ms;
  struct sessiond_counters n;
  /* Seals the tickets of LOGIN_REPLY OK (workers.c); from the master, so
   * the same after a restart of sessiond. */
  uint8_t session_key[PROTO_SESSION_KEY_LEN];
};

/* workers.c */
void workers_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    void *arg);
void workers_close_all(struct sessiond *sd);
/* The parts below the socket, for workers_accept and the fuzz target: a
 * connection from the worker whose pid the kernel gave (bev may be any
 * bufferevent, or NULL: replies are dropped); one frame's body through
 * the checks and handlers (0, or -1: close the connection); the close. */
struct wconn *workers_conn_new(struct sessiond *sd, struct bufferevent *bev, int peer_pid);
int workers_handle_frame(struct wconn *wc, uint8_t *body, size_t len);
void workers_conn_close(struct wconn *wc);
/* Sends KICK for one session to the worker that holds it. */
void workers_kick(struct sessiond *sd, struct session *s, const char *reason);

/* login.c: a LOGIN from a worker, through throttling, the auth cache and
 * the password database, to a seat. */
void login_start(struct wconn *wc, const struct proto_msg *m);
/* "auth flush USER" / NULL for every user: on this proxy and, through Redis,
 * on every proxy. */
void login_auth_flush(struct sessiond *sd, const char *user);
/* A message on the cluster's event channel. */
void login_on_event(void *sd, const char *payload, size_t len);
void login_on_resync(void *sd);
void wconn_ref(struct wconn *wc);
void wconn_unref(struct wconn *wc);
void workers_reply(struct wconn *wc, const struct proto_msg *m);
/* LOGIN_REPLY: a failure with its delay, or OK with the backend cfg[idx]. */
void workers_reply_failure(struct wconn *wc, uint32_t req, const char *session,
                           enum proto_result result, uint32_t delay_ms);
/* user NULL: the worker keeps the names it has (another seat for the same login). */
void workers_reply_ok(struct sessiond *sd, struct wconn *wc, uint32_t req, const char *session,
                      const char *user, const char *seat, int idx);

/* backends.c: a configured backend's index by name, or -1; a failed
 * connect's retry penalty. */
int sessiond_backend_index(const struct sessiond *sd, const char *name);
void sessiond_backend_mark_down(struct sessiond *sd, int idx, const char *why);

/* metrics.c: Prometheus text over HTTP on [usher] metrics, within [metrics]'s
 * limits. */
int metrics_start(struct sessiond *sd);
void metrics_stop(struct sessiond *sd);

/* admin.c */
void admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg);

#endif
