/* The life of a login, from the client's credentials to its answer.
 *
 *   AUTH_WAIT   the LOGIN is at sessiond, or held here while the worker has
 *               no link to sessiond (it starts or restarts), bounded by
 *               [auth] sessiond_wait and sessiond_wait_queue, and always by
 *               login_timeout from the client's LOGIN
 *   BACKEND     sessiond routed it: the backend login (backend.h)
 *   AUTH_DELAY  refused: the delay sessiond asked for, then the NO
 *
 * A backend that fails before the login is done is reported to sessiond
 * once, which may seat the user elsewhere (only when the user has no
 * other session); after that the client gets NO [UNAVAILABLE]. A login
 * that succeeds goes to the relay; one that fails goes back to the
 * pre-auth commands (preauth_resume). */
#include "proxy/login.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/preauth.h"
#include "proxy/relay.h"
#include "proxy/sessiond_link.h"

struct logins {
  const struct proxy_env *env;
  /* Logins held until the link is up, oldest first, through
   * client->login->wait_prev/wait_next. */
  struct client *held_first, *held_last;
  unsigned n_held;
};

static void login_timer(struct client *c);
static void login_answer(struct client *c, int result, uint32_t delay_ms, const char *user,
                         const char *backend, const char *backend_addr);

static const struct client_handlers login_handlers = {.timer = login_timer};

struct logins *logins_new(const struct proxy_env *env) {
  struct logins *ls = xcalloc(1, sizeof *ls);
  ls->env = env;
  return ls;
}

void logins_free(struct logins *ls) {
  free(ls);
}

/* ---- waiting for sessiond ------------------------------------------------- */

/* What is left of c's login_timeout, which runs from its LOGIN. */
static uint64_t login_time_left(const struct client *c) {
  uint64_t spent = now_ms() - c->login->login_ms, timeout = c->env->cfg->login_timeout_ms;
  return spent < timeout ? timeout - spent : 1;
}

/* c's LOGIN (and its password, in c->login->password as for any login)
 * waits for the link: until it comes up, or until c's timer, which runs
 * for sessiond_wait but not past the login's login_timeout. */
static void hold(struct client *c) {
  struct logins *ls = c->env->logins;
  uint64_t wait = c->env->cfg->sessiond_wait_ms, left = login_time_left(c);
  c->login->login_held = 1;
  c->login->wait_next = NULL;
  c->login->wait_prev = ls->held_last;
  if (ls->held_last) ls->held_last->login->wait_next = c;
  else ls->held_first = c;
  ls->held_last = c;
  ls->n_held++;
  client_timer(c, wait < left ? wait : left);
  sessiond_link_waiting(c->env->link, ls->n_held);
}

/* c's held LOGIN, if it has one, no longer waits. 1 if it had one. */
static int unhold(struct client *c) {
  struct logins *ls = c->env->logins;
  if (!c->login || !c->login->login_held) return 0;
  c->login->login_held = 0;
  if (c->login->wait_prev) c->login->wait_prev->login->wait_next = c->login->wait_next;
  else ls->held_first = c->login->wait_next;
  if (c->login->wait_next) c->login->wait_next->login->wait_prev = c->login->wait_prev;
  else ls->held_last = c->login->wait_prev;
  c->login->wait_prev = c->login->wait_next = NULL;
  ls->n_held--;
  sessiond_link_waiting(c->env->link, ls->n_held);
  return 1;
}

static int send_login(struct client *c) {
  if (sessiond_link_login(c->env->link, c) != 0) return -1;
  client_timer(c, login_time_left(c));
  return 0;
}

/* Sent now, or held while the link is down; either way c's timer bounds
 * the wait. -1: neither (no wait configured, or too many held). */
static int ask_sessiond(struct client *c) {
  const struct config *cfg = c->env->cfg;
  if (sessiond_link_ready(c->env->link)) return send_login(c);
  if (!cfg->sessiond_wait_ms || c->env->logins->n_held >= cfg->sessiond_wait_queue) return -1;
  hold(c);
  return 0;
}

