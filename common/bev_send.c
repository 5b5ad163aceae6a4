/* Direct sends on plain sockets (see bev_send.h). */
#include "common/bev_send.h"

#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

size_t bev_send_direct(struct bufferevent *bev, int fd, const void *data, size_t len) {
  if (fd < 0 || evbuffer_get_length(bufferevent_get_output(bev)) != 0) return 0;
  ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  return n > 0 ? (size_t)n : 0;
}

void bev_send(struct bufferevent *bev, int fd, const void *data, size_t len) {
  size_t done = bev_send_direct(bev, fd, data, len);
  if (done < len) bufferevent_write(bev, (const char *)data + done, len - done);
}
