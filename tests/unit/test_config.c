/* Unit tests of config_load: defaults, every section, and errors that name
 * the file and the line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"
#include "common/config_keys.h"
#include "common/log.h"

static char path[64];

static void write_conf(const char *text) {
  snprintf(path, sizeof path, "/tmp/usher-test-config-%d.conf", (int)getpid());
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

#define MINIMAL                                                                            \
  "[listener imap]\naddress = 127.0.0.1:1143\n"                                            \
  "[backend b1]\naddress = 127.0.0.1:10143\n"                                              \
  "[auth]\nusers_file = /etc/usher/users\n"

static struct config *load_ok(const char *text) {
  char err[512] = "";
  write_conf(text);
  struct config *c = config_load(path, err, sizeof err);
  if (!c) fail_msg("unexpected error: %s", err);
  return c;
}

/* Loads text expecting failure; the message must start "PATH:LINE:" and
 * contain `needle`. */
static void load_fails(const char *text, int line, const char *needle) {
  char err[512] = "", prefix[96];
  write_conf(text);
  struct config *c = config_load(path, err, sizeof err);
  assert_null(c);
  snprintf(prefix, sizeof prefix, "%s:%d:", path, line);
  if (strncmp(err, prefix, strlen(prefix)) != 0) fail_msg("'%s' does not start with '%s'", err, prefix);
  if (!strstr(err, needle)) fail_msg("'%s' does not mention '%s'", err, needle);
}

static void test_defaults(void **state) {
  (void)state;
  struct config *c = load_ok(MINIMAL);
  assert_int_equal(c->n_listeners, 1);
  assert_int_equal(c->listeners[0].tls, TLS_NONE);
  assert_int_equal(c->n_backends, 1);
  assert_int_equal(c->backends[0].weight, 1);
  assert_int_equal(c->backends[0].tls_verify, 1);
  assert_true(c->workers >= 1);
  assert_int_equal(c->worker_batch, 1);
  assert_null(c->tls_ciphersuites);
  assert_int_equal(c->max_line, 8192);
  assert_int_equal(c->listen_backlog, 4096);
  assert_int_equal(c->rehome, 1);           /* on, but nothing re-homes without a master user */
  assert_string_equal(c->master_user, "");            /* never NULL: workers test [0] */
  assert_string_equal(c->master_password_file, "");
  assert_int_equal(c->rehome_timeout_ms, 15000);
  assert_int_equal(c->metrics_max_connections, 64);
  assert_int_equal(c->metrics_timeout_ms, 5000);
  assert_int_equal(c->metrics_max_header_size, 8192);
  assert_int_equal(c->metrics_render_interval_ms, 1000);
  assert_int_equal(c->idle_timeout_ms, 30 * 60 * 1000);
  assert_int_equal(c->seat_expire_ms, 15 * 60 * 1000);
  assert_int_equal(c->failure_delay_ms, 2000);
  assert_int_equal(c->sessiond_wait_ms, 5000);
  assert_int_equal(c->sessiond_wait_queue, 1000);
  assert_string_equal(c->username_format, "%Lu");
  assert_int_equal(c->throttle_known_ms, 30ULL * 24 * 3600 * 1000);
  assert_int_equal(c->refill_ms, 10000);
  assert_int_equal(c->n_peers, 0);
  assert_int_equal(c->peers_listen.len, 0);
  assert_int_equal(c->peers_timeout_ms, 300);
  assert_int_equal(c->plaintext_auth, 0);
  assert_int_equal(c->n_trusted_nets, 2);
  assert_string_equal(c->runtime_dir, "/run/usher");
  assert_string_equal(c->users_file, "/etc/usher/users");
  config_free(c);
}

