/* Listeners behind an L4 balancer: the PROXY v2 header that precedes the
 * client's first byte. It is taken only from the balancers' networks
 * ([listener] proxy_from); anyone else reaching such a listener is closed
 * without a word, since its claims about addresses would be believed.
 *
 * The header is read exactly (16 bytes, then the length they announce), so
 * that not one byte of what follows, a TLS ClientHello for instance, is
 * taken from the socket before the client's own handling begins. The small
 * buffer lives only while the header is being read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy/proxied.h"

#include "common/log.h"
#include "proxy/proxyproto.h"
#include "common/util.h"
#include "proxy/client.h"

struct proxy_read {
  proxied_done_fn *done;
  size_t have, need;
  uint8_t buf[];
};

static void proxied_timer(struct client *c) {
  client_free(c, "proxy_header_timeout");
}

static const struct client_handlers proxied_handlers = {.timer = proxied_timer};

static int from_balancer(const struct config_listener *ls, const struct netaddr *a) {
  for (unsigned i = 0; i < ls->n_proxy_from; i++)
    if (netmask_contains(&ls->proxy_from[i], a)) return 1;
  return 0;
}

static void proxied_done(struct client *c, const struct proxyproto_header *h) {
  proxied_done_fn *done = c->proxy_read->done;
  side_unwatch(&c->front);
  free(c->proxy_read);
  c->proxy_read = NULL;
  c->via = c->peer;   /* the balancer, for the log */
  if (!h->local && h->src.len) {
    c->peer = h->src;
    c->local = h->dst;
  }
  client_set_handlers(c, NULL);
  done(c);
}

/* Reads what is still missing of the header; 1 when it is all in. */
static int proxied_fill(struct client *c) {
  struct proxy_read *r = c->proxy_read;
  ssize_t n = recv(c->front.fd, r->buf + r->have, r->need - r->have, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    client_free(c, n == 0 ? "client_eof" : "client_error");
    return -1;
  }
  if (n > 0) r->have += (size_t)n;
  return r->have == r->need;
}

static void on_header_readable(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct client *c = arg;
  size_t max = c->env->cfg->max_line;
  int full = proxied_fill(c);
  if (full < 0) return;
  struct proxy_read *r = c->proxy_read;
  struct proxyproto_header h;
  int verdict = proxyproto_parse(r->buf, r->have, max, &h);
  if (verdict < 0) {
    char via[NETADDR_STRLEN];
    log_event(LOG_LVL_WARN, "proxy_header_bad", "session=%s via=%s", c->sid_hex,
              netaddr_str(&c->peer, via, sizeof via));
    client_free(c, "proxy_header_bad");
    return;
  }
  if (verdict == 1) {
    proxied_done(c, &h);
    return;
  }
  if (full && r->need == PROXYPROTO_FIXED_LEN) {   /* now the length is known */
    r->need = PROXYPROTO_FIXED_LEN + ((size_t)r->buf[14] << 8 | r->buf[15]);
    c->proxy_read = r = xrealloc(r, sizeof *r + r->need);
    on_header_readable(-1, 0, c);   /* the rest may be there already */
  }
}

void proxied_start(struct client *c, proxied_done_fn *done) {
  char via[NETADDR_STRLEN];
  if (!from_balancer(c->listener, &c->peer)) {
    log_event(LOG_LVL_WARN, "proxy_refused", "session=%s via=%s listener=%s note=\"not in proxy_from\"",
              c->sid_hex, netaddr_str(&c->peer, via, sizeof via), c->listener->name);
    client_free(c, "proxy_not_trusted");
    return;
  }
  c->state = CS_PROXY_HEADER;
  c->proxy_read = xmalloc(sizeof *c->proxy_read + PROXYPROTO_FIXED_LEN);
  c->proxy_read->done = done;
  c->proxy_read->have = 0;
  c->proxy_read->need = PROXYPROTO_FIXED_LEN;
  side_watch(&c->front, c->env->base, EV_READ, on_header_readable, c);
  client_set_handlers(c, &proxied_handlers);
  client_timer(c, c->env->cfg->preauth_timeout_ms);
}

void proxied_free(struct client *c) {
  free(c->proxy_read);
  c->proxy_read = NULL;
}
