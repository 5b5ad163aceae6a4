/* The memory LRU: the common hash table for lookup and a doubly linked
 * list for recency; the least recently used entry goes when max_entries is
 * reached. Keys are HMAC outputs, so their first bytes are already a
 * uniform hash (no client can aim at one chain without the secret). */
#include "auth/authcache.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/hmac.h"
#include "common/htable.h"
#include "common/util.h"

struct ac_entry {
  uint8_t key[AUTHCACHE_HASH_LEN];
  uint8_t pos_fp[AUTHCACHE_HASH_LEN];
  uint8_t neg_fp[AUTHCACHE_HASH_LEN];
  uint64_t fresh_until, stale_until;   /* 0: no positive entry */
  uint64_t neg_until;                  /* 0: no negative entry */
  char *canonical, *seat, *backend;   /* seat NULL: the canonical name */
  struct htable_node node;             /* by key */
  struct ac_entry *prev, *next;        /* LRU list, most recent first */
};

struct authcache {
  uint8_t secret[64];
  size_t secret_len;
  size_t max_entries;
  struct htable entries;
  struct ac_entry *head, *tail;
};

static void hmac(const struct authcache *c, const char *tag, const char *a, const char *b,
                 uint8_t out[AUTHCACHE_HASH_LEN]) {
  /* tag 0 a [0 b]: the separators keep ("ab","c") apart from ("a","bc"). */
  size_t la = strlen(a), lb = b ? strlen(b) : 0;
  size_t n = 2 + la + (b ? 1 + lb : 0);
  uint8_t *msg = xmalloc(n);
  msg[0] = (uint8_t)tag[0];
  msg[1] = 0;
  memcpy(msg + 2, a, la);
  if (b) {
    msg[2 + la] = 0;
    memcpy(msg + 3 + la, b, lb);
  }
  uint8_t md[HMAC_MAX_LEN];
  hmac_compute(HMAC_SHA256, c->secret, c->secret_len, msg, n, md);
  memcpy(out, md, AUTHCACHE_HASH_LEN);
  wipe(md, sizeof md);
  wipe(msg, n);
  free(msg);
}

void authcache_key(const struct authcache *c, const char *login, uint8_t key[AUTHCACHE_HASH_LEN]) {
  hmac(c, "u", login, NULL, key);
}

void authcache_seal(const struct authcache *c, const char *text, char out[AUTHCACHE_HEX_LEN + 1]) {
  uint8_t mac[AUTHCACHE_HASH_LEN];
  hmac(c, "e", text, NULL, mac);
  authcache_hex(mac, out);
}

void authcache_fingerprint(const struct authcache *c, const char *login, const char *password,
                           uint8_t fp[AUTHCACHE_HASH_LEN]) {
  hmac(c, "p", login, password, fp);
}

struct authcache *authcache_new(const uint8_t *secret, size_t secret_len, size_t max_entries) {
  struct authcache *c = xcalloc(1, sizeof *c);
  if (secret_len > sizeof c->secret) secret_len = sizeof c->secret;
  memcpy(c->secret, secret, secret_len);
  c->secret_len = secret_len;
  c->max_entries = max_entries;
  htable_init(&c->entries, 64);
  return c;
}

static uint64_t key_hash(const uint8_t *key) {
  uint64_t h;
  memcpy(&h, key, sizeof h);
  return h;
}

static struct ac_entry *find(const struct authcache *c, const uint8_t *key) {
  for (struct htable_node *n = htable_first_with(&c->entries, key_hash(key)); n; n = htable_next_same(n)) {
    struct ac_entry *e = HTABLE_ENTRY(n, struct ac_entry, node);
    if (!memcmp(e->key, key, AUTHCACHE_HASH_LEN)) return e;
  }
  return NULL;
}

static void lru_unlink(struct authcache *c, struct ac_entry *e) {
  if (e->prev) e->prev->next = e->next;
  else c->head = e->next;
  if (e->next) e->next->prev = e->prev;
  else c->tail = e->prev;
  e->prev = e->next = NULL;
}

static void lru_push_front(struct authcache *c, struct ac_entry *e) {
  e->next = c->head;
  if (c->head) c->head->prev = e;
  c->head = e;
  if (!c->tail) c->tail = e;
}

static void entry_free(struct ac_entry *e) {
  free(e->canonical);
  free(e->seat);
  free(e->backend);
  wipe(e, sizeof *e);
  free(e);
}

