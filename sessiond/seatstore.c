/* Cluster seats in Redis (see seatstore.h for the rules). A route is one
 * attach script (and at most one replace); everything after the reply is
 * "commit": make this proxy's memory agree with the cluster's answer, close
 * any session of ours that the answer makes stale, and add the session. */
#include "sessiond/seatstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/peers.h"
#include "auth/authcache.h"
#include "sessiond/context.h"
#include "sessiond/redis.h"
#include "sessiond/seat_lua.h"
#include "sessiond/seats.h"

#define REFILL_POLL_MS 100   /* a login waiting out a refill asks this often */

static struct seatstore_stats st;
static struct event *heartbeat_ev;

static void ms_str(char out[24], uint64_t ms) { snprintf(out, 24, "%llu", (unsigned long long)ms); }

/* ---- closing stale sessions ------------------------------------------------------ */

struct stale { struct sessiond *sd; const char *user, *backend, *why; uint64_t gen; int n; };

static void kick_if_stale(struct session *s, void *arg) {
  struct stale *k = arg;
  if (strcmp(s->user, k->user) != 0) return;
  if (s->kicked || (s->gen >= k->gen && (!k->backend || !strcmp(s->backend, k->backend)))) return;
  s->kicked = 1;   /* it ends when its SESSION_END arrives */
  k->sd->kick(k->sd, s, k->why);   /* "seat_moved" re-homes (rehome.h) */
  k->n++;
}

/* Tells Redis that this proxy relays no stale session of the seat any more
 * (see LUA_MOVING_WAIT): a moved user's seat is given out once every proxy
 * that held it has said so. */
static void ack_moved(struct sessiond *sd, struct seat *seat) {
  seat->owes_ack = 0;
  if (seat->key_hex[0])
    rds_command(sd->redis, NULL, NULL, "SREM usher:{%s}:moving %s", seat->key_hex, sd->cfg->name);
}

struct kicked_left { const char *user; int n; };

static void count_kicked(struct session *s, void *arg) {
  struct kicked_left *k = arg;
  if (s->kicked && !strcmp(s->user, k->user)) k->n++;
}

/* The ack once the user's kicked sessions here are all gone. */
static void ack_when_gone(struct sessiond *sd, struct seat *seat) {
  struct kicked_left left = {seat->user, 0};
  sessions_foreach(sd->seats, count_kicked, &left);
  if (left.n) seat->owes_ack = 1;
  else ack_moved(sd, seat);
}

/* Closes the user's sessions here that are older than gen or not on
 * backend (NULL: any backend), with KICK reason why. Returns how many.
 * The ack follows once they are gone (at once when there were none). */
static int kick_stale(struct sessiond *sd, const char *user, const char *backend, uint64_t gen,
                      const char *why) {
  struct stale k = {sd, user, backend, why, gen, 0};
  sessions_foreach(sd->seats, kick_if_stale, &k);
  if (k.n) {
    st.conflicts_kicked += (uint64_t)k.n;
    log_event(LOG_LVL_INFO, "seat_kick", "sessions=%d gen=%llu", k.n, (unsigned long long)gen);
  }
  struct seat *seat = seat_find(sd->seats, user, now_ms());
  if (seat) ack_when_gone(sd, seat);
  return k.n;
}

struct regen { const char *user; uint64_t gen; };

static void set_gen(struct session *s, void *arg) {
  struct regen *r = arg;
  if (!strcmp(s->user, r->user)) s->gen = r->gen;
}

/* ---- routing ----------------------------------------------------------------------- */

struct route {
  struct sessiond *sd;
  void *owner;               /* the session's owner in the seat table */
  const int *gone;           /* the owner's "nobody waits any more" */
  char session[17];
  char client[64];
  char *user, *pinned;
  char key_hex[AUTHCACHE_HEX_LEN + 1];
  seatstore_done_fn done;
  void *cookie;
  uint64_t started_ms;       /* for the bound on waiting out a refill */
  struct event *wait_ev;
};

static void route_free(struct route *r) {
  if (r->wait_ev) event_free(r->wait_ev);
  free(r->user);
  free(r->pinned);
  free(r);
}

