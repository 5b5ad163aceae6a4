/* A login, from a worker's LOGIN to its answer (see login.c for the path:
 * the throttle, the auth cache in memory and in Redis, the password
 * database, the seat). The caller owns the link the answer goes back on:
 * login.c knows nothing of workers and answers through done. */
#ifndef USHER_SESSIOND_LOGIN_H
#define USHER_SESSIOND_LOGIN_H

#include <stdint.h>

#include "common/proto.h"

struct sessiond;

/* The verdict. On PROTO_OK, user is the canonical name (what the backend
 * gets), seat the name the seat is kept under, backend an index in cfg. */
struct login_answer {
  uint32_t req;
  const char *session;
  enum proto_result result;
  uint32_t delay_ms;
  const char *user, *seat;
  int backend;
};

typedef void (*login_done_fn)(void *cookie, const struct login_answer *a);

/* Starts the login m (a LOGIN message). owner becomes the session's owner
 * in the seat table; *gone turns non-zero when nobody waits for the answer
 * any more (the work then stops early). owner and gone must outlive the
 * call to done, which comes exactly once, possibly before this returns. */
void login_start(struct sessiond *sd, const struct proto_msg *m, void *owner, const int *gone,
                 login_done_fn done, void *cookie);

/* "auth flush USER" / NULL for every user: on this proxy and, through
 * Redis, on every proxy. */
void login_auth_flush(struct sessiond *sd, const char *user);

#endif
