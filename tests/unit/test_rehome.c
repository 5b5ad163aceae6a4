/* sessiond's REHOME handler (sessiond/rehome.c), driven in-process as the
 * fuzz target drives the worker handlers: worker links are bufferevent
 * pairs, no socket, no Redis, the seats in memory. What is checked: a
 * forged ticket and a session of another worker are refused (UNAVAILABLE,
 * counted, nothing changes); a good request is answered with the master
 * credential and a ticket that checks for the new backend; a backend
 * failure marks the backend and moves the seat off it, for every session
 * of the user. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth/authcache.h"
#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/rehome.h"
#include "sessiond/seats.h"
#include "sessiond/workers.h"

#define ALICE_1 "00000000000000a1"
#define ALICE_2 "00000000000000a2"

static struct sessiond sd;
static struct backend_state states[CONFIG_MAX_BACKENDS];
static struct bufferevent *worker_ends[8];   /* freed at teardown */
static int n_worker_ends;

/* A worker process: sessiond's end of the link, and what it reads back. */
struct worker {
  struct wconn *wc;
  struct bufferevent *end;
  uint8_t body[PROTO_MAX_BODY];
  struct proto_msg last;   /* the last frame read; strings point into body */
};

static void worker_connect(struct worker *w, int pid, unsigned id) {
  struct bufferevent *pair[2];
  bufferevent_pair_new(sd.base, 0, pair);
  bufferevent_enable(pair[0], EV_READ | EV_WRITE);
  bufferevent_enable(pair[1], EV_READ | EV_WRITE);
  w->end = pair[1];
  worker_ends[n_worker_ends++] = pair[1];
  w->wc = workers_conn_new(&sd, pair[0], pid);
  w->wc->worker_id = id;
  w->wc->said_hello = 1;
}

/* The next frame sessiond sent w, or 0 if there is none. */
static int worker_read(struct worker *w) {
  proto_batch_flush(w->wc->out);
  size_t len;
  if (proto_frame_pop(bufferevent_get_input(w->end), w->body, &len) != 1) return 0;
  assert_int_equal(proto_decode(w->body, len, &w->last), 0);
  return 1;
}

static void worker_send(struct worker *w, const struct proto_msg *m) {
  static uint8_t frame[PROTO_MAX_BODY + PROTO_HDR_LEN];
  ssize_t n = proto_encode(m, frame, sizeof frame);
  assert_true(n > 0);
  assert_int_equal(workers_handle_frame(w->wc, frame + PROTO_HDR_LEN, (size_t)n - PROTO_HDR_LEN), 0);
}

/* sessiond answers a login of alice on backend b for w: the ticket comes
 * back in the LOGIN_REPLY OK, and the session joins the tables as a
 * login's does. */
static void login(struct worker *w, const char *session, const char *b, char ticket[65]) {
  int idx = sessiond_backend_index(&sd, b);
  if (!seat_find(sd.seats, "alice", now_ms())) seat_create(sd.seats, "alice", b, now_ms());
  session_add(sd.seats, session, "alice", b, "192.0.2.1:1", w->wc, now_ms());
  workers_reply_ok(&sd, w->wc, 1, session, "alice", "alice", idx);
  assert_true(worker_read(w));
  assert_int_equal(w->last.result, PROTO_OK);
  snprintf(ticket, 65, "%s", w->last.ticket);
}

static struct proto_msg rehome_msg(const char *session, const char *backend, const char *ticket,
                                   const char *reason) {
  return (struct proto_msg){.type = PROTO_REHOME, .req = 42, .session = session, .user = "alice",
                            .backend = backend, .ticket = ticket, .reason = reason,
                            .client_addr = "192.0.2.1", .client_port = 1};
}

static int setup(void **state) {
  (void)state;
  char path[64], err[256];
  snprintf(path, sizeof path, "/tmp/usher-test-rehome-%d.conf", (int)getpid());
  FILE *f = fopen(path, "w");
  fputs("[usher]\nworker_peer_check = no\n[listener imap]\naddress = 127.0.0.1:1\n"
        "[auth]\nusers_file = /dev/null\n[backend b1]\naddress = 127.0.0.1:1\n"
        "[backend b2]\naddress = 127.0.0.1:2\n[routing]\nmaster_user = usher-master\n"
        "master_password_file = /nonexistent\n",
        f);
  fclose(f);
  memset(&sd, 0, sizeof sd);
  sd.cfg = config_load(path, err, sizeof err);
  unlink(path);
  assert_non_null(sd.cfg);
  sd.base = event_base_new();
  uint8_t key[32] = {1};
  sd.cache = authcache_new(key, sizeof key, 64);
  memset(sd.session_key, 0x5a, sizeof sd.session_key);
  sd.seats = seats_new();
  sd.bstate = states;
  for (unsigned i = 0; i < sd.cfg->n_backends; i++)
    states[i] = (struct backend_state){.weight = 1, .healthy = 1};
  workers_init(&sd);
  rehome_init(&sd);
  sd.master_password = xstrdup("master-pw");   /* as rehome_load_password would */
  return 0;
}

