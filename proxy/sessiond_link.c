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
#include "common/htable.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "proxy/client.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 2000

struct sessiond_link {
  const struct proxy_env *env;
  const struct sessiond_link_handlers *h;
  struct bufferevent *bev;
  int up;
  uint64_t retry_ms;
  struct event *retry;
  uint8_t body[PROTO_MAX_BODY];   /* the frame being decoded */
  struct proto_batch *out;        /* every frame to sessiond, per loop turn */
  unsigned n_waiting;             /* logins that wait for the link (sessiond_link_waiting) */
  /* The requests sessiond has not answered yet, by request id, through
   * client->login->req_node. */
  struct htable requests;
  uint32_t next_req;
};

static void link_connect(struct sessiond_link *l);
static void send_session_end(struct sessiond_link *l, struct proto_msg *m);

/* ---- the table of requests ------------------------------------------------ */

/* Request ids are ours, sequential: a mix of the bits spreads them. */
static uint64_t req_hash(uint32_t req) {
  return htable_hash_bytes(&req, sizeof req);
}

static struct client *req_find(struct sessiond_link *l, uint32_t req) {
  for (struct htable_node *n = htable_first_with(&l->requests, req_hash(req)); n;
       n = htable_next_same(n)) {
    struct client_login *lg = HTABLE_ENTRY(n, struct client_login, req_node);
    if (lg->req == req) return lg->client;
  }
  return NULL;
}

static void req_add(struct sessiond_link *l, struct client *c) {
  do c->login->req = ++l->next_req; while (c->login->req == 0 || req_find(l, c->login->req));
  htable_insert(&l->requests, &c->login->req_node, req_hash(c->login->req));
}

void sessiond_link_cancel(struct sessiond_link *l, struct client *c) {
  if (!c->login || !c->login->req) return;   /* a relayed session asks nothing */
  htable_remove(&l->requests, &c->login->req_node);
  c->login->req = 0;
}

/* ---- connecting ----------------------------------------------------------- */

/* Back-off between connection attempts, except while logins wait: then
 * every RETRY_MIN_MS, so they go out soon after sessiond listens again. */
static void link_schedule_retry(struct sessiond_link *l) {
  if (l->n_waiting) l->retry_ms = 0;
  l->retry_ms = l->retry_ms ? l->retry_ms * 2 : RETRY_MIN_MS;
  if (l->retry_ms > RETRY_MAX_MS) l->retry_ms = RETRY_MAX_MS;
  struct timeval tv;
  ms_to_timeval(l->retry_ms, &tv);
  evtimer_add(l->retry, &tv);
}

/* sessiond went away: the requests it had not answered go back to their
 * owner (handlers->lost: sent again later, or answered); established
 * sessions go on relaying. */
static void link_down(struct sessiond_link *l) {
  unsigned resent = 0, failed = 0;
  int was_up = l->up;
  l->up = 0;
  proto_batch_set_bev(l->out, NULL);
  if (l->bev) {
    bufferevent_free(l->bev);
    l->bev = NULL;
  }
  /* With the link down nothing is added to the table meanwhile, and the
   * walk allows removing the current entry. */
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&l->requests, &it); n;
       n = htable_iter_next(&l->requests, &it)) {
    struct client *c = HTABLE_ENTRY(n, struct client_login, req_node)->client;
    sessiond_link_cancel(l, c);
    int r = l->h->lost(l->h->arg, c);
    if (r > 0) resent++;
    else if (r == 0) failed++;
  }
  if (was_up) log_event(LOG_LVL_WARN, "sessiond_down", "resend=%u failed=%u", resent, failed);
  link_schedule_retry(l);
}

static void link_dispatch(struct sessiond_link *l, const struct proto_msg *m) {
  if (m->type == PROTO_LOGIN_REPLY) {
    struct client *c = req_find(l, m->req);
    if (!c) {
      /* The client went away meanwhile: sessiond must not keep its seat. */
      if (m->result == PROTO_OK && m->session) {
        struct proto_msg end = {.type = PROTO_SESSION_END, .session = m->session,
                                .reason = "client_gone"};
        send_session_end(l, &end);
      }
      return;
    }
    sessiond_link_cancel(l, c);
    l->h->reply(l->h->arg, c, m);
  } else if (m->type == PROTO_KICK && m->session) {
    l->h->kick(l->h->arg, strtoull(m->session, NULL, 16), m->reason, m->rehome);
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
    /* A REHOME's answer carries the master password: it lives in our body
     * buffer only for the dispatch (backend.c has copied it). */
    if (m.password) wipe(l->body, len);
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
    l->up = 1;
    l->retry_ms = 0;
    proto_batch_set_bev(l->out, l->bev);
    struct proto_msg m = {.type = PROTO_HELLO, .worker_id = l->env->worker_id,
                          .pid = (uint32_t)getpid()};
    sessiond_link_send(l, &m);
    l->h->up(l->h->arg);   /* the sessions that outlived a sessiond, the held logins */
    return;
  }
  link_down(l);
}

