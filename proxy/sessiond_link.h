/* A worker's connection to sessiond (runtime_dir/sessiond.sock), speaking
 * common/proto.h. It reconnects with back-off when sessiond goes away (and
 * promptly while logins wait for it); on every (re)connect it says HELLO
 * and tells its owner, who re-registers the live sessions, so sessiond's
 * table survives a sessiond restart. The requests it sends (LOGIN,
 * BACKEND_FAILED) wait in its table by request id; their answers, their
 * loss when sessiond goes away, and sessiond's kicks go to its owner
 * through the handlers. */
#ifndef USHER_PROXY_SESSIOND_LINK_H
#define USHER_PROXY_SESSIOND_LINK_H

#include <stdint.h>

#include "proxy/env.h"

struct client;
struct proto_msg;
struct sessiond_link;

struct sessiond_link_handlers {
  void *arg;
  /* sessiond answered c's request (m: LOGIN_REPLY, valid during the
   * call); c is out of the table. */
  void (*reply)(void *arg, struct client *c, const struct proto_msg *m);
  /* The link went down with c's request unanswered; c is out of the
   * table. 1: sent again later, 0: answered, -1: nobody waited. */
  int (*lost)(void *arg, struct client *c);
  /* The link is up (again); HELLO has gone. */
  void (*up)(void *arg);
  /* sessiond asks to end session sid (reason may be NULL). */
  /* rehome: sessiond asks for the session to be moved, not closed. */
  void (*kick)(void *arg, uint64_t sid, const char *reason, int rehome);
};

/* Connects at once, and again whenever the link goes down. h must outlive
 * the link. */
struct sessiond_link *sessiond_link_new(const struct proxy_env *env,
                                       const struct sessiond_link_handlers *h);
void sessiond_link_free(struct sessiond_link *l);

/* 1 while frames can go out. */
int sessiond_link_ready(const struct sessiond_link *l);
/* Sends a frame; returns 0, or -1 if the link is down (nothing sent). The
 * frame buffer is wiped after queueing, since LOGIN carries a password. */
int sessiond_link_send(struct sessiond_link *l, const struct proto_msg *m);

/* Asks sessiond to authenticate and route c (its user, password, mech,
 * addresses); the answer comes to handlers->reply. -1 if the link is down
 * (nothing sent). */
int sessiond_link_login(struct sessiond_link *l, struct client *c);
/* Tells sessiond that c's backend failed; answered like a login. */
/* Asks for a new route for c, a relayed session whose old backend
 * connection is closed (rehome.h); answered like a LOGIN. c->login holds
 * the request. */
int sessiond_link_rehome(struct sessiond_link *l, struct client *c, const char *reason);
int sessiond_link_backend_failed(struct sessiond_link *l, struct client *c, const char *why);
/* How c's re-home came out, for the figures (REHOME_DONE): why it ended,
 * or NULL when it resumed; ms from the loss of the old backend. */
void sessiond_link_rehome_done(struct sessiond_link *l, struct client *c, const char *why,
                               uint64_t ms);
/* c's request, if it has one, is no longer awaited (an answer that comes
 * is then for nobody). */
void sessiond_link_cancel(struct sessiond_link *l, struct client *c);
/* n logins wait for the link to come up: while n > 0 it retries every
 * 100 ms instead of backing off. */
void sessiond_link_waiting(struct sessiond_link *l, unsigned n);

void sessiond_link_session_up(struct sessiond_link *l, struct client *c);
/* A session's end is lazy (proto_batch_add_lazy): it leaves with the next
 * frame, within PROTO_LINGER_MS. */
void sessiond_link_session_end(struct sessiond_link *l, struct client *c, const char *why);

#endif
