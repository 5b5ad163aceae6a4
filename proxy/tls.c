/* TLS contexts. Client side: TLS 1.2 minimum, forward-secret AEAD suites,
 * no renegotiation, buffers released while a connection is idle (most IMAP
 * sessions sit in IDLE for hours, and 2 x 16 KiB per session adds up).
 * Backend side: the peer's certificate is verified unless the operator
 * turned that off for the backend. */
#include "proxy/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#define DEFAULT_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

static void tls_error(char *err, size_t errlen, const char *what, const char *arg) {
  unsigned long e = ERR_get_error();
  char detail[256] = "";
  if (e) ERR_error_string_n(e, detail, sizeof detail);
  snprintf(err, errlen, "%s %s: %s", what, arg ? arg : "", detail);
  ERR_clear_error();
}

static void tls_common_options(SSL_CTX *ctx, int min_v13) {
  SSL_CTX_set_min_proto_version(ctx, min_v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}

SSL_CTX *tls_server_ctx_new(const struct config *c, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) {
    tls_error(err, errlen, "SSL_CTX_new", NULL);
    return NULL;
  }
  tls_common_options(ctx, c->tls_min_version && !strcmp(c->tls_min_version, "TLSv1.3"));
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  const char *ciphers = c->tls_ciphers ? c->tls_ciphers : DEFAULT_CIPHERS;
  if (SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
    tls_error(err, errlen, "bad ciphers", ciphers);
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, c->tls_cert) != 1) {
    tls_error(err, errlen, "cannot load certificate", c->tls_cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, c->tls_key, SSL_FILETYPE_PEM) != 1) {
    tls_error(err, errlen, "cannot load key", c->tls_key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    tls_error(err, errlen, "key does not match certificate", c->tls_key);
    goto fail;
  }
  /* Resumption by stateless tickets only: no per-worker session cache to
   * fill, lock and expire on every handshake, and one ticket per handshake
   * (a client reconnects with one). */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"usher", 5);
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

SSL_CTX *tls_backend_ctx_new(const struct config_backend *b, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    tls_error(err, errlen, "SSL_CTX_new", NULL);
    return NULL;
  }
  tls_common_options(ctx, 0);
  if (b->tls_verify) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = b->ca_file ? SSL_CTX_load_verify_locations(ctx, b->ca_file, NULL)
                        : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
      tls_error(err, errlen, "cannot load CA file", b->ca_file ? b->ca_file : "(system)");
      SSL_CTX_free(ctx);
      return NULL;
    }
  }
  return ctx;
}

SSL *tls_backend_ssl_new(SSL_CTX *ctx, const struct config_backend *b) {
  SSL *ssl = SSL_new(ctx);
  if (!ssl) return NULL;
  if (b->server_name) {
    SSL_set_tlsext_host_name(ssl, b->server_name);
    if (b->tls_verify) SSL_set1_host(ssl, b->server_name);
  } else if (b->tls_verify) {
    /* No name configured: the certificate must carry the backend's IP. */
    char host[NETADDR_STRLEN];
    netaddr_host(&b->addr, host, sizeof host);
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
  }
  return ssl;
}

const char *tls_describe(SSL *ssl, char *out, size_t outlen) {
  snprintf(out, outlen, "%s/%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
  return out;
}
