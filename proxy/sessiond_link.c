/* The worker's side of the worker <-> sessiond protocol. */
#include "proxy/sessiond_link.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "common/bev_send.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/worker.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000

struct sessiond_link {
  struct worker *w;
  struct bufferevent *bev;
  int up;
  uint64_t retry_ms;
  struct event *retry;
  uint8_t body[PROTO_MAX_BODY];   /* the frame being decoded */
  struct proto_batch *out;        /* every frame to sessiond, per loop turn */
  unsigned n_held;                /* clients whose LOGIN waits for the link */
};

static void link_connect(struct sessiond_link *l);
static void send_session_end(struct sessiond_link *l, struct proto_msg *m);
static void hold_login(struct sessiond_link *l, struct client *c);

/* Back-off between connection attempts, except while logins wait: then
 * every RETRY_MIN_MS, so they go out soon after sessiond listens again. */
static void link_schedule_retry(struct sessiond_link *l) {
  if (l->n_held) l->retry_ms = 0;
  l->retry_ms = l->retry_ms ? l->retry_ms * 2 : RETRY_MIN_MS;
  if (l->retry_ms > RETRY_MAX_MS) l->retry_ms = RETRY_MAX_MS;
  struct timeval tv;
  ms_to_timeval(l->retry_ms, &tv);
  evtimer_add(l->retry, &tv);
}

/* A request sessiond never answered, because it went away: what now.
 *
 * A LOGIN is held and sent again once the link is back, like a login that
 * came while the link was down. sessiond restarts within a second or so,
 * and the request left no trace there that a second try could trip on:
 * the new sessiond has no table of requests, and attaching this proxy's
 * lease to a seat in Redis twice is the same as once. Answering it
 * UNAVAILABLE would fail every client whose login was on the wire when
 * sessiond died. The price: a wrong password in flight may be counted
 * twice by the throttle. It is sent again once only: a login that sessiond
 * dies on twice may be what kills it, and must not keep it crashing.
 *
 * A BACKEND_FAILED (a routed session whose backend failed) is answered
 * UNAVAILABLE: only the dead sessiond knew the session it speaks of. */
