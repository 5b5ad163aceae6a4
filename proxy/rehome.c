/* Re-homing a relayed session (rehome.h): the steps, each handing over to
 * the next through a callback, with one timer over the whole move.
 *
 * While the move runs, the client's input waits where it is (the socket,
 * or the TLS side's input buffer) and its output keeps flushing what the
 * old backend had sent; the client hears nothing of the move unless its
 * view must change. */
#include "proxy/rehome.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "proxy/backend.h"
#include "proxy/client.h"
#include "proxy/imap_track.h"
#include "proxy/relay.h"
#include "proxy/restore.h"
#include "proxy/sessiond_link.h"

struct rehome {
  struct event *timer;          /* the whole move: [routing] rehome_timeout */
  uint64_t start_ms;
  const char *reason;           /* what set it off (a string literal) */
  struct restore *restore;
};

static const char rehome_bye[] = "* BYE [UNAVAILABLE] Server unavailable, please reconnect.\r\n";

static void rehome_free(struct client *c) {
  struct rehome *r = c->rehome;
  if (!r) return;
  sessiond_link_cancel(c->env->link, c);   /* its request, if still out */
  client_login_free(c);
  if (r->timer) event_free(r->timer);
  restore_free(r->restore);
  free(r);
  c->rehome = NULL;
}

void rehome_release(struct client *c) {
  if (c->rehome) backend_free(c);
  rehome_free(c);
}

static void log_end(struct client *c, const char *why) {
  char user[LOG_QUOTE_MAX];
  struct rehome *r = c->rehome;
  sessiond_link_rehome_done(c->env->link, c, why, r ? now_ms() - r->start_ms : 0);
  log_event(LOG_LVL_WARN, "rehome_end", "session=%s user=%s cause=%s reason=%s ms=%llu",
            c->sid_hex, log_quote(user, sizeof user, c->user, strlen(c->user)),
            r ? r->reason : "-", why, (unsigned long long)(r ? now_ms() - r->start_ms : 0));
}

/* The move failed: the session ends as it would have without it. */
static void rehome_end(struct client *c, const char *why) {
  log_end(c, why);
  backend_free(c);
  rehome_free(c);
  client_close(c, rehome_bye, "rehome_failed");
}

static void on_rehome_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd;
  (void)what;
  rehome_end(arg, "timeout");
}

/* The client's side while the move runs: its end or an error ends the
 * session; nothing else of it is wanted now. */
static void on_front_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct client *c = arg;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) client_free_soon(c, "client_closed");
}

/* A plain client's socket while the move runs: it is watched, not read,
 * so that a client that hangs up ends the move at once instead of after
 * a login on the new backend for nobody. A command it sends stays in the
 * socket for the new backend, and the watch stops (its end is then seen
 * by the relay). A TLS client's end shows only when the relay reads it. */
static void on_front_readable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct client *c = arg;
  if (fd != c->front.fd || !c->rehome) return;
  char byte;
  ssize_t n = recv(fd, &byte, 1, MSG_PEEK);
  if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) {
    side_pause(&c->front);
    return;
  }
  log_end(c, "client_closed");
  client_free(c, n == 0 ? "client_eof" : "client_error");   /* a plain event: freeing is safe */
}

static const struct client_handlers rehome_handlers = {.readable = on_front_readable};

/* ---- the plan, from what the client has seen ----------------------------------- */

/* An IMAP quoted string for a mailbox name (the client's own bytes, which
 * may have come as a literal); -1 if it cannot be quoted. */
static int quote_mailbox(const char *name, size_t len, char *out, size_t cap) {
  size_t j = 0;
  if (cap < 3) return -1;
  out[j++] = '"';
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)name[i];
    if (ch == 0 || ch == '\r' || ch == '\n') return -1;
    if (j + 3 >= cap) return -1;
    if (ch == '"' || ch == '\\') out[j++] = '\\';
    out[j++] = (char)ch;
  }
  out[j++] = '"';
  out[j] = 0;
  return 0;
}

static int make_plan(struct client *c, struct restore_plan *p, char *mbox, size_t cap,
                     char *enable, size_t enable_cap, char *idle_tag, size_t tag_cap) {
  struct imap_track_view v;
  imap_track_view(c->track, &v);
  memset(p, 0, sizeof *p);
  imap_track_enabled_list(&v, enable, enable_cap);
  p->enable = enable;
  if (v.selected) {
    if (quote_mailbox(v.mailbox, v.mailbox_len, mbox, cap) != 0) return -1;
    p->mailbox = mbox;
    p->examine = v.examine;
    p->uidvalidity = v.uidvalidity;
    p->count = v.exists;
    p->known_seq = v.known_seq;
    p->known_uid = v.known_uid;
    if (v.qresync) p->modseq = v.highestmodseq;
  }
  if (v.idling) {
    snprintf(idle_tag, tag_cap, "%.*s", (int)v.idle_tag_len, v.idle_tag);
    p->idle_tag = idle_tag;
  }
  return 0;
}