static void test_full(void **state) {
  (void)state;
  struct config *c = load_ok(
      "[usher]\nworkers = 3\nruntime_dir = /tmp/u\nname = p1\nlog_level = debug\n"
      "worker_scheduling = normal\nmetrics = 127.0.0.1:9100\n"
      "[metrics]\nmax_connections = 8\ntimeout = 1500ms\nmax_header_size = 2k\n"
      "render_interval = 0\n"
      "[listener plain]\naddress = 127.0.0.1:143\ntls = starttls\n"
      "[listener imaps]\naddress = [::1]:993\ntls = implicit\n"
      "[tls]\ncert = /c.pem\nkey = /k.pem\nmin_version = TLSv1.3\n"
      "ciphersuites = TLS_CHACHA20_POLY1305_SHA256\n"
      "[backend one]\naddress = 10.0.0.1:143\nweight = 3\ntls = starttls\n"
      "tls_verify = no\nca_file = /ca.pem\nserver_name = imap.example\nsend_id = yes\n"
      "[backend two]\naddress = 10.0.0.2:993\ntls = implicit\n"
      "[auth]\nusers_file = /u\nfailure_delay = 250ms\nthreads = 4\nmax_attempts = 5\n"
      "sessiond_wait = 2s\nsessiond_wait_queue = 0\n"
      "[routing]\nseat_expire = 2m\nbackend_retry = 10s\n"
      "[limits]\nmax_line = 16k\nmax_literal = 1M\nmax_bad_commands = 3\n"
      "preauth_timeout = 10s\npreauth_budget = 1m\nidle_timeout = 1h\n"
      "connect_timeout = 2s\nlogin_timeout = 20s\nmax_connections = 500\nlisten_backlog = 900\n"
      "max_connections_per_ip = 0\nplaintext_auth = yes\n"
      "trusted_networks = 10.0.0.0/8, 192.168.1.1 fd00::/8\n");
  assert_int_equal(c->workers, 3);
  assert_string_equal(c->name, "p1");
  assert_int_equal(c->worker_batch, 0);
  assert_int_equal(netaddr_port(&c->metrics), 9100);
  assert_int_equal(c->metrics_max_connections, 8);
  assert_int_equal(c->metrics_timeout_ms, 1500);
  assert_int_equal(c->metrics_max_header_size, 2048);
  assert_int_equal(c->metrics_render_interval_ms, 0);
  assert_int_equal(c->log_level, LOG_LVL_DEBUG);
  assert_int_equal(c->n_listeners, 2);
  assert_int_equal(c->listeners[0].tls, TLS_STARTTLS);
  assert_int_equal(c->listeners[1].tls, TLS_IMPLICIT);
  assert_int_equal(netaddr_port(&c->listeners[1].addr), 993);
  assert_string_equal(c->tls_min_version, "TLSv1.3");
  assert_string_equal(c->tls_ciphersuites, "TLS_CHACHA20_POLY1305_SHA256");
  const struct config_backend *b = config_backend_find(c, "one");
  assert_non_null(b);
  assert_int_equal(b->weight, 3);
  assert_int_equal(b->tls, TLS_STARTTLS);
  assert_int_equal(b->tls_verify, 0);
  assert_string_equal(b->ca_file, "/ca.pem");
  assert_string_equal(b->server_name, "imap.example");
  assert_int_equal(b->send_id, 1);
  assert_null(config_backend_find(c, "three"));
  assert_int_equal(c->failure_delay_ms, 250);
  assert_int_equal(c->auth_threads, 4);
  assert_int_equal(c->sessiond_wait_ms, 2000);
  assert_int_equal(c->sessiond_wait_queue, 0);
  assert_int_equal(c->seat_expire_ms, 120000);
  assert_int_equal(c->max_line, 16384);
  assert_int_equal(c->max_literal, 1 << 20);
  assert_int_equal(c->idle_timeout_ms, 3600000);
  assert_int_equal(c->max_connections_per_ip, 0);
  assert_int_equal(c->listen_backlog, 900);
  assert_int_equal(c->plaintext_auth, 1);
  assert_int_equal(c->n_trusted_nets, 3);   /* replaced the defaults */
  config_free(c);
}

static void test_errors_name_the_line(void **state) {
  (void)state;
  load_fails(MINIMAL "[limits]\nmax_line = lots\n", 8, "max_line");
  load_fails("[usher]\nworkers = 0\n" MINIMAL, 2, "workers");
  load_fails("[usher]\nbogus = 1\n" MINIMAL, 2, "unknown key 'bogus'");
  load_fails("[usher]\nworker_scheduling = fifo\n" MINIMAL, 2, "worker_scheduling");
  load_fails("[nonsense]\nx = 1\n", 2, "unknown section");
  load_fails(MINIMAL "[backend b2]\naddress = imap.example.com:143\n", 8, "address");
  load_fails(MINIMAL "[backend b2]\naddress = 127.0.0.1:0\n", 8, "address");
  load_fails(MINIMAL "[listener x]\naddress = 127.0.0.1:1\ntls = maybe\n", 9, "tls");
  load_fails(MINIMAL "[routing]\nseat_expire = -5s\n", 8, "seat_expire");
  load_fails(MINIMAL "[limits]\ntrusted_networks = 10.0.0.0/33\n", 8, "trusted_networks");
  load_fails(MINIMAL "[limits]\nplaintext_auth = perhaps\n", 8, "plaintext_auth");
  load_fails(MINIMAL "[limits]\nlisten_backlog = 3\n", 8, "listen_backlog");
  load_fails(MINIMAL "[metrics]\nmax_connections = 0\n", 8, "max_connections");
  load_fails(MINIMAL "[metrics]\nmax_header_size = 10\n", 8, "max_header_size");
  load_fails(MINIMAL "[metrics]\nbacklog = 10\n", 8, "unknown key 'backlog' in [metrics]");
  load_fails(MINIMAL "[metrics]\ntimeout = 10ms\n", 0, "[metrics] timeout");
  load_fails("[backend bad name!]\naddress = 127.0.0.1:1\n", 2, "bad backend name");
  load_fails("this is not ini\n", 1, "syntax");
}

