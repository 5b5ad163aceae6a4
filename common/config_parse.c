/* Configuration values: one parser per kind of value, and the few keys whose
 * values are their own kind (enumerations, lists, formats). Each writes the
 * problem as "key: what is wrong, got 'value'", which the loader prefixes
 * with the file and the line. */
#include "common/config_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/log.h"
#include "common/username.h"
#include "common/util.h"

#define FIELD(record, k, type) ((type *)((char *)(record) + (k)->offset))

static int parse_string(const struct config_key *k, const char *v, void *record, char *err,
                        size_t n) {
  if (k->parse && k->parse(k, v, record, err, n) != 0) return -1;
  char **dst = FIELD(record, k, char *);
  free(*dst);
  *dst = xstrdup(v);
  return 0;
}

static int parse_duration(const struct config_key *k, const char *v, void *record, char *err,
                          size_t n) {
  if (parse_duration_ms(v, FIELD(record, k, uint64_t)) == 0) return 0;
  snprintf(err, n, "%s: not a duration: '%s' (examples: 500ms, 30s, 15m)", k->key, v);
  return -1;
}

static int parse_uint(const struct config_key *k, const char *v, void *record, char *err,
                      size_t n) {
  char *end;
  unsigned long x = strtoul(v, &end, 10);
  if (*v == '\0' || *end != '\0' || *v == '-' || x < k->min || x > k->max) {
    snprintf(err, n, "%s: expected a whole number from %u to %u, got '%s'", k->key,
             (unsigned)k->min, (unsigned)k->max, v);
    return -1;
  }
  *FIELD(record, k, unsigned) = (unsigned)x;
  return 0;
}

static int parse_bytes(const struct config_key *k, const char *v, void *record, char *err,
                       size_t n) {
  uint64_t x;
  if (parse_size(v, &x) != 0 || x < k->min || x > k->max) {
    snprintf(err, n, "%s: expected a size from %zu to %zu bytes (examples: 512, 8k, 1M), got '%s'",
             k->key, (size_t)k->min, (size_t)k->max, v);
    return -1;
  }
  *FIELD(record, k, size_t) = (size_t)x;
  return 0;
}

static int parse_yes_no(const struct config_key *k, const char *v, void *record, char *err,
                        size_t n) {
  if (parse_bool(v, FIELD(record, k, int)) == 0) return 0;
  snprintf(err, n, "%s: expected yes or no, got '%s'", k->key, v);
  return -1;
}

static int parse_address(const struct config_key *k, const char *v, void *record, char *err,
                         size_t n) {
  if (netaddr_parse(v, FIELD(record, k, struct netaddr)) == 0) return 0;
  snprintf(err, n,
           "%s: expected a numeric address and port such as 127.0.0.1:143 or [::1]:993, got '%s'",
           k->key, v);
  return -1;
}

/* A space- or comma-separated list of CIDR networks; replaces the list. */
static int parse_nets(const struct config_key *k, const char *v, void *record, char *err,
                      size_t n) {
  struct netmask *nets = FIELD(record, k, struct netmask);
  unsigned *count = (unsigned *)((char *)record + k->count);
  char buf[256];
  snprintf(buf, sizeof buf, "%s", v);
  *count = 0;
  for (char *save = NULL, *tok = strtok_r(buf, " ,\t", &save); tok;
       tok = strtok_r(NULL, " ,\t", &save)) {
    if (*count == CONFIG_MAX_NETS) {
      snprintf(err, n, "%s: at most %d networks", k->key, CONFIG_MAX_NETS);
      return -1;
    }
    if (netmask_parse(tok, &nets[*count]) != 0) {
      snprintf(err, n, "%s: not a network: '%s'", k->key, tok);
      return -1;
    }
    (*count)++;
  }
  return 0;
}

int config_parse_value(const struct config_key *k, const char *v, void *record, char *err,
                       size_t n) {
  switch (k->kind) {
  case CK_STRING: return parse_string(k, v, record, err, n);
  case CK_DURATION: return parse_duration(k, v, record, err, n);
  case CK_SIZE: return parse_bytes(k, v, record, err, n);
  case CK_UINT: return parse_uint(k, v, record, err, n);
  case CK_BOOL: return parse_yes_no(k, v, record, err, n);
  case CK_ADDRESS: return parse_address(k, v, record, err, n);
  case CK_NETS: return parse_nets(k, v, record, err, n);
  case CK_FUNC: return k->parse(k, v, record, err, n);
  }
  snprintf(err, n, "%s: the table gives it no kind", k->key);
  return -1;
}

/* --- Keys with values of their own kind --------------------------------- */

