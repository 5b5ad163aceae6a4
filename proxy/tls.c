/* TLS contexts. Client side: TLS 1.2 minimum, forward-secret AEAD suites,
 * no renegotiation, buffers released while a connection is idle (most IMAP
 * sessions sit in IDLE for hours, and 2 x 16 KiB per session adds up).
 * Backend side: the peer's certificate is verified unless the operator
 * turned that off for the backend. */
#include "proxy/tls.h"

#include "proxy/tlswatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* AES-128-GCM first, as Mozilla's server recommendations have it: as safe
 * as AES-256 for TLS, and with SHA-256 (in hardware on current x86) instead
 * of SHA-384 under the TLS 1.3 key schedule a handshake costs the server
 * about 8% less CPU here (bench/tls_floor.c with each order). The server's
 * order decides (SSL_OP_CIPHER_SERVER_PREFERENCE). */
#define DEFAULT_CIPHERS "ECDHE+AES128+AESGCM:ECDHE+AESGCM:ECDHE+CHACHA20"
#define DEFAULT_CIPHERSUITES \
  "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

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

/* One server context: options, ciphers, a certificate and its key. */
static SSL_CTX *server_ctx_one(const struct config *c, const char *cert, const char *key,
                               char *err, size_t errlen) {
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
  const char *suites = c->tls_ciphersuites ? c->tls_ciphersuites : DEFAULT_CIPHERSUITES;
  if (SSL_CTX_set_ciphersuites(ctx, suites) != 1) {
    tls_error(err, errlen, "bad ciphersuites", suites);
    goto fail;
  }
  if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
    tls_error(err, errlen, "cannot load certificate", cert);
    goto fail;
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
    tls_error(err, errlen, "cannot load key", key);
    goto fail;
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    tls_error(err, errlen, "key does not match certificate", key);
    goto fail;
  }
  /* Resumption by stateless tickets only (tickets.h): no per-worker
   * session cache to fill, lock and expire on every handshake, and one
   * ticket per handshake (a client reconnects with one). */
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 1);
  SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"usher", 5);
  if (c->tls_ticket_lifetime_ms) SSL_CTX_set_timeout(ctx, (long)(c->tls_ticket_lifetime_ms / 1000));
  if (c->tls_release) tlswatch_ctx_setup(ctx);   /* on SNI contexts too: the key log is theirs */
  return ctx;
fail:
  SSL_CTX_free(ctx);
  return NULL;
}

/* The [certificate NAME] contexts hang off the default context, and go
 * when it goes: after a reload, once the last connection that began under
 * it is closed. */
struct sni_table {
  unsigned n;
  SSL_CTX *ctx[CONFIG_MAX_CERTIFICATES];
};

static int sni_index = -1;

static void sni_table_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                           void *argp) {
  (void)parent; (void)ad; (void)idx; (void)argl; (void)argp;
  struct sni_table *t = ptr;
  if (!t) return;
  for (unsigned i = 0; i < t->n; i++) SSL_CTX_free(t->ctx[i]);
  free(t);
}

/* The client's server name picks the first certificate valid for it;
 * no name, or no match, keeps the default certificate. */
static int on_server_name(SSL *ssl, int *alert, void *arg) {
  (void)alert;
  const struct sni_table *t = arg;
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (!name) return SSL_TLSEXT_ERR_NOACK;
  for (unsigned i = 0; i < t->n; i++)
    if (X509_check_host(SSL_CTX_get0_certificate(t->ctx[i]), name, 0, 0, NULL) == 1) {
      SSL_set_SSL_CTX(ssl, t->ctx[i]);
      break;
    }
  return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_server_ctx_new(const struct config *c, char *err, size_t errlen) {
  SSL_CTX *ctx = server_ctx_one(c, c->tls_cert, c->tls_key, err, errlen);
  if (!ctx || c->n_certificates == 0) return ctx;
  if (sni_index < 0)
    sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, sni_table_free);
  struct sni_table *t = calloc(1, sizeof *t);
  if (!t || SSL_CTX_set_ex_data(ctx, sni_index, t) != 1) {
    free(t);
    SSL_CTX_free(ctx);
    snprintf(err, errlen, "out of memory for certificates");
    return NULL;
  }
  for (unsigned i = 0; i < c->n_certificates; i++) {
    const struct config_certificate *cc = &c->certificates[i];
    if (!(t->ctx[t->n] = server_ctx_one(c, cc->cert, cc->key, err, errlen))) {
      SSL_CTX_free(ctx);   /* and the table with it */
      return NULL;
    }
    t->n++;
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, on_server_name);
  SSL_CTX_set_tlsext_servername_arg(ctx, t);
  return ctx;
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
  snprintf(out, outlen, "%s/%s%s", SSL_get_version(ssl), SSL_get_cipher_name(ssl),
           SSL_session_reused(ssl) ? " resumed=yes" : " resumed=no");
  return out;
}
