/* The worker links: one connection per worker process on sessiond.sock,
 * the checks on what a worker may say (a worker parses the internet's bytes
 * and may have been taken over: see workers.c), and the replies. */
#ifndef USHER_SESSIOND_WORKERS_H
#define USHER_SESSIOND_WORKERS_H

#include <stddef.h>
#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "common/proto.h"

struct sessiond;
struct session;

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
/* Sends KICK for one session to the worker that holds it; installed as
 * sd->kick by workers_init. */
void workers_kick(struct sessiond *sd, struct session *s, const char *reason);
void workers_init(struct sessiond *sd);
void wconn_ref(struct wconn *wc);
void wconn_unref(struct wconn *wc);
void workers_reply(struct wconn *wc, const struct proto_msg *m);
/* LOGIN_REPLY: a failure with its delay, or OK with the backend cfg[idx].
 * user NULL: the worker keeps the names it has (another seat for the same login). */
void workers_reply_failure(struct wconn *wc, uint32_t req, const char *session,
                           enum proto_result result, uint32_t delay_ms);
void workers_reply_ok(struct sessiond *sd, struct wconn *wc, uint32_t req, const char *session,
                      const char *user, const char *seat, int idx);
/* The same, answering REHOME: with the master credential the worker logs
 * in with on the user's behalf (the password frame is wiped once sent). */
void workers_reply_rehomed(struct sessiond *sd, struct wconn *wc, uint32_t req,
                           const char *session, const char *user, const char *seat, int idx,
                           const char *master_user, const char *master_password);

/* The checks of workers.c, for the handlers of other modules (rehome.c):
 * a ticket that checks for this connection's worker id and pid (over
 * session, seat-or-user, backend); the sender holds s; a well-formed
 * session id; a refusal counted and logged once per connection. */
int workers_ticket_valid(const struct wconn *wc, const struct proto_msg *m);
int workers_holds(const struct wconn *wc, const struct session *s);
int workers_session_id_valid(const char *s);
void workers_refuse(struct wconn *wc, const struct proto_msg *m, const char *why);

#endif
