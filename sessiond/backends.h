/* The backends as sessiond sees them: the operator's state (up, draining,
 * down) and weight, shared through Redis so every proxy agrees; the active
 * health check (connect and greeting every health_interval; health_fall
 * failures in a row mark it unhealthy, health_rise successes healthy
 * again); and passive marks from workers whose connects failed (for
 * backend_retry).
 *
 *   eligible: may receive new seats: up, healthy, not marked, weight > 0
 *   usable:   seated users may keep using it: not down, healthy, not marked
 *
 * Operator changes are written to the Redis hash usher:backends (NAME ->
 * "STATE WEIGHT") and published as "backend NAME STATE WEIGHT"; every
 * sessiond applies them, and reads the whole hash again after a reconnect.
 *
 * Verdicts are shared too ([routing] share_health, with Redis), so that all
 * proxies stop sending users to a dead backend together: when this proxy's
 * own checks or failed connects find a backend down, it publishes
 * "backend NAME health down MS PROXY" and sets usher:health:NAME = PROXY
 * with PX MS (backend_retry), again at half that life while its verdict
 * stands; "backend NAME health up 0 PROXY" (and the key deleted) when its
 * checks see it healthy again. A peer's "down" makes the backend unusable
 * here (state peer_down) for at most backend_retry and the verdict's life
 * left, lifted earlier by this proxy's own health_rise passing checks
 * (so one proxy with a broken path cannot keep a backend out), by the
 * peer's "up" or by the operator's "up". A learned verdict is never
 * published again, and a proxy ignores its own on the bus: no loops. */
#ifndef USHER_SESSIOND_BACKENDS_H
#define USHER_SESSIOND_BACKENDS_H

#include <stddef.h>
#include <stdint.h>

struct sessiond;
struct config;

enum backend_admin { BA_UP = 0, BA_DRAIN, BA_DOWN };

struct backend_state {
  enum backend_admin admin;
  unsigned weight;            /* effective: the operator's, else the configuration's */
  int weight_set;             /* the operator set it */
  int healthy;                /* the active check's verdict; 1 until checks say otherwise */
  unsigned ok_in_row, failed_in_row;
  uint64_t down_until;        /* passive mark, monotonic ms */
  uint64_t shared_until;      /* a peer's "down" verdict holds until then */
  uint64_t published_until;   /* our own "down" verdict, as published, lives until then */
  struct bufferevent *probe;  /* the check in progress */
  struct event *probe_timer;
};

/* A configured backend's index by name, or -1; a failed connect's retry
 * penalty. */
int sessiond_backend_index(const struct sessiond *sd, const char *name);
void sessiond_backend_mark_down(struct sessiond *sd, int idx, const char *why);

/* The states (CONFIG_MAX_BACKENDS of them, sd->bstate) and the health checks. */
void backends_start(struct sessiond *sd);
void backends_stop(struct sessiond *sd);
/* A new configuration: states follow their backends by name. */
void backends_reconfigure(struct sessiond *sd, const struct config *old_cfg);

int backend_eligible(const struct sessiond *sd, int idx, uint64_t now);
int backend_usable(const struct sessiond *sd, int idx, uint64_t now);
const char *backend_state_name(const struct sessiond *sd, int idx, uint64_t now);
/* How long a failed connect's retry penalty still excludes the backend
 * (0: none), unless health checks lift it first. */
uint64_t backend_retry_left_ms(const struct sessiond *sd, int idx, uint64_t now);

/* Which backend a user without a seat gets: the pinned one if configured
 * and usable, else the weighted rendezvous choice among eligible backends.
 * The backend's index, or -1. */
int backends_choose(const struct sessiond *sd, const char *user, const char *pinned);

/* "up", "drain", "down" and/or a weight (< 0: unchanged). Applies here,
 * writes Redis and publishes. Returns 0, or -1 with a reason in err. */
int backends_admin(struct sessiond *sd, const char *name, const char *state, int weight,
                   char *err, size_t errlen);
void backends_on_event(struct sessiond *sd, const char *payload, size_t len);
/* Reads usher:backends and the peers' live verdicts (after Redis (re)connects). */
void backends_load(struct sessiond *sd);

#endif
