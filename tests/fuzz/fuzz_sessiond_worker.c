/* libFuzzer target: the worker side of the protocol as sessiond sees it,
 * the input playing a worker that was taken over.
 *
 * Three worker slots talk to sessiond's real handlers (workers.c,
 * seatstore.c, seats.c) through in-memory bufferevent pairs: no socket,
 * no Redis, no password database. This file stands in for login.c: every
 * well-formed LOGIN is answered, at once, with the seat that seatstore
 * chooses, so what sessiond answered is exactly the LOGIN_REPLY OKs the
 * slots read back. The input is a script of steps: HELLO, LOGIN,
 * SESSION_UP replaying (and mutating) a ticket some slot was given,
 * SESSION_END, BACKEND_FAILED, raw frame bytes, a link that drops and
 * comes back (same pid), a worker that restarts (new pid), and a sessiond
 * that restarts (its memory gone, its key the same).
 *
 * After every step: every session sessiond counts is one it answered OK
 * to the worker process that holds it (same session id, user, backend),
 * on a configured backend; every seat belongs to a user sessiond answered
 * OK for, and counts exactly the sessions of its user; the sessions of the
 * workers that did not act are all still there, still theirs. And no
 * crash. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "auth/authcache.h"
#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/login.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/workers.h"

#define SLOTS 3
#define MAX_STEPS 200

struct answer { char session[17]; char *user; char *backend; char ticket[PROTO_TICKET_HEX_LEN + 1]; };

struct slot {
  int pid;
  struct wconn *wc;                /* NULL: not connected */
  struct bufferevent *worker_end;  /* the worker's side of the pair */
  struct answer *answers;          /* every LOGIN_REPLY OK this process got */
  size_t n_answers, cap_answers;
};

static struct sessiond sd;
static struct slot slots[SLOTS];
static int next_pid = 1000;
static uint8_t body[PROTO_MAX_BODY];
static const char *const users[] = {"alice", "bob", "carol", "dave"};
static const char *const backends[] = {"b1", "b2", "no-such-backend"};

/* ---- login.c's stand-in ------------------------------------------------------ */

struct pending {
  login_done_fn done;
  void *cookie;
  uint32_t req;
  char session[17];
  char *user;
};

static void on_routed(void *cookie, int idx) {
  struct pending *p = cookie;
  struct login_answer a = {.req = p->req, .session = p->session,
                           .result = idx < 0 ? PROTO_UNAVAILABLE : PROTO_OK, .user = p->user,
                           .seat = p->user, .backend = idx};
  p->done(p->cookie, &a);
  free(p->user);
  free(p);
}

void login_start(struct sessiond *sdp, const struct proto_msg *m, void *owner, const int *gone,
                 login_done_fn done, void *cookie) {
  if (!m->user || !m->user[0] || !m->session || strlen(m->session) != 16) {
    struct login_answer a = {.req = m->req, .session = m->session, .result = PROTO_AUTH_FAILED,
                             .backend = -1};
    done(cookie, &a);
    return;
  }
  struct pending *p = xcalloc(1, sizeof *p);
  p->done = done;
  p->cookie = cookie;
  p->req = m->req;
  snprintf(p->session, sizeof p->session, "%s", m->session);
  p->user = xstrdup(m->user);
  seatstore_route(sdp, owner, gone, m->session, "192.0.2.1:1", m->user, NULL, NULL, on_routed, p);
}

/* ---- the world --------------------------------------------------------------------- */

static void setup_once(void) {
  static int done;
  if (done) return;
  done = 1;
  log_init("fuzz", LOG_LVL_ERROR, 0);
  char path[64], err[256];
  snprintf(path, sizeof path, "/tmp/usher-fuzz-sessiond-%d.conf", (int)getpid());
  FILE *f = fopen(path, "w");
  fputs("[usher]\nworker_peer_check = no\n[listener imap]\naddress = 127.0.0.1:1\n"
        "[auth]\nusers_file = /dev/null\n[backend b1]\naddress = 127.0.0.1:1\n"
        "[backend b2]\naddress = 127.0.0.1:2\n",
        f);
  fclose(f);
  sd.cfg = config_load(path, err, sizeof err);
  unlink(path);
  if (!sd.cfg) {
    fprintf(stderr, "fuzz config: %s\n", err);
    abort();
  }
  sd.base = event_base_new();
  uint8_t key[32] = {1};
  sd.cache = authcache_new(key, sizeof key, 1024);
  memset(sd.session_key, 0x5a, sizeof sd.session_key);
}

