/* sessiond's side of the worker protocol: the connections, backend
 * failures, sessions coming up and ending (logins are in login.c).
 *
 * Who may say what. A worker parses the internet's bytes, so sessiond
 * assumes any worker can be taken over, and believes of what it says
 * only what it can check:
 *
 *   HELLO        first, once. The peer's pid comes from the kernel
 *                (SO_PEERCRED), not from the message; with [usher]
 *                worker_peer_check (the default) that pid must be a child
 *                of our own parent, the master (its /proc stat), and the
 *                HELLO's pid must be it. Anyone else on sessiond.sock
 *                (another process of the workers' user, say) is closed.
 *   LOGIN        a well-formed session id that no other worker holds.
 *   SESSION_UP   only with the ticket of a LOGIN_REPLY OK: a keyed MAC
 *                (the master's session key, which no worker holds) over
 *                session id, canonical user, backend, worker id and pid.
 *                So it names a login sessiond answered, the backend it
 *                chose, and the worker process it answered; the key
 *                outlives sessiond, so a restarted sessiond checks the
 *                tickets its predecessor sealed. The backend must also be
 *                configured, and a session already known must be the
 *                sender's with the same user and backend.
 *   SESSION_END, BACKEND_FAILED
 *                only for a session the sender holds.
 *   REHOME       as SESSION_UP, since the answer carries the master
 *                credential (rehome.c).
 * "The sender holds" means the worker process: a worker that reconnects
 * (same pid, which the kernel vouches for) takes its sessions along.
 * Anything else is refused: counted (worker_refused in usherctl status,
 * usher_worker_messages_refused_total), logged at the first refusal of a
 * connection (the rest are counted only: a hostile worker cannot flood the
 * log), and it changes no seat and no session. A SESSION_UP refused is
 * answered with KICK: a session that sessiond does not count must not
 * run.
 *
 * What a worker that was taken over can still do: everything the users
 * who log in through it can do (it sees their passwords, and relays their
 * sessions, so it can read and write their mail); keep a session of such a
 * user counted after it ended (replaying its ticket), which holds that
 * user's seat where sessiond put it; mark a backend down for
 * backend_retry by failing its own sessions' logins there; try passwords
 * as any client can (LOGIN goes through throttling like any other); lie
 * about byte counts and reasons. What it cannot do: seat a user who never
 * logged in through it, or on a backend sessiond did not choose; end,
 * take over or re-seat another worker's sessions; seat anyone on a
 * backend that is not configured; read the session key (it lives in the
 * master and sessiond, which a worker that runs as [usher] user cannot
 * read or trace). Without [usher] user every process has one uid and the
 * separation is only as good as that uid's: such a worker could use
 * admin.sock itself. */
#include "sessiond/workers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "common/hmac.h"
#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/login.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"

void wconn_ref(struct wconn *wc) { wc->refs++; }

void wconn_unref(struct wconn *wc) {
  if (--wc->refs > 0) return;
  wipe(wc->body, sizeof wc->body);
  free(wc);
}

/* ---- tickets -------------------------------------------------------------- */

/* The MAC's input: the fields NUL-separated (none can hold a NUL: proto.c
 * refuses one), so that no two field lists make the same bytes. */
