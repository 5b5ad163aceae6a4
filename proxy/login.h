/* The life of a login (login.c): it takes a client's credentials from the
 * pre-auth stage, asks sessiond through the link (or holds the question
 * while the link is down), follows sessiond's route to a backend
 * (backend.h), retries once on another seat when that backend fails, and
 * answers the client: OK and the relay (relay.h), or NO after sessiond's
 * delay and back to the pre-auth commands (preauth.h). The worker keeps
 * one struct logins, in its proxy_env, and hands the link's answers here. */
#ifndef USHER_PROXY_LOGIN_H
#define USHER_PROXY_LOGIN_H

#include "proxy/env.h"

struct client;
struct proto_msg;
struct logins;

struct logins *logins_new(const struct proxy_env *env);
/* Once every client is gone. */
void logins_free(struct logins *ls);

/* A preauth_login_fn (preauth.h): the login begins. */
void login_begin(struct client *c, const char *tag, const char *user, const char *pass,
                 const char *mech);
/* sessiond's answer to c's LOGIN or BACKEND_FAILED (LOGIN_REPLY). */
void login_reply(struct client *c, const struct proto_msg *m);
/* sessiond went away before answering c: 1 held to be sent again, 0
 * answered, -1 c was not waiting. */
int login_lost(struct client *c);
/* How many logins wait for the link. */
unsigned logins_held(const struct logins *ls);
/* The link is up: the held logins go out, oldest first. */
void logins_link_up(struct logins *ls);
/* c goes away: sessiond forgets its session, its request or held LOGIN
 * goes, and its backend login. */
void login_release(struct client *c, const char *reason);

#endif
