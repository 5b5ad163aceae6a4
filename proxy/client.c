/* A client connection's socket, timer, writing and closing. What happens
 * on it is the stages' (client.h): they install their handlers here. */
#include "proxy/client.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/bev_send.h"
#include "common/util.h"
#include "proxy/imap_track.h"
#include "proxy/tlsrec.h"

#define CLOSE_FLUSH_MS 5000   /* a client that will not read its BYE */

static void on_client_read(struct bufferevent *bev, void *arg);
static void on_client_write(struct bufferevent *bev, void *arg);
static void on_client_event(struct bufferevent *bev, short what, void *arg);

static void on_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct client *c = arg;
  if (c->state == CS_CLOSING) {   /* sent at once, or the client would not read its BYE */
    client_free(c, c->close_reason);
    return;
  }
  if (c->handlers && c->handlers->timer) c->handlers->timer(c);
}

void client_set_handlers(struct client *c, const struct client_handlers *h) {
  c->handlers = h;
}

void client_timer(struct client *c, uint64_t ms) {
  if (!c->timer) return;
  if (ms == 0) {
    evtimer_del(c->timer);
    return;
  }
  struct timeval tv;
  ms_to_timeval(ms, &tv);
  evtimer_add(c->timer, &tv);
}

/* A plain client socket is read by us (see bev_send.h), with one event
 * from the greeting to the close; a stage with its own reading (the
 * relay) takes it over. The bufferevent only writes. */
static void on_client_readable(evutil_socket_t fd, short what, void *arg) {
  struct client *c = arg;
  if (c->handlers && c->handlers->readable) {
    c->handlers->readable(fd, what, arg);
    return;
  }
  struct evbuffer *in = bufferevent_get_input(c->front.bev);
  if (c->input_bounded && evbuffer_get_length(in) >= AUTH_WAIT_INPUT_MAX) {
    side_pause(&c->front);   /* until client_reading(c, 1) */
    return;
  }
  ssize_t n = sock_read_into(fd, in);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    client_free(c, n == 0 ? "client_eof" : "client_error");
    return;
  }
  if (n > 0) on_client_read(c->front.bev, c);
}

void client_hold_input(struct client *c, int hold) {
  /* A plain socket's reading checks the bound itself (on_client_readable). */
  c->input_bounded = hold ? 1 : 0;
  if (c->front.is_tls && c->front.bev)
    bufferevent_setwatermark(c->front.bev, EV_READ, 0, hold ? AUTH_WAIT_INPUT_MAX : 0);
}

void client_reading(struct client *c, int on) {
  if (on) side_resume(&c->front, NULL);
  else side_pause(&c->front);
}

static void set_client_callbacks(struct client *c) {
  bufferevent_setcb(c->front.bev, on_client_read, on_client_write, on_client_event, c);
  if (c->front.is_tls) {   /* the TLS filters read, and want writing on */
    bufferevent_enable(c->front.bev, EV_READ | EV_WRITE);
    return;
  }
  /* The bufferevent only writes (see bev_send.h); the side's event reads. */
  bev_read_by_us(c->front.bev);
  side_watch(&c->front, c->env->base, EV_READ, on_client_readable, c);
}

void client_open_plain(struct client *c) {
  c->front.bev = bufferevent_socket_new(c->env->base, c->front.fd, 0);
  set_client_callbacks(c);
}

struct client *client_new(const struct proxy_env *env, const struct client_hooks *hooks, int fd,
                          const struct config_listener *ls, const struct sockaddr *sa,
                          int salen) {
  struct client *c = xcalloc(1, sizeof *c);
  c->env = env;
  c->hooks = hooks;
  side_open(&c->front, fd);
  side_init(&c->back);
  c->listener = ls;
  c->accepted_ms = now_ms();
  netaddr_from_sockaddr(&c->peer, sa, (socklen_t)salen);
  if (!netaddr_is_wildcard(&ls->addr)) {   /* a system call saved per connection */
    c->local = ls->addr;
  } else {
    c->local.len = sizeof c->local.ss;
    getsockname(fd, (struct sockaddr *)&c->local.ss, &c->local.len);
  }
  /* TCP_NODELAY comes from the listening socket (master.c). */

  session_id_new(c->sid_hex);
  c->sid = strtoull(c->sid_hex, NULL, 16);
  c->timer = evtimer_new(env->base, on_timer, c);
  return c;
}

void client_drop_plain(struct client *c) {
  side_drop_plain(&c->front);   /* STARTTLS: the plain reading ends */
}

void client_tls_ready(struct client *c, struct bufferevent *bev, int has_input) {
  c->front.bev = bev;
  bev_filter_socket_side(bev);   /* bounded; closing waits for it too */
  set_client_callbacks(c);
  /* What came behind the Finished: through the filter, as if just read. */
  if (has_input) bufferevent_trigger(bufferevent_get_underlying(bev), EV_READ, 0);
}

void client_write(struct client *c, const char *fmt, ...) {
  if (!c->front.bev) return;
  /* The STARTTLS answer is queued: its write callback starts TLS. */
  int direct = !c->front.is_tls && c->state != CS_STARTTLS;
  va_list ap;
  va_start(ap, fmt);
  bev_vprintf(c->front.bev, direct ? c->front.fd : -1, fmt, ap);
  va_end(ap);
}

void client_forget_login(struct client *c) {
  if (!c->login) return;
  wipe_free_str(c->login->password);
  c->login->password = NULL;
  free(c->login->tag);
  c->login->tag = NULL;
}