static void session_ticket(const struct sessiond *sd, const char *session, const char *user,
                           const char *backend, unsigned worker_id, int pid,
                           char out[PROTO_TICKET_HEX_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  char ids[32];
  int ids_len = snprintf(ids, sizeof ids, "%u", worker_id) + 1;
  ids_len += snprintf(ids + ids_len, sizeof ids - (size_t)ids_len, "%d", pid);
  size_t ls = strlen(session) + 1, lu = strlen(user) + 1, lb = strlen(backend) + 1;
  size_t len = ls + lu + lb + (size_t)ids_len;
  char *msg = xmalloc(len);
  memcpy(msg, session, ls);
  memcpy(msg + ls, user, lu);
  memcpy(msg + ls + lu, backend, lb);
  memcpy(msg + ls + lu + lb, ids, (size_t)ids_len);
  uint8_t mac[HMAC_MAX_LEN];
  hmac_compute(HMAC_SHA256, sd->session_key, sizeof sd->session_key, msg, len, mac);
  free(msg);
  for (int i = 0; i < PROTO_TICKET_HEX_LEN / 2; i++) {
    out[2 * i] = hex[mac[i] >> 4];
    out[2 * i + 1] = hex[mac[i] & 15];
  }
  out[PROTO_TICKET_HEX_LEN] = '\0';
  wipe(mac, sizeof mac);
}

/* The name a session's seat is kept under: its LDAP entry's, else the user's. */
static const char *seat_name_of(const struct proto_msg *m) { return m->seat ? m->seat : m->user; }

int workers_ticket_valid(const struct wconn *wc, const struct proto_msg *m) {
  char want[PROTO_TICKET_HEX_LEN + 1];
  session_ticket(wc->sd, m->session, seat_name_of(m), m->backend, wc->worker_id, wc->pid, want);
  return m->ticket && strlen(m->ticket) == PROTO_TICKET_HEX_LEN &&
         CRYPTO_memcmp(want, m->ticket, PROTO_TICKET_HEX_LEN) == 0;
}

/* ---- replies ---------------------------------------------------------------- */

void workers_reply(struct wconn *wc, const struct proto_msg *m) {
  if (!wc->closed) proto_batch_add(wc->out, m);
}

void workers_reply_failure(struct wconn *wc, uint32_t req, const char *session,
                           enum proto_result result, uint32_t delay_ms) {
  struct proto_msg m = {.type = PROTO_LOGIN_REPLY, .req = req, .session = session,
                        .result = result, .delay_ms = delay_ms};
  workers_reply(wc, &m);
}

void workers_reply_ok(struct sessiond *sd, struct wconn *wc, uint32_t req, const char *session,
                      const char *user, const char *seat, int idx) {
  workers_reply_rehomed(sd, wc, req, session, user, seat, idx, NULL, NULL);
}

void workers_reply_rehomed(struct sessiond *sd, struct wconn *wc, uint32_t req,
                           const char *session, const char *user, const char *seat, int idx,
                           const char *master_user, const char *master_password) {
  char addr[NETADDR_STRLEN], ticket[PROTO_TICKET_HEX_LEN + 1];
  const char *backend = sd->cfg->backends[idx].name;
  /* The ticket names the seat as sessiond keeps it; without names (another
   * seat for the same login) the session's own. */
  const char *seat_name = seat ? seat : user;
  if (!seat_name) {
    struct session *s = session_find(sd->seats, session);
    seat_name = s ? s->user : "";
  }
  session_ticket(sd, session, seat_name, backend, wc->worker_id, wc->pid, ticket);
  struct proto_msg m = {.type = PROTO_LOGIN_REPLY, .req = req, .session = session,
                        .result = PROTO_OK, .user = user,
                        .seat = user && seat && strcmp(user, seat) ? seat : NULL,
                        .backend = backend,
                        .backend_addr = netaddr_str(&sd->cfg->backends[idx].addr, addr, sizeof addr),
                        .ticket = ticket, .master_user = master_user,
                        .password = master_password};
  workers_reply(wc, &m);
}

/* ---- refusals ----------------------------------------------------------------- */

void workers_refuse(struct wconn *wc, const struct proto_msg *m, const char *why) {
  wc->sd->n.worker_refused++;
  if (wc->refused++ > 0) return;
  char session[LOG_QUOTE_MAX];
  const char *s = m->session ? m->session : "";
  log_event(LOG_LVL_WARN, "worker_refused",
            "worker=%u pid=%d type=%s reason=%s session=%s note=\"later refusals on this "
            "connection are counted only\"",
            wc->worker_id, wc->pid, proto_type_name(m->type), why,
            log_quote(session, sizeof session, s, strlen(s)));
}

/* Session ids are what workers make (session_id_new): 16 hex digits. */
int workers_session_id_valid(const char *s) {
  if (!s || strlen(s) != 16) return 0;
  for (; *s; s++)
    if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f'))) return 0;
  return 1;
}

/* The worker process that holds s: the connection it came on, or a later
 * one of the same process (the kernel's pid), which reconnected. */
int workers_holds(const struct wconn *wc, const struct session *s) {
  const struct wconn *owner = s->owner;
  return owner == wc || (owner && wc->pid > 0 && owner->pid == wc->pid &&
                         owner->worker_id == wc->worker_id);
}

/* The session named by m if the sender holds it; else NULL, refused. */
static struct session *held_session(struct wconn *wc, const struct proto_msg *m) {
  if (!workers_session_id_valid(m->session)) {
    workers_refuse(wc, m, "bad_session_id");
    return NULL;
  }
  struct session *s = session_find(wc->sd->seats, m->session);
  if (s && !workers_holds(wc, s)) {
    workers_refuse(wc, m, "not_owner");
    return NULL;
  }
  return s;
}

/* ---- HELLO ----------------------------------------------------------------------- */

/* The parent of pid, from /proc/PID/stat (after the command, which may
 * hold spaces and parentheses: hence the last ')'); -1 if unknown. */
static int parent_of(int pid) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  char *p = strrchr(buf, ')');
  int ppid;
  return p && sscanf(p + 1, " %*c %d", &ppid) == 1 ? ppid : -1;
}

