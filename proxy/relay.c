/* The relay: after login, bytes flow both ways untouched. Back-pressure:
 * when the far side's output holds RELAY_HIGH bytes, we stop reading the
 * near side until that output drains below half of it, so a slow reader
 * never makes the proxy buffer a fast writer's whole mailbox.
 *
 * Reading: a TLS side is read by its bufferevent (records of 16 KiB). A
 * plain socket is read here, straight into the other side's output buffer
 * with readv of up to RELAY_READ_MAX: libevent's own socket reads stop at
 * 4 KiB, which for a large FETCH costs four read calls, four epoll_ctl
 * pairs and four callbacks where one does. The event that watches a plain
 * socket is the one that has read it since its first byte.
 *
 * Ends: the backend closing (say after LOGOUT) ends the session once the
 * client has received everything, and its connection is then reset
 * (backend.c: all it sent was read); the client closing is passed on to a
 * plaintext backend as a half-close (shutdown SHUT_WR) once everything it
 * sent has been written, and the backend's remaining answers still reach
 * the client. The client side has the idle timeout (idle_timeout, 30 min
 * by default: IMAP clients re-issue IDLE before 29). */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "proxy/relay.h"

#include "common/bev_send.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/imap_track.h"

#define RELAY_HIGH (256 * 1024)
#define RELAY_READ_MAX (64 * 1024)
#define RELAY_READ_FIRST 4096
#define READS_PER_WAKEUP 8   /* then let other sessions have the loop */

/* The two ends, by the direction of the bytes: `from` reads, `!from`
 * writes. */
enum end { CLIENT = 0, BACKEND = 1 };

static inline struct side *side_of(struct client *c, enum end e) {
  return e == CLIENT ? &c->front : &c->back;
}

static inline struct bufferevent *bev_of(struct client *c, enum end e) {
  return side_of(c, e)->bev;
}

static inline int plain_fd(struct client *c, enum end e) {
  return side_plain_fd(side_of(c, e));
}

/* ---- pausing and resuming a side's reading ------------------------------------ */

static void end_pause(struct client *c, enum end e) {
  side_pause(side_of(c, e));
}

/* The client's side has the idle timeout. */
static void end_resume(struct client *c, enum end e) {
  side_resume(side_of(c, e), e == CLIENT ? c->env->idle_tv : NULL);
}

static void count(struct client *c, enum end from, size_t n) {
  if (from == CLIENT) c->bytes_in += n;
  else c->bytes_out += n;
}

/* ---- following the session (imap_track.h) --------------------------------------- */

/* With re-homing on, every byte is shown to the tracker as it passes, in
 * order: where it is (a stack buffer, or the chains of an evbuffer), not
 * a copy. */
static void track(struct client *c, enum end from, const char *p, size_t n) {
  if (from == CLIENT) imap_track_client(c->track, p, n);
  else imap_track_server(c->track, p, n);
}

/* The n bytes of buf from offset off on. */
static void track_evbuffer(struct client *c, enum end from, struct evbuffer *buf, size_t off,
                           size_t n) {
  struct evbuffer_ptr pos;
  struct evbuffer_iovec v[8];
  if (evbuffer_ptr_set(buf, &pos, off, EVBUFFER_PTR_SET) != 0) return;
  while (n > 0) {
    int k = evbuffer_peek(buf, (ev_ssize_t)n, &pos, v, 8);
    if (k <= 0) return;
    for (int i = 0; i < k && i < 8 && n > 0; i++) {
      size_t len = v[i].iov_len < n ? v[i].iov_len : n;
      track(c, from, v[i].iov_base, len);
      n -= len;
      off += len;
    }
    if (n == 0 || evbuffer_ptr_set(buf, &pos, off, EVBUFFER_PTR_SET) != 0) return;
  }
}

/* The backend connection ended or broke: the session moves if it can
 * (rehome.h), else it ends as it always has. 1: it moves. */
static int backend_lost(struct client *c) {
  /* After the client's own end the backend closing is the session's end
   * (the half-close passed on), not a failure. */
  return c->track && !c->front.eof && c->hooks->backend_lost && c->hooks->backend_lost(c);
}

/* Moves what side `from`'s bufferevent has read into the other's output
 * (no copy: chains move). A plain socket with nothing queued takes it
 * straight away (a TLS client's command to a plain backend): queuing would
 * cost a wait for writability and two epoll_ctl calls. */