int config_parse_tls_mode(const struct config_key *k, const char *v, void *record, char *err,
                          size_t n) {
  enum tls_mode *out = FIELD(record, k, enum tls_mode);
  if (ascii_casecmp(v, "none") == 0) *out = TLS_NONE;
  else if (ascii_casecmp(v, "starttls") == 0) *out = TLS_STARTTLS;
  else if (ascii_casecmp(v, "implicit") == 0) *out = TLS_IMPLICIT;
  else {
    snprintf(err, n, "%s: expected none, starttls or implicit, got '%s'", k->key, v);
    return -1;
  }
  return 0;
}

int config_parse_log_level(const struct config_key *k, const char *v, void *record, char *err,
                           size_t n) {
  enum log_level lvl;
  if (log_level_parse(v, &lvl) != 0) {
    snprintf(err, n, "%s: expected error, warn, info or debug, got '%s'", k->key, v);
    return -1;
  }
  *FIELD(record, k, int) = lvl;
  return 0;
}

/* Stores whether the workers run as SCHED_BATCH. */
int config_parse_worker_scheduling(const struct config_key *k, const char *v, void *record,
                                   char *err, size_t n) {
  if (strcmp(v, "batch") != 0 && strcmp(v, "normal") != 0) {
    snprintf(err, n, "%s: expected batch or normal, got '%s'", k->key, v);
    return -1;
  }
  *FIELD(record, k, int) = !strcmp(v, "batch");
  return 0;
}

/* Stores whether logins are refused while Redis is away. */
int config_parse_on_redis_down(const struct config_key *k, const char *v, void *record,
                               char *err, size_t n) {
  if (strcmp(v, "fallback") && strcmp(v, "refuse")) {
    snprintf(err, n, "%s: expected fallback or refuse, got '%s'", k->key, v);
    return -1;
  }
  *FIELD(record, k, int) = !strcmp(v, "refuse");
  return 0;
}

/* The other proxies: numeric HOST:PORT, space or comma separated; the count
 * at k->count. */
int config_parse_peers(const struct config_key *k, const char *v, void *record, char *err,
                       size_t n) {
  struct netaddr *peers = FIELD(record, k, struct netaddr);
  unsigned *count = (unsigned *)((char *)record + k->count);
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", v);
  *count = 0;
  for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
    if (*count == CONFIG_MAX_PEERS) {
      snprintf(err, n, "%s: at most %d", k->key, CONFIG_MAX_PEERS);
      return -1;
    }
    if (netaddr_parse(t, &peers[*count]) != 0) {
      snprintf(err, n, "%s: not HOST:PORT (numeric): '%s'", k->key, t);
      return -1;
    }
    (*count)++;
  }
  return 0;
}

/* --- Judges of string values (CK_STRING stores them when they pass) ------ */

int config_judge_min_version(const struct config_key *k, const char *v, void *record, char *err,
                             size_t n) {
  (void)record;
  if (strcmp(v, "TLSv1.2") == 0 || strcmp(v, "TLSv1.3") == 0) return 0;
  snprintf(err, n, "%s: expected TLSv1.2 or TLSv1.3, got '%s'", k->key, v);
  return -1;
}

int config_judge_username_format(const struct config_key *k, const char *v, void *record,
                                 char *err, size_t n) {
  (void)record;
  char why[160];
  if (username_format_check(v, why, sizeof why) == 0) return 0;
  snprintf(err, n, "%s: %s", k->key, why);
  return -1;
}

int config_judge_ldap_uri(const struct config_key *k, const char *v, void *record, char *err,
                          size_t n) {
  (void)record;
  if (strncmp(v, "ldap://", 7) == 0 || strncmp(v, "ldaps://", 8) == 0) return 0;
  snprintf(err, n, "%s: expected ldap://HOST:PORT or ldaps://HOST:PORT, got '%s'", k->key, v);
  return -1;
}

/* LDAP filters and DN templates name the login name with %u. */
int config_judge_has_u(const struct config_key *k, const char *v, void *record, char *err,
                       size_t n) {
  (void)record;
  if (strstr(v, "%u")) return 0;
  snprintf(err, n, "%s: must contain %%u (the login name)", k->key);
  return -1;
}

int config_judge_redis_address(const struct config_key *k, const char *v, void *record,
                               char *err, size_t n) {
  (void)record;
  struct netaddr a;
  if (v[0] == '/' || netaddr_parse(v, &a) == 0) return 0;
  snprintf(err, n, "%s: expected HOST:PORT (numeric) or a unix socket path, got '%s'", k->key, v);
  return -1;
}

int config_judge_sentinels(const struct config_key *k, const char *v, void *record, char *err,
                           size_t n) {
  (void)record;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", v);
  for (char *save = NULL, *t = strtok_r(buf, " ,", &save); t; t = strtok_r(NULL, " ,", &save)) {
    struct netaddr a;
    if (netaddr_parse(t, &a) != 0) {
      snprintf(err, n, "%s: not HOST:PORT: '%s'", k->key, t);
      return -1;
    }
  }
  return 0;
}
