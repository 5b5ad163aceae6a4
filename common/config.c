/* Configuration loading: libinih calls config_on_key() for every key; each
 * section kind has its own small handler; config_check() then looks at the
 * whole (what must exist, what must be unique). Errors name the file and
 * the line; libinih reports the line of the first key a handler refused. */
#include "common/config.h"

#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/username.h"
#include "common/util.h"

struct loader {
  struct config *c;
  char err[256];          /* the first problem found, without file and line */
};

static int fail(struct loader *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(struct loader *l, const char *fmt, ...) {
  if (l->err[0] == '\0') {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->err, sizeof l->err, fmt, ap);
    va_end(ap);
  }
  return 0; /* what libinih wants to hear from a handler on error */
}

static void set_str(char **dst, const char *value) {
  free(*dst);
  *dst = xstrdup(value);
}

static int get_duration(struct loader *l, const char *key, const char *v, uint64_t *out) {
  if (parse_duration_ms(v, out) != 0)
    return fail(l, "%s: not a duration: '%s' (examples: 500ms, 30s, 15m)", key, v);
  return 1;
}

static int get_uint(struct loader *l, const char *key, const char *v, unsigned min,
                    unsigned max, unsigned *out) {
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  if (*v == '\0' || *end != '\0' || *v == '-' || n < min || n > max)
    return fail(l, "%s: expected a whole number from %u to %u, got '%s'", key, min, max, v);
  *out = (unsigned)n;
  return 1;
}

static int get_size(struct loader *l, const char *key, const char *v, size_t min,
                    size_t max, size_t *out) {
  uint64_t n;
  if (parse_size(v, &n) != 0 || n < min || n > max)
    return fail(l, "%s: expected a size from %zu to %zu bytes (examples: 512, 8k, 1M), got '%s'",
                key, min, max, v);
  *out = (size_t)n;
  return 1;
}

static int get_bool(struct loader *l, const char *key, const char *v, int *out) {
  if (parse_bool(v, out) != 0)
    return fail(l, "%s: expected yes or no, got '%s'", key, v);
  return 1;
}

static int get_tls_mode(struct loader *l, const char *key, const char *v, enum tls_mode *out) {
  if (ascii_casecmp(v, "none") == 0) *out = TLS_NONE;
  else if (ascii_casecmp(v, "starttls") == 0) *out = TLS_STARTTLS;
  else if (ascii_casecmp(v, "implicit") == 0) *out = TLS_IMPLICIT;
  else return fail(l, "%s: expected none, starttls or implicit, got '%s'", key, v);
  return 1;
}

static int get_addr(struct loader *l, const char *key, const char *v, struct netaddr *out) {
  if (netaddr_parse(v, out) != 0)
    return fail(l, "%s: expected a numeric address and port such as 127.0.0.1:143 or [::1]:993, got '%s'",
                key, v);
  return 1;
}

/* A space- or comma-separated list of CIDR networks into nets[*n]. */
static int get_nets(struct loader *l, const char *k, const char *v, struct netmask *nets,
                    unsigned *n) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  *n = 0;
  for (char *save = NULL, *tok = strtok_r(buf, " ,\t", &save); tok;
       tok = strtok_r(NULL, " ,\t", &save)) {
    if (*n == CONFIG_MAX_NETS) return fail(l, "%s: at most %d networks", k, CONFIG_MAX_NETS);
    if (netmask_parse(tok, &nets[*n]) != 0) return fail(l, "%s: not a network: '%s'", k, tok);
    (*n)++;
  }
  return 1;
}

