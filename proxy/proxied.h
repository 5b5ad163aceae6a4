/* A listener behind an L4 balancer: reading the PROXY v2 header that
 * precedes the client's first byte (proxied.c says how), from the
 * balancers' networks only. */
#ifndef USHER_PROXY_PROXIED_H
#define USHER_PROXY_PROXIED_H

struct client;

/* The header is in: c->peer and c->local are the client's (c->via the
 * balancer's), not one byte behind the header has been read. */
typedef void proxied_done_fn(struct client *c);

/* Reads the header on c's socket, bounded by preauth_timeout; then done.
 * A client that is not a balancer, a bad header, or the timeout frees c. */
void proxied_start(struct client *c, proxied_done_fn *done);
/* c goes away while its header is being read. */
void proxied_free(struct client *c);

#endif
