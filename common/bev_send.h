/* Writing to a bufferevent's plain socket without waiting a loop turn.
 *
 * Queuing on a bufferevent costs a loop turn and two epoll_ctl calls (the
 * write event on, then off) for every line of a login dialogue. When
 * nothing is queued ahead, the bytes can go straight to the kernel; only
 * what it does not take is queued, so ordering is kept. */
#ifndef USHER_BEV_SEND_H
#define USHER_BEV_SEND_H

#include <stddef.h>

struct bufferevent;

/* Sends what it can of data on fd now, if bev's output is empty and
 * fd >= 0 (a plain, connected socket). Queues nothing. Returns the bytes
 * sent (0 when it did not try). */
size_t bev_send_direct(struct bufferevent *bev, int fd, const void *data, size_t len);

/* bev_send_direct, then queues the rest on bev. fd < 0 (a TLS side, a
 * socket still connecting): everything is queued. */
void bev_send(struct bufferevent *bev, int fd, const void *data, size_t len);

#endif
