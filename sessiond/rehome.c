/* Live re-homing, sessiond's side (see rehome.h and common/proto.h).
 *
 * Whom it believes. REHOME hands out the master credential, which logs in
 * as anyone, so it is believed only as far as SESSION_UP is: with the
 * ticket of the session's last LOGIN_REPLY OK, checked for this
 * connection's worker id and pid, on a configured backend, and, when
 * sessiond knows the session, from its holder with the same seat and old
 * backend. A worker that was taken over can thus re-home only sessions of
 * users who logged in through it, whose mail it already relays; it
 * cannot name another user. The credential goes to it in one frame, wiped
 * from sessiond's buffer once sent. */
#include "sessiond/rehome.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"
#include "sessiond/workers.h"

int rehome_on(const struct sessiond *sd) {
  return sd->cfg->rehome && sd->cfg->master_user[0] && sd->master_password;
}

int rehome_load_password(struct sessiond *sd) {
  const struct config *cfg = sd->cfg;
  if (!cfg->master_user[0]) return 0;
  sd->master_password = cfg->master_password_file[0]
                            ? secret_file_read("master password", cfg->master_password_file)
                            : NULL;
  if (sd->master_password) return 0;
  log_event(LOG_LVL_ERROR, "rehome", "error=\"[routing] master_user is set but "
            "master_password_file cannot be read\"");
  return -1;
}

void rehome_forget_password(struct sessiond *sd) {
  if (sd->master_password) wipe_free_str(sd->master_password);
  sd->master_password = NULL;
}

/* The reasons a worker may give; anything else is refused (they reach the
 * log, and "backend_failed" marks a backend down). */
static int reason_known(const char *r) {
  return r && (!strcmp(r, "backend_failed") || !strcmp(r, "moved") || !strcmp(r, "drain"));
}

static const char *seat_name_of(const struct proto_msg *m) { return m->seat ? m->seat : m->user; }

/* Why a REHOME cannot be believed, or NULL: as SESSION_UP's checks. */
static const char *rehome_refusal(struct wconn *wc, const struct proto_msg *m,
                                  const struct session *known) {
  struct sessiond *sd = wc->sd;
  if (!workers_session_id_valid(m->session)) return "bad_session_id";
  if (!m->user || !m->backend) return "incomplete";
  if (!reason_known(m->reason)) return "bad_reason";
  if (sessiond_backend_index(sd, m->backend) < 0) return "unknown_backend";
  if (!workers_ticket_valid(wc, m)) return "bad_ticket";
  if (known && !workers_holds(wc, known)) return "not_owner";
  if (known && (strcmp(known->user, seat_name_of(m)) || strcmp(known->backend, m->backend)))
    return "not_as_routed";
  return NULL;
}

/* What a route in progress must remember: the request's names (the
 * message's strings live in the connection's frame buffer, reused by the
 * next frame). */
struct rehoming {
  struct wconn *wc;
  uint32_t req;
  char session[17];
  char *user, *seat, *from, *reason;
};

static void rehoming_free(struct rehoming *r) {
  wconn_unref(r->wc);
  free(r->user);
  free(r->seat);
  free(r->from);
  free(r->reason);
  free(r);
}

static void on_rehome_routed(void *cookie, int idx) {
  struct rehoming *r = cookie;
  struct sessiond *sd = r->wc->sd;
  char user[LOG_QUOTE_MAX];
  log_quote(user, sizeof user, r->user, strlen(r->user));
  if (idx < 0 || r->wc->closed) {
    sd->n.rehome_unavailable++;
    log_event(LOG_LVL_WARN, "rehome_route", "session=%s user=%s from=%s to=none reason=%s",
              r->session, user, r->from, r->reason);
    workers_reply_failure(r->wc, r->req, r->session, PROTO_UNAVAILABLE, 0);
  } else {
    sd->n.rehome_routed++;
    log_event(LOG_LVL_INFO, "rehome_route", "session=%s user=%s from=%s to=%s reason=%s",
              r->session, user, r->from, sd->cfg->backends[idx].name, r->reason);
    workers_reply_rehomed(sd, r->wc, r->req, r->session, r->user, r->seat ? r->seat : r->user,
                          idx, sd->cfg->master_user, sd->master_password);
  }
  rehoming_free(r);
}

/* Without a seat fenced in Redis nothing compares and sets: a seat on the
 * failed backend moves here, to where the hash sends the user now, so
 * that the user's other sessions there (dead with it, re-homing too) do
 * not pin it. With Redis the seat store's replace does it, once. */
static void reseat_off_failed(struct sessiond *sd, const char *seat_name, const char *failed) {
  struct seat *seat = seat_find(sd->seats, seat_name, now_ms());
  if (!seat || strcmp(seat->backend, failed)) return;
  if (sd->redis && seat->fenced && seat->key_hex[0]) return;
  int idx = sessiond_backend_index(sd, failed);
  if (backend_usable(sd, idx, now_ms())) return;
  int to = backends_choose(sd, seat_name, NULL);
  if (to < 0) return;
  sd->n.seats_moved++;
  seat_move(seat, sd->cfg->backends[to].name);
}

/* The backend failed under the session: counted and marked as a failed
 * login at it is (BACKEND_FAILED). */
static void count_backend_failure(struct sessiond *sd, const char *backend) {
  sd->n.backend_failures++;
  int idx = sessiond_backend_index(sd, backend);
  if (idx >= 0) sessiond_backend_mark_down(sd, idx, "rehome_backend_failed");
}

void rehome_request(struct wconn *wc, const struct proto_msg *m) {
  struct sessiond *sd = wc->sd;
  sd->n.rehome_requests++;
  struct session *known = m->session ? session_find(sd->seats, m->session) : NULL;
  const char *why = rehome_refusal(wc, m, known);
  if (why || !rehome_on(sd)) {
    if (why) {
      sd->n.rehome_refused++;
      workers_refuse(wc, m, why);
    } else {
      sd->n.rehome_unavailable++;   /* re-homing is off: the session ends */
    }
    workers_reply_failure(wc, m->req, m->session, PROTO_UNAVAILABLE, 0);
    return;
  }
  /* The worker has closed the old backend connection: the session leaves
   * it as at SESSION_END (seat table, lease, a move's ack owed). */
  if (known) seatstore_session_ended(sd, m->session);
  if (!strcmp(m->reason, "backend_failed")) {
    count_backend_failure(sd, m->backend);
    reseat_off_failed(sd, seat_name_of(m), m->backend);
  }
  struct rehoming *r = xcalloc(1, sizeof *r);
  r->wc = wc;
  wconn_ref(wc);
  r->req = m->req;
  snprintf(r->session, sizeof r->session, "%s", m->session);
  r->user = xstrdup(m->user);
  r->seat = m->seat ? xstrdup(m->seat) : NULL;
  r->from = xstrdup(m->backend);
  r->reason = xstrdup(m->reason);
  char client[64];
  snprintf(client, sizeof client, "%s:%u", m->client_addr ? m->client_addr : "?", m->client_port);
  seatstore_route(sd, wc, &wc->closed, r->session, client, seat_name_of(m), NULL, NULL,
                  on_rehome_routed, r);
}

void rehome_init(struct sessiond *sd) {
  sd->rehome_enabled = rehome_on;
  sd->rehome_handler = rehome_request;
}
