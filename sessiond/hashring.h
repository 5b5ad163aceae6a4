/* Weighted rendezvous (highest random weight) hashing: the backend for a user
 * who has no seat yet. Every node scores the key; the highest score wins:
 *
 *     score = -weight / ln(u),   u = hash64(node name, key) mapped into (0,1)
 *
 * which gives each node a share proportional to its weight, and removing a
 * node moves only the keys that node had won (every other key's winner keeps
 * the highest score). Depends on names, not on the order of the nodes, so
 * every proxy computes the same answer from the same set. */
#ifndef USHER_HASHRING_H
#define USHER_HASHRING_H

#include <stddef.h>
#include <stdint.h>

struct hr_node {
  const char *name;
  unsigned weight;   /* 0: never chosen */
  int eligible;      /* 0: down or draining: never chosen */
};

/* Index of the winning node, or -1 when no node is eligible with weight > 0. */
int hashring_pick(const char *key, size_t keylen, const struct hr_node *nodes, size_t n);

/* The 64-bit hash used for scoring (exposed for tests and usherctl route). */
uint64_t hashring_hash(const char *node, const char *key, size_t keylen);

#endif
