/* Paced migration of a draining backend's users (see drain.h). The users
 * are listed once, at the start, from this proxy's seat table: with Redis
 * each move is cluster-wide (seatstore_move publishes it), but a user
 * seated on the backend whose sessions are all on other proxies is not
 * seen here (left for those proxies, or for the seat's expiry). A tick
 * every DRAIN_TICK_MS moves a tenth of the rate, so that a drain of
 * thousands of users does not send them all to the new backends at once. */
#include "sessiond/drain.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"

#define DRAIN_TICK_MS 100

static struct {
  struct sessiond *sd;
  char backend[64];
  char **users;
  size_t n, next;
  unsigned per_tick;
  unsigned long long moved, unmovable;
  struct event *tick;
} mig;

static void collect_seated(struct seat *s, void *arg) {
  (void)arg;
  if (strcmp(s->backend, mig.backend)) return;
  mig.users = xrealloc(mig.users, (mig.n + 1) * sizeof *mig.users);
  mig.users[mig.n++] = xstrdup(s->user);
}

static void users_free(void) {
  for (size_t i = 0; i < mig.n; i++) free(mig.users[i]);
  free(mig.users);
  mig.users = NULL;
  mig.n = mig.next = 0;
}

/* One user: still seated there (a login or a move may have moved it)? */
static void migrate_one(const char *user) {
  struct sessiond *sd = mig.sd;
  struct seat *seat = seat_find(sd->seats, user, now_ms());
  if (!seat || strcmp(seat->backend, mig.backend)) return;
  int to = backends_choose(sd, user, NULL);
  char err[160];
  int rehome = sd->rehome_enabled && sd->rehome_enabled(sd);
  if (to < 0 || seatstore_move(sd, user, sd->cfg->backends[to].name, rehome, err, sizeof err) < 0)
    mig.unmovable++;
  else
    mig.moved++;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what; (void)arg;
  for (unsigned i = 0; i < mig.per_tick && mig.next < mig.n; i++) migrate_one(mig.users[mig.next++]);
  if (mig.next < mig.n) return;
  log_event(LOG_LVL_INFO, "drain_migrate", "backend=%s result=done moved=%llu unmovable=%llu",
            mig.backend, mig.moved, mig.unmovable);
  drain_migrate_stop();
}

int drain_migrate_start(struct sessiond *sd, const char *backend, unsigned rate, char *err,
                        size_t errlen) {
  if (mig.tick) {
    snprintf(err, errlen, "a migration of %s is under way", mig.backend);
    return -1;
  }
  if (sessiond_backend_index(sd, backend) < 0) {
    snprintf(err, errlen, "no backend named '%s'", backend);
    return -1;
  }
  mig.sd = sd;
  snprintf(mig.backend, sizeof mig.backend, "%s", backend);
  mig.moved = mig.unmovable = 0;
  seats_foreach(sd->seats, collect_seated, NULL);
  rate = rate ? rate : sd->cfg->drain_rate;
  mig.per_tick = rate >= 1000 / DRAIN_TICK_MS ? rate / (1000 / DRAIN_TICK_MS) : 1;
  struct timeval tv;
  /* Below 10 a second: one user a tick, the ticks spaced out. */
  ms_to_timeval(rate >= 1000 / DRAIN_TICK_MS ? DRAIN_TICK_MS : 1000 / (rate ? rate : 1), &tv);
  mig.tick = event_new(sd->base, -1, EV_PERSIST, on_tick, NULL);
  event_add(mig.tick, &tv);
  log_event(LOG_LVL_INFO, "drain_migrate", "backend=%s result=started users=%zu rate=%u",
            backend, mig.n, rate);
  return (int)mig.n;
}

void drain_migrate_status(struct evbuffer *out) {
  if (!mig.tick) {
    evbuffer_add_printf(out, "\"migration\":null");
    return;
  }
  evbuffer_add_printf(out, "\"migration\":{\"backend\":\"%s\",\"users_left\":%zu,\"moved\":%llu,"
                      "\"unmovable\":%llu}", mig.backend, mig.n - mig.next, mig.moved,
                      mig.unmovable);
}

void drain_migrate_stop(void) {
  if (mig.tick) event_free(mig.tick);
  mig.tick = NULL;
  users_free();
}