void client_login_new(struct client *c) {
  if (c->login) return;
  c->login = xcalloc(1, sizeof *c->login);
  c->login->client = c;
}

void client_login_free(struct client *c) {
  client_forget_login(c);
  free(c->login);
  c->login = NULL;
}

/* After COMPRESS=DEFLATE the client inflates everything it reads: words of
 * usher's own in clear would reach it as a corrupt stream, so such a
 * session closes without them. Known for followed sessions (imap_track.h);
 * an unfollowed one cannot be told apart. */
static int client_reads_deflate(const struct client *c) {
  const char *why = c->track ? imap_track_reason(c->track) : NULL;
  return why && strcmp(why, "compress") == 0;
}

void client_close(struct client *c, const char *last_words, const char *reason) {
  if (c->state == CS_CLOSING) return;
  if (client_reads_deflate(c)) last_words = NULL;
  client_close_backend(c);
  if (!c->front.bev || !last_words) {
    client_free(c, reason);
    return;
  }
  log_event(LOG_LVL_DEBUG, "closing", "session=%s reason=%s", c->sid_hex, reason);
  c->state = CS_CLOSING;
  c->close_reason = reason;
  bufferevent_setcb(c->front.bev, NULL, on_client_write, on_client_event, c);
  client_reading(c, 0);
  bufferevent_setwatermark(c->front.bev, EV_WRITE, 0, 0);
  client_write(c, "%s", last_words);
  /* Our record layer ends its half cleanly (RFC 8446 6.1), behind the
   * last words; an OpenSSL filter just closes, as before. */
  if (c->front.is_tls) tlsrec_close_notify(c->front.bev);
  /* Flushed inside the write: freed next turn. (If the close_notify had to
   * be queued behind a full socket, the flush timer below frees it.) */
  if (c->free_armed && side_unsent(&c->front) == 0) return;
  if (!c->timer) c->timer = evtimer_new(c->env->base, on_timer, c);
  /* Sent at once (no write callback will come): free on the next loop
   * turn, never here, since callers still hold c. Else the write callback
   * frees it once flushed, or the timer if the client will not read. */
  if (side_unsent(&c->front) == 0) {
    static const struct timeval next_turn = {0, 0};
    evtimer_add(c->timer, &next_turn);
  } else {
    client_timer(c, CLOSE_FLUSH_MS);
  }
}

/* The rule for callbacks that can run inside a write.
 *
 * A TLS filter bufferevent (usher's record layer or libevent's OpenSSL
 * one) runs its write callback, and may run its event callback, inside
 * the bufferevent_write() that fed it: client_write(), the relay's pump.
 * The caller of that write still holds c and goes on using it. So a
 * callback of a TLS filter never frees the client at once: it calls
 * client_free_soon(), which silences the client (no reading, no more
 * callbacks) and frees it from the timer on the next loop turn, when no
 * caller is left on the stack. A plain socket bufferevent's callbacks run
 * only from the event loop and may free at once. */
void client_free_soon(struct client *c, const char *reason) {
  if (c->free_armed) return;
  c->state = CS_CLOSING;
  c->close_reason = reason;
  c->free_armed = 1;
  client_reading(c, 0);
  if (c->front.bev) bufferevent_setcb(c->front.bev, NULL, NULL, NULL, NULL);
  side_silence(&c->back);
  if (!c->timer) c->timer = evtimer_new(c->env->base, on_timer, c);
  static const struct timeval next_turn = {0, 0};
  evtimer_add(c->timer, &next_turn);
}

void client_close_backend(struct client *c) {
  /* The backend closed first and everything it sent was read: a reset
   * ends the connection without the last FIN and ACK, and leaves the
   * backend no TIME_WAIT. */
  side_close(&c->back, 1);
}

void client_free(struct client *c, const char *reason) {
  uint64_t now = now_ms();
  char peer[NETADDR_STRLEN];
  log_event(LOG_LVL_INFO, "close", "session=%s client=%s reason=%s duration_ms=%llu in=%llu out=%llu",
            c->sid_hex, netaddr_str(&c->peer, peer, sizeof peer), reason,
            (unsigned long long)(now - c->accepted_ms), (unsigned long long)c->bytes_in,
            (unsigned long long)c->bytes_out);
  if (c->hooks && c->hooks->release) c->hooks->release(c, reason);

  client_close_backend(c);
  side_close(&c->front, 0);   /* no bufferevent closes the client's socket: this does */
  if (c->timer) event_free(c->timer);
  client_login_free(c);
  free(c->user);
  free(c->seat);
  free(c->backend_name);
  free(c);
}

static void on_client_read(struct bufferevent *bev, void *arg) {
  (void)bev;
  struct client *c = arg;
  if (c->state != CS_CLOSING && c->handlers && c->handlers->input) c->handlers->input(c);
}

static void on_client_write(struct bufferevent *bev, void *arg) {
  struct client *c = arg;
  if (bev_unsent(bev) != 0) return;
  /* Flushed: the free waits for the next loop turn (see client_free_soon). */
  if (c->state == CS_CLOSING) client_free_soon(c, c->close_reason);
  else if (c->handlers && c->handlers->flushed) c->handlers->flushed(c);
}

static void on_client_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct client *c = arg;
  const char *reason = (what & BEV_EVENT_TIMEOUT) ? "timeout"
                       : (what & BEV_EVENT_EOF)   ? "client_eof"
                       : (what & BEV_EVENT_ERROR) ? "client_error"
                                                  : NULL;
  if (!reason) return;
  if (c->front.is_tls) client_free_soon(c, reason);   /* may run inside a write */
  else client_free(c, reason);
}
