/* HMAC with the algorithm looked up once.
 *
 * OpenSSL 3's one-shot HMAC() fetches the MAC and the digest by name at
 * every call (name map, provider, locks): 1.2 us here for a short message,
 * where hashing it takes 0.3 us. Logins hash a few short messages each
 * (the auth cache's key and fingerprint in sessiond; the TLS 1.3 traffic
 * keys in a worker), so each thread keeps one keyed-anew context per
 * digest. */
#ifndef USHER_HMAC_H
#define USHER_HMAC_H

#include <stddef.h>
#include <stdint.h>

enum hmac_digest { HMAC_SHA256, HMAC_SHA384 };

#define HMAC_MAX_LEN 48

/* out gets the digest's length of bytes (32 or 48). Returns 0, or -1 if
 * OpenSSL failed (out is then zeroed). */
int hmac_compute(enum hmac_digest d, const void *key, size_t key_len, const void *msg,
                 size_t msg_len, uint8_t out[HMAC_MAX_LEN]);

#endif