/* This proxy's memory takes the cluster's answer; the session joins it. */
static void commit(struct route *r, int idx, uint64_t gen, int fenced) {
  struct sessiond *sd = r->sd;
  uint64_t now = now_ms();
  const char *backend = sd->cfg->backends[idx].name;
  struct seat *seat = seat_find(sd->seats, r->user, now);
  if (seat && fenced && (strcmp(seat->backend, backend) || (seat->fenced && seat->gen < gen)))
    kick_stale(sd, r->user, backend, gen, "seat_moved");
  if (!seat) seat = seat_create(sd->seats, r->user, backend, now);
  else if (strcmp(seat->backend, backend)) seat_move(seat, backend);
  seat->gen = gen;
  seat->fenced = fenced;
  snprintf(seat->key_hex, sizeof seat->key_hex, "%s", r->key_hex);
  struct session *old = session_find(sd->seats, r->session);
  if (old) session_remove(sd->seats, old, now, sd->cfg->seat_expire_ms);
  if (!*r->gone) session_add(sd->seats, r->session, r->user, backend, r->client, r->owner, now);
}

static void route_done(struct route *r, int idx) {
  r->done(r->cookie, idx);
  route_free(r);
}

static void on_peers_agreed(void *cookie, int idx) {
  struct route *r = cookie;
  if (idx < 0) {
    st.refused_routes++;
    route_done(r, -1);
    return;
  }
  st.peer_routes++;
  r->sd->n.seats_created++;
  commit(r, idx, 0, 0);   /* unconfirmed: the heartbeat writes it to Redis later */
  route_done(r, idx);
}

/* Redis is away and on_redis_down = refuse (the default): a user who
 * holds sessions on this proxy under a seat that Redis confirmed keeps
 * that seat. It is safe: no proxy can seat the user elsewhere without
 * Redis (they refuse too, or ask us: see peers.h), and a move needs
 * Redis. Anyone else would be seated on a guess that another proxy's
 * sessions may contradict: with [peers] the other proxies are asked, and
 * without them, the login gets NO [UNAVAILABLE]. */
static void route_refused_unless_held(struct route *r, uint64_t now) {
  struct sessiond *sd = r->sd;
  struct seat *seat = seat_find(sd->seats, r->user, now);
  int idx = seat ? sessiond_backend_index(sd, seat->backend) : -1;
  if (!seat || !seat->fenced || seat->sessions == 0 || !backend_usable(sd, idx, now)) {
    if (sd->peers) {   /* where it was last seen, if usable; else the hash */
      int proposed = seat && backend_usable(sd, idx, now) ? idx : backends_choose(sd, r->user, r->pinned);
      peers_claim(sd->peers, r->key_hex, proposed, on_peers_agreed, r);
      return;
    }
    st.refused_routes++;
    route_done(r, -1);
    return;
  }
  sd->n.seats_reused++;
  commit(r, idx, seat->gen, 1);
  route_done(r, idx);
}

/* Redis is not there: this proxy's memory and the consistent hash. */
static void route_local(struct route *r) {
  struct sessiond *sd = r->sd;
  uint64_t now = now_ms();
  if (sd->redis && sd->cfg->on_redis_down_refuse) {
    route_refused_unless_held(r, now);
    return;
  }
  st.fallback_routes++;
  struct seat *seat = seat_find(sd->seats, r->user, now);
  int idx = seat ? sessiond_backend_index(sd, seat->backend) : -1;
  if (seat && backend_usable(sd, idx, now)) {
    sd->n.seats_reused++;
  } else {
    if (seat && seat->sessions > 0) {   /* live sessions there: no second backend */
      route_done(r, -1);
      return;
    }
    idx = backends_choose(sd, r->user, r->pinned);
    if (idx < 0) {
      route_done(r, -1);
      return;
    }
    if (seat) sd->n.seats_moved++;
    else sd->n.seats_created++;
  }
  commit(r, idx, seat && seat->fenced ? seat->gen : 0, seat ? seat->fenced : 0);
  route_done(r, idx);
}

static void route_attach(struct route *r);

static void on_refill_waited(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  route_attach(arg);
}

/* Redis answered "ask again in pttl ms": refilling (LUA_REFILL_WAIT), or
 * a move that proxies holding the old seat have not acknowledged yet
 * (LUA_MOVING_WAIT). The login waits, at most refill_time from its start:
 * a seat written back, or the last ack, ends the wait at the next ask.
 * Returns 1 when rep was that answer. */
