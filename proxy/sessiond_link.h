/* A worker's connection to sessiond (runtime_dir/sessiond.sock), speaking
 * common/proto.h. It reconnects with back-off when sessiond goes away; on
 * every (re)connect it says HELLO and re-registers the live sessions, so
 * sessiond's table survives a sessiond restart. While it is down,
 * established sessions keep relaying and logins wait for it (bounded by
 * [auth] sessiond_wait and sessiond_wait_queue), then get NO [UNAVAILABLE]. */
#ifndef USHER_PROXY_SESSIOND_LINK_H
#define USHER_PROXY_SESSIOND_LINK_H

#include <stdint.h>

struct worker;
struct client;
struct proto_msg;

struct sessiond_link *sessiond_link_new(struct worker *w);
void sessiond_link_free(struct sessiond_link *l);

/* Sends a frame; returns 0, or -1 if the link is down (nothing sent). The
 * frame buffer is wiped after queueing, since LOGIN carries a password. */
int sessiond_link_send(struct sessiond_link *l, const struct proto_msg *m);

/* Asks sessiond to authenticate and route c (its user, password, addresses;
 * c->login_ms set). Sent now, or held while the link is down; either way
 * it arms c's timer for the login's bound, and the answer arrives as
 * preauth_login_reply(). -1: neither (no wait configured, or too many
 * held), nothing sent. */
int sessiond_link_login(struct sessiond_link *l, struct client *c);
/* c's held LOGIN, if it has one, no longer waits (its timer ran out, or c
 * is going away). 1 if it had one. */
int sessiond_link_forget(struct sessiond_link *l, struct client *c);
/* Tells sessiond that c's backend failed; answered like a login. */
int sessiond_link_backend_failed(struct sessiond_link *l, struct client *c, const char *why);
void sessiond_link_session_up(struct sessiond_link *l, struct client *c);
/* A session's end is lazy (proto_batch_add_lazy): it leaves with the next
 * frame, within PROTO_LINGER_MS. */
void sessiond_link_session_end(struct sessiond_link *l, struct client *c, const char *why);

#endif