static int on_usher(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "workers")) return get_uint(l, k, v, 1, 256, &c->workers);
  if (!strcmp(k, "runtime_dir")) { set_str(&c->runtime_dir, v); return 1; }
  if (!strcmp(k, "name")) { set_str(&c->name, v); return 1; }
  if (!strcmp(k, "metrics")) return get_addr(l, k, v, &c->metrics);
  if (!strcmp(k, "user")) { set_str(&c->user, v); return 1; }
  if (!strcmp(k, "drain_time")) return get_duration(l, k, v, &c->drain_ms);
  if (!strcmp(k, "worker_scheduling")) {
    if (strcmp(v, "batch") != 0 && strcmp(v, "normal") != 0)
      return fail(l, "worker_scheduling: expected batch or normal, got '%s'", v);
    c->worker_batch = !strcmp(v, "batch");
    return 1;
  }
  if (!strcmp(k, "syslog")) return get_bool(l, k, v, &c->syslog);
  if (!strcmp(k, "worker_peer_check")) return get_bool(l, k, v, &c->worker_peer_check);
  if (!strcmp(k, "log_level")) {
    enum log_level lvl;
    if (log_level_parse(v, &lvl) != 0)
      return fail(l, "log_level: expected error, warn, info or debug, got '%s'", v);
    c->log_level = lvl;
    return 1;
  }
  return fail(l, "unknown key '%s' in [usher]", k);
}

static int on_metrics(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "max_connections"))
    return get_uint(l, k, v, 1, 100000, &c->metrics_max_connections);
  if (!strcmp(k, "timeout")) return get_duration(l, k, v, &c->metrics_timeout_ms);
  if (!strcmp(k, "max_header_size"))
    return get_size(l, k, v, 256, 1 << 20, &c->metrics_max_header_size);
  if (!strcmp(k, "render_interval"))
    return get_duration(l, k, v, &c->metrics_render_interval_ms);
  return fail(l, "unknown key '%s' in [metrics]", k);
}

static int on_tls(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "cert")) { set_str(&c->tls_cert, v); return 1; }
  if (!strcmp(k, "key")) { set_str(&c->tls_key, v); return 1; }
  if (!strcmp(k, "ciphers")) { set_str(&c->tls_ciphers, v); return 1; }
  if (!strcmp(k, "ciphersuites")) { set_str(&c->tls_ciphersuites, v); return 1; }
  if (!strcmp(k, "ticket_key_file")) { set_str(&c->tls_ticket_key_file, v); return 1; }
  if (!strcmp(k, "ticket_lifetime")) return get_duration(l, k, v, &c->tls_ticket_lifetime_ms);
  if (!strcmp(k, "release_after_handshake")) return get_bool(l, k, v, &c->tls_release);
  if (!strcmp(k, "min_version")) {
    if (strcmp(v, "TLSv1.2") != 0 && strcmp(v, "TLSv1.3") != 0)
      return fail(l, "min_version: expected TLSv1.2 or TLSv1.3, got '%s'", v);
    set_str(&c->tls_min_version, v);
    return 1;
  }
  return fail(l, "unknown key '%s' in [tls]", k);
}

static int on_auth(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "users_file")) { set_str(&c->users_file, v); return 1; }
  if (!strcmp(k, "username_format")) {
    char why[160];
    if (username_format_check(v, why, sizeof why) != 0) return fail(l, "username_format: %s", why);
    set_str(&c->username_format, v);
    return 1;
  }
  if (!strcmp(k, "failure_delay")) return get_duration(l, k, v, &c->failure_delay_ms);
  if (!strcmp(k, "threads")) return get_uint(l, k, v, 1, 64, &c->auth_threads);
  if (!strcmp(k, "max_attempts")) return get_uint(l, k, v, 1, 100, &c->max_auth_attempts);
  if (!strcmp(k, "sessiond_wait")) return get_duration(l, k, v, &c->sessiond_wait_ms);
  if (!strcmp(k, "sessiond_wait_queue"))
    return get_uint(l, k, v, 0, 1000000, &c->sessiond_wait_queue);
  return fail(l, "unknown key '%s' in [auth]", k);
}

