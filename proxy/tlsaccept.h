/* The server side of a client's TLS handshake on the client's socket,
 * driven by us on memory BIOs (tlsaccept.c says why). The stage that
 * starts it says what comes next through its handlers. */
#ifndef USHER_PROXY_TLSACCEPT_H
#define USHER_PROXY_TLSACCEPT_H

#include <stddef.h>
#include <event2/bufferevent.h>

struct client;

struct tls_accept_handlers {
  /* The first words to send behind the handshake's last flight (the
   * greeting on implicit TLS) into out; their length, 0 for none. May be
   * NULL. */
  size_t (*greeting)(const struct client *c, char *out, size_t outlen);
  /* The handshake is done: the session goes on on bev; has_input: bytes
   * the client sent behind its Finished wait in bev's socket side. */
  void (*done)(struct client *c, struct bufferevent *bev, int has_input);
};

/* Starts the handshake on c's socket (implicit TLS, or after STARTTLS's
 * answer): c's plain bufferevent goes, c->front.is_tls is set. A failed
 * handshake frees c. 0, or -1 (nothing started; the caller frees c). h
 * must outlive the handshake. */
int tls_accept_start(struct client *c, const struct tls_accept_handlers *h);
/* A handshake that will not finish (c goes away): its SSL goes. */
void tls_accept_free(struct client *c);

#endif