static int request_lost(struct sessiond_link *l, struct client *c) {
  worker_req_del(l->w, c);
  if (!c->registered && !c->login_resent && l->w->cfg->sessiond_wait_ms) {
    c->login_resent = 1;
    hold_login(l, c);
    return 1;
  }
  preauth_login_reply(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
  return 0;
}

/* sessiond went away: the requests it had not answered are held or
 * answered (request_lost); established sessions go on relaying. */
static void link_down(struct sessiond_link *l) {
  struct worker *w = l->w;
  unsigned resent = 0, failed = 0;
  int was_up = l->up;
  l->up = 0;
  proto_batch_set_bev(l->out, NULL);
  if (l->bev) {
    bufferevent_free(l->bev);
    l->bev = NULL;
  }
  for (struct client *c = w->clients, *next; c; c = next) {
    next = c->next;
    if (c->state == CS_AUTH_WAIT && c->req) {
      if (request_lost(l, c)) resent++;
      else failed++;
    }
  }
  if (was_up) log_event(LOG_LVL_WARN, "sessiond_down", "resend=%u failed=%u", resent, failed);
  link_schedule_retry(l);
}

static void link_dispatch(struct sessiond_link *l, const struct proto_msg *m) {
  struct worker *w = l->w;
  if (m->type == PROTO_LOGIN_REPLY) {
    struct client *c = worker_req_find(w, m->req);
    if (!c) {
      /* The client went away meanwhile: sessiond must not keep its seat. */
      if (m->result == PROTO_OK && m->session) {
        struct proto_msg end = {.type = PROTO_SESSION_END, .session = m->session,
                                .reason = "client_gone"};
        send_session_end(l, &end);
      }
      return;
    }
    worker_req_del(w, c);
    if (m->result == PROTO_OK && m->user) {   /* the seat's name comes with the login's */
      free(c->seat);
      c->seat = m->seat ? xstrdup(m->seat) : NULL;
    }
    if (m->result == PROTO_OK)
      snprintf(c->ticket, sizeof c->ticket, "%s", m->ticket ? m->ticket : "");
    preauth_login_reply(c, (int)m->result, m->delay_ms, m->user, m->backend, m->backend_addr);
  } else if (m->type == PROTO_KICK && m->session) {
    struct client *c = worker_sid_find(w, strtoull(m->session, NULL, 16));
    if (!c) return;
    log_event(LOG_LVL_INFO, "kick", "session=%s reason=%s", c->sid_hex,
              m->reason ? m->reason : "-");
    client_close(c, "* BYE [UNAVAILABLE] Session closed by the administrator.\r\n", "kicked");
  } else {
    log_event(LOG_LVL_WARN, "sessiond_message", "type=%d note=unexpected", (int)m->type);
  }
}

static void on_link_read(struct bufferevent *bev, void *arg) {
  struct sessiond_link *l = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  size_t len;
  int r;
  while ((r = proto_frame_pop(in, l->body, &len)) == 1) {
    struct proto_msg m;
    if (proto_decode(l->body, len, &m) != 0) {
      r = -1;
      break;
    }
    link_dispatch(l, &m);
    if (!l->bev) return;   /* dispatch may have taken the link down */
  }
  if (r < 0) {
    log_event(LOG_LVL_ERROR, "sessiond_protocol", "error=bad_frame");
    link_down(l);
  }
}

static int send_login(struct sessiond_link *l, struct client *c);

/* The link is up: the held logins go out, oldest first. */
static void send_held_logins(struct sessiond_link *l) {
  struct client *c = l->w->clients;
  if (!l->n_held || !c) return;
  while (c->next) c = c->next;   /* the list is newest first */
  for (; c && l->n_held; c = c->prev) {
    if (!c->login_held) continue;
    sessiond_link_forget(l, c);
    if (send_login(l, c) != 0) preauth_login_reply(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
  }
}

static void on_link_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct sessiond_link *l = arg;
  if (what & BEV_EVENT_CONNECTED) {
    struct worker *w = l->w;
    l->up = 1;
    l->retry_ms = 0;
    proto_batch_set_bev(l->out, l->bev);
    log_event(LOG_LVL_INFO, "sessiond_up", "sessions=%u held_logins=%u", w->n_clients,
              l->n_held);
    struct proto_msg m = {.type = PROTO_HELLO, .worker_id = w->id, .pid = (uint32_t)getpid()};
    sessiond_link_send(l, &m);
    /* A restarted sessiond learns the sessions that outlived it. */
    for (struct client *c = w->clients; c; c = c->next)
      if (c->state == CS_RELAY) sessiond_link_session_up(l, c);
    send_held_logins(l);
    return;
  }
  link_down(l);
}

static void link_connect(struct sessiond_link *l) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sessiond.sock", l->w->cfg->runtime_dir);
  l->bev = bufferevent_socket_new(l->w->base, -1, BEV_OPT_CLOSE_ON_FREE);
  bufferevent_setcb(l->bev, on_link_read, NULL, on_link_event, l);
  bufferevent_enable(l->bev, EV_READ | EV_WRITE);
  if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&sun, sizeof sun) != 0) {
    bufferevent_free(l->bev);
    l->bev = NULL;
    link_schedule_retry(l);
  }
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond_link *l = arg;
  if (!l->bev) link_connect(l);
}

struct sessiond_link *sessiond_link_new(struct worker *w) {
  struct sessiond_link *l = xcalloc(1, sizeof *l);
  l->w = w;
  l->out = proto_batch_new(w->base);
  l->retry = evtimer_new(w->base, on_retry, l);
  link_connect(l);
  return l;
}

void sessiond_link_free(struct sessiond_link *l) {
  if (!l) return;
  proto_batch_flush(l->out);
  proto_batch_free(l->out);
  if (l->bev) bufferevent_free(l->bev);
  event_free(l->retry);
  wipe(l->body, sizeof l->body);
  free(l);
}

/* A frame can go out only while the link to sessiond is connected. */
static int link_ready(const struct sessiond_link *l) {
  return l->up && l->bev;
}

int sessiond_link_send(struct sessiond_link *l, const struct proto_msg *m) {
  if (!link_ready(l)) return -1;
  return proto_batch_add(l->out, m);
}

