/* Seat agreement among peers (see peers.h). One UDP socket, bound to
 * [peers] listen, sends and receives; a peer is known by the address it
 * sends from, which is its own listen address. Messages are one line:
 *
 *   P1 CLAIM  ID FROM KEY BACKEND TIME SEAL
 *   P1 ANSWER ID FROM VERDICT BACKEND TIME SEAL
 *
 * ID is the asker's random number for the question, FROM the sender's
 * [usher] name, KEY the keyed hash that names the user in Redis too (no
 * user name travels), TIME the sender's wall clock (messages more than
 * MAX_SKEW_MS away are dropped, so a recorded one cannot be replayed much
 * later) and SEAL authcache_seal() over "peer", then the rest. */
#include "sessiond/peers.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/crypto.h>

#include "common/htable.h"
#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "auth/authcache.h"
#include "sessiond/context.h"
#include "sessiond/redis.h"
#include "sessiond/seats.h"

#define MAX_SKEW_MS 10000
#define MSG_MAX 512

/* A claim this proxy made or agreed to: K on backend, for a while. */
struct claim {
  char key[AUTHCACHE_HEX_LEN + 1];
  int backend;
  char owner[64];            /* the proxy that asked */
  int mine;
  uint64_t until;
  struct htable_node node;
};

/* A question of ours waiting for its answers. */
struct ask {
  struct peers *p;
  uint64_t id;
  char key[AUTHCACHE_HEX_LEN + 1];
  int proposed, follow;      /* follow: the backend other answers named; -1 none */
  int conflict, redis;
  uint32_t answered;         /* a bit per peer */
  peers_done_fn done;
  void *cookie;
  struct event *timer;
  struct ask *next;
};

struct peers {
  struct sessiond *sd;
  evutil_socket_t fd;
  struct event *read_ev;
  struct htable claims;      /* by key */
  unsigned claims_created;   /* expired claims are swept every 1024 new ones */
  struct ask *asks;
  struct peers_stats st;
};

/* ---- claims ---------------------------------------------------------------- */

/* The live claim for key; an expired one is freed on the way. */
static struct claim *claim_find(struct peers *p, const char *key) {
  uint64_t h = htable_hash_str(key), now = wall_ms();
  for (struct htable_node *n = htable_first_with(&p->claims, h); n; n = htable_next_same(n)) {
    struct claim *c = HTABLE_ENTRY(n, struct claim, node);
    if (strcmp(c->key, key) != 0) continue;
    if (c->until > now) return c;
    htable_remove(&p->claims, n);
    free(c);
    return NULL;
  }
  return NULL;
}