/* The master starts sessiond and the workers and nothing else: a peer
 * whose parent is our parent is one of our workers. */
static int peer_is_a_worker(const struct wconn *wc, const struct proto_msg *m) {
  return wc->pid > 0 && (int)m->pid == wc->pid && wc->pid != (int)getpid() &&
         parent_of(wc->pid) == (int)getppid();
}

static int on_hello(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  if (wc->said_hello) {
    workers_refuse(wc, m, "second_hello");
    return -1;
  }
  wc->worker_id = m->worker_id;
  if (sd->cfg->worker_peer_check && !peer_is_a_worker(wc, m)) {
    workers_refuse(wc, m, "not_a_worker");
    return -1;
  }
  wc->said_hello = 1;
  sd->n.worker_hellos++;
  log_event(LOG_LVL_INFO, "worker_hello", "worker=%u pid=%d", wc->worker_id, wc->pid);
  return 0;
}

/* ---- the messages after HELLO ------------------------------------------------------ */

static void on_login_answered(void *cookie, const struct login_answer *a) {
  struct wconn *wc = cookie;
  if (!wc->closed) {
    if (a->result == PROTO_OK)
      workers_reply_ok(wc->sd, wc, a->req, a->session, a->user, a->seat, a->backend);
    else
      workers_reply_failure(wc, a->req, a->session, a->result, a->delay_ms);
  }
  wconn_unref(wc);
}

static void on_login(struct wconn *wc, const struct proto_msg *m) {
  if (!workers_session_id_valid(m->session)) {
    workers_refuse(wc, m, "bad_session_id");
    workers_reply_failure(wc, m->req, m->session, PROTO_AUTH_FAILED, 0);
    return;
  }
  struct session *s = session_find(wc->sd->seats, m->session);
  if (s && !workers_holds(wc, s)) {   /* routing would hand it to this worker */
    workers_refuse(wc, m, "not_owner");
    workers_reply_failure(wc, m->req, m->session, PROTO_UNAVAILABLE, 0);
    return;
  }
  wconn_ref(wc);   /* until the answer: login.c holds the owner, not us */
  login_start(wc->sd, m, wc, &wc->closed, on_login_answered, wc);
}

/* The worker could not log in at the backend it was given. */
struct reseat { struct wconn *wc; uint32_t req; char session[17]; };

static void on_reseated(void *cookie, int idx) {
  struct reseat *r = cookie;
  struct sessiond *sd = r->wc->sd;
  if (idx < 0) {
    workers_reply_failure(r->wc, r->req, r->session, PROTO_UNAVAILABLE, 0);
  } else {
    log_event(LOG_LVL_INFO, "reseat", "session=%s backend=%s", r->session,
              sd->cfg->backends[idx].name);
    workers_reply_ok(sd, r->wc, r->req, r->session, NULL, NULL, idx);   /* same names */
  }
  wconn_unref(r->wc);
  free(r);
}

/* Only the session's holder, about the backend sessiond gave it: anyone
 * else could mark backends down at will or move other users. */
static void on_backend_failed(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  struct session *s = held_session(wc, m);
  if (s && (!m->backend || strcmp(m->backend, s->backend) != 0)) {
    workers_refuse(wc, m, "not_its_backend");
    s = NULL;
  }
  if (!s) {
    workers_reply_failure(wc, m->req, m->session, PROTO_UNAVAILABLE, 0);
    return;
  }
  sd->n.backend_failures++;
  char reason[LOG_QUOTE_MAX];
  const char *why = m->reason ? m->reason : "?";
  int failed = sessiond_backend_index(sd, s->backend);   /* -1: gone at a reload */
  if (failed >= 0)
    sessiond_backend_mark_down(sd, failed, log_quote(reason, sizeof reason, why, strlen(why)));
  struct reseat *r = xcalloc(1, sizeof *r);
  r->wc = wc;
  wconn_ref(wc);
  r->req = m->req;
  snprintf(r->session, sizeof r->session, "%s", m->session);
  seatstore_backend_failed(sd, m->session, &wc->closed, on_reseated, r);
}