static void fill_session(struct proto_msg *m, struct client *c, char *caddr, char *laddr) {
  m->session = c->sid_hex;
  m->user = c->user;
  m->seat = c->seat;
  m->client_addr = netaddr_host(&c->peer, caddr, NETADDR_STRLEN);
  m->client_port = (uint16_t)netaddr_port(&c->peer);
  m->local_addr = netaddr_host(&c->local, laddr, NETADDR_STRLEN);
  m->local_port = (uint16_t)netaddr_port(&c->local);
  m->tls = c->is_tls;
}

/* A frame that sessiond answers: c waits under its request number. */
static int send_request(struct sessiond_link *l, struct client *c, struct proto_msg *m) {
  worker_req_add(l->w, c);
  m->req = c->req;
  if (sessiond_link_send(l, m) != 0) {
    worker_req_del(l->w, c);
    return -1;
  }
  return 0;
}

/* What is left of c's login_timeout, which runs from its LOGIN. */
static uint64_t login_time_left(const struct client *c) {
  uint64_t spent = now_ms() - c->login_ms, timeout = c->w->cfg->login_timeout_ms;
  return spent < timeout ? timeout - spent : 1;
}

static int send_login(struct sessiond_link *l, struct client *c) {
  char caddr[NETADDR_STRLEN], laddr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_LOGIN, .password = c->password, .mech = c->mech};
  fill_session(&m, c, caddr, laddr);
  if (send_request(l, c, &m) != 0) return -1;
  client_timer(c, login_time_left(c));
  return 0;
}

/* c's LOGIN (and its password, in c->password as for any login under way)
 * waits for the link: until it comes up, or until c's timer, which runs
 * for sessiond_wait but not past the login's login_timeout. */
static void hold_login(struct sessiond_link *l, struct client *c) {
  uint64_t wait = l->w->cfg->sessiond_wait_ms, left = login_time_left(c);
  c->login_held = 1;
  l->n_held++;
  client_timer(c, wait < left ? wait : left);
  /* Waiting out a long back-off would keep it waiting for nothing. */
  if (!l->bev && l->retry_ms > RETRY_MIN_MS) {
    l->retry_ms = 0;
    link_schedule_retry(l);
  }
}

int sessiond_link_login(struct sessiond_link *l, struct client *c) {
  const struct config *cfg = l->w->cfg;
  if (link_ready(l)) return send_login(l, c);
  if (!cfg->sessiond_wait_ms || l->n_held >= cfg->sessiond_wait_queue) return -1;
  hold_login(l, c);
  return 0;
}

int sessiond_link_forget(struct sessiond_link *l, struct client *c) {
  if (!c->login_held) return 0;
  c->login_held = 0;
  l->n_held--;
  return 1;
}

int sessiond_link_backend_failed(struct sessiond_link *l, struct client *c, const char *why) {
  struct proto_msg m = {.type = PROTO_BACKEND_FAILED, .session = c->sid_hex,
                        .backend = c->backend_name, .reason = why};
  return send_request(l, c, &m);
}

void sessiond_link_session_up(struct sessiond_link *l, struct client *c) {
  char caddr[NETADDR_STRLEN], laddr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_SESSION_UP, .backend = c->backend_name,
                        .ticket = c->ticket};
  fill_session(&m, c, caddr, laddr);
  sessiond_link_send(l, &m);
}

/* Nobody waits on a session's end: it rides with the next frame that
 * leaves, within PROTO_LINGER_MS. A login from this worker that comes
 * after it still reaches sessiond after it. */
static void send_session_end(struct sessiond_link *l, struct proto_msg *m) {
  if (link_ready(l)) proto_batch_add_lazy(l->out, m);
}

void sessiond_link_session_end(struct sessiond_link *l, struct client *c, const char *why) {
  struct proto_msg m = {.type = PROTO_SESSION_END, .session = c->sid_hex,
                        .bytes_in = c->bytes_in, .bytes_out = c->bytes_out, .reason = why,
                        .duration_ms = c->relay_start_ms ? now_ms() - c->relay_start_ms : 0};
  send_session_end(l, &m);
}