static void claim_set(struct peers *p, const char *key, int backend, const char *owner, int mine) {
  struct claim *c = claim_find(p, key);
  if (!c && ++p->claims_created % 1024 == 0) {   /* a long outage must not pile them up */
    struct htable_iter it;
    uint64_t now = wall_ms();
    for (struct htable_node *n = htable_iter_first(&p->claims, &it); n;
         n = htable_iter_next(&p->claims, &it))
      if (HTABLE_ENTRY(n, struct claim, node)->until <= now) {
        htable_remove(&p->claims, n);
        free(HTABLE_ENTRY(n, struct claim, node));
      }
  }
  if (!c) {
    c = xcalloc(1, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", key);
    htable_insert(&p->claims, &c->node, htable_hash_str(key));
  }
  c->backend = backend;
  snprintf(c->owner, sizeof c->owner, "%s", owner);
  c->mine = mine;
  c->until = wall_ms() + p->sd->cfg->peers_claim_ms;
}

int peers_claimed_backend(struct peers *p, const char *key_hex) {
  struct claim *c = p ? claim_find(p, key_hex) : NULL;
  return c && !c->mine ? c->backend : -1;
}

/* ---- messages ------------------------------------------------------------------ */

static void seal(const struct peers *p, const char *text, char out[AUTHCACHE_HEX_LEN + 1]) {
  char buf[MSG_MAX + 8];
  snprintf(buf, sizeof buf, "peer\t%s", text);
  authcache_seal(p->sd->cache, buf, out);
}

static void send_to(struct peers *p, const struct netaddr *to, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_to(struct peers *p, const struct netaddr *to, const char *fmt, ...) {
  char msg[MSG_MAX], mac[AUTHCACHE_HEX_LEN + 1];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(msg, sizeof msg - AUTHCACHE_HEX_LEN - 2, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof msg - AUTHCACHE_HEX_LEN - 2) return;
  seal(p, msg, mac);
  snprintf(msg + n, sizeof msg - (size_t)n, " %s", mac);
  /* Datagrams: a full socket buffer loses this one, and the asker times out. */
  (void)sendto(p->fd, msg, strlen(msg), MSG_DONTWAIT, (const struct sockaddr *)&to->ss, to->len);
}

static const char *backend_name(const struct peers *p, int idx) {
  return idx >= 0 ? p->sd->cfg->backends[idx].name : "-";
}

/* ---- answering ------------------------------------------------------------------- */

struct held { const char *key; struct seat *found; struct sessiond *sd; };

static void find_held(struct seat *s, void *arg) {
  struct held *h = arg;
  if (h->found || s->sessions == 0) return;
  if (!s->key_hex[0]) {   /* re-registered after a restart: name it */
    uint8_t key[AUTHCACHE_HASH_LEN];
    authcache_key(h->sd->cache, s->user, key);
    authcache_hex(key, s->key_hex);
  }
  if (!strcmp(s->key_hex, h->key)) h->found = s;
}

/* What this proxy says about seating key on backend for the peer `from`. */
static const char *verdict(struct peers *p, const char *from, const char *key, int backend,
                           int *named) {
  struct sessiond *sd = p->sd;
  *named = -1;
  if (rds_is_up(sd->redis)) return "REDIS";
  struct held h = {key, NULL, sd};
  seats_foreach(sd->seats, find_held, &h);
  if (h.found) {
    *named = sessiond_backend_index(sd, h.found->backend);
    return "HELD";
  }
  struct claim *c = claim_find(p, key);
  if (c && c->backend != backend) {
    /* Both asked at once: the name that sorts first wins on both sides. */
    if (!c->mine || strcmp(sd->cfg->name, from) < 0) {
      *named = c->backend;
      return "CLAIMED";
    }
  }
  claim_set(p, key, backend, from, 0);
  return "FREE";
}

static void on_claim(struct peers *p, const struct netaddr *from_addr, char **f) {
  int backend = sessiond_backend_index(p->sd, f[5]), named;
  if (backend < 0 || strlen(f[4]) != AUTHCACHE_HEX_LEN) {
    p->st.bad_messages++;
    return;
  }
  const char *v = verdict(p, f[3], f[4], backend, &named);
  p->st.answered++;
  send_to(p, from_addr, "P1 ANSWER %s %s %s %s %llu", f[2], p->sd->cfg->name, v,
          backend_name(p, named), (unsigned long long)wall_ms());
}

/* ---- asking -------------------------------------------------------------------- */

static void ask_unlink(struct ask *a) {
  for (struct ask **pp = &a->p->asks; *pp; pp = &(*pp)->next)
    if (*pp == a) {
      *pp = a->next;
      return;
    }
}

static void ask_finish(struct ask *a, int timed_out) {
  struct peers *p = a->p;
  struct sessiond *sd = p->sd;
  int idx = -1;
  if (timed_out) p->st.refused_timeout++;
  else if (a->redis) p->st.refused_redis++;
  else if (a->conflict) p->st.refused_conflict++;
  else if (a->follow >= 0) idx = a->follow, p->st.followed++;
  else idx = a->proposed, p->st.agreed++;
  if (idx >= 0 && !backend_usable(sd, idx, now_ms())) idx = -1;
  if (idx >= 0) {
    claim_set(p, a->key, idx, sd->cfg->name, 1);
  } else {
    struct claim *c = claim_find(p, a->key);
    if (c && c->mine) c->until = 0;   /* refused: our question binds nobody */
  }
  ask_unlink(a);
  event_free(a->timer);
  peers_done_fn done = a->done;
  void *cookie = a->cookie;
  free(a);
  done(cookie, idx);
}

static void on_ask_timeout(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  ask_finish(arg, 1);
}

static int peer_index(const struct peers *p, const struct netaddr *a) {
  const struct config *cfg = p->sd->cfg;
  for (unsigned i = 0; i < cfg->n_peers; i++)
    if (cfg->peers[i].len == a->len && !memcmp(&cfg->peers[i].ss, &a->ss, a->len)) return (int)i;
  return -1;
}

static void on_answer(struct peers *p, int peer, char **f) {
  uint64_t id = strtoull(f[2], NULL, 16);
  struct ask *a = p->asks;
  while (a && a->id != id) a = a->next;
  if (!a || (a->answered & (1u << peer))) return;   /* late, or said twice */
  a->answered |= 1u << peer;
  if (!strcmp(f[4], "REDIS")) {
    a->redis = 1;
  } else if (!strcmp(f[4], "HELD") || !strcmp(f[4], "CLAIMED")) {
    int named = sessiond_backend_index(p->sd, f[5]);
    if (named < 0 || (a->follow >= 0 && a->follow != named)) a->conflict = 1;
    else a->follow = named;
  } else if (strcmp(f[4], "FREE") != 0) {
    a->conflict = 1;
  }
  if (a->answered == (1u << p->sd->cfg->n_peers) - 1) ask_finish(a, 0);
}

void peers_claim(struct peers *p, const char *key_hex, int idx, peers_done_fn done, void *cookie) {
  struct sessiond *sd = p->sd;
  if (idx < 0) {
    done(cookie, -1);
    return;
  }
  struct claim *c = claim_find(p, key_hex);
  if (c && !c->mine) idx = c->backend;   /* a peer's claim we agreed to: go with it */
  struct ask *a = xcalloc(1, sizeof *a);
  a->p = p;
  random_bytes(&a->id, sizeof a->id);
  snprintf(a->key, sizeof a->key, "%s", key_hex);
  a->proposed = idx;
  a->follow = -1;
  a->done = done;
  a->cookie = cookie;
  a->next = p->asks;
  p->asks = a;
  claim_set(p, key_hex, idx, sd->cfg->name, 1);   /* asking now: what crossing askers meet */
  p->st.asked++;
  a->timer = evtimer_new(sd->base, on_ask_timeout, a);
  struct timeval tv;
  ms_to_timeval(sd->cfg->peers_timeout_ms, &tv);
  evtimer_add(a->timer, &tv);
  for (unsigned i = 0; i < sd->cfg->n_peers; i++)
    send_to(p, &sd->cfg->peers[i], "P1 CLAIM %016llx %s %s %s %llu", (unsigned long long)a->id,
            sd->cfg->name, key_hex, backend_name(p, idx), (unsigned long long)wall_ms());
  if (sd->cfg->n_peers == 0) ask_finish(a, 0);   /* nobody else: Redis decides alone */
}

/* ---- the socket ------------------------------------------------------------------ */

/* Splits msg at spaces into exactly n fields; 0 when it has another count. */
static int split(char *msg, char **f, int n) {
  int k = 0;
  for (char *save = NULL, *t = strtok_r(msg, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    if (k == n) return 0;
    f[k++] = t;
  }
  return k == n;
}

/* The seal is the last field; the text it covers is everything before it. */
static int sealed(const struct peers *p, const char *msg, size_t len) {
  if (len < AUTHCACHE_HEX_LEN + 2 || msg[len - AUTHCACHE_HEX_LEN - 1] != ' ') return 0;
  char text[MSG_MAX], want[AUTHCACHE_HEX_LEN + 1];
  snprintf(text, sizeof text, "%.*s", (int)(len - AUTHCACHE_HEX_LEN - 1), msg);
  seal(p, text, want);
  return CRYPTO_memcmp(want, msg + len - AUTHCACHE_HEX_LEN, AUTHCACHE_HEX_LEN) == 0;
}

static void on_datagram(struct peers *p, char *msg, size_t len, const struct netaddr *from) {
  int peer = peer_index(p, from);
  char *f[8];
  if (peer < 0 || !sealed(p, msg, len) || !split(msg, f, 8) || strcmp(f[0], "P1") != 0) {
    p->st.bad_messages++;
    return;
  }
  uint64_t sent = strtoull(f[6], NULL, 10), now = wall_ms();
  if (sent + MAX_SKEW_MS < now || sent > now + MAX_SKEW_MS) {   /* old, or a far clock */
    p->st.bad_messages++;
    return;
  }
  if (!strcmp(f[1], "CLAIM")) on_claim(p, from, f);
  else if (!strcmp(f[1], "ANSWER")) on_answer(p, peer, f);
  else p->st.bad_messages++;
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct peers *p = arg;
  for (int i = 0; i < 64; i++) {   /* a batch per wake-up, then the loop's other work */
    char msg[MSG_MAX];
    struct netaddr from = {.len = sizeof from.ss};
    ssize_t n = recvfrom(fd, msg, sizeof msg - 1, MSG_DONTWAIT, (struct sockaddr *)&from.ss,
                         &from.len);
    if (n < 0) return;
    msg[n] = '\0';
    if (memchr(msg, '\0', (size_t)n)) {
      p->st.bad_messages++;
      continue;
    }
    on_datagram(p, msg, (size_t)n, &from);
  }
}

struct peers *peers_new(struct sessiond *sd) {
  const struct config *cfg = sd->cfg;
  if (!cfg->peers_listen.len) return NULL;
  if (cfg->n_peers > 31) return NULL;   /* the answered bits; config allows 16 */
  int fd = socket(cfg->peers_listen.ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0 || bind(fd, (const struct sockaddr *)&cfg->peers_listen.ss, cfg->peers_listen.len)) {
    char addr[NETADDR_STRLEN];
    log_event(LOG_LVL_ERROR, "peers", "listen=%s error=\"%s\"",
              netaddr_str(&cfg->peers_listen, addr, sizeof addr), strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  struct peers *p = xcalloc(1, sizeof *p);
  p->sd = sd;
  htable_init(&p->claims, 256);
  p->fd = fd;
  p->read_ev = event_new(sd->base, fd, EV_READ | EV_PERSIST, on_readable, p);
  event_add(p->read_ev, NULL);
  log_event(LOG_LVL_INFO, "peers", "peers=%u", cfg->n_peers);
  return p;
}

void peers_free(struct peers *p) {
  if (!p) return;
  while (p->asks) ask_finish(p->asks, 1);
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&p->claims, &it); n; n = htable_iter_next(&p->claims, &it))
    free(HTABLE_ENTRY(n, struct claim, node));
  htable_destroy(&p->claims);
  event_free(p->read_ev);
  close(p->fd);
  free(p);
}

const struct peers_stats *peers_stats(const struct peers *p) { return &p->st; }