/* ---- the steps ------------------------------------------------------------------- */

int rehome_begin(struct client *c, const char *reason) {
  const char *why = NULL;
  const struct config *cfg = c->env->cfg;
  if (!cfg->rehome || !cfg->master_user[0] || c->env->stopping) why = "off";
  else if (!c->track) why = "untracked";
  else if (!imap_track_rehomable(c->track, &why)) {}
  else if (!sessiond_link_ready(c->env->link)) why = "sessiond_down";
  if (why && strcmp(why, "logout") == 0) return 0;   /* the session was ending anyway */
  if (why) {
    char user[LOG_QUOTE_MAX];
    log_event(LOG_LVL_INFO, "rehome_skipped", "session=%s user=%s cause=%s reason=%s",
              c->sid_hex, log_quote(user, sizeof user, c->user, strlen(c->user)), reason, why);
    /* A session that ended its own way (LOGOUT, the server's BYE) ends as
     * always; one cut off mid-way is told why, as a kick tells it. */
    if (strcmp(why, "logout") == 0 || strcmp(why, "off") == 0 || strcmp(why, "untracked") == 0)
      return 0;
    sessiond_link_rehome_done(c->env->link, c, why, 0);
    client_close(c, rehome_bye, "backend_failed");
    return 1;
  }
  struct rehome *r = xcalloc(1, sizeof *r);
  c->rehome = r;
  r->reason = reason;
  r->start_ms = now_ms();
  r->timer = evtimer_new(c->env->base, on_rehome_timer, c);
  struct timeval tv;
  ms_to_timeval(cfg->rehome_timeout_ms, &tv);
  evtimer_add(r->timer, &tv);

  c->state = CS_REHOME;
  client_set_handlers(c, &rehome_handlers);
  if (side_plain_fd(&c->front) >= 0) side_resume(&c->front, NULL);   /* watched, no idle timeout */
  else client_reading(c, 0);
  bufferevent_setcb(c->front.bev, NULL, NULL, on_front_event, c);
  client_close_backend(c);   /* the session leaves the old backend first */
  client_login_new(c);       /* a re-home is a login: it holds the request to sessiond */
  if (sessiond_link_rehome(c->env->link, c, reason) != 0) {
    rehome_end(c, "sessiond_send");
    return 1;
  }
  return 1;
}

/* The new backend's login and the restore are done: tell the client what
 * changed, and relay again. */
static void rehome_done(struct client *c, enum backend_result res, const char *detail) {
  struct rehome *r = c->rehome;
  if (res != BACKEND_LOGGED_IN) {
    rehome_end(c, res == BACKEND_REFUSED ? "master_refused" : detail ? detail : "backend_failed");
    return;
  }
  size_t n;
  const char *text = restore_client_text(r->restore, &n);
  if (n) {
    client_write(c, "%.*s", (int)n, text);
    imap_track_server(c->track, text, n);   /* the client's view now includes it */
  }
  char user[LOG_QUOTE_MAX];
  sessiond_link_rehome_done(c->env->link, c, NULL, now_ms() - r->start_ms);
  log_event(LOG_LVL_INFO, "rehome", "session=%s user=%s cause=%s backend=%s result=ok ms=%llu",
            c->sid_hex, log_quote(user, sizeof user, c->user, strlen(c->user)), r->reason,
            c->backend_name, (unsigned long long)(now_ms() - r->start_ms));
  rehome_free(c);
  uint64_t started = c->relay_start_ms;
  relay_start(c);
  c->relay_start_ms = started;
}

void rehome_reply(struct client *c, const struct proto_msg *m) {
  if (c->state != CS_REHOME || !c->rehome) return;
  const struct config_backend *b = m->backend ? config_backend_find(c->env->cfg, m->backend) : NULL;
  struct netaddr addr;
  if (m->result != PROTO_OK || !b || !m->backend_addr || !m->master_user || !m->password ||
      netaddr_parse(m->backend_addr, &addr) != 0) {
    rehome_end(c, m->result != PROTO_OK ? "no_route" : "bad_route");
    return;
  }
  free(c->backend_name);
  c->backend_name = xstrdup(m->backend);
  snprintf(c->ticket, sizeof c->ticket, "%s", m->ticket ? m->ticket : "");

  char mbox[1100], enable[128], idle_tag[128];
  struct restore_plan plan;
  if (make_plan(c, &plan, mbox, sizeof mbox, enable, sizeof enable, idle_tag, sizeof idle_tag)) {
    rehome_end(c, "mailbox_unquotable");
    return;
  }
  c->rehome->restore = restore_new(&plan);
  struct backend_login how = {.authcid = m->master_user, .password = m->password,
                              .restore = c->rehome->restore};
  backend_start(c, b, &addr, &how, rehome_done);
}

int rehome_routed(const struct client *c) {
  return c->state == CS_REHOME && c->rehome && c->rehome->restore;
}

void rehome_lost(struct client *c) {
  if (c->state == CS_REHOME) rehome_end(c, "sessiond_lost");
}
