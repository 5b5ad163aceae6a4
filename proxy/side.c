/* One end of a session: its socket, bufferevent and reading event, made,
 * re-aimed and closed (side.h). */
#include "proxy/side.h"

#include <sys/socket.h>
#include <unistd.h>

void side_init(struct side *s) {
  s->fd = -1;
  s->bev = NULL;
  s->rd = NULL;
  s->eof = 0;
  s->is_tls = 0;
}

void side_open(struct side *s, int fd) {
  side_init(s);
  s->fd = fd;
}

void side_tls_owns(struct side *s, struct bufferevent *bev) {
  s->bev = bev;
  s->fd = -1;
  s->is_tls = 1;
}

int side_watch(struct side *s, struct event_base *base, short what, event_callback_fn cb,
               void *arg) {
  if (!s->rd) {
    s->rd = event_new(base, s->fd, what | EV_PERSIST, cb, arg);
    if (!s->rd) return -1;
  } else {   /* an event is re-aimed only while not pending */
    event_del(s->rd);
    event_assign(s->rd, base, s->fd, what | EV_PERSIST, cb, arg);
  }
  event_add(s->rd, NULL);
  return 0;
}

void side_unwatch(struct side *s) {
  if (!s->rd) return;
  event_free(s->rd);
  s->rd = NULL;
}

void side_drop_plain(struct side *s) {
  side_unwatch(s);
  if (s->bev) {   /* a plain bufferevent leaves the fd open */
    bufferevent_free(s->bev);
    s->bev = NULL;
  }
}

void side_silence(struct side *s) {
  if (s->rd) event_del(s->rd);
  if (s->bev) {
    bufferevent_setcb(s->bev, NULL, NULL, NULL, NULL);
    bufferevent_disable(s->bev, EV_READ | EV_WRITE);
  }
}

void side_close(struct side *s, int reset_after_eof) {
  side_unwatch(s);
  if (s->bev) {
    /* The client's TLS filter: its socket side must not close our fd. */
    if (s->is_tls && s->fd >= 0) bev_filter_release_fd(s->bev);
    bufferevent_free(s->bev);
  }
  if (s->fd >= 0) {
    if (reset_after_eof && s->eof) {
      struct linger now = {1, 0};
      setsockopt(s->fd, SOL_SOCKET, SO_LINGER, &now, sizeof now);
    }
    close(s->fd);
  }
  side_init(s);
}