static void test_ldap_redis_cache_throttle(void **state) {
  (void)state;
  struct config *c = load_ok(
      "[listener imap]\naddress = 127.0.0.1:1143\n[backend b1]\naddress = 127.0.0.1:10143\n"
      "[ldap]\nuri = ldaps://10.0.0.5:636\nbase = ou=people,dc=example,dc=org\n"
      "bind_dn = cn=usher,dc=example,dc=org\nbind_password_file = /etc/usher/ldap.pw\n"
      "login_attribute = uid\nbackend_attribute = mailHost\npool_size = 8\ntimeout = 3s\n"
      "[redis]\naddress = /run/redis/redis.sock\ntimeout = 100ms\n"
      "[cache]\nsecret_file = /etc/usher/secret\npositive_ttl = 1h\nnegative_ttl = 30s\n"
      "memory_entries = 5000\n"
      "[throttle]\nip_failures = 7\nuser_failures = 3\nban_time = 1m\n");
  assert_null(c->users_file);
  assert_string_equal(c->ldap_uri, "ldaps://10.0.0.5:636");
  assert_string_equal(c->ldap_filter, "(uid=%u)");   /* the default */
  assert_null(c->ldap_dn_template);
  assert_int_equal(c->ldap_pool_size, 8);
  assert_int_equal(c->ldap_max_inflight, 8);            /* defaults to pool_size */
  assert_int_equal(c->ldap_timeout_ms, 3000);
  assert_string_equal(c->redis_address, "/run/redis/redis.sock");
  assert_int_equal(c->redis_timeout_ms, 100);
  assert_int_equal(c->cache_positive_ttl_ms, 3600000);
  assert_int_equal(c->cache_negative_ttl_ms, 30000);
  assert_int_equal(c->cache_memory_entries, 5000);
  assert_int_equal(c->throttle_ip_failures, 7);
  assert_int_equal(c->throttle_user_failures, 3);
  assert_int_equal(c->throttle_ban_ms, 60000);
  config_free(c);

  load_fails(MINIMAL "[ldap]\nuri = http://x\n", 8, "uri");
  load_fails(MINIMAL "[ldap]\ndn_template = uid=x,dc=y\n", 8, "%u");
  load_fails(MINIMAL "[redis]\naddress = localhost\n", 8, "address");
  load_fails(MINIMAL "[cache]\nnegative_ttl = soon\n", 8, "negative_ttl");
  load_fails(MINIMAL "[throttle]\nuser_failures = -1\n", 8, "user_failures");
  load_fails(MINIMAL "[auth]\nusername_format = %x\n", 8, "username_format");
  load_fails(MINIMAL "[peers]\npeers = nowhere\n", 8, "peers");

  c = load_ok(MINIMAL "[cache]\nsecret_file = /etc/usher/secret\n"
              "[peers]\nlisten = 10.0.0.11:7000\npeers = 10.0.0.12:7000, 10.0.0.13:7000\n"
              "timeout = 1s\nclaim_time = 2s\n"
              "[auth]\nusername_format = %Ln@example.org\n"
              "[throttle]\nknown_address_ttl = 0\n[routing]\nrefill_time = 20s\n"
              "rehome = no\nmaster_user = usher-master\n"
              "master_password_file = /etc/usher/master.pw\nrehome_timeout = 40s\n");
  assert_int_equal(c->n_peers, 2);
  assert_int_equal(c->peers_timeout_ms, 1000);
  assert_int_equal(c->peers_claim_ms, 2000);
  assert_string_equal(c->username_format, "%Ln@example.org");
  assert_int_equal(c->throttle_known_ms, 0);
  assert_int_equal(c->refill_ms, 20000);
  assert_int_equal(c->rehome, 0);
  assert_string_equal(c->master_user, "usher-master");
  assert_string_equal(c->master_password_file, "/etc/usher/master.pw");   /* the path only */
  assert_int_equal(c->rehome_timeout_ms, 40000);
  config_free(c);
  load_fails(MINIMAL "[routing]\nrehome = sometimes\n", 8, "rehome");
  load_fails(MINIMAL "[routing]\nrehome_timeout = soon\n", 8, "rehome_timeout");
}

