/* An independent TLS 1.3 record peer for tests: the other end of usher's
 * record layer (proxy/tlsrec.c), written against OpenSSL's primitives (its
 * HKDF and AES-128-GCM), not against usher's code, so that a test or a
 * fuzz target checks tlsrec against something it does not share.
 * TLS_AES_128_GCM_SHA256 only; header-only (static functions), for the
 * unit tests and the fuzz targets alike. */
#ifndef USHER_TESTS_TLS13_PEER_H
#define USHER_TESTS_TLS13_PEER_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#define TLS13_TAG 16

/* One direction's keys: set secret, then tls13_keys(). */
struct tls13_dir {
  uint8_t secret[32], key[16], iv[12];
  uint64_t seq;
};

/* HKDF-Expand-Label(secret, label, "", len), RFC 8446 7.1. 0, or -1. */
static inline int tls13_expand_label(const uint8_t *secret, const char *label, uint8_t *out,
                                     size_t len) {
  uint8_t info[64];
  size_t n = 0, l = strlen(label);
  info[n++] = (uint8_t)(len >> 8);
  info[n++] = (uint8_t)len;
  info[n++] = (uint8_t)(6 + l);
  memcpy(info + n, "tls13 ", 6);
  memcpy(info + n + 6, label, l);
  n += 6 + l;
  info[n++] = 0;
  EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
  EVP_KDF_CTX *ctx = EVP_KDF_CTX_new(kdf);
  int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
  OSSL_PARAM p[] = {
      OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, "SHA256", 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, 32),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info, n),
      OSSL_PARAM_construct_end()};
  int rc = EVP_KDF_derive(ctx, out, len, p) == 1 ? 0 : -1;
  EVP_KDF_CTX_free(ctx);
  EVP_KDF_free(kdf);
  return rc;
}

static inline void tls13_keys(struct tls13_dir *d) {
  if (tls13_expand_label(d->secret, "key", d->key, 16) || tls13_expand_label(d->secret, "iv", d->iv, 12))
    abort();
}

/* A KeyUpdate took effect: the next traffic secret (7.2), fresh keys. */
static inline void tls13_update(struct tls13_dir *d) {
  uint8_t next[32];
  if (tls13_expand_label(d->secret, "traffic upd", next, 32)) abort();
  memcpy(d->secret, next, 32);
  tls13_keys(d);
  d->seq = 0;
}

static inline void tls13_nonce(const struct tls13_dir *d, uint8_t out[12]) {
  memcpy(out, d->iv, 12);
  for (int i = 0; i < 8; i++) out[11 - i] ^= (uint8_t)(d->seq >> (8 * i));
}

/* Seals n bytes of inner type, then pad zeros, as one record into out
 * (room for 5 + n + 1 + pad + TLS13_TAG); returns its length, 0 on failure. */
static inline size_t tls13_seal(struct tls13_dir *d, uint8_t type, const void *in, size_t n,
                                size_t pad, uint8_t *out) {
  size_t inner = n + 1 + pad, body = inner + TLS13_TAG;
  uint8_t iv[12];
  memmove(out + 5, in, n);
  out[5 + n] = type;
  memset(out + 6 + n, 0, pad);
  out[0] = 23, out[1] = 3, out[2] = 3, out[3] = (uint8_t)(body >> 8), out[4] = (uint8_t)body;
  tls13_nonce(d, iv);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int l, ok = EVP_EncryptInit_ex(c, EVP_aes_128_gcm(), NULL, d->key, iv) == 1 &&
              EVP_EncryptUpdate(c, NULL, &l, out, 5) == 1 &&
              EVP_EncryptUpdate(c, out + 5, &l, out + 5, (int)inner) == 1 &&
              EVP_EncryptFinal_ex(c, out + 5 + inner, &l) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TLS13_TAG, out + 5 + inner) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) return 0;
  d->seq++;
  return 5 + body;
}

/* Opens a whole record r (header included) into out: the content's length
 * and its type, or -1 (bad tag, no content type, not application data). */
static inline long tls13_open(struct tls13_dir *d, const uint8_t *r, size_t len, uint8_t *out,
                              uint8_t *type) {
  if (len < 5 + TLS13_TAG + 1 || r[0] != 23) return -1;
  size_t n = len - 5 - TLS13_TAG;
  uint8_t iv[12];
  tls13_nonce(d, iv);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int l, ok = EVP_DecryptInit_ex(c, EVP_aes_128_gcm(), NULL, d->key, iv) == 1 &&
              EVP_DecryptUpdate(c, NULL, &l, r, 5) == 1 &&
              EVP_DecryptUpdate(c, out, &l, r + 5, (int)n) == 1 &&
              EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TLS13_TAG, (void *)(r + 5 + n)) == 1 &&
              EVP_DecryptFinal_ex(c, out + n, &l) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) return -1;
  d->seq++;
  while (n > 0 && out[n - 1] == 0) n--;
  if (n == 0) return -1;
  *type = out[n - 1];
  return (long)(n - 1);
}

#endif