static int on_ldap(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "uri")) {
    if (strncmp(v, "ldap://", 7) && strncmp(v, "ldaps://", 8))
      return fail(l, "uri: expected ldap://HOST:PORT or ldaps://HOST:PORT, got '%s'", v);
    set_str(&c->ldap_uri, v);
    return 1;
  }
  if (!strcmp(k, "starttls")) return get_bool(l, k, v, &c->ldap_starttls);
  if (!strcmp(k, "ca_file")) { set_str(&c->ldap_ca_file, v); return 1; }
  if (!strcmp(k, "bind_dn")) { set_str(&c->ldap_bind_dn, v); return 1; }
  if (!strcmp(k, "bind_password_file")) { set_str(&c->ldap_bind_password_file, v); return 1; }
  if (!strcmp(k, "base")) { set_str(&c->ldap_base, v); return 1; }
  if (!strcmp(k, "filter") || !strcmp(k, "dn_template")) {
    if (!strstr(v, "%u")) return fail(l, "%s: must contain %%u (the login name)", k);
    set_str(!strcmp(k, "filter") ? &c->ldap_filter : &c->ldap_dn_template, v);
    return 1;
  }
  if (!strcmp(k, "login_attribute")) { set_str(&c->ldap_login_attribute, v); return 1; }
  if (!strcmp(k, "backend_attribute")) { set_str(&c->ldap_backend_attribute, v); return 1; }
  if (!strcmp(k, "pool_size")) return get_uint(l, k, v, 1, 256, &c->ldap_pool_size);
  if (!strcmp(k, "timeout")) return get_duration(l, k, v, &c->ldap_timeout_ms);
  if (!strcmp(k, "max_inflight")) return get_uint(l, k, v, 1, 4096, &c->ldap_max_inflight);
  if (!strcmp(k, "queue_max")) return get_uint(l, k, v, 0, 1000000, &c->ldap_queue_max);
  if (!strcmp(k, "reconnect_max")) return get_duration(l, k, v, &c->ldap_reconnect_max_ms);
  return fail(l, "unknown key '%s' in [ldap]", k);
}

static int on_peers(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "listen")) return get_addr(l, k, v, &c->peers_listen);
  if (!strcmp(k, "timeout")) return get_duration(l, k, v, &c->peers_timeout_ms);
  if (!strcmp(k, "claim_time")) return get_duration(l, k, v, &c->peers_claim_ms);
  if (!strcmp(k, "peers")) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", v);
    c->n_peers = 0;
    for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
      if (c->n_peers == CONFIG_MAX_PEERS) return fail(l, "peers: at most %d", CONFIG_MAX_PEERS);
      if (netaddr_parse(t, &c->peers[c->n_peers]) != 0)
        return fail(l, "peers: not HOST:PORT (numeric): '%s'", t);
      c->n_peers++;
    }
    return 1;
  }
  return fail(l, "unknown key '%s' in [peers]", k);
}

static int on_redis(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "address")) {
    struct netaddr a;
    if (v[0] != '/' && netaddr_parse(v, &a) != 0)
      return fail(l, "address: expected HOST:PORT (numeric) or a unix socket path, got '%s'", v);
    set_str(&c->redis_address, v);
    return 1;
  }
  if (!strcmp(k, "password_file")) { set_str(&c->redis_password_file, v); return 1; }
  if (!strcmp(k, "timeout")) return get_duration(l, k, v, &c->redis_timeout_ms);
  if (!strcmp(k, "sentinels")) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", v);
    for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
      struct netaddr a;
      if (netaddr_parse(t, &a) != 0) return fail(l, "sentinels: not HOST:PORT: '%s'", t);
    }
    set_str(&c->redis_sentinels, v);
    return 1;
  }
  if (!strcmp(k, "master_name")) { set_str(&c->redis_master_name, v); return 1; }
  return fail(l, "unknown key '%s' in [redis]", k);
}

static int on_cache(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "secret_file")) { set_str(&c->cache_secret_file, v); return 1; }
  if (!strcmp(k, "positive_ttl")) return get_duration(l, k, v, &c->cache_positive_ttl_ms);
  if (!strcmp(k, "negative_ttl")) return get_duration(l, k, v, &c->cache_negative_ttl_ms);
  if (!strcmp(k, "stale_max")) return get_duration(l, k, v, &c->cache_stale_max_ms);
  if (!strcmp(k, "memory_entries"))
    return get_uint(l, k, v, 0, 10000000, &c->cache_memory_entries);
  return fail(l, "unknown key '%s' in [cache]", k);
}