static void slot_connect(struct slot *s) {
  struct bufferevent *pair[2];
  bufferevent_pair_new(sd.base, 0, pair);
  bufferevent_enable(pair[0], EV_READ | EV_WRITE);
  bufferevent_enable(pair[1], EV_READ | EV_WRITE);
  s->worker_end = pair[1];
  s->wc = workers_conn_new(&sd, pair[0], s->pid);
}

static void slot_disconnect(struct slot *s) {
  if (!s->wc) return;
  workers_conn_close(s->wc);   /* frees sessiond's end of the pair */
  bufferevent_free(s->worker_end);
  s->wc = NULL;
  s->worker_end = NULL;
}

static void answers_clear(struct slot *s) {
  for (size_t i = 0; i < s->n_answers; i++) {
    free(s->answers[i].user);
    free(s->answers[i].backend);
  }
  free(s->answers);
  s->answers = NULL;
  s->n_answers = s->cap_answers = 0;
}

static void world_start(void) {
  static struct backend_state states[CONFIG_MAX_BACKENDS];
  sd.seats = seats_new();
  sd.bstate = states;
  workers_init(&sd);
  for (unsigned i = 0; i < sd.cfg->n_backends; i++)
    sd.bstate[i] = (struct backend_state){.weight = sd.cfg->backends[i].weight, .healthy = 1};
  for (int i = 0; i < SLOTS; i++) {
    slots[i].pid = next_pid++;
    slot_connect(&slots[i]);
  }
}

static void world_stop(void) {
  for (int i = 0; i < SLOTS; i++) {
    slot_disconnect(&slots[i]);
    answers_clear(&slots[i]);
  }
  seats_free(sd.seats);
  sd.seats = NULL;
  /* libevent frees a bufferevent in its loop (deferred): one turn. */
  event_base_loop(sd.base, EVLOOP_NONBLOCK);
}

/* sessiond restarts: its memory is gone, the master's key stays, and the
 * workers reconnect (they still hold their tickets). */
static void sessiond_restart(void) {
  for (int i = 0; i < SLOTS; i++) slot_disconnect(&slots[i]);
  seats_free(sd.seats);
  sd.seats = seats_new();
  for (int i = 0; i < SLOTS; i++) slot_connect(&slots[i]);
}

/* ---- what the slots read back -------------------------------------------------------- */

static void remember_answer(struct slot *s, const struct proto_msg *m) {
  if (m->type != PROTO_LOGIN_REPLY || m->result != PROTO_OK) return;
  if (!m->session || !m->backend || !m->ticket || strlen(m->session) != 16 ||
      strlen(m->ticket) != PROTO_TICKET_HEX_LEN)
    __builtin_trap();   /* an OK always carries its ticket */
  const char *user = m->user;
  for (size_t i = s->n_answers; !user && i-- > 0;)   /* another seat: the same login's name */
    if (!strcmp(s->answers[i].session, m->session)) user = s->answers[i].user;
  if (!user) __builtin_trap();   /* an OK without names is only for a session it answered */
  if (s->n_answers == s->cap_answers) {
    s->cap_answers = s->cap_answers ? 2 * s->cap_answers : 16;
    s->answers = xrealloc(s->answers, s->cap_answers * sizeof *s->answers);
  }
  struct answer *a = &s->answers[s->n_answers++];
  snprintf(a->session, sizeof a->session, "%s", m->session);
  a->user = xstrdup(user);
  a->backend = xstrdup(m->backend);
  snprintf(a->ticket, sizeof a->ticket, "%s", m->ticket);
}

static void read_replies(void) {
  for (int i = 0; i < SLOTS; i++) {
    struct slot *s = &slots[i];
    if (!s->wc) continue;
    proto_batch_flush(s->wc->out);
    size_t len;
    static uint8_t reply[PROTO_MAX_BODY];
    while (proto_frame_pop(bufferevent_get_input(s->worker_end), reply, &len) == 1) {
      struct proto_msg m;
      if (proto_decode(reply, len, &m) != 0) __builtin_trap();   /* sessiond's own frames */
      remember_answer(s, &m);
    }
  }
}