static int seat_wait(struct route *r, const redisReply *rep) {
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 1 ||
      rep->element[0]->type != REDIS_REPLY_INTEGER)
    return 0;
  struct sessiond *sd = r->sd;
  uint64_t waited = now_ms() - r->started_ms, pttl = rep->element[0]->integer > 0 ?
                    (uint64_t)rep->element[0]->integer : 1;
  if (*r->gone || waited >= sd->cfg->refill_ms) {
    st.refill_refused++;
    route_done(r, -1);
    return 1;
  }
  /* Ask again soon: the holder's write-back ends the wait, not the window. */
  uint64_t wait = pttl + 5 < REFILL_POLL_MS ? pttl + 5 : REFILL_POLL_MS;
  if (wait > sd->cfg->refill_ms - waited) wait = sd->cfg->refill_ms - waited;
  if (!r->wait_ev) {
    st.refill_waits++;
    r->wait_ev = evtimer_new(sd->base, on_refill_waited, r);
  }
  struct timeval tv;
  ms_to_timeval(wait, &tv);
  evtimer_add(r->wait_ev, &tv);
  return 1;
}

static void on_replaced(void *cookie, const redisReply *rep) {
  struct route *r = cookie;
  struct sessiond *sd = r->sd;
  if (seat_wait(r, rep)) return;
  if (!seat_reply_ok(rep, 3)) {
    route_local(r);
    return;
  }
  int idx = sessiond_backend_index(sd, rep->element[0]->str);
  uint64_t gen = strtoull(rep->element[1]->str, NULL, 10);
  if (!backend_usable(sd, idx, now_ms())) {   /* lost the race to a seat we cannot use */
    route_done(r, -1);
    return;
  }
  if (rep->element[2]->integer) {
    st.replaces++;
    sd->n.seats_moved++;
    commit(r, idx, gen, 1);
    char msg[AUTHCACHE_HEX_LEN + 32];
    snprintf(msg, sizeof msg, "kick %s %llu rehome", r->key_hex, (unsigned long long)gen);
    rds_command(sd->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
    log_event(LOG_LVL_INFO, "seat_replaced", "backend=%s gen=%llu", rep->element[0]->str,
              (unsigned long long)gen);
  } else {
    sd->n.seats_reused++;
    commit(r, idx, gen, 1);
  }
  route_done(r, idx);
}

/* The seated backend cannot be used: replace it, compare-and-set. */
static void replace(struct route *r, const char *old_backend, const char *old_gen) {
  struct sessiond *sd = r->sd;
  int idx = backends_choose(sd, r->user, r->pinned);
  if (idx < 0) {
    /* Nothing else can take the user either. A verdict can be wrong (a
     * backend back from a restart before its checks have spoken): rather
     * than refuse without trying, try the seat's own backend once, unless
     * an operator took it out. The seat rule holds: it is the seat. */
    int old = sessiond_backend_index(sd, old_backend);
    if (old >= 0 && sd->bstate[old].admin == BA_UP && !sd->cfg->backends[old].retired) {
      sd->n.seats_reused++;
      commit(r, old, strtoull(old_gen, NULL, 10), 1);
      route_done(r, old);
      return;
    }
    route_done(r, -1);
    return;
  }
  char lease[24], expire[24];
  ms_str(lease, sd->cfg->seat_lease_ms);
  ms_str(expire, sd->cfg->seat_expire_ms);
  const char *args[] = {old_backend, old_gen, sd->cfg->backends[idx].name, sd->cfg->name, lease,
                        expire};
  if (seat_script(sd, SEAT_REPLACE_LUA, r->key_hex, on_replaced, r, 6, args) != 0) route_local(r);
}

static void on_attached(void *cookie, const redisReply *rep) {
  struct route *r = cookie;
  struct sessiond *sd = r->sd;
  if (!rep || rep->type != REDIS_REPLY_ARRAY) {
    if (rep && rep->type == REDIS_REPLY_ERROR)
      log_event(LOG_LVL_ERROR, "seat_script", "error=\"%s\"", rep->str);
    route_local(r);
    return;
  }
  if (seat_wait(r, rep)) return;
  if (rep->elements == 0) {   /* no seat, and nothing to propose */
    route_done(r, -1);
    return;
  }
  if (!seat_reply_ok(rep, 3)) {
    route_local(r);
    return;
  }
  st.attaches++;
  const char *backend = rep->element[0]->str, *gen_s = rep->element[1]->str;
  int idx = sessiond_backend_index(sd, backend);
  if (!backend_usable(sd, idx, now_ms())) {
    replace(r, backend, gen_s);
    return;
  }
  if (rep->element[2]->integer) {
    st.claims_won++;
    sd->n.seats_created++;
  } else {
    sd->n.seats_reused++;
  }
  commit(r, idx, strtoull(gen_s, NULL, 10), 1);
  route_done(r, idx);
}

void seatstore_route(struct sessiond *sd, void *owner, const int *gone, const char *session,
                     const char *client, const char *user, const char *key_hex,
                     const char *pinned, seatstore_done_fn done, void *cookie) {
  struct route *r = xcalloc(1, sizeof *r);
  r->sd = sd;
  r->owner = owner;
  r->gone = gone;
  snprintf(r->session, sizeof r->session, "%s", session);
  snprintf(r->client, sizeof r->client, "%s", client);
  r->user = xstrdup(user);
  r->pinned = pinned ? xstrdup(pinned) : NULL;
  r->done = done;
  r->cookie = cookie;
  if (key_hex) {
    snprintf(r->key_hex, sizeof r->key_hex, "%s", key_hex);
  } else {
    uint8_t key[AUTHCACHE_HASH_LEN];
    authcache_key(sd->cache, user, key);
    authcache_hex(key, r->key_hex);
  }
  r->started_ms = now_ms();
  if (!sd->redis) {
    route_local(r);
    return;
  }
  route_attach(r);
}

/* The attach script; again after a refill wait. */
static void route_attach(struct route *r) {
  struct sessiond *sd = r->sd;
  /* Peers may have agreed on a seat while our Redis link was down. */
  int proposed = peers_claimed_backend(sd->peers, r->key_hex);
  if (proposed < 0 || !backend_usable(sd, proposed, now_ms()))
    proposed = backends_choose(sd, r->user, r->pinned);
  char lease[24], expire[24];
  ms_str(lease, sd->cfg->seat_lease_ms);
  ms_str(expire, sd->cfg->seat_expire_ms);
  const char *args[] = {proposed >= 0 ? sd->cfg->backends[proposed].name : "", sd->cfg->name,
                        lease, expire};
  if (seat_script(sd, SEAT_ATTACH_LUA, r->key_hex, on_attached, r, 4, args) != 0) route_local(r);
}

void seatstore_backend_failed(struct sessiond *sd, const char *session, const int *gone,
                              seatstore_done_fn done, void *cookie) {
  uint64_t now = now_ms();
  struct session *s = session_find(sd->seats, session);
  struct seat *seat = s ? seat_find(sd->seats, s->user, now) : NULL;
  /* Another seat only if this is the user's one session here: otherwise
   * the user is on that backend with live sessions and must stay there. */
  if (!s || !seat || seat->sessions != 1) {
    done(cookie, -1);
    return;
  }
  /* The session leaves the failed backend; routing adds it again. */
  void *owner = s->owner;
  session_remove(sd->seats, s, now, sd->cfg->seat_expire_ms);
  struct route *r = xcalloc(1, sizeof *r);
  r->sd = sd;
  r->owner = owner;
  r->gone = gone;
  snprintf(r->session, sizeof r->session, "%s", session);
  r->user = xstrdup(seat->user);
  r->done = done;
  r->cookie = cookie;
  snprintf(r->key_hex, sizeof r->key_hex, "%s", seat->key_hex);
  if (!sd->redis || !seat->fenced || !seat->key_hex[0]) {
    route_local(r);   /* the failed backend is marked: the hash picks another */
    return;
  }
  char gen[24];
  ms_str(gen, seat->gen);
  replace(r, seat->backend, gen);
}

/* ---- the rest of a seat's life ------------------------------------------------------- */

void seatstore_session_ended(struct sessiond *sd, const char *session) {
  uint64_t now = now_ms();
  struct session *s = session_find(sd->seats, session);
  if (!s) return;
  char *user = xstrdup(s->user);
  session_remove(sd->seats, s, now, sd->cfg->seat_expire_ms);
  struct seat *seat = seat_find(sd->seats, user, now);
  if (seat && seat->owes_ack) ack_when_gone(sd, seat);
  if (seat && seat->sessions == 0 && seat->fenced && seat->key_hex[0]) {
    char expire[24];
    ms_str(expire, sd->cfg->seat_expire_ms);
    const char *args[] = {sd->cfg->name, expire};
    if (seat_script(sd, SEAT_DETACH_LUA, seat->key_hex, NULL, NULL, 2, args) == 0) st.detaches++;
  }
  free(user);
}

struct beat { struct sessiond *sd; char *user; };

static void on_heartbeat(void *cookie, const redisReply *rep) {
  struct beat *b = cookie;
  struct sessiond *sd = b->sd;
  struct seat *seat = rep ? seat_find(sd->seats, b->user, now_ms()) : NULL;
  if (seat && seat_reply_ok(rep, 2)) {
    const char *backend = rep->element[0]->str;
    uint64_t gen = strtoull(rep->element[1]->str, NULL, 10);
    int same = !strcmp(seat->backend, backend);
    if (!seat->fenced && same) {   /* written back after an outage: adopt its gen */
      struct regen rg = {b->user, gen};
      sessions_foreach(sd->seats, set_gen, &rg);
    } else if (!same || gen > seat->gen) {
      /* Moved or kicked while we missed the event, or chosen differently
       * while Redis was away: the cluster's seat wins. */
      kick_stale(sd, b->user, backend, same ? gen : UINT64_MAX, "seat_moved");
      if (!same) seat_move(seat, backend);
    }
    seat->gen = gen;
    seat->fenced = 1;
  }
  free(b->user);
  free(b);
}

static void heartbeat_one(struct seat *seat, void *arg) {
  struct sessiond *sd = arg;
  if (seat->sessions == 0) return;
  if (!seat->key_hex[0]) {   /* re-registered after a restart: name it */
    uint8_t key[AUTHCACHE_HASH_LEN];
    authcache_key(sd->cache, seat->user, key);
    authcache_hex(key, seat->key_hex);
  }
  char gen[24], lease[24], expire[24];
  ms_str(gen, seat->gen);
  ms_str(lease, sd->cfg->seat_lease_ms);
  ms_str(expire, sd->cfg->seat_expire_ms);
  const char *args[] = {seat->backend, gen, sd->cfg->name, lease, expire, seat->fenced ? "0" : "1"};
  struct beat *b = xcalloc(1, sizeof *b);
  b->sd = sd;
  b->user = xstrdup(seat->user);
  if (seat_script(sd, SEAT_HEARTBEAT_LUA, seat->key_hex, on_heartbeat, b, 6, args) != 0) {
    free(b->user);
    free(b);
    return;
  }
  st.heartbeats++;
}

/* All in one loop turn: hiredis writes them out as one pipelined batch. */
static void on_heartbeat_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct sessiond *sd = arg;
  if (rds_is_up(sd->redis)) seats_foreach(sd->seats, heartbeat_one, sd);
}

