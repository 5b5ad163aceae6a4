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
};

static void link_connect(struct sessiond_link *l);
static void send_session_end(struct sessiond_link *l, struct proto_msg *m);

static void link_schedule_retry(struct sessiond_link *l) {
  l->retry_ms = l->retry_ms ? l->retry_ms * 2 : RETRY_MIN_MS;
  if (l->retry_ms > RETRY_MAX_MS) l->retry_ms = RETRY_MAX_MS;
  struct timeval tv;
  ms_to_timeval(l->retry_ms, &tv);
  evtimer_add(l->retry, &tv);
}

/* sessiond went away: pending logins are answered UNAVAILABLE now rather
 * than at their timeout; established sessions go on relaying. */
static void link_down(struct sessiond_link *l) {
  struct worker *w = l->w;
  if (l->up) log_event(LOG_LVL_WARN, "sessiond_down", "pending=fail");
  l->up = 0;
  proto_batch_set_bev(l->out, NULL);
  if (l->bev) {
    bufferevent_free(l->bev);
    l->bev = NULL;
  }
  for (struct client *c = w->clients, *next; c; c = next) {
    next = c->next;
    if (c->state == CS_AUTH_WAIT && c->req) {
      worker_req_del(w, c);
      preauth_login_reply(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
    }
  }
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

static void on_link_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct sessiond_link *l = arg;
  if (what & BEV_EVENT_CONNECTED) {
    struct worker *w = l->w;
    l->up = 1;
    l->retry_ms = 0;
    proto_batch_set_bev(l->out, l->bev);
    log_event(LOG_LVL_INFO, "sessiond_up", "sessions=%u", w->n_clients);
    struct proto_msg m = {.type = PROTO_HELLO, .worker_id = w->id, .pid = (uint32_t)getpid()};
    sessiond_link_send(l, &m);
    /* A restarted sessiond learns the sessions that outlived it. */
    for (struct client *c = w->clients; c; c = c->next)
      if (c->state == CS_RELAY) sessiond_link_session_up(l, c);
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

int sessiond_link_up(const struct sessiond_link *l) {
  return l->up;
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

int sessiond_link_login(struct sessiond_link *l, struct client *c) {
  char caddr[NETADDR_STRLEN], laddr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_LOGIN, .password = c->password, .mech = c->mech};
  fill_session(&m, c, caddr, laddr);
  return send_request(l, c, &m);
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
