/* The backend connection of a login: connect (plain, STARTTLS or TLS),
 * the greeting and capabilities, ID, then the login with the client's
 * user and password (backend.c says how). It belongs to its owner, the
 * login (login.c), and reports its outcome once, through the owner's
 * callback; then its state is gone. On success the socket stays with the
 * client's backend side for the relay; on failure it is closed. */
#ifndef USHER_PROXY_BACKEND_H
#define USHER_PROXY_BACKEND_H

#include "common/config.h"
#include "common/netaddr.h"

struct client;

enum backend_result {
  BACKEND_LOGGED_IN,   /* detail: the backend's post-login capabilities, or NULL */
  BACKEND_REFUSED,     /* the credentials (sessiond accepted them; the backend did not) */
  BACKEND_FAILED,      /* unreachable or broken; detail: why, for sessiond and logs */
};

/* Called once, as the dialogue ends; detail lives for the call. */
typedef void backend_done_fn(struct client *c, enum backend_result r, const char *detail);

struct restore;

/* A re-home's login (rehome.h): c->user is the authorization identity and
 * authcid, the master user, authenticates with password (SASL PLAIN; a
 * backend without AUTH=PLAIN fails). Both are copied; the password is
 * wiped once sent. Then the restore dialogue runs (restore.h; its owner
 * keeps it) and its failure is the login's, with its reason as detail. */
struct backend_login {
  const char *authcid;
  const char *password;
  struct restore *restore;
};

/* Connects c to backend b at addr and logs in as c->user with the
 * client's password (how NULL) or as how says; arms c's timer
 * (connect_timeout, then login_timeout) where c has one. The outcome may
 * come before this returns. */
void backend_start(struct client *c, const struct config_backend *b, const struct netaddr *addr,
                   const struct backend_login *how, backend_done_fn *done);
/* c's timer ran out while the backend login was under way. */
void backend_timer(struct client *c);
/* The dialogue's state goes without a word (c goes away). */
void backend_free(struct client *c);

#endif