void login_begin(struct client *c, const char *tag, const char *user, const char *pass,
                 const char *mech) {
  c->login->tag = xstrdup(tag);
  free(c->user);
  c->user = xstrdup(user);
  c->login->password = xstrdup(pass);
  c->login->mech = mech;
  c->login->login_ms = now_ms();
  c->login->login_resent = 0;
  c->state = CS_AUTH_WAIT;
  client_set_handlers(c, &login_handlers);
  /* Reading goes on, so the socket stays registered (two epoll_ctl calls
   * fewer per login) and a client that leaves is noticed. What it sends
   * meanwhile waits in the input, up to a bound, for the relay or for the
   * next command after a failure. */
  client_hold_input(c, 1);
  if (ask_sessiond(c) != 0) {
    /* Answered from the timer, not from here: we are inside the pre-auth
     * stage's reading. */
    c->login->auth_result = PROTO_UNAVAILABLE;
    c->state = CS_AUTH_DELAY;
    client_timer(c, 1);
  }
}

unsigned logins_held(const struct logins *ls) {
  return ls->n_held;
}

void logins_link_up(struct logins *ls) {
  struct client *c;
  while ((c = ls->held_first)) {
    unhold(c);
    if (send_login(c) != 0) login_answer(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
  }
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
int login_lost(struct client *c) {
  if (c->state != CS_AUTH_WAIT) return -1;
  if (!c->registered && !c->login->login_resent && c->env->cfg->sessiond_wait_ms) {
    c->login->login_resent = 1;
    hold(c);
    return 1;
  }
  login_answer(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
  return 0;
}

void login_release(struct client *c, const char *reason) {
  if (c->registered) sessiond_link_session_end(c->env->link, c, reason);
  sessiond_link_cancel(c->env->link, c);
  unhold(c);
  backend_free(c);
}

/* ---- the answer ----------------------------------------------------------- */

static void failed_answer(struct client *c) {
  char peer[NETADDR_STRLEN], user[LOG_QUOTE_MAX];
  const char *tag = c->login->tag ? c->login->tag : "*";
  int auth = c->login->auth_result == PROTO_AUTH_FAILED;
  log_event(LOG_LVL_INFO, "login", "session=%s client=%s user=%s mech=%s result=%s", c->sid_hex,
            netaddr_str(&c->peer, peer, sizeof peer),
            log_quote(user, sizeof user, c->user ? c->user : "", c->user ? strlen(c->user) : 0),
            c->login->mech ? c->login->mech : "-",
            auth ? "auth_failed" : c->login->auth_result == PROTO_THROTTLED ? "throttled"
            : c->login->auth_result == PROTO_LIMIT ? "session_limit" : "unavailable");
  if (auth) {
    client_write(c, "%s NO [AUTHENTICATIONFAILED] Authentication failed.\r\n", tag);
    if (++c->login->failed_logins >= c->env->cfg->max_auth_attempts) {
      client_close(c, "* BYE Too many failed logins.\r\n", "auth_attempts");
      return;
    }
  } else if (c->login->auth_result == PROTO_LIMIT) {
    client_write(c, "%s NO [LIMIT] Too many sessions for this user.\r\n", tag);
  } else if (c->login->auth_result == PROTO_THROTTLED) {
    client_write(c, "%s NO [UNAVAILABLE] Too many failed logins, try again later.\r\n", tag);
  } else {
    client_write(c, "%s NO [UNAVAILABLE] Service temporarily unavailable, try again later.\r\n",
                 tag);
  }
  preauth_resume(c);
}

/* The backend accepted the login: tell the client and start relaying. */
static void logged_in(struct client *c, const char *capability) {
  char peer[NETADDR_STRLEN], user[LOG_QUOTE_MAX];
  if (capability)
    client_write(c, "%s OK [CAPABILITY %s] Logged in\r\n", c->login->tag, capability);
  else
    client_write(c, "%s OK Logged in\r\n", c->login->tag);
  log_event(LOG_LVL_INFO, "login",
            "session=%s client=%s user=%s mech=%s result=ok backend=%s tls=%d",
            c->sid_hex, netaddr_str(&c->peer, peer, sizeof peer),
            log_quote(user, sizeof user, c->user, strlen(c->user)), c->login->mech, c->backend_name,
            (int)c->front.is_tls);
  preauth_free(c);   /* an idle session keeps only what relaying needs */
  client_login_free(c);
  relay_start(c);
}

/* The backend login's outcome (backend.h). */
static void backend_done(struct client *c, enum backend_result r, const char *detail) {
  struct sessiond_link *link = c->env->link;
  if (r == BACKEND_LOGGED_IN) {
    logged_in(c, detail);
    return;
  }
  c->state = CS_AUTH_WAIT;
  if (r == BACKEND_REFUSED) {   /* the two databases disagree: no other seat will do */
    wipe_free_str(c->login->password);
    c->login->password = NULL;
    sessiond_link_session_end(link, c, "backend_refused");
    c->registered = 0;
    login_answer(c, PROTO_AUTH_FAILED, 0, NULL, NULL, NULL);
    return;
  }
  if (c->login->password && !c->backend_retried) {
    c->backend_retried = 1;
    if (sessiond_link_backend_failed(link, c, detail) == 0) {
      client_timer(c, c->env->cfg->login_timeout_ms);
      return;   /* sessiond answers with another seat, or not */
    }
  }
  sessiond_link_session_end(link, c, "backend_failed");
  c->registered = 0;
  login_answer(c, PROTO_UNAVAILABLE, 0, NULL, NULL, NULL);
}

/* sessiond's answer (or ours, standing in for it): a route to follow, or
 * a refusal to answer after its delay. */
static void login_answer(struct client *c, int result, uint32_t delay_ms, const char *user,
                         const char *backend, const char *backend_addr) {
  if (c->state != CS_AUTH_WAIT) return;
  if (result == PROTO_OK && backend && backend_addr && (user || c->user)) {
    const struct config_backend *b = config_backend_find(c->env->cfg, backend);
    struct netaddr addr;
    c->registered = 1;   /* sessiond counts the session from now on */
    if (b && netaddr_parse(backend_addr, &addr) == 0) {
      if (user) {   /* absent on another seat for the same login */
        free(c->user);
        c->user = xstrdup(user);
      }
      free(c->backend_name);
      c->backend_name = xstrdup(backend);
      c->state = CS_BACKEND;
      backend_start(c, b, &addr, NULL, backend_done);
      return;
    }
    log_event(LOG_LVL_ERROR, "route", "session=%s backend=%s error=\"unknown backend\"",
              c->sid_hex, backend);
    sessiond_link_session_end(c->env->link, c, "unknown_backend");
    c->registered = 0;
    result = PROTO_UNAVAILABLE;
  }
  if (c->registered) {   /* routed once, then refused (backend failover) */
    sessiond_link_session_end(c->env->link, c, "login_failed");
    c->registered = 0;
  }
  c->login->auth_result = result == PROTO_OK ? PROTO_UNAVAILABLE : result;
  c->state = CS_AUTH_DELAY;
  client_timer(c, delay_ms ? delay_ms : 1);
}

void login_reply(struct client *c, const struct proto_msg *m) {
  if (m->result == PROTO_OK && m->user) {   /* the seat's name comes with the login's */
    free(c->seat);
    c->seat = m->seat ? xstrdup(m->seat) : NULL;
  }
  if (m->result == PROTO_OK)
    snprintf(c->ticket, sizeof c->ticket, "%s", m->ticket ? m->ticket : "");
  login_answer(c, (int)m->result, m->delay_ms, m->user, m->backend, m->backend_addr);
}

static void login_timer(struct client *c) {
  switch (c->state) {
  case CS_BACKEND:
    backend_timer(c);
    return;
  case CS_AUTH_WAIT:
    if (unhold(c))
      log_event(LOG_LVL_WARN, "sessiond_wait_timeout", "session=%s", c->sid_hex);
    else
      log_event(LOG_LVL_WARN, "sessiond_timeout", "session=%s", c->sid_hex);
    sessiond_link_cancel(c->env->link, c);
    c->login->auth_result = PROTO_UNAVAILABLE;
    failed_answer(c);
    return;
  case CS_AUTH_DELAY:
    failed_answer(c);
    return;
  default:
    return;
  }
}
