/* Unit tests of an end of a session (proxy/side): a side is closed and
 * opened again as a whole (re-homing closes the back side and connects a
 * fresh one on the same client), its reading pauses and resumes, and a
 * TLS bufferevent takes its socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/side.h"

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what; (void)arg;
}

/* A plain side on one end of a socket pair, as backend.c opens one. */
static void open_plain(struct side *s, struct event_base *base, int *peer) {
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  side_open(s, sv[0]);
  s->bev = bufferevent_socket_new(base, sv[0], 0);
  assert_non_null(s->bev);
  assert_int_equal(side_watch(s, base, EV_READ | EV_CLOSED, on_readable, NULL), 0);
  *peer = sv[1];
}

static void test_close_empties_and_reopens(void **state) {
  (void)state;
  struct event_base *base = event_base_new();
  struct side s;
  side_init(&s);
  assert_int_equal(side_plain_fd(&s), -1);
  assert_int_equal(side_unsent(&s), 0);

  int peer;
  open_plain(&s, base, &peer);
  int first_fd = s.fd;
  assert_int_equal(side_plain_fd(&s), first_fd);
  assert_true(event_pending(s.rd, EV_READ, NULL));
  s.eof = 1;   /* the peer ended first, as a backend after LOGOUT */
  side_close(&s, 1);
  assert_int_equal(s.fd, -1);
  assert_null(s.bev);
  assert_null(s.rd);
  assert_false(s.eof);
  assert_false(s.is_tls);
  assert_int_equal(fcntl(first_fd, F_GETFD), -1);   /* the socket is closed */
  close(peer);

  /* A fresh side on the same struct: nothing of the old one shows. */
  open_plain(&s, base, &peer);
  assert_false(s.eof);
  assert_true(side_plain_fd(&s) >= 0);
  assert_true(event_pending(s.rd, EV_READ, NULL));
  assert_int_equal(write(s.fd, "x\r\n", 3), 3);
  side_close(&s, 0);
  close(peer);
  event_base_free(base);
}

static void test_pause_resume(void **state) {
  (void)state;
  struct event_base *base = event_base_new();
  struct side s;
  int peer;
  side_init(&s);
  open_plain(&s, base, &peer);
  assert_false(side_paused(&s));
  side_pause(&s);
  assert_true(side_paused(&s));
  side_resume(&s, NULL);
  assert_false(side_paused(&s));
  /* Silenced: no reading, though the side stays open. */
  side_silence(&s);
  assert_true(side_paused(&s));
  assert_true(s.fd >= 0);
  side_close(&s, 0);
  close(peer);
  event_base_free(base);
}

/* A bufferevent that owns the socket: the side's fd is -1, it is no longer
 * plain, and its reading is the bufferevent's. */
static void test_tls_owns_socket(void **state) {
  (void)state;
  struct event_base *base = event_base_new();
  struct side s;
  int sv[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  side_init(&s);
  side_open(&s, sv[0]);
  struct bufferevent *bev = bufferevent_socket_new(base, sv[0], BEV_OPT_CLOSE_ON_FREE);
  side_tls_owns(&s, bev);
  assert_int_equal(side_plain_fd(&s), -1);
  assert_true(s.is_tls);
  bufferevent_enable(bev, EV_READ);
  assert_false(side_paused(&s));
  side_pause(&s);
  assert_true(side_paused(&s));
  side_close(&s, 1);
  assert_null(s.bev);
  assert_false(s.is_tls);
  event_base_loop(base, EVLOOP_NONBLOCK);   /* libevent finalizes a freed bufferevent in the loop */
  assert_int_equal(fcntl(sv[0], F_GETFD), -1);   /* the bufferevent closed it */
  close(sv[1]);
  event_base_free(base);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_close_empties_and_reopens),
      cmocka_unit_test(test_pause_resume),
      cmocka_unit_test(test_tls_owns_socket),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