/* After a reconnect. If Redis is another server process now, it may have
 * lost seats: open the refill window first (pipelined ahead of every
 * attach this proxy sends from now on), then write ours back. */
void seatstore_resync(struct sessiond *sd) {
  if (rds_take_server_changed(sd->redis)) {
    char ms[24];
    ms_str(ms, sd->cfg->refill_ms);
    rds_command(sd->redis, NULL, NULL, "SET " REFILL_KEY " %s PX %s", sd->cfg->name, ms);
    st.refills++;
    log_event(LOG_LVL_WARN, "seat_refill", "window_ms=%s seats=%zu", ms, seats_count(sd->seats));
  }
  on_heartbeat_timer(-1, 0, sd);
}

void seatstore_start(struct sessiond *sd) {
  if (!sd->redis) return;
  struct timeval tv;
  ms_to_timeval(sd->cfg->seat_lease_ms / 3, &tv);
  heartbeat_ev = event_new(sd->base, -1, EV_PERSIST, on_heartbeat_timer, sd);
  event_add(heartbeat_ev, &tv);
}

void seatstore_stop(struct sessiond *sd) {
  (void)sd;
  if (heartbeat_ev) event_free(heartbeat_ev);
  heartbeat_ev = NULL;
}

/* ---- operator actions and events ----------------------------------------------------- */

