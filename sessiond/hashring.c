/* Weighted rendezvous hashing (see hashring.h for why). */
#include "sessiond/hashring.h"

#include <math.h>
#include <string.h>

/* FNV-1a over node, a 0 separator and key, then a 64-bit finalizer so that
 * nearby inputs (user1, user2) land far apart in every bit. */
uint64_t hashring_hash(const char *node, const char *key, size_t keylen) {
  uint64_t h = 1469598103934665603ULL;
  for (const char *p = node; *p; p++) {
    h ^= (unsigned char)*p;
    h *= 1099511628211ULL;
  }
  h *= 1099511628211ULL;   /* the 0 separator byte: "ab"+"c" != "a"+"bc" */
  for (size_t i = 0; i < keylen; i++) {
    h ^= (unsigned char)key[i];
    h *= 1099511628211ULL;
  }
  h ^= h >> 31;
  h *= 0x7fb5d329728ea185ULL;
  h ^= h >> 27;
  h *= 0x81dadef4bc2dd44dULL;
  h ^= h >> 33;
  return h;
}

static double score(const struct hr_node *n, const char *key, size_t keylen) {
  uint64_t h = hashring_hash(n->name, key, keylen);
  double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0;   /* (0,1) */
  return -(double)n->weight / log(u);
}

int hashring_pick(const char *key, size_t keylen, const struct hr_node *nodes, size_t n) {
  int best = -1;
  double best_score = 0;
  for (size_t i = 0; i < n; i++) {
    if (!nodes[i].eligible || nodes[i].weight == 0) continue;
    double s = score(&nodes[i], key, keylen);
    if (best < 0 || s > best_score ||
        (s == best_score && strcmp(nodes[i].name, nodes[best].name) < 0)) {
      best = (int)i;
      best_score = s;
    }
  }
  return best;
}
