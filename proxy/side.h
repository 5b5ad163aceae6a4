/* One end of a session in a proxy worker: the client's socket (the front
 * side) or the backend's (the back side). A side is its socket, the
 * bufferevent that writes it (and, on TLS, reads it), the event that reads
 * a plain socket itself (see bev_send.h), whether its peer has ended the
 * stream, and whether it runs TLS.
 *
 * A side is closed and opened again as a whole: side_close() leaves it as
 * side_init() made it (no socket, no events, no flags), so a back side can
 * be closed and a fresh one connected on the same client while the front
 * side goes on (re-homing a session).
 *
 * Who owns the socket: a plain side and the client's TLS side keep their
 * fd (no bufferevent closes it); a TLS bufferevent made over the socket
 * with BEV_OPT_CLOSE_ON_FREE (the backend's) owns it, and the side's fd is
 * then -1 (side_tls_owns). */
#ifndef USHER_PROXY_SIDE_H
#define USHER_PROXY_SIDE_H

#include <stddef.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/bev_send.h"

struct side {               /* 24 bytes: the flags share the fd's word */
  int fd;                   /* the socket; -1: none, or a TLS bufferevent owns it */
  unsigned eof : 1;         /* the peer ended its stream (relay) */
  unsigned is_tls : 1;      /* the side runs TLS (now) */
  struct bufferevent *bev;  /* writes; reads too on TLS */
  struct event *rd;         /* reads a plain socket (and the client's TLS handshake) */
};

/* An empty side: no socket, no events. */
void side_init(struct side *s);
/* A fresh plain side on socket fd (the side must be empty). */
void side_open(struct side *s, int fd);
/* The side goes TLS on bev, which owns the socket from now on. */
void side_tls_owns(struct side *s, struct bufferevent *bev);
/* Reads the socket with an event of its own: cb(fd, what, arg) on what
 * (EV_PERSIST is added). The side's reading event is made or re-aimed,
 * and added. -1 when it cannot be made. */
int side_watch(struct side *s, struct event_base *base, short what, event_callback_fn cb,
               void *arg);
/* The reading event goes (the socket and bufferevent stay). */
void side_unwatch(struct side *s);
/* The reading event and a plain bufferevent go; the socket stays (before
 * a TLS handshake on it). */
void side_drop_plain(struct side *s);
/* No more reading and no more callbacks from this side (it stays open). */
void side_silence(struct side *s);
/* Closes everything and empties the side. reset_after_eof: a side whose
 * peer closed first and was read to the end is reset (SO_LINGER 0), which
 * leaves the peer no TIME_WAIT. */
void side_close(struct side *s, int reset_after_eof);

/* The socket when it is plain (read and written by us), else -1. */
static inline int side_plain_fd(const struct side *s) {
  return s->is_tls ? -1 : s->fd;
}

/* Bytes written to the side that are not on the wire yet (0 without a
 * bufferevent). */
static inline size_t side_unsent(const struct side *s) {
  return s->bev ? bev_unsent(s->bev) : 0;
}

/* Pausing and resuming the side's reading: its own event on a plain
 * socket, else its bufferevent. tv: the reading event's timeout (idle). */
static inline void side_pause(struct side *s) {
  if (s->rd && !s->is_tls) event_del(s->rd);
  else if (s->bev) bufferevent_disable(s->bev, EV_READ);
}

static inline void side_resume(struct side *s, const struct timeval *tv) {
  if (s->rd && !s->is_tls) event_add(s->rd, tv);
  else if (s->bev) bufferevent_enable(s->bev, EV_READ);
}

static inline int side_paused(const struct side *s) {
  if (s->rd && !s->is_tls) return !event_pending(s->rd, EV_READ, NULL);
  return !s->bev || !(bufferevent_get_enabled(s->bev) & EV_READ);
}

#endif