static void entry_remove(struct authcache *c, struct ac_entry *e) {
  htable_remove(&c->entries, &e->node);
  lru_unlink(c, e);
  entry_free(e);
}

/* The entry for key, created (evicting the oldest) when absent; NULL when
 * the memory layer is off. Moves it to the front either way. */
static struct ac_entry *entry_get(struct authcache *c, const uint8_t *key) {
  if (c->max_entries == 0) return NULL;
  struct ac_entry *e = find(c, key);
  if (e) {
    lru_unlink(c, e);
    lru_push_front(c, e);
    return e;
  }
  if (c->entries.count >= c->max_entries) entry_remove(c, c->tail);
  e = xcalloc(1, sizeof *e);
  memcpy(e->key, key, AUTHCACHE_HASH_LEN);
  htable_insert(&c->entries, &e->node, key_hash(key));
  lru_push_front(c, e);
  return e;
}

enum authcache_verdict authcache_lookup(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                                        uint64_t now, struct authcache_hit *hit) {
  struct ac_entry *e = find(c, key);
  if (!e) return AC_MISS;
  if (e->stale_until <= now && e->neg_until <= now) {
    entry_remove(c, e);   /* wholly expired */
    return AC_MISS;
  }
  lru_unlink(c, e);
  lru_push_front(c, e);
  if (e->stale_until > now && CRYPTO_memcmp(e->pos_fp, fp, AUTHCACHE_HASH_LEN) == 0) {
    hit->canonical = e->canonical;
    hit->seat = e->seat ? e->seat : e->canonical;
    hit->backend = e->backend;
    return e->fresh_until > now ? AC_POSITIVE : AC_STALE;
  }
  if (e->neg_until > now && CRYPTO_memcmp(e->neg_fp, fp, AUTHCACHE_HASH_LEN) == 0)
    return AC_NEGATIVE;
  return AC_MISS;
}

void authcache_put_positive(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                            const char *canonical, const char *seat, const char *backend,
                            uint64_t fresh_until, uint64_t stale_until) {
  struct ac_entry *e = entry_get(c, key);
  if (!e) return;
  memcpy(e->pos_fp, fp, AUTHCACHE_HASH_LEN);
  e->fresh_until = fresh_until;
  e->stale_until = stale_until;
  free(e->canonical);
  free(e->seat);
  free(e->backend);
  e->canonical = xstrdup(canonical);
  e->seat = seat && strcmp(seat, canonical) ? xstrdup(seat) : NULL;
  e->backend = backend ? xstrdup(backend) : NULL;
  /* The right password now known: a remembered wrong one equal to it is moot. */
  if (CRYPTO_memcmp(e->neg_fp, fp, AUTHCACHE_HASH_LEN) == 0) e->neg_until = 0;
}

void authcache_put_negative(struct authcache *c, const uint8_t *key, const uint8_t *fp,
                            uint64_t until) {
  struct ac_entry *e = entry_get(c, key);
  if (!e) return;
  memcpy(e->neg_fp, fp, AUTHCACHE_HASH_LEN);
  e->neg_until = until;
  /* A password the database just refused is no longer a positive one. */
  if (CRYPTO_memcmp(e->pos_fp, fp, AUTHCACHE_HASH_LEN) == 0) e->stale_until = e->fresh_until = 0;
}

void authcache_forget(struct authcache *c, const uint8_t *key) {
  struct ac_entry *e = find(c, key);
  if (e) entry_remove(c, e);
}

void authcache_clear(struct authcache *c) {
  while (c->head) entry_remove(c, c->head);
}

size_t authcache_count(const struct authcache *c) {
  return c->entries.count;
}

void authcache_free(struct authcache *c) {
  if (!c) return;
  authcache_clear(c);
  htable_destroy(&c->entries);
  wipe(c->secret, sizeof c->secret);
  free(c);
}

void authcache_hex(const uint8_t *hash, char *out) {
  static const char hex[] = "0123456789abcdef";
  for (size_t i = 0; i < AUTHCACHE_HASH_LEN; i++) {
    out[2 * i] = hex[hash[i] >> 4];
    out[2 * i + 1] = hex[hash[i] & 15];
  }
  out[AUTHCACHE_HEX_LEN] = '\0';
}

static int nibble(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  return -1;
}

int authcache_unhex(const char *hex, size_t len, uint8_t *hash) {
  if (len != AUTHCACHE_HEX_LEN) return -1;
  for (size_t i = 0; i < AUTHCACHE_HASH_LEN; i++) {
    int hi = nibble(hex[2 * i]), lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    hash[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}
