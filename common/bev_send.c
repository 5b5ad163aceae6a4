/* Direct sends on plain sockets (see bev_send.h). */
#include "common/bev_send.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/util.h"

static size_t send_now(struct bufferevent *bev, int fd, const void *data, size_t len, int flags) {
  if (fd < 0 || evbuffer_get_length(bufferevent_get_output(bev)) != 0) return 0;
  ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT | flags);
  return n > 0 ? (size_t)n : 0;
}

size_t bev_send_direct(struct bufferevent *bev, int fd, const void *data, size_t len) {
  return send_now(bev, fd, data, len, 0);
}

static void send_or_queue(struct bufferevent *bev, int fd, const void *data, size_t len, int flags) {
  size_t done = send_now(bev, fd, data, len, flags);
  if (done < len) bufferevent_write(bev, (const char *)data + done, len - done);
}

void bev_send(struct bufferevent *bev, int fd, const void *data, size_t len) {
  send_or_queue(bev, fd, data, len, 0);
}

void bev_send_last(struct bufferevent *bev, int fd, const void *data, size_t len) {
  send_or_queue(bev, fd, data, len, MSG_MORE);
}

void bev_vprintf(struct bufferevent *bev, int fd, const char *fmt, va_list ap) {
  char line[1024];
  va_list again;
  va_copy(again, ap);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  if (n >= 0 && (size_t)n < sizeof line)
    bev_send(bev, fd, line, (size_t)n);
  else
    evbuffer_add_vprintf(bufferevent_get_output(bev), fmt, again);
  va_end(again);
}

ssize_t sock_read_into(int fd, struct evbuffer *in) {
  char buf[SOCK_READ_SMALL];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n <= 0) return n;
  int failed = evbuffer_add(in, buf, (size_t)n) != 0;
  wipe(buf, (size_t)n);
  if (failed) {
    errno = ENOMEM;
    return -1;
  }
  return n;
}

ssize_t sock_read_bulk_into(int fd, struct evbuffer *in, size_t max) {
  struct evbuffer_iovec v[2];
  int nv = evbuffer_reserve_space(in, (ev_ssize_t)max, v, 2);
  if (nv <= 0) {
    errno = ENOMEM;
    return -1;
  }
  struct iovec iov[2];
  for (int k = 0; k < nv; k++) iov[k] = (struct iovec){v[k].iov_base, v[k].iov_len};
  ssize_t n = nv == 1 ? read(fd, iov[0].iov_base, iov[0].iov_len) : readv(fd, iov, nv);
  size_t left = n > 0 ? (size_t)n : 0;
  for (int k = 0; k < nv; k++) {
    v[k].iov_len = left < v[k].iov_len ? left : v[k].iov_len;
    left -= v[k].iov_len;
  }
  int saved = errno;
  evbuffer_commit_space(in, v, nv);
  errno = saved;
  return n;
}

void bev_read_by_us(struct bufferevent *bev) {
  evbuffer_unfreeze(bufferevent_get_input(bev), 0);
}

size_t bev_unsent(struct bufferevent *bev) {
  struct bufferevent *under = bufferevent_get_underlying(bev);
  return evbuffer_get_length(bufferevent_get_output(bev)) +
         (under ? evbuffer_get_length(bufferevent_get_output(under)) : 0);
}

static void on_under_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
  struct bufferevent *filter = arg;
  if (info->n_deleted && evbuffer_get_length(buf) == 0 &&
      evbuffer_get_length(bufferevent_get_output(filter)) == 0)
    bufferevent_trigger(filter, EV_WRITE, BEV_TRIG_DEFER_CALLBACKS | BEV_TRIG_IGNORE_WATERMARKS);
}

void bev_filter_socket_side(struct bufferevent *filter) {
  struct bufferevent *under = bufferevent_get_underlying(filter);
  if (!under) return;
  bufferevent_setwatermark(under, EV_WRITE, 0, FILTER_SOCKET_HIGH);
  evbuffer_add_cb(bufferevent_get_output(under), on_under_output, filter);
}

void bev_filter_release_fd(struct bufferevent *filter) {
  struct bufferevent *under = bufferevent_get_underlying(filter);
  if (!under) return;
  bufferevent_disable(under, EV_READ | EV_WRITE);
  bufferevent_setfd(under, -1);
}
