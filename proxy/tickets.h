/* TLS session tickets with rotating keys that nobody has to hand around.
 *
 * Time is cut into periods of [tls] ticket_lifetime. The keys of a period
 * are derived from a secret (the [tls] ticket_key_file, or random bytes
 * made at start when there is none) and the period's number, so every
 * worker of a proxy and every proxy given the same file has the same keys
 * at the same time: after a failover, clients resume their TLS sessions on
 * the twin with an abbreviated handshake.
 *
 * The master derives; each worker receives, over a pipe, the keys of the
 * previous, current and next period: tickets are made with the current
 * key, and taken with any of the three (the next one covers a twin whose
 * clock runs a little ahead). A ticket thus lives one to two periods; one
 * made under the previous key is renewed. The secret itself never reaches
 * a worker. */
#ifndef USHER_PROXY_TICKETS_H
#define USHER_PROXY_TICKETS_H

#include <stdint.h>
#include <openssl/ssl.h>

#define TICKET_NAME_LEN 16
#define TICKET_SECRET_LEN 32

struct ticket_key {
  unsigned char name[TICKET_NAME_LEN];
  unsigned char hmac[32];
  unsigned char aes[32];
};

/* What the master sends a worker at start and at each new period. */
struct ticket_keys {
  uint64_t period;
  struct ticket_key key[3];     /* period - 1, period, period + 1 */
};

/* Master: the keys around `period`. */
void tickets_derive(const unsigned char secret[TICKET_SECRET_LEN], uint64_t period,
                    struct ticket_keys *out);

/* Worker: the keys to use from now on (copied; the old ones are wiped). */
void tickets_set(const struct ticket_keys *keys);
/* Worker: makes ctx issue and accept tickets under those keys. */
void tickets_install(SSL_CTX *ctx);
/* Worker, at exit: wipes the keys. */
void tickets_forget(void);

#endif
