/* Configuration loading: libinih calls config_on_key() for every key, which
 * finds the key's row in its section's table (config_keys.c) and parses the
 * value as the row says; the defaults come from the same rows through the
 * same parsers. config_check() then looks at the whole (what must exist,
 * what must be unique). Errors name the file and the line; libinih reports
 * the line of the first key a handler refused. */
#include "common/config.h"

#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config_keys.h"
#include "common/config_parse.h"
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

/* Every default of section s into record, parsed as if read from a file:
 * a default the parser refuses is a bug that the unit tests catch. */
static int apply_defaults(struct loader *l, const struct config_section *s, void *record) {
  char why[256];
  for (size_t i = 0; i < s->n_keys; i++) {
    const struct config_key *k = &s->keys[i];
    if (k->def && config_parse_value(k, k->def, record, why, sizeof why) != 0)
      return fail(l, "[%s] default: %s", s->name, why);
  }
  return 1;
}

/* The i-th record of the named section s: a listener, backend or certificate. */
static void *named_record(struct config *c, const struct config_section *s, unsigned i) {
  return (char *)c + s->array + (size_t)i * s->record_size;
}

static unsigned *named_count(struct config *c, const struct config_section *s) {
  return (unsigned *)((char *)c + s->n_array);
}

/* The record named name in section s, a new one with the section's
 * defaults if there is none yet; NULL (and l->err) if there is no room. */
static void *named_get(struct loader *l, const struct config_section *s, const char *name) {
  unsigned *n = named_count(l->c, s);
  for (unsigned i = 0; i < *n; i++)
    if (!strcmp((char *)named_record(l->c, s, i), name)) return named_record(l->c, s, i);
  if (*n == s->max) {
    fail(l, "too many %ss (at most %u)", s->name, s->max);
    return NULL;
  }
  char *record = named_record(l->c, s, (*n)++);
  snprintf(record, CONFIG_NAME_MAX, "%s", name);   /* the name is every record's first field */
  return apply_defaults(l, s, record) ? record : NULL;
}

/* Key k = v of section s (of the record named name, if s is named). */
static int on_key(struct loader *l, const struct config_section *s, void *record,
                  const char *name, const char *k, const char *v) {
  const struct config_key *key = config_key_find(s, k);
  if (!key && name) return fail(l, "unknown key '%s' in [%s %s]", k, s->name, name);
  if (!key) return fail(l, "unknown key '%s' in [%s]", k, s->name);
  char why[256];
  if (config_parse_value(key, v, record, why, sizeof why) != 0) return fail(l, "%s", why);
  return 1;
}

static int config_on_key(void *user, const char *section, const char *k, const char *v) {
  struct loader *l = user;
  for (size_t i = 0; i < config_n_sections; i++) {
    const struct config_section *s = &config_sections[i];
    if (!s->named) {
      if (!strcmp(section, s->name)) return on_key(l, s, l->c, NULL, k, v);
      continue;
    }
    const char *name = section_name(section, s->name);
    if (!name) continue;
    if (!valid_name(name))
      return fail(l, "bad %s name '%s' (letters, digits, - _ .)", s->name, name);
    void *record = named_get(l, s, name);
    return record ? on_key(l, s, record, name, k, v) : 0;
  }
  if (section[0] == '\0') return fail(l, "key '%s' outside any section", k);
  return fail(l, "unknown section [%s]", section);
}

/* The defaults of every section that is not named, then those the code
 * computes: the tables show them as CPUs and host name. */
static int config_defaults(struct loader *l) {
  struct config *c = l->c;
  for (size_t i = 0; i < config_n_sections; i++)
    if (!config_sections[i].named && !apply_defaults(l, &config_sections[i], c)) return 0;
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  c->workers = cpus > 0 ? (unsigned)cpus : 1;
  char host[256] = "usher";
  gethostname(host, sizeof host - 1);
  c->name = xstrdup(host);
  return 1;
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
  /* Readers test master_user[0] (the workers, sessiond): never NULL. */
  if (!c->master_user) c->master_user = xstrdup("");
  if (!c->master_password_file) c->master_password_file = xstrdup("");
  if (c->master_user[0] && !c->master_password_file[0])
    return fail(l, "[routing] master_user is set but master_password_file is not");
  if (c->rehome_timeout_ms < 1000) return fail(l, "[routing] rehome_timeout: at least 1s");
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
  l.c->path = xstrdup(path);
  if (!config_defaults(&l)) {
    snprintf(err, errlen, "%s:0: %s", path, l.err);
    config_free(l.c);
    return NULL;
  }

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

/* The string fields of one record of section s: free them (dup = 0), or
 * replace each by a copy of its own (dup = 1). */
static void record_strings(const struct config_section *s, void *record, int dup) {
  for (size_t i = 0; i < s->n_keys; i++) {
    if (s->keys[i].kind != CK_STRING) continue;
    char **field = (char **)((char *)record + s->keys[i].offset);
    if (dup) *field = *field ? xstrdup(*field) : NULL;
    else free(*field);
  }
}

void config_free(struct config *c) {
  if (!c) return;
  for (size_t i = 0; i < config_n_sections; i++) {
    const struct config_section *s = &config_sections[i];
    if (!s->named) {
      record_strings(s, c, 0);
      continue;
    }
    for (unsigned r = 0; r < *named_count(c, s); r++) record_strings(s, named_record(c, s, r), 0);
  }
  free(c->path);
  free(c);
}

static const struct config_section *section_find(const char *name) {
  for (size_t i = 0; i < config_n_sections; i++)
    if (!strcmp(config_sections[i].name, name)) return &config_sections[i];
  return NULL;
}

void config_carry_retired(struct config *fresh, const struct config *old,
                          int (*keep)(const char *name, void *arg), void *arg) {
  const struct config_section *backend = section_find("backend");
  for (unsigned i = 0; i < old->n_backends; i++) {
    const struct config_backend *b = &old->backends[i];
    if (config_backend_find(fresh, b->name) || !keep(b->name, arg)) continue;
    if (fresh->n_backends == CONFIG_MAX_BACKENDS) return;
    struct config_backend *copy = &fresh->backends[fresh->n_backends++];
    *copy = *b;
    record_strings(backend, copy, 1);
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
