/* The relay: after login, bytes flow both ways untouched. Back-pressure:
 * when the far side's output holds RELAY_HIGH bytes, we stop reading the
 * near side until that output drains below half of it, so a slow reader
 * never makes the proxy buffer a fast writer's whole mailbox.
 *
 * Ends: the backend closing (say after LOGOUT) ends the session once the
 * client has received everything; the client closing is passed on to a
 * plaintext backend as a half-close (shutdown SHUT_WR) once everything it
 * sent has been written, and the backend's remaining answers still reach
 * the client. The client side has the idle timeout (idle_timeout, 30 min
 * by default: IMAP clients re-issue IDLE before 29). */
#include <stdlib.h>
#include <sys/socket.h>

#include <event2/buffer.h>

#include "common/imap_parser.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/worker.h"

#define RELAY_HIGH (256 * 1024)

static struct bufferevent *other(struct client *c, struct bufferevent *bev) {
  return bev == c->cbev ? c->bbev : c->cbev;
}

/* Moves what `from` has read into `to`'s output (no copy: chains move). */
static void relay_pump(struct client *c, struct bufferevent *from) {
  struct bufferevent *to = other(c, from);
  struct evbuffer *src = bufferevent_get_input(from);
  struct evbuffer *dst = bufferevent_get_output(to);
  size_t n = evbuffer_get_length(src);
  if (n == 0) return;
  if (from == c->cbev) c->bytes_in += n;
  else c->bytes_out += n;
  evbuffer_add_buffer(dst, src);
  if (evbuffer_get_length(dst) >= RELAY_HIGH) bufferevent_disable(from, EV_READ);
}

/* An end of stream waits until the other direction is flushed. */
static void relay_check_ends(struct client *c) {
  size_t to_client = evbuffer_get_length(bufferevent_get_output(c->cbev));
  size_t to_backend = evbuffer_get_length(bufferevent_get_output(c->bbev));
  if (c->backend_eof && to_client == 0) {
    client_free(c, c->client_eof ? "closed" : "backend_closed");
    return;
  }
  if (c->client_eof && to_backend == 0) {
    if (c->bfd < 0) {   /* a TLS backend: nothing more to wait for */
      client_free(c, "client_closed");
      return;
    }
    shutdown(c->bfd, SHUT_WR);
  }
  /* Wake the write callback when the flush we wait for completes. */
  if (c->backend_eof) bufferevent_setwatermark(c->cbev, EV_WRITE, 0, 0);
  if (c->client_eof) bufferevent_setwatermark(c->bbev, EV_WRITE, 0, 0);
}

static void on_relay_read(struct bufferevent *bev, void *arg) {
  relay_pump(arg, bev);
}

static void on_relay_write(struct bufferevent *bev, void *arg) {
  struct client *c = arg;
  struct bufferevent *src = other(c, bev);
  int src_eof = src == c->cbev ? c->client_eof : c->backend_eof;
  if (src_eof) {
    relay_check_ends(c);
    return;
  }
  /* Below the low watermark again: the reader may go on. */
  if (!(bufferevent_get_enabled(src) & EV_READ)) {
    bufferevent_enable(src, EV_READ);
    relay_pump(c, src);
  }
}

static void on_relay_event(struct bufferevent *bev, short what, void *arg) {
  struct client *c = arg;
  int is_client = bev == c->cbev;
  if (what & BEV_EVENT_TIMEOUT) {
    client_free(c, "idle_timeout");
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    client_free(c, is_client ? "client_error" : "backend_error");
    return;
  }
  if (what & BEV_EVENT_EOF) {
    relay_pump(c, bev);
    if (is_client) c->client_eof = 1;
    else c->backend_eof = 1;
    bufferevent_disable(bev, EV_READ);
    relay_check_ends(c);
  }
}

void relay_start(struct client *c) {
  struct worker *w = c->w;
  c->state = CS_RELAY;
  c->relay_start_ms = now_ms();
  /* An idle session keeps only what relaying needs. */
  if (c->timer) {
    event_free(c->timer);
    c->timer = NULL;
  }
  imap_parser_free(c->parser);
  c->parser = NULL;

  bufferevent_setcb(c->cbev, on_relay_read, on_relay_write, on_relay_event, c);
  bufferevent_setcb(c->bbev, on_relay_read, on_relay_write, on_relay_event, c);
  bufferevent_setwatermark(c->cbev, EV_WRITE, RELAY_HIGH / 2, 0);
  bufferevent_setwatermark(c->bbev, EV_WRITE, RELAY_HIGH / 2, 0);
  bufferevent_set_timeouts(c->cbev, w->idle_tv, NULL);
  bufferevent_set_timeouts(c->bbev, NULL, NULL);
  bufferevent_enable(c->cbev, EV_READ | EV_WRITE);
  bufferevent_enable(c->bbev, EV_READ | EV_WRITE);
  /* Commands the client pipelined behind its LOGIN, and anything the
   * backend sent after its OK, go on now. */
  relay_pump(c, c->cbev);
  relay_pump(c, c->bbev);
}