/* Why a SESSION_UP cannot be believed, or NULL. */
static const char *session_up_refusal(struct wconn *wc, const struct proto_msg *m,
                                      const struct session *known) {
  if (!workers_session_id_valid(m->session)) return "bad_session_id";
  if (!m->user || !m->backend) return "incomplete";
  if (sessiond_backend_index(wc->sd, m->backend) < 0) return "unknown_backend";
  if (!workers_ticket_valid(wc, m)) return "bad_ticket";
  if (known && !workers_holds(wc, known)) return "not_owner";
  if (known && (strcmp(known->user, seat_name_of(m)) || strcmp(known->backend, m->backend)))
    return "not_as_routed";
  return NULL;
}

/* How a worker re-registers its sessions after sessiond restarted (or its
 * link did): the ticket stands for the login sessiond answered. */
static void on_session_up(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  struct session *s = m->session ? session_find(sd->seats, m->session) : NULL;
  const char *why = session_up_refusal(wc, m, s);
  if (why) {
    workers_refuse(wc, m, why);
    if (workers_session_id_valid(m->session)) {   /* uncounted: it must not run */
      struct proto_msg kick = {.type = PROTO_KICK, .session = m->session,
                               .reason = "not_registered"};
      workers_reply(wc, &kick);
    }
    return;
  }
  if (!s) {
    uint64_t now = now_ms();
    const char *seat_name = seat_name_of(m);
    char client[64];
    snprintf(client, sizeof client, "%s:%u", m->client_addr ? m->client_addr : "?",
             m->client_port);
    struct seat *seat = seat_find(sd->seats, seat_name, now);
    if (!seat) seat = seat_create(sd->seats, seat_name, m->backend, now);
    s = session_add(sd->seats, m->session, seat_name, m->backend, client, wc, now);
    if (strcmp(seat->backend, m->backend) != 0) {
      workers_kick(sd, s, "seated_elsewhere");   /* the rule wins */
      return;
    }
  }
  s->owner = wc;
}

static void on_session_end(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  struct session *s = held_session(wc, m);
  if (!s) return;   /* unknown (ended already, or never re-registered): nothing to do */
  sd->n.bytes_in += m->bytes_in;
  sd->n.bytes_out += m->bytes_out;
  sd->n.sessions_ended++;
  seatstore_session_ended(sd, m->session);
}

/* A worker's word on how a re-home ended: counted (rehome_stats.h). */
static void on_rehome_done(struct wconn *wc, const struct proto_msg *m) {
  if (!workers_session_id_valid(m->session)) {
    workers_refuse(wc, m, "bad_session_id");
    return;
  }
  if (m->result == 0) rehome_stats_resumed(&wc->sd->n.rehome_done, m->duration_ms);
  else rehome_stats_ended(&wc->sd->n.rehome_done, m->reason);
}

/* REHOME is rehome.c's (installed by rehome_init); without it, the
 * session ends. */
static void on_rehome(struct wconn *wc, const struct proto_msg *m) {
  if (wc->sd->rehome_handler) {
    wc->sd->rehome_handler(wc, m);
    return;
  }
  wc->sd->n.rehome_requests++;
  wc->sd->n.rehome_unavailable++;
  workers_reply_failure(wc, m->req, m->session, PROTO_UNAVAILABLE, 0);
}

/* 0, or -1: the connection is to be closed. */
static int dispatch(struct wconn *wc, const struct proto_msg *m) {
  if (m->type == PROTO_HELLO) return on_hello(wc, m);
  if (!wc->said_hello) {
    workers_refuse(wc, m, "no_hello");
    return -1;
  }
  switch (m->type) {
  case PROTO_LOGIN: on_login(wc, m); break;
  case PROTO_BACKEND_FAILED: on_backend_failed(wc, m); break;
  case PROTO_SESSION_UP: on_session_up(wc, m); break;
  case PROTO_SESSION_END: on_session_end(wc, m); break;
  case PROTO_REHOME: on_rehome(wc, m); break;
  case PROTO_REHOME_DONE: on_rehome_done(wc, m); break;
  default: workers_refuse(wc, m, "unexpected_type");
  }
  return 0;
}