static void relay_pump(struct client *c, enum end from) {
  struct evbuffer *src = bufferevent_get_input(bev_of(c, from));
  struct evbuffer *dst = bufferevent_get_output(bev_of(c, !from));
  size_t n = evbuffer_get_length(src);
  if (n == 0) return;
  count(c, from, n);
  if (c->track) track_evbuffer(c, from, src, 0, n);
  int fd = plain_fd(c, !from);
  if (fd >= 0 && evbuffer_get_length(dst) == 0)
    evbuffer_write(src, fd);   /* an error shows on the socket's reading, or on the queued rest */
  evbuffer_add_buffer(dst, src);
  if (evbuffer_get_length(dst) >= RELAY_HIGH) end_pause(c, from);
}

/* A TLS side's callbacks can run inside a write to it (client.c): they
 * end the session with client_free_soon. */
static int end_is_tls(struct client *c, enum end e) {
  return plain_fd(c, e) < 0;
}

static void relay_end(struct client *c, int in_tls_callback, const char *reason) {
  if (in_tls_callback) client_free_soon(c, reason);
  else client_free(c, reason);
}

/* An end of stream waits until the other direction is flushed. */
static void relay_check_ends(struct client *c, int in_tls_callback) {
  size_t to_client = side_unsent(&c->front);   /* a TLS filter's socket side too */
  size_t to_backend = evbuffer_get_length(bufferevent_get_output(c->back.bev));
  if (c->back.eof && to_client == 0) {
    relay_end(c, in_tls_callback, c->front.eof ? "closed" : "backend_closed");
    return;
  }
  if (c->front.eof && to_backend == 0) {
    int bfd = side_plain_fd(&c->back);
    if (bfd < 0) {   /* a TLS backend: nothing more to wait for */
      relay_end(c, in_tls_callback, "client_closed");
      return;
    }
    shutdown(bfd, SHUT_WR);
  }
  /* Wake the write callback when the flush we wait for completes. */
  if (c->back.eof) bufferevent_setwatermark(c->front.bev, EV_WRITE, 0, 0);
  if (c->front.eof) bufferevent_setwatermark(c->back.bev, EV_WRITE, 0, 0);
}

static void end_eof(struct client *c, enum end e, int in_tls_callback) {
  struct side *s = side_of(c, e);
  if (e == BACKEND && backend_lost(c)) return;
  s->eof = 1;
  side_pause(s);
  relay_check_ends(c, in_tls_callback);
}

/* ---- plain sockets, read here ---------------------------------------------------- */

/* A read that got n <= 0: end of stream or an error stops this side (and
 * may free c); EAGAIN just waits for the next readiness. */
static void read_stopped(struct client *c, enum end from, ssize_t n) {
  if (n == 0) end_eof(c, from, 0);
  else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
           !(from == BACKEND && backend_lost(c)))
    client_free(c, from == CLIENT ? "client_error" : "backend_error");
}

/* The common case, a line or two, with nothing queued for the other side:
 * read it onto the stack and hand it to the other socket at once, without
 * touching an output buffer. Returns 1 when there may be more to read.
 *
 * The backend's last words (LOGOUT's BYE and OK) usually arrive with its
 * FIN: epoll said so (EV_CLOSED) before this read, and a read that did not
 * fill the buffer took everything up to the FIN. Then the backend is done
 * without another read, and the bytes go to the client held for the close
 * that follows, which sends them and the FIN in one segment. */
static int read_small(struct client *c, enum end from, int fd, short what) {
  char small[RELAY_READ_FIRST];
  ssize_t n = read(fd, small, sizeof small);
  if (n <= 0) {
    read_stopped(c, from, n);
    return 0;
  }
  count(c, from, (size_t)n);
  if (c->track) track(c, from, small, (size_t)n);
  if (from == BACKEND && (what & EV_CLOSED) && (size_t)n < sizeof small) {
    /* Held for the close, unless the session may move instead. */
    if (c->track) bev_send(c->front.bev, plain_fd(c, CLIENT), small, (size_t)n);
    else bev_send_last(c->front.bev, plain_fd(c, CLIENT), small, (size_t)n);
    end_eof(c, BACKEND, 0);
    return 0;
  }
  bev_send(bev_of(c, !from), plain_fd(c, !from), small, (size_t)n);
  return (size_t)n == sizeof small;
}

/* Bulk: readv of up to RELAY_READ_MAX straight into the other side's
 * output, a few times per wakeup, stopping at the high watermark. */
static void read_bulk(struct client *c, enum end from, int fd) {
  struct evbuffer *dst = bufferevent_get_output(bev_of(c, !from));
  for (int i = 0; i < READS_PER_WAKEUP; i++) {
    if (evbuffer_get_length(dst) >= RELAY_HIGH) {
      end_pause(c, from);
      return;
    }
    size_t before = evbuffer_get_length(dst);
    ssize_t n = sock_read_bulk_into(fd, dst, RELAY_READ_MAX);
    if (n < 0 && errno == ENOMEM) {
      client_free(c, "out_of_memory");
      return;
    }
    if (n <= 0) {
      read_stopped(c, from, n);
      return;
    }
    count(c, from, (size_t)n);
    if (c->track) track_evbuffer(c, from, dst, before, (size_t)n);
    if ((size_t)n < RELAY_READ_MAX) return;   /* the socket is drained */
  }
}