/* ---- the invariants ---------------------------------------------------------------- */

static const struct slot *slot_of(const void *wc) {
  for (int i = 0; i < SLOTS; i++)
    if (slots[i].wc && slots[i].wc == wc) return &slots[i];
  return NULL;
}

static int answered(const struct slot *s, const char *session, const char *user,
                    const char *backend) {
  for (size_t i = 0; i < s->n_answers; i++) {
    const struct answer *a = &s->answers[i];
    if (!strcmp(a->session, session) && !strcmp(a->user, user) &&
        (!backend || !strcmp(a->backend, backend)))
      return 1;
  }
  return 0;
}

/* Sessions per user, counted in one walk of the session table. */
struct per_user { const char *user; unsigned n; };
struct tally { struct per_user *users; size_t n, cap; };

static unsigned *tally_of(struct tally *t, const char *user) {
  for (size_t i = 0; i < t->n; i++)
    if (!strcmp(t->users[i].user, user)) return &t->users[i].n;
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 8;
    t->users = xrealloc(t->users, t->cap * sizeof *t->users);
  }
  t->users[t->n] = (struct per_user){user, 0};
  return &t->users[t->n++].n;
}

static void check_session(struct session *s, void *arg) {
  const struct slot *owner = slot_of(s->owner);
  if (!owner || !answered(owner, s->id, s->user, s->backend)) __builtin_trap();
  if (sessiond_backend_index(&sd, s->backend) < 0) __builtin_trap();
  (*tally_of(arg, s->user))++;
}

static void check_seat(struct seat *seat, void *arg) {
  if (*tally_of(arg, seat->user) != seat->sessions) __builtin_trap();
  int known = 0;
  for (int i = 0; i < SLOTS && !known; i++)
    for (size_t j = 0; j < slots[i].n_answers && !known; j++)
      known = !strcmp(slots[i].answers[j].user, seat->user);
  if (!known && seat->sessions) __builtin_trap();
  if (sessiond_backend_index(&sd, seat->backend) < 0) __builtin_trap();
}

/* Whose sessions there were before a step: no step of another worker
 * may end, take or re-seat them (only their holder's own steps may). */
struct held { char id[17]; int slot; };
struct snapshot { struct held *list; size_t n, cap; };

static void note_held(struct session *s, void *arg) {
  struct snapshot *snap = arg;
  const struct slot *owner = slot_of(s->owner);
  if (!owner) __builtin_trap();
  if (snap->n == snap->cap) {
    snap->cap = snap->cap ? 2 * snap->cap : 16;
    snap->list = xrealloc(snap->list, snap->cap * sizeof *snap->list);
  }
  struct held *h = &snap->list[snap->n++];
  snprintf(h->id, sizeof h->id, "%s", s->id);
  h->slot = (int)(owner - slots);
}

static void check_untouched(const struct snapshot *snap, int acting) {
  if (acting < 0) return;   /* sessiond restarted: its memory is gone */
  for (size_t i = 0; i < snap->n; i++) {
    const struct held *h = &snap->list[i];
    if (h->slot == acting) continue;
    struct session *s = session_find(sd.seats, h->id);
    if (!s || s->owner != slots[h->slot].wc) __builtin_trap();
  }
}

static void check_invariants(void) {
  struct tally t = {0};
  sessions_foreach(sd.seats, check_session, &t);
  seats_foreach(sd.seats, check_seat, &t);
  free(t.users);
}

/* ---- the script ----------------------------------------------------------------------- */

struct script { const uint8_t *p; size_t left; };

static uint8_t next(struct script *s) {
  if (!s->left) return 0;
  s->left--;
  return *s->p++;
}

/* A small pool of session ids, so that steps meet; 8 and up are malformed. */
static void session_id(uint8_t n, char out[24]) {
  if ((n & 15) < 8) snprintf(out, 24, "00000000000000%02x", n & 7);
  else snprintf(out, 24, "%s", (n & 1) ? "000000000000000Z" : "00000000000000000");
}