static int on_throttle(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "window")) return get_duration(l, k, v, &c->throttle_window_ms);
  if (!strcmp(k, "ip_failures")) return get_uint(l, k, v, 0, 1000000, &c->throttle_ip_failures);
  if (!strcmp(k, "user_failures"))
    return get_uint(l, k, v, 0, 1000000, &c->throttle_user_failures);
  if (!strcmp(k, "ban_time")) return get_duration(l, k, v, &c->throttle_ban_ms);
  if (!strcmp(k, "max_delay")) return get_duration(l, k, v, &c->throttle_max_delay_ms);
  if (!strcmp(k, "known_address_ttl")) return get_duration(l, k, v, &c->throttle_known_ms);
  return fail(l, "unknown key '%s' in [throttle]", k);
}

static int on_routing(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "seat_expire")) return get_duration(l, k, v, &c->seat_expire_ms);
  if (!strcmp(k, "backend_retry")) return get_duration(l, k, v, &c->backend_retry_ms);
  if (!strcmp(k, "seat_lease")) return get_duration(l, k, v, &c->seat_lease_ms);
  if (!strcmp(k, "refill_time")) return get_duration(l, k, v, &c->refill_ms);
  if (!strcmp(k, "health_interval")) return get_duration(l, k, v, &c->health_interval_ms);
  if (!strcmp(k, "health_timeout")) return get_duration(l, k, v, &c->health_timeout_ms);
  if (!strcmp(k, "health_rise")) return get_uint(l, k, v, 1, 100, &c->health_rise);
  if (!strcmp(k, "health_fall")) return get_uint(l, k, v, 1, 100, &c->health_fall);
  if (!strcmp(k, "on_redis_down")) {
    if (strcmp(v, "fallback") && strcmp(v, "refuse"))
      return fail(l, "on_redis_down: expected fallback or refuse, got '%s'", v);
    c->on_redis_down_refuse = !strcmp(v, "refuse");
    return 1;
  }
  return fail(l, "unknown key '%s' in [routing]", k);
}

static int on_limits(struct loader *l, const char *k, const char *v) {
  struct config *c = l->c;
  if (!strcmp(k, "max_line")) return get_size(l, k, v, 512, 1 << 20, &c->max_line);
  if (!strcmp(k, "max_literal")) return get_size(l, k, v, 256, 1 << 20, &c->max_literal);
  if (!strcmp(k, "max_bad_commands")) return get_uint(l, k, v, 1, 1000, &c->max_bad_commands);
  if (!strcmp(k, "preauth_timeout")) return get_duration(l, k, v, &c->preauth_timeout_ms);
  if (!strcmp(k, "preauth_budget")) return get_duration(l, k, v, &c->preauth_budget_ms);
  if (!strcmp(k, "idle_timeout")) return get_duration(l, k, v, &c->idle_timeout_ms);
  if (!strcmp(k, "connect_timeout")) return get_duration(l, k, v, &c->connect_timeout_ms);
  if (!strcmp(k, "login_timeout")) return get_duration(l, k, v, &c->login_timeout_ms);
  if (!strcmp(k, "max_connections")) return get_uint(l, k, v, 1, 1000000, &c->max_connections);
  if (!strcmp(k, "listen_backlog")) return get_uint(l, k, v, 16, 65535, &c->listen_backlog);
  if (!strcmp(k, "max_connections_per_ip"))
    return get_uint(l, k, v, 0, 1000000, &c->max_connections_per_ip);
  if (!strcmp(k, "max_sessions_per_user"))
    return get_uint(l, k, v, 0, 1000000, &c->max_sessions_per_user);
  if (!strcmp(k, "max_sessions_per_user_ip"))
    return get_uint(l, k, v, 0, 1000000, &c->max_sessions_per_user_ip);
  if (!strcmp(k, "plaintext_auth")) return get_bool(l, k, v, &c->plaintext_auth);
  if (!strcmp(k, "trusted_networks"))
    return get_nets(l, k, v, c->trusted_nets, &c->n_trusted_nets);
  return fail(l, "unknown key '%s' in [limits]", k);
}

