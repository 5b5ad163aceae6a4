/* What every part of a worker reads from the worker it runs in: the event
 * loop, the configuration in force, the TLS contexts, and the two
 * worker-wide services a login uses. The worker (worker.c) fills it and
 * keeps it current across reloads; everything below only reads it. A
 * header without code, so that a connection's modules can share it
 * without calling up into the worker. */
#ifndef USHER_PROXY_ENV_H
#define USHER_PROXY_ENV_H

#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/config.h"

struct sessiond_link;
struct logins;

struct proxy_env {
  unsigned worker_id;
  struct event_base *base;
  struct config *cfg;                /* in force: a reload swaps it */
  SSL_CTX *tls_server;               /* NULL when no listener uses TLS */
  SSL_CTX **tls_backend;             /* per backend (index as in cfg), NULL if tls = none */
  const struct timeval *idle_tv;     /* common timeout for relay idle */
  struct sessiond_link *link;        /* the worker's link to sessiond */
  struct logins *logins;             /* the logins under way (login.h) */
  int stopping;                      /* SIGTERM: sessions end, none moves */
};

#endif