static void test_whole_file_checks(void **state) {
  (void)state;
  load_fails("[backend b1]\naddress = 127.0.0.1:1\n[auth]\nusers_file = /u\n", 0, "listener");
  load_fails("[listener a]\naddress = 127.0.0.1:1\n[auth]\nusers_file = /u\n", 0, "backend");
  load_fails("[listener a]\naddress = 127.0.0.1:1\n[backend b]\naddress = 127.0.0.1:2\n", 0,
             "users_file");
  load_fails(MINIMAL "[ldap]\nuri = ldap://127.0.0.1:389\n", 0, "needs base");
  load_fails(MINIMAL "[ldap]\nuri = ldap://127.0.0.1:389\nbase = dc=x\nbind_dn = cn=a\n", 0,
             "bind_password_file");
  load_fails(MINIMAL "[redis]\naddress = 127.0.0.1:6379\n", 0, "secret_file");
  load_fails(MINIMAL "[routing]\nmaster_user = usher-master\n", 0, "master_password_file");
  load_fails(MINIMAL "[routing]\nmaster_user = usher-master\nmaster_password_file =\n", 0,
             "master_password_file");
  load_fails(MINIMAL "[routing]\nrehome_timeout = 500ms\n", 0, "at least 1s");
  load_fails(MINIMAL "[listener s]\naddress = 127.0.0.1:993\ntls = implicit\n", 0, "cert");
  load_fails(MINIMAL "[backend nob]\nweight = 2\n", 0, "no address");
  load_fails(MINIMAL "[usher]\nruntime_dir = relative/dir\n", 0, "absolute");
  load_fails(MINIMAL "[peers]\nlisten = 127.0.0.1:7000\n", 0, "secret_file");
}

static void test_missing_file(void **state) {
  (void)state;
  char err[256];
  assert_null(config_load("/nonexistent/usher.conf", err, sizeof err));
  assert_non_null(strstr(err, "/nonexistent/usher.conf:0:"));
}

static void test_example_config_is_valid(void **state) {
  (void)state;
  char err[512];
  struct config *c = config_load(USHER_SOURCE_DIR "/configs/usher.conf", err, sizeof err);
  if (!c) fail_msg("configs/usher.conf: %s", err);
  assert_int_equal(c->n_backends, 2);
  config_free(c);
}

/* Every row of the key tables is whole: a meaning for the reference, a
 * default that its own parser accepts (the loader applies it so), limits
 * that leave room, and no key twice in a section. */
static void test_key_tables(void **state) {
  (void)state;
  assert_true(config_n_sections > 0);
  for (size_t s = 0; s < config_n_sections; s++) {
    const struct config_section *sec = &config_sections[s];
    assert_true(sec->n_keys > 0);
    for (size_t i = 0; i < sec->n_keys; i++) {
      const struct config_key *k = &sec->keys[i];
      if (!k->help || strlen(k->help) < 3) fail_msg("[%s] %s has no help text", sec->name, k->key);
      if (strchr(k->help, '|') || strchr(k->help, '\n'))
        fail_msg("[%s] %s: help text would break the markdown table", sec->name, k->key);
      if (config_key_find(sec, k->key) != k) fail_msg("[%s] %s appears twice", sec->name, k->key);
      if ((k->kind == CK_UINT || k->kind == CK_SIZE) && (k->max == 0 || k->min > k->max))
        fail_msg("[%s] %s: limits %lu..%lu", sec->name, k->key, k->min, k->max);
      if ((k->kind == CK_FUNC && !k->parse) || (k->kind == CK_NETS && !k->count))
        fail_msg("[%s] %s: kind without its parser or count", sec->name, k->key);
      if (k->def && k->shown) fail_msg("[%s] %s: both def and shown", sec->name, k->key);
      if (!k->def) continue;
      size_t size = sec->named ? sec->record_size : sizeof(struct config);
      void *record = calloc(1, size);
      char why[256];
      if (config_parse_value(k, k->def, record, why, sizeof why) != 0)
        fail_msg("[%s] %s: its default does not parse: %s", sec->name, k->key, why);
      if (k->kind == CK_STRING) free(*(char **)((char *)record + k->offset));
      free(record);
    }
  }
}

