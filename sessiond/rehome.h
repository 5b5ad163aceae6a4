/* Live re-homing, sessiond's side: a worker whose session lost its backend
 * (it failed, or the user was moved) keeps the client and asks for a new
 * route (REHOME, common/proto.h); the answer carries the master credential
 * the worker logs in with on the user's behalf. No password check, no
 * database, no auth cache: the session's ticket is the proof that the
 * user logged in. The seat rule is the seat store's, as for a login: the
 * old session leaves first (with the move's ack owed to Redis), then the
 * session is routed like a login (refill windows and a move's acks are
 * waited for, bounded as logins are). */
#ifndef USHER_SESSIOND_REHOME_H
#define USHER_SESSIOND_REHOME_H

#include "common/proto.h"

struct sessiond;
struct wconn;

/* The KICK reason of a seat that moved: such a kick asks the worker to
 * re-home the session (PT_REHOME) when rehome_on. */
#define REHOME_KICK_REASON "seat_moved"

/* Re-homing is on: [routing] rehome, a master_user, and its password
 * loaded at start. */
int rehome_on(const struct sessiond *sd);

/* Installs rehome_on and rehome_request as sd->rehome_enabled, sd->rehome_handler. */
void rehome_init(struct sessiond *sd);

/* Reads [routing] master_password_file when master_user is set. Returns
 * 0, or -1 (logged: sessiond does not start). */
int rehome_load_password(struct sessiond *sd);
void rehome_forget_password(struct sessiond *sd);

/* A REHOME from wc: checked, then answered by a LOGIN_REPLY (OK with the
 * new route and the master credential, or UNAVAILABLE). */
void rehome_request(struct wconn *wc, const struct proto_msg *m);

#endif
