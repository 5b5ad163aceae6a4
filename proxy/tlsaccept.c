/* The server side of a client's TLS handshake, driven by us on memory BIOs.
 *
 * libevent's OpenSSL bufferevent drives a handshake on the socket itself.
 * A resumed TLS 1.3 login paid for that in system calls: a read that finds
 * nothing after each flight (OpenSSL reads ahead), writability switched on
 * and off in epoll, FIONREAD before reads, and the session ticket and the
 * greeting in two packets. Here the socket is read by our own event into
 * OpenSSL's read BIO, what OpenSSL writes collects in its write BIO and
 * leaves in one send per flight, and the last flight leaves with the
 * greeting.
 *
 * Once the handshake is done the session goes on on usher's record layer
 * (tlsrec.h) when it can, else on a libevent OpenSSL filter over a socket
 * bufferevent (TLS 1.2, or release_after_handshake = no). Bytes the client
 * sent behind its Finished are handed on to either. */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proxy/tlsaccept.h"

#include "common/bev_send.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/tls.h"
#include "proxy/tlswatch.h"

/* What a client may have sent that OpenSSL has not taken yet: a handshake
 * flight is a few KiB; more is a client that does not wait its turn. */
#define HANDSHAKE_INPUT_MAX (64 * 1024)

struct tls_accept {
  SSL *ssl;                                  /* on memory BIOs */
  const struct tls_accept_handlers *h;
};

static void on_socket(evutil_socket_t fd, short what, void *arg);

/* Puts bytes read from the socket into a socket bufferevent's input, whose
 * end libevent keeps frozen between its own reads. */
static void add_as_read(struct bufferevent *under, const void *data, size_t len) {
  struct evbuffer *in = bufferevent_get_input(under);
  evbuffer_unfreeze(in, 0);
  evbuffer_add(in, data, len);
  evbuffer_freeze(in, 0);
}

static void wait_for(struct client *c, short what) {
  side_watch(&c->front, c->env->base, what, on_socket, c);
}

/* Sends what OpenSSL has written. 1: all sent; 0: the rest waits for
 * writability; -1: the connection failed. */
static int send_written(struct client *c) {
  BIO *wbio = SSL_get_wbio(c->hs->ssl);
  char *p;
  long len;
  while ((len = BIO_get_mem_data(wbio, &p)) > 0) {
    ssize_t n = send(c->front.fd, p, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
    char sink[4096];
    for (ssize_t left = n; left > 0;) {
      int r = BIO_read(wbio, sink, left < (ssize_t)sizeof sink ? (int)left : (int)sizeof sink);
      if (r <= 0) return -1;
      left -= r;
    }
  }
  return 1;
}

static void failed(struct client *c, const char *reason) {
  char desc[160];
  unsigned long e = ERR_peek_last_error();
  if (e) ERR_error_string_n(e, desc, sizeof desc);
  log_event(LOG_LVL_DEBUG, "tls_handshake_failed", "session=%s error=\"%s\"", c->sid_hex,
            e ? desc : reason);
  ERR_clear_error();
  send_written(c);   /* the alert, if OpenSSL wrote one */
  client_free(c, reason);
}

/* OpenSSL writes its own answers (a KeyUpdate for each update_requested,
 * alerts) to the socket side whenever it reads, and a client that sends
 * them without reading grew the worker by 2 MB a second (a KeyUpdate
 * storm, one per record, as RFC 8446 allows). So the socket is no longer
 * read while the socket side holds FILTER_SOCKET_HIGH, and read again once
 * it has drained below: what the client sends meanwhile waits in the
 * kernel. The filter's own enabling only suspends and unsuspends the
 * socket side's reading, so it does not undo this; our record layer does
 * the same on its side (tlsrec.c, stall). */
static void pause_while_unsent(struct evbuffer *out, const struct evbuffer_cb_info *info,
                               void *arg) {
  struct bufferevent *under = arg;
  size_t len = evbuffer_get_length(out);
  int reading = bufferevent_get_enabled(under) & EV_READ;
  if (info->n_added && len >= FILTER_SOCKET_HIGH && reading)
    bufferevent_disable(under, EV_READ);
  else if (info->n_deleted && len < FILTER_SOCKET_HIGH && !reading && bufferevent_getfd(under) >= 0)
    bufferevent_enable(under, EV_READ);
}

/* The OpenSSL way on: a filter over a socket bufferevent, since what
 * OpenSSL wrote last and what the client sent ahead are raw bytes that
 * only the socket side can carry. */
static struct bufferevent *stay_with_openssl(struct client *c, SSL *ssl, const char *out,
                                             size_t outlen, const char *in, size_t inlen,
                                             const char *greeting, size_t glen) {
  struct bufferevent *under = bufferevent_socket_new(c->env->base, c->front.fd, 0);
  if (!under) return NULL;
  evbuffer_add(bufferevent_get_output(under), out, outlen);
  add_as_read(under, in, inlen);
  /* Takes the SSL and frees its memory BIOs (out and in die with them). */
  struct bufferevent *bev = bufferevent_openssl_filter_new(c->env->base, under, ssl,
                                                           BUFFEREVENT_SSL_OPEN,
                                                           BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    bufferevent_free(under);
    return NULL;
  }
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);   /* clients just drop the line */
  evbuffer_add_cb(bufferevent_get_output(under), pause_while_unsent, under);
  if (glen) bufferevent_write(bev, greeting, glen);
  return bev;
}