struct by_key { const char *hex; struct seat *found; };

static void find_by_key(struct seat *s, void *arg) {
  struct by_key *k = arg;
  if (!k->found && !strcmp(s->key_hex, k->hex)) k->found = s;
}

void seatstore_on_event(struct sessiond *sd, const char *payload, size_t len) {
  char buf[160], hex[AUTHCACHE_HEX_LEN + 1], how[16] = "";
  unsigned long long gen;
  if (len >= sizeof buf) return;
  memcpy(buf, payload, len);
  buf[len] = '\0';
  /* "kick H GEN", and "kick H GEN rehome" for a move that re-homes. */
  if (sscanf(buf, "kick %64s %llu %15s", hex, &gen, how) < 2) return;
  struct by_key k = {hex, NULL};
  seats_foreach(sd->seats, find_by_key, &k);
  const char *why = strcmp(how, "rehome") ? "kicked" : "seat_moved";
  if (k.found) kick_stale(sd, k.found->user, NULL, gen, why);
}

struct publish_ctx { struct sessiond *sd; char hex[AUTHCACHE_HEX_LEN + 1]; char backend[64]; const char *why; };

static void on_gen_bumped(void *cookie, const redisReply *rep) {
  struct publish_ctx *c = cookie;
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer < 0) {
    st.moves_refused++;
    log_event(LOG_LVL_WARN, "admin_move", "result=refused reason=refilling user_key=%.16s "
              "note=\"Redis came back without all seats; move again after refill_time\"", c->hex);
  }
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer > 0) {
    struct by_key k = {c->hex, NULL};
    seats_foreach(c->sd->seats, find_by_key, &k);
    if (k.found && c->backend[0]) seat_move(k.found, c->backend);
    if (k.found) k.found->gen = (uint64_t)rep->integer;
    char msg[AUTHCACHE_HEX_LEN + 32];
    snprintf(msg, sizeof msg, "kick %s %lld%s", c->hex, rep->integer,
             strcmp(c->why, "seat_moved") ? "" : " rehome");
    rds_command(c->sd->redis, NULL, NULL, "PUBLISH usher:events %s", msg);
  }
  free(c);
}