static void relay_plain_readable(evutil_socket_t fd, short what, void *arg) {
  struct client *c = arg;
  enum end from = fd == plain_fd(c, CLIENT) ? CLIENT : BACKEND;
  if (what & EV_TIMEOUT) {
    client_free(c, "idle_timeout");
    return;
  }
  if (evbuffer_get_length(bufferevent_get_output(bev_of(c, !from))) == 0 &&
      !read_small(c, from, fd, what))
    return;
  read_bulk(c, from, fd);
}

static const struct client_handlers relay_handlers = {.readable = relay_plain_readable};

/* ---- bufferevent callbacks ---------------------------------------------------------- */

static void on_relay_read(struct bufferevent *bev, void *arg) {
  struct client *c = arg;
  enum end from = bev == c->front.bev ? CLIENT : BACKEND;
  relay_pump(c, from);
}

static void on_relay_write(struct bufferevent *bev, void *arg) {
  struct client *c = arg;
  enum end src = bev == c->front.bev ? BACKEND : CLIENT;   /* who fills this output */
  if (side_of(c, src)->eof) {
    relay_check_ends(c, end_is_tls(c, !src));
    return;
  }
  /* Below the low watermark again: the reader may go on. */
  if (side_paused(side_of(c, src))) {
    end_resume(c, src);
    if (end_is_tls(c, src)) relay_pump(c, src);   /* its bufferevent may hold input */
  }
}

static void on_relay_event(struct bufferevent *bev, short what, void *arg) {
  struct client *c = arg;
  enum end s = bev == c->front.bev ? CLIENT : BACKEND;
  int tls = end_is_tls(c, s);
  if (what & BEV_EVENT_TIMEOUT) {
    relay_end(c, tls, "idle_timeout");
    return;
  }
  if (what & BEV_EVENT_ERROR) {
    if (s == BACKEND && backend_lost(c)) return;
    relay_end(c, tls, s == CLIENT ? "client_error" : "backend_error");
    return;
  }
  if (what & BEV_EVENT_EOF) {
    relay_pump(c, s);
    if (!c->free_armed) end_eof(c, s, tls);
  }
}

void relay_free(struct client *c) {
  imap_track_free(c->track);
  c->track = NULL;
}

void relay_start(struct client *c) {
  /* Followed only when it could move: re-homing needs the master user. */
  const struct config *cfg = c->env->cfg;
  if (!c->track && cfg->rehome && cfg->master_user[0]) c->track = imap_track_new();
  c->state = CS_RELAY;
  c->relay_start_ms = now_ms();
  /* An idle session keeps only what relaying needs. */
  if (c->timer) {
    event_free(c->timer);
    c->timer = NULL;
  }
  /* Plain sockets are read here, through the events that have read them
   * since the greeting (client.c, backend.c), which now hand their
   * readiness to this stage's handler; TLS sides by their bufferevents. */
  client_set_handlers(c, &relay_handlers);

  for (int e = CLIENT; e <= BACKEND; e++) {
    struct bufferevent *bev = bev_of(c, e);
    bufferevent_setcb(bev, on_relay_read, on_relay_write, on_relay_event, c);
    bufferevent_setwatermark(bev, EV_WRITE, RELAY_HIGH / 2, 0);
    bufferevent_set_max_single_write(bev, RELAY_HIGH);
    if (plain_fd(c, e) < 0) bufferevent_set_max_single_read(bev, RELAY_READ_MAX);
  }
  client_hold_input(c, 0);
  /* The idle timeout: on a plain client's own reading event (end_resume),
   * else on its bufferevent. */
  bufferevent_set_timeouts(c->front.bev, c->front.rd ? NULL : c->env->idle_tv, NULL);
  bufferevent_set_timeouts(c->back.bev, NULL, NULL);
  /* Commands the client pipelined behind its LOGIN, and anything the
   * backend sent after its OK, go on now; then reading starts. */
  relay_pump(c, CLIENT);
  relay_pump(c, BACKEND);
  for (int e = CLIENT; e <= BACKEND; e++) {
    if (evbuffer_get_length(bufferevent_get_output(bev_of(c, !e))) < RELAY_HIGH) end_resume(c, e);
    else end_pause(c, e);
  }
}
