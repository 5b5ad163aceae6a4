/* One hash table for every process: chained, intrusive, growing.
 *
 * The entry embeds a struct htable_node and the table links those; the
 * caller keeps ownership of its entries (the table never allocates or frees
 * one) and gets back to the entry with HTABLE_ENTRY. The hash is the
 * caller's, computed once per entry and kept in the node, so growing the
 * table never calls back and a lookup compares keys only on a hash match.
 * The table doubles when it holds as many entries as buckets: chains stay
 * short (one on average) whatever the size, which is what every user needs
 * on a login path. */
#ifndef USHER_COMMON_HTABLE_H
#define USHER_COMMON_HTABLE_H

#include <stddef.h>
#include <stdint.h>

struct htable_node {
  struct htable_node *next;
  uint64_t hash;
};

struct htable {
  struct htable_node **buckets;
  size_t nbuckets, count;
};

#define HTABLE_ENTRY(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

/* initial: buckets to start with (rounded up to a power of two, at least 16). */
void htable_init(struct htable *t, size_t initial);
/* Frees the buckets; the entries are the caller's (walk them first). */
void htable_destroy(struct htable *t);

void htable_insert(struct htable *t, struct htable_node *n, uint64_t hash);
void htable_remove(struct htable *t, struct htable_node *n);

/* The first node of the chain hash falls in; follow with htable_next_same
 * until the caller's key matches (or NULL). */
struct htable_node *htable_first_with(const struct htable *t, uint64_t hash);
struct htable_node *htable_next_same(const struct htable_node *n);

/* A walk over every node, in no order. The next node is fetched before the
 * current one is returned, so the caller may remove (and free) the current
 * one; nothing else may change meanwhile.
 *   struct htable_iter it;
 *   for (struct htable_node *n = htable_iter_first(t, &it); n; n = htable_iter_next(t, &it)) */
struct htable_iter {
  size_t bucket;
  struct htable_node *next;
};
struct htable_node *htable_iter_first(const struct htable *t, struct htable_iter *it);
struct htable_node *htable_iter_next(const struct htable *t, struct htable_iter *it);

/* 64-bit FNV-1a of a string and of bytes: enough for tables keyed by names,
 * ids and keyed hashes (the keys a client chooses are behind a secret
 * wherever it could aim at one chain: see each user). */
uint64_t htable_hash_str(const char *s);
uint64_t htable_hash_bytes(const void *p, size_t len);

#endif
