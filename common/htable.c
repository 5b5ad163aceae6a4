/* The hash table (see htable.h). Buckets are a power of two, so a bucket
 * is the hash's low bits. */
#include "common/htable.h"

#include <stdlib.h>

#include "common/util.h"

void htable_init(struct htable *t, size_t initial) {
  size_t n = 16;
  while (n < initial) n *= 2;
  t->buckets = xcalloc(n, sizeof *t->buckets);
  t->nbuckets = n;
  t->count = 0;
}

void htable_destroy(struct htable *t) {
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = t->count = 0;
}

static void grow(struct htable *t) {
  size_t n = t->nbuckets * 2;
  struct htable_node **b = xcalloc(n, sizeof *b);
  for (size_t i = 0; i < t->nbuckets; i++)
    for (struct htable_node *x = t->buckets[i], *next; x; x = next) {
      next = x->next;
      x->next = b[x->hash & (n - 1)];
      b[x->hash & (n - 1)] = x;
    }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

void htable_insert(struct htable *t, struct htable_node *n, uint64_t hash) {
  if (t->count >= t->nbuckets) grow(t);
  n->hash = hash;
  struct htable_node **slot = &t->buckets[hash & (t->nbuckets - 1)];
  n->next = *slot;
  *slot = n;
  t->count++;
}

void htable_remove(struct htable *t, struct htable_node *n) {
  for (struct htable_node **p = &t->buckets[n->hash & (t->nbuckets - 1)]; *p; p = &(*p)->next)
    if (*p == n) {
      *p = n->next;
      t->count--;
      return;
    }
}

struct htable_node *htable_first_with(const struct htable *t, uint64_t hash) {
  struct htable_node *n = t->buckets[hash & (t->nbuckets - 1)];
  while (n && n->hash != hash) n = n->next;
  return n;
}

struct htable_node *htable_next_same(const struct htable_node *n) {
  uint64_t hash = n->hash;
  for (n = n->next; n && n->hash != hash; n = n->next) {
  }
  return (struct htable_node *)n;
}

/* The first node at or after bucket it->bucket. */
static struct htable_node *from_bucket(const struct htable *t, struct htable_iter *it) {
  while (it->bucket < t->nbuckets && !t->buckets[it->bucket]) it->bucket++;
  return it->bucket < t->nbuckets ? t->buckets[it->bucket] : NULL;
}

struct htable_node *htable_iter_next(const struct htable *t, struct htable_iter *it) {
  struct htable_node *n = it->next;
  if (!n) return NULL;
  if (n->next) {
    it->next = n->next;
  } else {
    it->bucket++;
    it->next = from_bucket(t, it);
  }
  return n;
}

struct htable_node *htable_iter_first(const struct htable *t, struct htable_iter *it) {
  it->bucket = 0;
  it->next = from_bucket(t, it);
  return htable_iter_next(t, it);
}

uint64_t htable_hash_bytes(const void *p, size_t len) {
  const unsigned char *s = p;
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < len; i++) h = (h ^ s[i]) * 1099511628211ULL;
  return h;
}

uint64_t htable_hash_str(const char *s) {
  uint64_t h = 14695981039346656037ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
  return h;
}