int workers_handle_frame(struct wconn *wc, uint8_t *body, size_t len) {
  struct proto_msg m;
  if (proto_decode(body, len, &m) != 0) {
    log_event(LOG_LVL_ERROR, "worker_protocol", "worker=%u pid=%d error=bad_frame",
              wc->worker_id, wc->pid);
    return -1;
  }
  int rc = dispatch(wc, &m);
  if (m.password) wipe(body, len);   /* the only copy left is the job's */
  return rc;
}

/* ---- connections ---------------------------------------------------------------------- */

struct owned { struct wconn *wc; struct session **list; size_t n, cap; };

static void collect_owned(struct session *s, void *arg) {
  struct owned *o = arg;
  if (s->owner != o->wc) return;
  if (o->n == o->cap) {
    o->cap = o->cap ? o->cap * 2 : 64;
    o->list = xrealloc(o->list, o->cap * sizeof *o->list);
  }
  o->list[o->n++] = s;
}

/* A worker is gone (crash, restart): so are its clients and sessions. */
void workers_conn_close(struct wconn *wc) {
  struct sessiond *sd = wc->sd;
  struct owned o = {.wc = wc};
  sessions_foreach(sd->seats, collect_owned, &o);
  for (size_t i = 0; i < o.n; i++) session_remove(sd->seats, o.list[i], now_ms(), sd->cfg->seat_expire_ms);
  free(o.list);
  log_event(LOG_LVL_INFO, "worker_gone", "worker=%u pid=%d sessions=%zu refused=%llu",
            wc->worker_id, wc->pid, o.n, (unsigned long long)wc->refused);
  if (wc->prev) wc->prev->next = wc->next;
  else sd->wconns = wc->next;
  if (wc->next) wc->next->prev = wc->prev;
  sd->n_wconns--;
  proto_batch_free(wc->out);   /* replies to a worker that is gone: dropped */
  wc->out = NULL;
  if (wc->bev) bufferevent_free(wc->bev);
  wc->bev = NULL;
  wc->closed = 1;
  wconn_unref(wc);
}

static void on_wconn_read(struct bufferevent *bev, void *arg) {
  struct wconn *wc = arg;
  size_t len;
  int r;
  while ((r = proto_frame_pop(bufferevent_get_input(bev), wc->body, &len)) == 1)
    if (workers_handle_frame(wc, wc->body, len) != 0) break;
  if (r < 0)
    log_event(LOG_LVL_ERROR, "worker_protocol", "worker=%u pid=%d error=bad_length",
              wc->worker_id, wc->pid);
  if (r != 0) workers_conn_close(wc);
}

static void on_wconn_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) workers_conn_close(arg);
}

struct wconn *workers_conn_new(struct sessiond *sd, struct bufferevent *bev, int peer_pid) {
  struct wconn *wc = xcalloc(1, sizeof *wc);
  wc->sd = sd;
  wc->refs = 1;
  wc->bev = bev;
  wc->pid = peer_pid;
  wc->out = proto_batch_new(sd->base);
  proto_batch_set_bev(wc->out, bev);
  wc->next = sd->wconns;
  if (sd->wconns) sd->wconns->prev = wc;
  sd->wconns = wc;
  sd->n_wconns++;
  return wc;
}

void workers_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    void *arg) {
  (void)l; (void)sa; (void)salen;
  struct sessiond *sd = arg;
  struct ucred peer = {0};
  socklen_t peer_len = sizeof peer;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0) peer.pid = 0;
  struct bufferevent *bev = bufferevent_socket_new(sd->base, fd, BEV_OPT_CLOSE_ON_FREE);
  struct wconn *wc = workers_conn_new(sd, bev, (int)peer.pid);
  bufferevent_setcb(bev, on_wconn_read, NULL, on_wconn_event, wc);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

void workers_close_all(struct sessiond *sd) {
  while (sd->wconns) workers_conn_close(sd->wconns);
}

void workers_init(struct sessiond *sd) { sd->kick = workers_kick; }

void workers_kick(struct sessiond *sd, struct session *s, const char *reason) {
  struct wconn *wc = s->owner;
  /* Only a seat's move re-homes ("seat_moved": rehome.h); a kick closes. */
  int rehome = sd->rehome_enabled && sd->rehome_enabled(sd) && !strcmp(reason, "seat_moved");
  struct proto_msg m = {.type = PROTO_KICK, .session = s->id, .reason = reason, .rehome = rehome};
  sd->n.kicks++;
  if (wc) workers_reply(wc, &m);
}