/* The handshake is done: the session moves on, with the greeting on
 * implicit TLS. */
static void established(struct client *c) {
  SSL *ssl = c->hs->ssl;
  const struct tls_accept_handlers *h = c->hs->h;
  free(c->hs);
  c->hs = NULL;
  side_unwatch(&c->front);
  char desc[128], greeting[256];
  if (log_get_level() >= LOG_LVL_DEBUG)   /* tls_describe formats: only when it is logged */
    log_event(LOG_LVL_DEBUG, "tls", "session=%s tls=%s", c->sid_hex,
              tls_describe(ssl, desc, sizeof desc));
  size_t glen = h->greeting ? h->greeting(c, greeting, sizeof greeting) : 0;
  char *out, *in;
  long outlen = BIO_get_mem_data(SSL_get_wbio(ssl), &out);
  long inlen = BIO_get_mem_data(SSL_get_rbio(ssl), &in);
  struct bufferevent *bev = NULL;
  if (c->env->cfg->tls_release &&
      (bev = tlswatch_takeover(c->env->base, c->front.fd, ssl, out, (size_t)outlen, greeting, glen))) {
    add_as_read(bufferevent_get_underlying(bev), in, (size_t)inlen);
    SSL_free(ssl);
    log_event(LOG_LVL_DEBUG, "tls_release", "session=%s", c->sid_hex);
  } else if (!(bev = stay_with_openssl(c, ssl, out, (size_t)outlen, in, (size_t)inlen,
                                       greeting, glen))) {
    SSL_free(ssl);
    client_free(c, "tls_setup_failed");
    return;
  }
  h->done(c, bev, inlen > 0);
}

/* One step: what the client sent goes to OpenSSL, what it answers goes
 * out. */
static void step(struct client *c) {
  ERR_clear_error();
  int r = SSL_do_handshake(c->hs->ssl);
  if (r == 1) {
    established(c);   /* its last flight leaves with the greeting */
    return;
  }
  if (SSL_get_error(c->hs->ssl, r) != SSL_ERROR_WANT_READ) {
    failed(c, "tls_handshake_failed");
    return;
  }
  int sent = send_written(c);
  if (sent < 0) client_free(c, "client_error");
  else if (sent == 0) wait_for(c, EV_WRITE);
}

static void on_socket(evutil_socket_t fd, short what, void *arg) {
  struct client *c = arg;
  if (what & EV_WRITE) {
    int sent = send_written(c);
    if (sent < 0) client_free(c, "client_error");
    else if (sent > 0) wait_for(c, EV_READ);
    return;
  }
  char buf[16384];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    client_free(c, n == 0 ? "client_eof" : "client_error");
    return;
  }
  if (n < 0) return;
  BIO *rbio = SSL_get_rbio(c->hs->ssl);
  if (BIO_write(rbio, buf, (int)n) != (int)n || BIO_ctrl_pending(rbio) > HANDSHAKE_INPUT_MAX) {
    failed(c, "tls_handshake_failed");
    return;
  }
  step(c);
}

int tls_accept_start(struct client *c, const struct tls_accept_handlers *h) {
  const struct proxy_env *env = c->env;
  client_drop_plain(c);
  SSL *ssl = env->tls_server ? SSL_new(env->tls_server) : NULL;
  BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
  if (!ssl || !rbio || !wbio || (env->cfg->tls_release && tlswatch_start(ssl) != 0) ||
      side_watch(&c->front, env->base, EV_READ, on_socket, c) != 0) {
    SSL_free(ssl);
    BIO_free(rbio);
    BIO_free(wbio);
    side_unwatch(&c->front);
    return -1;
  }
  /* An empty memory BIO says "try again", not "end of file". */
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl, rbio, wbio);
  SSL_set_accept_state(ssl);
  c->hs = xmalloc(sizeof *c->hs);
  c->hs->ssl = ssl;
  c->hs->h = h;
  c->front.is_tls = 1;   /* from now on the side's event reads only the handshake */
  return 0;
}

void tls_accept_free(struct client *c) {
  if (!c->hs) return;
  SSL_free(c->hs->ssl);
  free(c->hs);
  c->hs = NULL;
}