/* Sends m from slot s through sessiond's frame handler; a refusal that
 * closes the connection closes it. */
static void send_frame(struct slot *s, const struct proto_msg *m) {
  if (!s->wc) return;
  uint8_t frame[PROTO_HDR_LEN + 4096];
  ssize_t n = proto_encode(m, frame, sizeof frame);
  if (n < PROTO_HDR_LEN + 1) return;
  memcpy(body, frame + PROTO_HDR_LEN, (size_t)n - PROTO_HDR_LEN);
  if (workers_handle_frame(s->wc, body, (size_t)n - PROTO_HDR_LEN) != 0) slot_disconnect(s);
}

/* A ticket some slot got, replayed by slot s, perhaps changed. */
static void replay(struct script *sc, struct slot *s) {
  struct slot *from = &slots[next(sc) % SLOTS];
  if (!from->n_answers) return;
  struct answer *a = &from->answers[next(sc) % from->n_answers];
  char ticket[PROTO_TICKET_HEX_LEN + 1], session[24];
  memcpy(ticket, a->ticket, sizeof ticket);
  struct proto_msg m = {.type = PROTO_SESSION_UP, .session = a->session, .user = a->user,
                        .backend = a->backend, .ticket = ticket, .client_addr = "192.0.2.1",
                        .client_port = 1};
  uint8_t how = next(sc);
  switch (how % 7) {
  case 1: m.user = users[how / 7 % 4]; break;
  case 2: m.backend = backends[how / 7 % 3]; break;
  case 3: session_id(how / 7, session); m.session = session; break;
  case 4: ticket[how / 7 % PROTO_TICKET_HEX_LEN] ^= 1; break;
  case 5: m.ticket = NULL; break;
  case 6: ticket[PROTO_TICKET_HEX_LEN - 1] = '\0'; break;
  }
  send_frame(s, &m);
}

/* One step; returns the slot that acted, or -1 when sessiond restarted. */
static int step(struct script *sc) {
  uint8_t op = next(sc);
  struct slot *s = &slots[next(sc) % SLOTS];
  char session[24];
  uint8_t a = next(sc);
  session_id(a, session);
  switch (op % 9) {
  case 0: {
    struct proto_msg m = {.type = PROTO_HELLO, .worker_id = (uint32_t)(s - slots) + 1,
                          .pid = (uint32_t)s->pid + (a & 1)};
    send_frame(s, &m);
    break;
  }
  case 1: {
    struct proto_msg m = {.type = PROTO_LOGIN, .req = a, .session = session,
                          .user = users[next(sc) % 4], .password = "pw"};
    send_frame(s, &m);
    break;
  }
  case 2: replay(sc, s); break;
  case 3: {
    struct proto_msg m = {.type = PROTO_SESSION_END, .session = session, .bytes_in = a};
    send_frame(s, &m);
    break;
  }
  case 4: {
    struct proto_msg m = {.type = PROTO_BACKEND_FAILED, .req = a, .session = session,
                          .backend = backends[next(sc) % 3], .reason = "fuzz"};
    send_frame(s, &m);
    break;
  }
  case 5: {   /* raw bytes: whatever a hostile worker may write */
    size_t n = (size_t)a % 64 + 1;
    for (size_t i = 0; i < n; i++) body[i] = next(sc);
    if (s->wc && workers_handle_frame(s->wc, body, n) != 0) slot_disconnect(s);
    break;
  }
  case 6:   /* the link drops; the same worker comes back */
    slot_disconnect(s);
    slot_connect(s);
    break;
  case 7:   /* the worker restarts: a new process, its sessions gone */
    slot_disconnect(s);
    answers_clear(s);
    s->pid = next_pid++;
    slot_connect(s);
    break;
  case 8: sessiond_restart(); return -1;
  }
  return (int)(s - slots);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  setup_once();
  world_start();
  struct script sc = {data, size};
  /* Many short scripts find more than a few long ones. */
  for (int steps = 0; sc.left && steps < MAX_STEPS; steps++) {
    struct snapshot before = {0};
    sessions_foreach(sd.seats, note_held, &before);
    int acting = step(&sc);
    read_replies();
    check_invariants();
    check_untouched(&before, acting);
    free(before.list);
  }
  world_stop();
  return 0;
}