static void link_connect(struct sessiond_link *l) {
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  snprintf(sun.sun_path, sizeof sun.sun_path, "%s/sessiond.sock", l->env->cfg->runtime_dir);
  l->bev = bufferevent_socket_new(l->env->base, -1, BEV_OPT_CLOSE_ON_FREE);
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

struct sessiond_link *sessiond_link_new(const struct proxy_env *env,
                                       const struct sessiond_link_handlers *h) {
  struct sessiond_link *l = xcalloc(1, sizeof *l);
  l->env = env;
  l->h = h;
  htable_init(&l->requests, 1024);
  l->out = proto_batch_new(env->base);
  l->retry = evtimer_new(env->base, on_retry, l);
  link_connect(l);
  return l;
}

void sessiond_link_free(struct sessiond_link *l) {
  if (!l) return;
  proto_batch_flush(l->out);
  proto_batch_free(l->out);
  if (l->bev) bufferevent_free(l->bev);
  event_free(l->retry);
  htable_destroy(&l->requests);
  wipe(l->body, sizeof l->body);
  free(l);
}

/* A frame can go out only while the link to sessiond is connected. */
static int link_ready(const struct sessiond_link *l) {
  return l->up && l->bev;
}

int sessiond_link_ready(const struct sessiond_link *l) {
  return link_ready(l);
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
  m->tls = c->front.is_tls;
}

/* A frame that sessiond answers: c waits under its request number. */
static int send_request(struct sessiond_link *l, struct client *c, struct proto_msg *m) {
  req_add(l, c);
  m->req = c->login->req;
  if (sessiond_link_send(l, m) != 0) {
    sessiond_link_cancel(l, c);
    return -1;
  }
  return 0;
}

int sessiond_link_login(struct sessiond_link *l, struct client *c) {
  char caddr[NETADDR_STRLEN], laddr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_LOGIN, .password = c->login->password, .mech = c->login->mech};
  fill_session(&m, c, caddr, laddr);
  return send_request(l, c, &m);
}

void sessiond_link_waiting(struct sessiond_link *l, unsigned n) {
  int more = n > l->n_waiting;
  l->n_waiting = n;
  /* Waiting out a long back-off would keep them waiting for nothing. */
  if (more && !l->bev && l->retry_ms > RETRY_MIN_MS) {
    l->retry_ms = 0;
    link_schedule_retry(l);
  }
}

int sessiond_link_rehome(struct sessiond_link *l, struct client *c, const char *reason) {
  char caddr[NETADDR_STRLEN], laddr[NETADDR_STRLEN];
  struct proto_msg m = {.type = PROTO_REHOME, .backend = c->backend_name, .ticket = c->ticket,
                        .reason = reason};
  fill_session(&m, c, caddr, laddr);
  return send_request(l, c, &m);
}

int sessiond_link_backend_failed(struct sessiond_link *l, struct client *c, const char *why) {
  struct proto_msg m = {.type = PROTO_BACKEND_FAILED, .session = c->sid_hex,
                        .backend = c->backend_name, .reason = why};
  return send_request(l, c, &m);
}

void sessiond_link_rehome_done(struct sessiond_link *l, struct client *c, const char *why,
                               uint64_t ms) {
  struct proto_msg m = {.type = PROTO_REHOME_DONE, .session = c->sid_hex, .result = why != NULL,
                        .reason = why, .duration_ms = ms};
  sessiond_link_send(l, &m);   /* dropped with the link down: a figure, not a decision */
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

/* A session that ended because its backend failed was told BYE
 * [UNAVAILABLE], and its client logs in again at once, perhaps through
 * another worker: sessiond must have freed the seat on the dead backend
 * by then, or that login is routed there too and refused. */
static int ended_by_backend(const char *why) {
  return why && (!strcmp(why, "backend_failed") || !strcmp(why, "rehome_failed"));
}

void sessiond_link_session_end(struct sessiond_link *l, struct client *c, const char *why) {
  struct proto_msg m = {.type = PROTO_SESSION_END, .session = c->sid_hex,
                        .bytes_in = c->bytes_in, .bytes_out = c->bytes_out, .reason = why,
                        .duration_ms = c->relay_start_ms ? now_ms() - c->relay_start_ms : 0};
  if (ended_by_backend(why)) sessiond_link_send(l, &m);
  else send_session_end(l, &m);
}
