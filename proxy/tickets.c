/* TLS session tickets: key derivation (master) and OpenSSL's ticket key
 * callback (workers). See tickets.h for the scheme. */
#include "proxy/tickets.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/hmac.h"
#include "common/util.h"

/* One labelled HMAC-SHA-256 of the period: independent keys for the name,
 * the ticket MAC and the ticket cipher. */
static void derive_part(const unsigned char *secret, uint64_t period, const char *label,
                        unsigned char *out, size_t outlen) {
  unsigned char msg[64], md[HMAC_MAX_LEN];
  int n = snprintf((char *)msg, sizeof msg, "usher ticket %s %llu", label,
                   (unsigned long long)period);
  hmac_compute(HMAC_SHA256, secret, TICKET_SECRET_LEN, msg, (size_t)n, md);
  memcpy(out, md, outlen);
  wipe(md, sizeof md);
}

void tickets_derive(const unsigned char secret[TICKET_SECRET_LEN], uint64_t period,
                    struct ticket_keys *out) {
  out->period = period;
  for (int i = 0; i < 3; i++) {
    uint64_t p = period + (uint64_t)i - 1;
    derive_part(secret, p, "name", out->key[i].name, TICKET_NAME_LEN);
    derive_part(secret, p, "hmac", out->key[i].hmac, sizeof out->key[i].hmac);
    derive_part(secret, p, "aes", out->key[i].aes, sizeof out->key[i].aes);
  }
}

/* A worker has one set; the callback reads it. */
static struct ticket_keys current;
static int have_keys;

void tickets_set(const struct ticket_keys *keys) {
  wipe(&current, sizeof current);
  current = *keys;
  have_keys = 1;
}

void tickets_forget(void) {
  wipe(&current, sizeof current);
  have_keys = 0;
}

static int mac_init(EVP_MAC_CTX *hctx, const struct ticket_key *k) {
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof k->hmac),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
      OSSL_PARAM_construct_end(),
  };
  return EVP_MAC_CTX_set_params(hctx, params) == 1;
}

/* Fetched once: EVP_aes_256_cbc() in an init call makes OpenSSL 3 look the
 * algorithm up again (name map, provider, locks) on every handshake. */
static EVP_CIPHER *ticket_cipher(void) {
  static EVP_CIPHER *cipher;
  if (!cipher) cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
  return cipher;
}

/* OpenSSL asks for a key to seal a new ticket (enc = 1) or for the key
 * named in one a client offers (enc = 0). Returns 1 to go on, 2 to accept
 * and issue a fresh ticket, 0 for "unknown key: full handshake", -1 on
 * error.
 *
 * A TLS 1.3 resumption always gets a fresh ticket: RFC 8446 (C.4) has
 * clients use a ticket once, and OpenSSL's clients do, so a client that
 * got none back would do a full handshake on its next connection. With a
 * key callback, OpenSSL sends a new ticket on resumption only when told
 * to (its own keys renew by themselves); returning 1 here made every
 * second reconnection of curl, mbsync or Python a full handshake. A TLS
 * 1.2 ticket may be used again and is renewed only when its key ages. */
static int on_ticket_key(SSL *ssl, unsigned char name[16], unsigned char iv[16],
                         EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc) {
  if (!have_keys) return enc ? -1 : 0;
  if (enc) {
    const struct ticket_key *k = &current.key[1];
    if (RAND_bytes(iv, 16) != 1) return -1;
    memcpy(name, k->name, TICKET_NAME_LEN);
    if (!ticket_cipher() || EVP_EncryptInit_ex(cctx, ticket_cipher(), NULL, k->aes, iv) != 1)
      return -1;
    return mac_init(hctx, k) ? 1 : -1;
  }
  for (int i = 0; i < 3; i++) {
    const struct ticket_key *k = &current.key[i];
    if (memcmp(name, k->name, TICKET_NAME_LEN) != 0) continue;
    if (!mac_init(hctx, k) || !ticket_cipher() ||
        EVP_DecryptInit_ex(cctx, ticket_cipher(), NULL, k->aes, iv) != 1)
      return -1;
    if (i == 0 || SSL_version(ssl) == TLS1_3_VERSION) return 2;   /* take it, and renew */
    return 1;
  }
  return 0;
}

void tickets_install(SSL_CTX *ctx) {
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket_key);
}
