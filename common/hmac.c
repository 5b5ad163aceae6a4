/* See hmac.h. */
#include "common/hmac.h"

#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>

/* Per thread: a context is keyed anew for each message, so it holds a key
 * only between calls of its own thread. */
static _Thread_local EVP_MAC_CTX *contexts[2];

static EVP_MAC_CTX *context_for(enum hmac_digest d) {
  if (contexts[d]) return contexts[d];
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
  EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
  EVP_MAC_free(mac);   /* the context holds its own reference */
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                       d == HMAC_SHA384 ? "SHA384" : "SHA256", 0),
      OSSL_PARAM_construct_end(),
  };
  if (ctx && EVP_MAC_CTX_set_params(ctx, params) != 1) {
    EVP_MAC_CTX_free(ctx);
    ctx = NULL;
  }
  return contexts[d] = ctx;
}

int hmac_compute(enum hmac_digest d, const void *key, size_t key_len, const void *msg,
                 size_t msg_len, uint8_t out[HMAC_MAX_LEN]) {
  EVP_MAC_CTX *ctx = context_for(d);
  size_t len = 0;
  if (ctx && EVP_MAC_init(ctx, key, key_len, NULL) == 1 &&
      EVP_MAC_update(ctx, msg, msg_len) == 1 && EVP_MAC_final(ctx, out, &len, HMAC_MAX_LEN) == 1)
    return 0;
  memset(out, 0, HMAC_MAX_LEN);
  return -1;
}