/* Every key with a default can be written in a file with that value: the
 * loader finds each row by its name in its section. */
static void test_every_key_is_accepted(void **state) {
  (void)state;
  for (size_t s = 0; s < config_n_sections; s++) {
    const struct config_section *sec = &config_sections[s];
    for (size_t i = 0; i < sec->n_keys; i++) {
      const struct config_key *k = &sec->keys[i];
      if (!k->def) continue;
      char text[512];
      snprintf(text, sizeof text, MINIMAL "[%s%s]\n%s = %s\n", sec->name,
               sec->named ? " extra" : "", k->key, k->def);
      if (sec->named && strcmp(sec->name, "certificate") != 0)
        strcat(text, "address = 127.0.0.1:7\n");
      struct config *c = load_ok(text);   /* writing the default changes nothing that fails */
      config_free(c);
    }
  }
}

/* configs/usher.conf is the example with every key: each one of the tables
 * is there, set or commented out (";key = ..."), under its section. */
static void test_example_mentions_every_key(void **state) {
  (void)state;
  FILE *f = fopen(USHER_SOURCE_DIR "/configs/usher.conf", "r");
  assert_non_null(f);
  char seen[400][96];
  size_t n_seen = 0;
  char line[512], section[64] = "";
  while (fgets(line, sizeof line, f) && n_seen < 400) {
    char *p = line;
    while (*p == ';' || *p == ' ') p++;
    if (*p == '[') {
      size_t len = strcspn(p + 1, " ]");
      snprintf(section, sizeof section, "%.*s", (int)len, p + 1);
      continue;
    }
    size_t len = strspn(p, "abcdefghijklmnopqrstuvwxyz_0123456789");
    char *q = p + len;
    while (*q == ' ') q++;
    if (len > 0 && *q == '=')
      snprintf(seen[n_seen++], sizeof seen[0], "%s %.*s", section, (int)len, p);
  }
  fclose(f);
  char missing[2048] = "";
  for (size_t s = 0; s < config_n_sections; s++)
    for (size_t i = 0; i < config_sections[s].n_keys; i++) {
      char want[96];
      snprintf(want, sizeof want, "%s %s", config_sections[s].name, config_sections[s].keys[i].key);
      size_t j = 0;
      while (j < n_seen && strcmp(seen[j], want) != 0) j++;
      if (j == n_seen && strlen(missing) + strlen(want) + 4 < sizeof missing)
        strcat(strcat(strcat(missing, " ["), want), "]");
    }
  if (missing[0]) fail_msg("configs/usher.conf lacks:%s", missing);
}

/* The reference starts with its header and has one row per key. */
static void test_reference_has_every_key(void **state) {
  (void)state;
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  config_print_reference(f);
  fclose(f);
  assert_true(strncmp(text, "| section | key | default | meaning |\n|---|---|---|---|\n", 56) == 0);
  size_t rows = 0, keys = 0;
  for (char *p = text; (p = strchr(p, '\n')) != NULL; p++) rows++;
  for (size_t s = 0; s < config_n_sections; s++) keys += config_sections[s].n_keys;
  assert_int_equal(rows, keys + 2);
  assert_non_null(strstr(text, "| `[backend NAME]` | `address` | — |"));
  assert_non_null(
      strstr(text, "| `[limits]` | `max_line` | `8k` | longest pre-auth command line |"));
  free(text);
}

static int teardown(void **state) {
  (void)state;
  unlink(path);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_defaults, teardown),
      cmocka_unit_test_teardown(test_full, teardown),
      cmocka_unit_test_teardown(test_errors_name_the_line, teardown),
      cmocka_unit_test_teardown(test_whole_file_checks, teardown),
      cmocka_unit_test_teardown(test_ldap_redis_cache_throttle, teardown),
      cmocka_unit_test(test_missing_file),
      cmocka_unit_test(test_example_config_is_valid),
      cmocka_unit_test(test_key_tables),
      cmocka_unit_test_teardown(test_every_key_is_accepted, teardown),
      cmocka_unit_test(test_example_mentions_every_key),
      cmocka_unit_test(test_reference_has_every_key),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
