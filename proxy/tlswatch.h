/* The take-over's first half: watching OpenSSL's TLS 1.3 handshake on a
 * server connection for the traffic secrets and record counts that
 * usher's record layer (tlsrec.h, which says why) needs to carry the
 * session on, then building that layer when everything is in hand. */
#ifndef USHER_PROXY_TLSWATCH_H
#define USHER_PROXY_TLSWATCH_H

#include <stddef.h>

#include <event2/bufferevent.h>
#include <openssl/ssl.h>

/* On every server context when the take-over is on. The key log callback
 * that hands traffic secrets to the connection's state is armed by the
 * connection itself, only while those secrets are derived. */
void tlswatch_ctx_setup(SSL_CTX *ctx);
/* On each new server SSL: the state that watches the handshake. 0 or -1. */
int tlswatch_start(SSL *ssl);
/* After the handshake: a filter bufferevent on fd carrying the session
 * from here, or NULL when this session stays with OpenSSL. On success the
 * caller frees the SSL (its buffers must be empty: see tlswatch.c).
 * last_flight: what OpenSSL wrote last and is still to be sent (its
 * session ticket); first: plaintext to send right behind it (the
 * greeting). Both go out in one write; either may be empty. */
struct bufferevent *tlswatch_takeover(struct event_base *base, int fd, SSL *ssl,
                                      const void *last_flight, size_t flen, const void *first,
                                      size_t len);

#endif
