/* TLS contexts for the worker: the server side (client connections) and one
 * client-side context per backend that uses TLS. */
#ifndef USHER_PROXY_TLS_H
#define USHER_PROXY_TLS_H

#include <openssl/ssl.h>
#include "common/config.h"

/* NULL with a message in err on failure (unreadable cert, key mismatch). */
SSL_CTX *tls_server_ctx_new(const struct config *c, char *err, size_t errlen);
SSL_CTX *tls_backend_ctx_new(const struct config_backend *b, char *err, size_t errlen);
/* A new SSL for a backend connection: SNI and name (or IP) verification. */
SSL *tls_backend_ssl_new(SSL_CTX *ctx, const struct config_backend *b);
/* "TLSv1.3/TLS_AES_256_GCM_SHA384" for logs. */
const char *tls_describe(SSL *ssl, char *out, size_t outlen);

#endif
