/* A proxy worker: one event loop owning the connections it accepts on the
 * listening sockets it inherited from the master. It holds no secret from
 * the configuration (it never opens the users file); it asks sessiond.
 * Tables here are intrusive hash chains through struct client, sized once:
 * lookups by request id (answers from sessiond) and by session id (kicks). */
#ifndef USHER_PROXY_WORKER_H
#define USHER_PROXY_WORKER_H

#include <stdint.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/ssl.h>

#include "common/config.h"

struct client;
struct sessiond_link;

#define WORKER_TABLE_SIZE 16384   /* buckets; chains stay short up to ~50k sessions */

struct ip_count;

struct worker {
  unsigned id;
  struct event_base *base;
  struct config *cfg;
  SSL_CTX *tls_server;               /* NULL when no listener uses TLS */
  int tickets_fd;                    /* the master's ticket-key pipe; -1: no tickets */
  struct event *tickets_ev;
  SSL_CTX **tls_backend;             /* per backend (index as in cfg), NULL if tls = none */
  struct evconnlistener *listeners[CONFIG_MAX_LISTENERS];
  unsigned n_listeners;
  struct sessiond_link *link;
  struct event *sig_term, *sig_hup, *accept_resume;
  const struct timeval *idle_tv;     /* common timeout for relay idle */

  struct client *clients;            /* all clients, newest first */
  unsigned n_clients;
  int stopping;

  struct client *by_req[WORKER_TABLE_SIZE];
  struct client *by_sid[WORKER_TABLE_SIZE];
  struct ip_count **ip_table;        /* per-address connection counts */
  uint32_t next_req;
};

/* Runs worker `id` on listening fds 3.. (count from USHER_LISTEN_FDS) until
 * SIGTERM. Returns the process exit code. */
int worker_main(const char *config_path, unsigned id);

/* Request and session tables. */
void worker_req_add(struct worker *w, struct client *c);   /* assigns c->req */
void worker_req_del(struct worker *w, struct client *c);
struct client *worker_req_find(struct worker *w, uint32_t req);
void worker_sid_add(struct worker *w, struct client *c);
void worker_sid_del(struct worker *w, struct client *c);
struct client *worker_sid_find(struct worker *w, uint64_t sid);

/* Per-address limit: 0 if the new connection is allowed (and counted). */
int worker_ip_acquire(struct worker *w, const struct netaddr *a);
void worker_ip_release(struct worker *w, const struct netaddr *a);

#endif
