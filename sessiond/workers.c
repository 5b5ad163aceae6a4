/* sessiond's side of the worker protocol: the connections, backend
 * failures, sessions coming up and ending (logins are in login.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/state.h"

static struct sessiond *sd_of(struct wconn *wc) { return wc->sd; }

void wconn_ref(struct wconn *wc) { wc->refs++; }

void wconn_unref(struct wconn *wc) {
  if (--wc->refs > 0) return;
  wipe(wc->body, sizeof wc->body);
  free(wc);
}

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
  char addr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_LOGIN_REPLY, .req = req, .session = session,
                        .result = PROTO_OK, .user = user,
                        .seat = user && seat && strcmp(user, seat) ? seat : NULL,
                        .backend = sd->cfg->backends[idx].name,
                        .backend_addr = netaddr_str(&sd->cfg->backends[idx].addr, addr, sizeof addr)};
  workers_reply(wc, &m);
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

static void on_backend_failed(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  sd->n.backend_failures++;
  int failed = m->backend ? sessiond_backend_index(sd, m->backend) : -1;
  if (failed >= 0) sessiond_backend_mark_down(sd, failed, m->reason ? m->reason : "?");
  struct session *s = m->session ? session_find(sd->seats, m->session) : NULL;
  if (!s) {
    workers_reply_failure(wc, m->req, m->session, PROTO_UNAVAILABLE, 0);
    return;
  }
  struct reseat *r = xcalloc(1, sizeof *r);
  r->wc = wc;
  wconn_ref(wc);
  r->req = m->req;
  snprintf(r->session, sizeof r->session, "%s", m->session);
  seatstore_backend_failed(sd, m->session, on_reseated, r);
}

/* Also how a worker re-registers its sessions after sessiond restarted. */
static void on_session_up(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  if (!m->session || !m->user || !m->backend) return;
  const char *seat_name = m->seat ? m->seat : m->user;
  uint64_t now = now_ms();
  struct session *s = session_find(sd->seats, m->session);
  if (!s) {
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
  sd->n.bytes_in += m->bytes_in;
  sd->n.bytes_out += m->bytes_out;
  sd->n.sessions_ended++;
  if (m->session) seatstore_session_ended(sd, m->session);
}

static void dispatch(struct wconn *wc, const struct proto_msg *m) {
  switch (m->type) {
  case PROTO_HELLO:
    wc->worker_id = m->worker_id;
    wc->pid = (int)m->pid;
    sd_of(wc)->n.worker_hellos++;
    log_event(LOG_LVL_INFO, "worker_hello", "worker=%u pid=%d", wc->worker_id, wc->pid);
    break;
  case PROTO_LOGIN: login_start(wc, m); break;
  case PROTO_BACKEND_FAILED: on_backend_failed(wc, m); break;
  case PROTO_SESSION_UP: on_session_up(wc, m); break;
  case PROTO_SESSION_END: on_session_end(wc, m); break;
  default:
    log_event(LOG_LVL_WARN, "worker_message", "worker=%u type=%d note=unexpected", wc->worker_id,
              (int)m->type);
  }
}

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
static void wconn_close(struct wconn *wc) {
  struct sessiond *sd = wc->sd;
  struct owned o = {.wc = wc};
  sessions_foreach(sd->seats, collect_owned, &o);
  for (size_t i = 0; i < o.n; i++) session_remove(sd->seats, o.list[i], now_ms(), sd->cfg->seat_expire_ms);
  free(o.list);
  log_event(LOG_LVL_INFO, "worker_gone", "worker=%u sessions=%zu", wc->worker_id, o.n);
  if (wc->prev) wc->prev->next = wc->next;
  else sd->wconns = wc->next;
  if (wc->next) wc->next->prev = wc->prev;
  sd->n_wconns--;
  proto_batch_free(wc->out);   /* replies to a worker that is gone: dropped */
  wc->out = NULL;
  bufferevent_free(wc->bev);
  wc->bev = NULL;
  wc->closed = 1;
  wconn_unref(wc);
}

static void on_wconn_read(struct bufferevent *bev, void *arg) {
  struct wconn *wc = arg;
  size_t len;
  int r;
  while ((r = proto_frame_pop(bufferevent_get_input(bev), wc->body, &len)) == 1) {
    struct proto_msg m;
    if (proto_decode(wc->body, len, &m) != 0) {
      r = -1;
      break;
    }
    dispatch(wc, &m);
    if (m.password) wipe(wc->body, len);   /* the only copy left is the job's */
  }
  if (r < 0) {
    log_event(LOG_LVL_ERROR, "worker_protocol", "worker=%u error=bad_frame", wc->worker_id);
    wconn_close(wc);
  }
}

static void on_wconn_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) wconn_close(arg);
}

void workers_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    void *arg) {
  (void)l; (void)sa; (void)salen;
  struct sessiond *sd = arg;
  struct wconn *wc = xcalloc(1, sizeof *wc);
  wc->sd = sd;
  wc->refs = 1;
  wc->bev = bufferevent_socket_new(sd->base, fd, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(wc->bev, on_wconn_read, NULL, on_wconn_event, wc);
  bufferevent_enable(wc->bev, EV_READ | EV_WRITE);
  wc->out = proto_batch_new(sd->base);
  proto_batch_set_bev(wc->out, wc->bev);
  wc->next = sd->wconns;
  if (sd->wconns) sd->wconns->prev = wc;
  sd->wconns = wc;
  sd->n_wconns++;
}

void workers_close_all(struct sessiond *sd) {
  while (sd->wconns) wconn_close(sd->wconns);
}

void workers_kick(struct sessiond *sd, struct session *s, const char *reason) {
  struct wconn *wc = s->owner;
  struct proto_msg m = {.type = PROTO_KICK, .session = s->id, .reason = reason};
  sd->n.kicks++;
  if (wc) workers_reply(wc, &m);
}