static int teardown(void **state) {
  (void)state;
  workers_close_all(&sd);
  while (n_worker_ends > 0) bufferevent_free(worker_ends[--n_worker_ends]);
  event_base_loop(sd.base, EVLOOP_NONBLOCK);
  rehome_forget_password(&sd);
  seats_free(sd.seats);
  authcache_free(sd.cache);
  event_base_free(sd.base);
  config_free(sd.cfg);
  return 0;
}

static void assert_refused(struct worker *w, uint64_t refused_before) {
  assert_true(worker_read(w));
  assert_int_equal(w->last.type, PROTO_LOGIN_REPLY);
  assert_int_equal(w->last.req, 42);
  assert_int_equal(w->last.result, PROTO_UNAVAILABLE);
  assert_null(w->last.password);
  assert_null(w->last.master_user);
  assert_int_equal(sd.n.rehome_refused, refused_before + 1);
  struct session *s = session_find(sd.seats, ALICE_1);   /* nothing changed */
  assert_non_null(s);
  assert_string_equal(s->backend, "b1");
}

static void test_forged_ticket_refused(void **state) {
  (void)state;
  struct worker a;
  char ticket[65];
  worker_connect(&a, 1001, 1);
  login(&a, ALICE_1, "b1", ticket);
  char forged[65];
  memset(forged, '0', 64);
  forged[64] = '\0';
  struct proto_msg m = rehome_msg(ALICE_1, "b1", forged, "moved");
  worker_send(&a, &m);
  assert_refused(&a, 0);
  assert_int_equal(sd.n.worker_refused, 1);
  /* the right ticket for another backend than the one sessiond gave */
  m = rehome_msg(ALICE_1, "b2", ticket, "moved");
  worker_send(&a, &m);
  assert_refused(&a, 1);
  m = rehome_msg(ALICE_1, "b1", ticket, "because");   /* no such reason */
  worker_send(&a, &m);
  assert_refused(&a, 2);
}

static void test_other_workers_session_refused(void **state) {
  (void)state;
  struct worker a, b;
  char ticket_a[65], ticket_b[65];
  worker_connect(&a, 1001, 1);
  worker_connect(&b, 1002, 2);
  login(&a, ALICE_1, "b1", ticket_a);
  /* a's ticket shown by b: it names a's worker id and pid */
  struct proto_msg m = rehome_msg(ALICE_1, "b1", ticket_a, "moved");
  worker_send(&b, &m);
  assert_refused(&b, 0);
  /* a ticket sealed for b, for a session that a holds: not the holder */
  workers_reply_ok(&sd, b.wc, 1, ALICE_1, "alice", "alice", 0);
  assert_true(worker_read(&b));
  snprintf(ticket_b, sizeof ticket_b, "%s", b.last.ticket);
  m = rehome_msg(ALICE_1, "b1", ticket_b, "moved");
  worker_send(&b, &m);
  assert_refused(&b, 1);
  assert_ptr_equal(session_find(sd.seats, ALICE_1)->owner, a.wc);
}

static void test_good_request_gets_the_master_credential(void **state) {
  (void)state;
  struct worker a;
  char ticket[65];
  worker_connect(&a, 1001, 1);
  login(&a, ALICE_1, "b1", ticket);
  seat_move(seat_find(sd.seats, "alice", now_ms()), "b2");   /* an operator moved her */
  struct proto_msg m = rehome_msg(ALICE_1, "b1", ticket, "moved");
  worker_send(&a, &m);
  assert_true(worker_read(&a));
  assert_int_equal(a.last.type, PROTO_LOGIN_REPLY);
  assert_int_equal(a.last.req, 42);
  assert_int_equal(a.last.result, PROTO_OK);
  assert_string_equal(a.last.user, "alice");
  assert_string_equal(a.last.backend, "b2");
  assert_string_equal(a.last.backend_addr, "127.0.0.1:2");
  assert_string_equal(a.last.master_user, "usher-master");
  assert_string_equal(a.last.password, "master-pw");
  assert_int_equal(sd.n.rehome_routed, 1);
  assert_int_equal(sd.n.rehome_refused, 0);
  /* the new ticket checks for the new backend, as SESSION_UP would */
  struct proto_msg up = {.type = PROTO_SESSION_UP, .session = ALICE_1, .user = "alice",
                         .backend = "b2", .ticket = a.last.ticket};
  assert_true(workers_ticket_valid(a.wc, &up));
  up.backend = "b1";
  assert_false(workers_ticket_valid(a.wc, &up));
  struct session *s = session_find(sd.seats, ALICE_1);   /* the same id, on the new seat */
  assert_non_null(s);
  assert_string_equal(s->backend, "b2");
  assert_ptr_equal(s->owner, a.wc);
  assert_int_equal(seat_find(sd.seats, "alice", now_ms())->sessions, 1);
}