static int on_listener(struct loader *l, struct config_listener *ls, const char *k, const char *v) {
  if (!strcmp(k, "address")) return get_addr(l, k, v, &ls->addr);
  if (!strcmp(k, "tls")) return get_tls_mode(l, k, v, &ls->tls);
  if (!strcmp(k, "proxy_protocol")) return get_bool(l, k, v, &ls->proxy_protocol);
  if (!strcmp(k, "proxy_from")) return get_nets(l, k, v, ls->proxy_from, &ls->n_proxy_from);
  return fail(l, "unknown key '%s' in [listener %s]", k, ls->name);
}

static int on_backend(struct loader *l, struct config_backend *b, const char *k, const char *v) {
  if (!strcmp(k, "address")) return get_addr(l, k, v, &b->addr);
  if (!strcmp(k, "weight")) return get_uint(l, k, v, 0, 1000, &b->weight);
  if (!strcmp(k, "tls")) return get_tls_mode(l, k, v, &b->tls);
  if (!strcmp(k, "tls_verify")) return get_bool(l, k, v, &b->tls_verify);
  if (!strcmp(k, "ca_file")) { set_str(&b->ca_file, v); return 1; }
  if (!strcmp(k, "server_name")) { set_str(&b->server_name, v); return 1; }
  if (!strcmp(k, "send_id")) return get_bool(l, k, v, &b->send_id);
  return fail(l, "unknown key '%s' in [backend %s]", k, b->name);
}

/* "listener NAME" / "backend NAME": the name, or NULL if the section is not
 * of that kind. */
static const char *section_name(const char *section, const char *kind) {
  size_t n = strlen(kind);
  if (strncmp(section, kind, n) != 0 || section[n] != ' ')
    return NULL;
  const char *name = section + n + 1;
  while (*name == ' ') name++;
  return name;
}

static int valid_name(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n >= CONFIG_NAME_MAX) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
          *s == '-' || *s == '_' || *s == '.'))
      return 0;
  return 1;
}

static struct config_listener *listener_get(struct loader *l, const char *name) {
  struct config *c = l->c;
  for (unsigned i = 0; i < c->n_listeners; i++)
    if (!strcmp(c->listeners[i].name, name)) return &c->listeners[i];
  if (c->n_listeners == CONFIG_MAX_LISTENERS) return NULL;
  struct config_listener *ls = &c->listeners[c->n_listeners++];
  snprintf(ls->name, sizeof ls->name, "%s", name);
  ls->tls = TLS_NONE;
  return ls;
}

static struct config_backend *backend_get(struct loader *l, const char *name) {
  struct config *c = l->c;
  for (unsigned i = 0; i < c->n_backends; i++)
    if (!strcmp(c->backends[i].name, name)) return &c->backends[i];
  if (c->n_backends == CONFIG_MAX_BACKENDS) return NULL;
  struct config_backend *b = &c->backends[c->n_backends++];
  snprintf(b->name, sizeof b->name, "%s", name);
  b->weight = 1;
  b->tls = TLS_NONE;
  b->tls_verify = 1;
  return b;
}

static int on_certificate(struct loader *l, const char *name, const char *k, const char *v) {
  struct config *c = l->c;
  struct config_certificate *cc = NULL;
  for (unsigned i = 0; i < c->n_certificates; i++)
    if (!strcmp(c->certificates[i].name, name)) cc = &c->certificates[i];
  if (!cc) {
    if (c->n_certificates == CONFIG_MAX_CERTIFICATES)
      return fail(l, "too many certificates (at most %d)", CONFIG_MAX_CERTIFICATES);
    cc = &c->certificates[c->n_certificates++];
    snprintf(cc->name, sizeof cc->name, "%s", name);
  }
  if (!strcmp(k, "cert")) { set_str(&cc->cert, v); return 1; }
  if (!strcmp(k, "key")) { set_str(&cc->key, v); return 1; }
  return fail(l, "unknown key '%s' in [certificate %s]", k, name);
}