/* Bumps the generation in Redis (and sets the backend for a move), then
 * publishes the kick. Local sessions are closed at once either way. */
static int bump(struct sessiond *sd, const char *user, const char *backend, const char *why) {
  uint8_t key[AUTHCACHE_HASH_LEN];
  struct publish_ctx *c = xcalloc(1, sizeof *c);
  c->sd = sd;
  c->why = why;
  authcache_key(sd->cache, user, key);
  authcache_hex(key, c->hex);
  char expire[24];
  ms_str(expire, sd->cfg->seat_expire_ms);
  char lease[24];
  ms_str(lease, sd->cfg->seat_lease_ms);
  const char *args[] = {backend ? backend : "", expire, lease};
  if (backend) snprintf(c->backend, sizeof c->backend, "%s", backend);
  /* With Redis the local seat moves once Redis answered (on_gen_bumped);
   * without, here, before the kicks: a re-homed session follows it. */
  struct seat *seat = sd->redis ? NULL : seat_find(sd->seats, user, now_ms());
  if (seat && backend) seat_move(seat, backend);
  if (seat_script(sd, SEAT_MOVE_LUA, c->hex, on_gen_bumped, c, 3, args) != 0) free(c);
  return kick_stale(sd, user, NULL, UINT64_MAX, why);
}

int seatstore_kick(struct sessiond *sd, const char *user, char *err, size_t errlen) {
  (void)err; (void)errlen;
  log_event(LOG_LVL_INFO, "admin_kick", "cluster=%s", rds_is_up(sd->redis) ? "yes" : "no");
  return bump(sd, user, NULL, "kicked");
}

int seatstore_move(struct sessiond *sd, const char *user, const char *backend, int rehome,
                   char *err, size_t errlen) {
  if (sessiond_backend_index(sd, backend) < 0) {
    snprintf(err, errlen, "no backend named '%s'", backend);
    return -1;
  }
  if (sd->redis && !rds_is_up(sd->redis)) {
    snprintf(err, errlen, "Redis is unreachable: a move now could seat the user twice");
    return -1;
  }
  sd->n.seats_moved++;
  log_event(LOG_LVL_INFO, "admin_move", "backend=%s rehome=%s", backend, rehome ? "yes" : "no");
  return bump(sd, user, backend, rehome ? "seat_moved" : "kicked");
}

const struct seatstore_stats *seatstore_stats(void) { return &st; }
