/* Plain sockets beside their bufferevents: direct writes and our own reads.
 *
 * Queuing on a bufferevent costs a loop turn and two epoll_ctl calls (the
 * write event on, then off) for every line of a login dialogue. When
 * nothing is queued ahead, the bytes can go straight to the kernel; only
 * what it does not take is queued, so ordering is kept. A socket
 * bufferevent is born with writing enabled and watches writability only
 * while bytes wait; calling bufferevent_enable(EV_WRITE) with nothing
 * queued costs a whole epoll round (on, a wake-up, off), so it is not done.
 *
 * Reading: a bufferevent asks the kernel for FIONREAD before every read,
 * one system call per line of a login dialogue. The proxy reads its plain
 * sockets itself, into the bufferevent's input, with sock_read_into(). */
#ifndef USHER_BEV_SEND_H
#define USHER_BEV_SEND_H

#include <stdarg.h>
#include <stddef.h>
#include <sys/types.h>

struct bufferevent;
struct evbuffer;

/* Sends what it can of data on fd now, if bev's output is empty and
 * fd >= 0 (a plain, connected socket). Queues nothing. Returns the bytes
 * sent (0 when it did not try). */
size_t bev_send_direct(struct bufferevent *bev, int fd, const void *data, size_t len);

/* bev_send_direct, then queues the rest on bev. fd < 0 (a TLS side, a
 * socket still connecting): everything is queued. */
void bev_send(struct bufferevent *bev, int fd, const void *data, size_t len);

/* bev_send of the last bytes before the socket is closed: the kernel holds
 * them (MSG_MORE) and the close's FIN leaves in the same segment, one
 * segment fewer for both ends. Only when the close follows in the same
 * turn: held bytes wait for the next send or the close. A rest that had to
 * be queued is pushed by its own later send. */
void bev_send_last(struct bufferevent *bev, int fd, const void *data, size_t len);

/* bev_send of a formatted line. A line longer than 1 KiB is formatted by
 * libevent straight into bev's output (queued, never sent directly). Not
 * for secrets: the line passes through a stack buffer left as it is. */
void bev_vprintf(struct bufferevent *bev, int fd, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* One read of up to SOCK_READ_SMALL bytes from fd, appended to in: for a
 * login dialogue's lines. The bytes go through a stack buffer (wiped: it
 * may hold a password), so that in grows by what arrived, not by a whole
 * reservation; a connection sending a byte at a time holds a byte. Returns
 * the bytes read, 0 at end of stream, -1 on error (errno; EAGAIN: nothing
 * there). */
#define SOCK_READ_SMALL 16384
ssize_t sock_read_into(int fd, struct evbuffer *in);

/* The same for bulk, up to max bytes read straight into space reserved at
 * the end of in (no copy). */
ssize_t sock_read_bulk_into(int fd, struct evbuffer *in, size_t max);

/* Makes bev's input ours to fill with sock_read_into(): a socket
 * bufferevent keeps the end of its input frozen. Its own reading must stay
 * disabled. */
void bev_read_by_us(struct bufferevent *bev);

/* A TLS filter bufferevent hands its bytes to a socket bufferevent under
 * it. What is not on the wire yet is in either output: bev_unsent() counts
 * both (a plain bufferevent: its own output). */
size_t bev_unsent(struct bufferevent *bev);

/* The socket side of a TLS filter (ours or libevent's OpenSSL one):
 * - Records wait there only up to FILTER_SOCKET_HIGH; the rest stays in
 *   the filter's output, where the relay sees a slow client and stops
 *   reading the backend. Without the mark a client that did not read had
 *   the worker hold a whole FETCH.
 * - A filter runs its write callback only when it moves bytes down, not
 *   when the socket has sent the last of them: this makes it run
 *   (deferred) then too, so that "flushed" (bev_unsent() == 0) can be
 *   waited for. */
#define FILTER_SOCKET_HIGH (64 * 1024)
void bev_filter_socket_side(struct bufferevent *filter);

/* Before the socket is closed: the socket side of a filter lets go of its
 * fd at once. (Freeing a bufferevent from inside its own callbacks is
 * finished later, and its events must not live on to catch the next
 * connection given the same descriptor number.) */
void bev_filter_release_fd(struct bufferevent *filter);

#endif