static int config_on_key(void *user, const char *section, const char *k, const char *v) {
  struct loader *l = user;
  const char *name;

  if (!strcmp(section, "usher")) return on_usher(l, k, v);
  if (!strcmp(section, "metrics")) return on_metrics(l, k, v);
  if (!strcmp(section, "tls")) return on_tls(l, k, v);
  if (!strcmp(section, "auth")) return on_auth(l, k, v);
  if (!strcmp(section, "routing")) return on_routing(l, k, v);
  if (!strcmp(section, "ldap")) return on_ldap(l, k, v);
  if (!strcmp(section, "redis")) return on_redis(l, k, v);
  if (!strcmp(section, "peers")) return on_peers(l, k, v);
  if (!strcmp(section, "cache")) return on_cache(l, k, v);
  if (!strcmp(section, "throttle")) return on_throttle(l, k, v);
  if (!strcmp(section, "limits")) return on_limits(l, k, v);
  if ((name = section_name(section, "listener")) != NULL) {
    if (!valid_name(name)) return fail(l, "bad listener name '%s' (letters, digits, - _ .)", name);
    struct config_listener *ls = listener_get(l, name);
    if (!ls) return fail(l, "too many listeners (at most %d)", CONFIG_MAX_LISTENERS);
    return on_listener(l, ls, k, v);
  }
  if ((name = section_name(section, "backend")) != NULL) {
    if (!valid_name(name)) return fail(l, "bad backend name '%s' (letters, digits, - _ .)", name);
    struct config_backend *b = backend_get(l, name);
    if (!b) return fail(l, "too many backends (at most %d)", CONFIG_MAX_BACKENDS);
    return on_backend(l, b, k, v);
  }
  if ((name = section_name(section, "certificate")) != NULL) {
    if (!valid_name(name)) return fail(l, "bad certificate name '%s' (letters, digits, - _ .)", name);
    return on_certificate(l, name, k, v);
  }
  if (section[0] == '\0') return fail(l, "key '%s' outside any section", k);
  return fail(l, "unknown section [%s]", section);
}

static void config_defaults(struct config *c) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = cpus > 0 ? (unsigned)cpus : 1;
  c->runtime_dir = xstrdup("/run/usher");
  c->drain_ms = 10000;
  c->worker_batch = 1;
  c->metrics_max_connections = 64;
  c->metrics_timeout_ms = 5000;
  c->metrics_max_header_size = 8192;
  c->metrics_render_interval_ms = 1000;
  c->worker_peer_check = 1;
  c->tls_ticket_lifetime_ms = 3600 * 1000;
  c->tls_release = 1;
  char host[256] = "usher";
  gethostname(host, sizeof host - 1);
  c->name = xstrdup(host);
  c->log_level = LOG_LVL_INFO;
  c->tls_min_version = xstrdup("TLSv1.2");
  c->username_format = xstrdup(USERNAME_DEFAULT_FORMAT);
  c->failure_delay_ms = 2000;
  c->auth_threads = 2;
  c->max_auth_attempts = 3;
  c->sessiond_wait_ms = 5000;
  c->sessiond_wait_queue = 1000;
  c->ldap_pool_size = 4;
  c->ldap_timeout_ms = 5000;
  c->ldap_queue_max = 256;
  c->ldap_reconnect_max_ms = 10 * 1000;
  c->redis_timeout_ms = 250;
  c->cache_positive_ttl_ms = 15 * 60 * 1000;
  c->cache_negative_ttl_ms = 60 * 1000;
  c->cache_stale_max_ms = 60 * 60 * 1000;
  c->cache_memory_entries = 100000;
  c->throttle_window_ms = 15 * 60 * 1000;
  c->throttle_ip_failures = 50;
  c->throttle_user_failures = 10;
  c->throttle_ban_ms = 15 * 60 * 1000;
  c->throttle_known_ms = 30ULL * 24 * 3600 * 1000;
  c->throttle_max_delay_ms = 15 * 1000;
  c->seat_expire_ms = 15 * 60 * 1000;
  c->on_redis_down_refuse = 1;   /* the safe one: see sessiond/seatstore.h */
  c->backend_retry_ms = 30 * 1000;
  c->seat_lease_ms = 60 * 1000;
  c->refill_ms = 10 * 1000;
  c->peers_timeout_ms = 300;
  c->peers_claim_ms = 5000;
  c->health_interval_ms = 5000;
  c->health_timeout_ms = 5000;
  c->health_rise = 2;
  c->health_fall = 3;
  c->max_line = 8192;
  c->max_literal = 8192;
  c->max_bad_commands = 10;
  c->preauth_timeout_ms = 60 * 1000;
  c->preauth_budget_ms = 180 * 1000;
  c->idle_timeout_ms = 30 * 60 * 1000;
  c->connect_timeout_ms = 5000;
  c->login_timeout_ms = 30 * 1000;
  c->max_connections = 10000;
  c->listen_backlog = 4096;
  c->max_connections_per_ip = 100;
  c->max_sessions_per_user = 100;
  c->max_sessions_per_user_ip = 50;
  netmask_parse("127.0.0.0/8", &c->trusted_nets[0]);
  netmask_parse("::1/128", &c->trusted_nets[1]);
  c->n_trusted_nets = 2;
}