static void test_backend_failed_reseats_every_session(void **state) {
  (void)state;
  struct worker a;
  char t1[65], t2[65];
  worker_connect(&a, 1001, 1);
  login(&a, ALICE_1, "b1", t1);
  login(&a, ALICE_2, "b1", t2);
  struct proto_msg m = rehome_msg(ALICE_1, "b1", t1, "backend_failed");
  worker_send(&a, &m);
  assert_true(worker_read(&a));
  assert_int_equal(a.last.result, PROTO_OK);
  assert_string_equal(a.last.backend, "b2");
  assert_int_equal(sd.n.backend_failures, 1);
  assert_false(backend_usable(&sd, 0, now_ms()));   /* b1 marked as a failed login marks it */
  assert_string_equal(seat_find(sd.seats, "alice", now_ms())->backend, "b2");
  m = rehome_msg(ALICE_2, "b1", t2, "backend_failed");   /* the second finds the seat moved */
  worker_send(&a, &m);
  assert_true(worker_read(&a));
  assert_int_equal(a.last.result, PROTO_OK);
  assert_string_equal(a.last.backend, "b2");
  assert_string_equal(session_find(sd.seats, ALICE_2)->backend, "b2");
  assert_int_equal(seat_find(sd.seats, "alice", now_ms())->sessions, 2);
  assert_int_equal(sd.n.rehome_routed, 2);
}

static void test_off_without_master_password(void **state) {
  (void)state;
  struct worker a;
  char ticket[65];
  worker_connect(&a, 1001, 1);
  login(&a, ALICE_1, "b1", ticket);
  rehome_forget_password(&sd);
  struct proto_msg m = rehome_msg(ALICE_1, "b1", ticket, "moved");
  worker_send(&a, &m);
  assert_true(worker_read(&a));
  assert_int_equal(a.last.result, PROTO_UNAVAILABLE);
  assert_null(a.last.password);
  assert_int_equal(sd.n.rehome_unavailable, 1);
  assert_non_null(session_find(sd.seats, ALICE_1));   /* it ends by its SESSION_END */
  /* and a move's KICK does not ask for a re-home then */
  sd.kick(&sd, session_find(sd.seats, ALICE_1), "seat_moved");
  assert_true(worker_read(&a));
  assert_int_equal(a.last.type, PROTO_KICK);
  assert_int_equal(a.last.rehome, 0);
}

static void test_kick_asks_for_rehome_only_for_a_move(void **state) {
  (void)state;
  struct worker a;
  char ticket[65];
  worker_connect(&a, 1001, 1);
  login(&a, ALICE_1, "b1", ticket);
  struct session *s = session_find(sd.seats, ALICE_1);
  sd.kick(&sd, s, "seat_moved");
  assert_true(worker_read(&a));
  assert_int_equal(a.last.type, PROTO_KICK);
  assert_int_equal(a.last.rehome, 1);
  sd.kick(&sd, s, "kicked");
  assert_true(worker_read(&a));
  assert_int_equal(a.last.rehome, 0);
}

static void test_password_file_is_required(void **state) {
  (void)state;
  char *saved = sd.master_password;
  sd.master_password = NULL;
  assert_int_equal(rehome_load_password(&sd), -1);   /* /nonexistent */
  assert_null(sd.master_password);
  sd.master_password = saved;
}

/* A 0600 file is read whole, its line end dropped; with master_user unset
 * ("" as the loader leaves it) nothing is read and re-homing is off. */
static void test_password_file_read_at_start(void **state) {
  (void)state;
  char path[64];
  snprintf(path, sizeof path, "/tmp/usher-test-rehome-pw-%d", (int)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs("s3cret-master\n", f);
  fclose(f);
  assert_int_equal(chmod(path, 0600), 0);
  rehome_forget_password(&sd);
  free(sd.cfg->master_password_file);
  sd.cfg->master_password_file = xstrdup(path);
  assert_int_equal(rehome_load_password(&sd), 0);
  assert_string_equal(sd.master_password, "s3cret-master");
  assert_true(rehome_on(&sd));
  rehome_forget_password(&sd);
  sd.cfg->master_user[0] = '\0';
  assert_int_equal(rehome_load_password(&sd), 0);
  assert_null(sd.master_password);
  assert_false(rehome_on(&sd));
  unlink(path);
}

int main(void) {
  log_init("test", LOG_LVL_ERROR, 0);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_forged_ticket_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_other_workers_session_refused, setup, teardown),
      cmocka_unit_test_setup_teardown(test_good_request_gets_the_master_credential, setup, teardown),
      cmocka_unit_test_setup_teardown(test_backend_failed_reseats_every_session, setup, teardown),
      cmocka_unit_test_setup_teardown(test_off_without_master_password, setup, teardown),
      cmocka_unit_test_setup_teardown(test_kick_asks_for_rehome_only_for_a_move, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_file_is_required, setup, teardown),
      cmocka_unit_test_setup_teardown(test_password_file_read_at_start, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