/* What can only be judged once the whole file is read. */
static int config_check(struct loader *l) {
  struct config *c = l->c;
  int need_cert = 0;
  if (c->n_listeners == 0) return fail(l, "no [listener NAME] section");
  for (unsigned i = 0; i < c->n_listeners; i++) {
    if (c->listeners[i].addr.len == 0)
      return fail(l, "[listener %s] has no address", c->listeners[i].name);
    if (c->listeners[i].tls != TLS_NONE) need_cert = 1;
    if (c->listeners[i].proxy_protocol && c->listeners[i].n_proxy_from == 0)
      return fail(l, "[listener %s] proxy_protocol = yes needs proxy_from (the balancers' networks)",
                  c->listeners[i].name);
  }
  if (c->metrics_timeout_ms < 100) return fail(l, "[metrics] timeout: at least 100ms");
  if ((c->n_peers || c->peers_listen.len) && (!c->peers_listen.len || !c->cache_secret_file))
    return fail(l, "[peers] needs listen and [cache] secret_file (peers prove who they are with it)");
  if (c->tls_ticket_lifetime_ms && c->tls_ticket_lifetime_ms < 1000)
    return fail(l, "[tls] ticket_lifetime: at least 1s (or 0: no tickets)");
  for (unsigned i = 0; i < c->n_certificates; i++)
    if (!c->certificates[i].cert || !c->certificates[i].key)
      return fail(l, "[certificate %s] needs both cert and key", c->certificates[i].name);
  if (need_cert && (!c->tls_cert || !c->tls_key))
    return fail(l, "a listener uses TLS but [tls] cert and key are not both set");
  if (c->n_backends == 0) return fail(l, "no [backend NAME] section");
  for (unsigned i = 0; i < c->n_backends; i++)
    if (c->backends[i].addr.len == 0)
      return fail(l, "[backend %s] has no address", c->backends[i].name);
  if (!c->users_file && !c->ldap_uri)
    return fail(l, "no password database: set [auth] users_file or [ldap] uri");
  if (c->ldap_uri) {
    if (!c->ldap_dn_template && !c->ldap_base)
      return fail(l, "[ldap] needs base (search-then-bind) or dn_template (DN-template bind)");
    if (c->ldap_bind_dn && !c->ldap_bind_password_file)
      return fail(l, "[ldap] bind_dn is set but bind_password_file is not");
    if (!c->ldap_filter) c->ldap_filter = xstrdup("(uid=%u)");
    if (c->ldap_max_inflight == 0 || c->ldap_max_inflight > c->ldap_pool_size)
      c->ldap_max_inflight = c->ldap_pool_size;
  }
  if (c->redis_sentinels && !c->redis_master_name) c->redis_master_name = xstrdup("usher");
  if (c->redis_sentinels && !c->redis_address) c->redis_address = xstrdup("sentinel");
  if (c->redis_address && !c->cache_secret_file)
    return fail(l, "[redis] is set but [cache] secret_file is not (keys in Redis are keyed hashes)");
  if (c->runtime_dir[0] != '/') return fail(l, "runtime_dir must be an absolute path");
  if (strlen(c->runtime_dir) > 80) return fail(l, "runtime_dir is too long for unix socket paths");
  return 1;
}

struct config *config_load(const char *path, char *err, size_t errlen) {
  struct loader l = {.c = xcalloc(1, sizeof(struct config))};
  config_defaults(l.c);
  l.c->path = xstrdup(path);

  int line = ini_parse(path, config_on_key, &l);
  if (line < 0) {
    snprintf(err, errlen, "%s:0: cannot open or read the file", path);
  } else if (line > 0) {
    snprintf(err, errlen, "%s:%d: %s", path, line,
             l.err[0] ? l.err : "syntax error (expected [section] or key = value)");
  } else if (!config_check(&l)) {
    snprintf(err, errlen, "%s:0: %s", path, l.err);
    line = -1;
  }
  if (line != 0) {
    config_free(l.c);
    return NULL;
  }
  return l.c;
}

void config_free(struct config *c) {
  if (!c) return;
  for (unsigned i = 0; i < c->n_backends; i++) {
    free(c->backends[i].ca_file);
    free(c->backends[i].server_name);
  }
  free(c->path);
  free(c->runtime_dir);
  free(c->name);
  free(c->tls_cert);
  free(c->tls_key);
  free(c->tls_min_version);
  free(c->tls_ciphers);
  free(c->tls_ciphersuites);
  free(c->tls_ticket_key_file);
  for (unsigned i = 0; i < c->n_certificates; i++) {
    free(c->certificates[i].cert);
    free(c->certificates[i].key);
  }
  free(c->users_file);
  free(c->username_format);
  char **strs[] = {&c->ldap_uri, &c->ldap_ca_file, &c->ldap_bind_dn, &c->ldap_bind_password_file,
                   &c->ldap_base, &c->ldap_filter, &c->ldap_dn_template,
                   &c->ldap_login_attribute, &c->ldap_backend_attribute, &c->redis_address,
                   &c->redis_password_file, &c->cache_secret_file, &c->redis_sentinels,
                   &c->redis_master_name, &c->user};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) free(*strs[i]);
  free(c);
}

void config_carry_retired(struct config *fresh, const struct config *old,
                          int (*keep)(const char *name, void *arg), void *arg) {
  for (unsigned i = 0; i < old->n_backends; i++) {
    const struct config_backend *b = &old->backends[i];
    if (config_backend_find(fresh, b->name) || !keep(b->name, arg)) continue;
    if (fresh->n_backends == CONFIG_MAX_BACKENDS) return;
    struct config_backend *copy = &fresh->backends[fresh->n_backends++];
    *copy = *b;
    copy->ca_file = b->ca_file ? xstrdup(b->ca_file) : NULL;
    copy->server_name = b->server_name ? xstrdup(b->server_name) : NULL;
    copy->retired = 1;
  }
}

const struct config_backend *config_backend_find(const struct config *c, const char *name) {
  for (unsigned i = 0; i < c->n_backends; i++)
    if (!strcmp(c->backends[i].name, name)) return &c->backends[i];
  return NULL;
}

const char *tls_mode_name(enum tls_mode m) {
  switch (m) {
  case TLS_NONE: return "none";
  case TLS_STARTTLS: return "starttls";
  case TLS_IMPLICIT: return "implicit";
  }
  return "?";
}
