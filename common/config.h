/* The configuration: one INI file (libinih). Every process parses the same
 * file; secrets never live in it (they are named by *_file keys that only
 * sessiond opens), so a worker that parses it holds no secret.
 *
 * Every key, its default and its meaning is one row of the tables in
 * common/config_keys.c; `usher --config-reference` prints them as the
 * reference table of docs/configuration.md, and configs/usher.conf is an
 * example that mentions every key (both checked by tests). */
#ifndef USHER_CONFIG_H
#define USHER_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/netaddr.h"

#define CONFIG_NAME_MAX 64
#define CONFIG_MAX_LISTENERS 16
#define CONFIG_MAX_BACKENDS 256
#define CONFIG_MAX_PEERS 16
#define CONFIG_MAX_NETS 32
#define CONFIG_MAX_CERTIFICATES 32

enum tls_mode { TLS_NONE = 0, TLS_STARTTLS, TLS_IMPLICIT };

struct config_listener {
  char name[CONFIG_NAME_MAX];
  struct netaddr addr;
  enum tls_mode tls;
  int proxy_protocol;           /* a PROXY v2 header precedes each connection */
  struct netmask proxy_from[CONFIG_MAX_NETS]; /* the balancers it is taken from */
  unsigned n_proxy_from;
};

/* More certificates for other names, chosen by the name a client asks for
 * (SNI); the names are the certificate's own (subjectAltName DNS entries). */
struct config_certificate {
  char name[CONFIG_NAME_MAX];
  char *cert, *key;
};

struct config_backend {
  char name[CONFIG_NAME_MAX];
  struct netaddr addr;
  unsigned weight;              /* 1..1000, default 1; 0 = takes no new users */
  enum tls_mode tls;
  int tls_verify;               /* default yes */
  char *ca_file;                /* NULL: the system's trust store */
  char *server_name;            /* SNI and name to verify; NULL: none/IP */
  int send_id;                  /* backend trusts us: send ID x-originating-ip... */
  int retired;                  /* gone from the file at a reload, kept for the sessions
                                   still seated there: serves them, takes no new seat */
};

struct config {
  char *path;                   /* the file this was read from */

  /* [usher] */
  unsigned workers;             /* default: number of online CPUs */
  char *runtime_dir;            /* sockets live here; default /run/usher */
  char *name;                   /* this proxy's name; default: host name */
  int log_level;                /* enum log_level */
  int syslog;
  struct netaddr metrics;       /* Prometheus endpoint; len 0: off */
  unsigned metrics_max_connections; /* [metrics] at once; default 64 */
  uint64_t metrics_timeout_ms;  /* [metrics] a connection's whole life; default 5s */
  size_t metrics_max_header_size; /* [metrics] request line and headers; default 8k */
  uint64_t metrics_render_interval_ms; /* [metrics] a render serves scrapes this long; 1s */
  char *user;                   /* workers drop to this user after binding; NULL: stay */
  uint64_t drain_ms;            /* SIGTERM: sessions may finish this long; default 10s */
  int worker_batch;             /* workers run as SCHED_BATCH (worker.c); default yes */
  int worker_peer_check;        /* sessiond talks only to the master's own children
                                   on sessiond.sock (workers.c); default yes */

  /* [listener NAME] */
  struct config_listener listeners[CONFIG_MAX_LISTENERS];
  unsigned n_listeners;

  /* [tls] */
  char *tls_cert;
  char *tls_key;
  char *tls_min_version;        /* "TLSv1.2" (default) or "TLSv1.3" */
  char *tls_ciphers;            /* TLS 1.2 cipher list; NULL: our default */
  char *tls_ciphersuites;       /* TLS 1.3 suites in our order; NULL: our default */
  char *tls_ticket_key_file;    /* secret the ticket keys derive from; NULL: random
                                   at start (then only this proxy resumes) */
  uint64_t tls_ticket_lifetime_ms; /* key period; default 1h; 0: no tickets */
  int tls_release;              /* TLS 1.3 sessions leave OpenSSL after the handshake
                                   for our record layer (tlsrec.h); default yes */

  /* [certificate NAME] */
  struct config_certificate certificates[CONFIG_MAX_CERTIFICATES];
  unsigned n_certificates;

  /* [backend NAME] */
  struct config_backend backends[CONFIG_MAX_BACKENDS];
  unsigned n_backends;

  /* [auth] */
  char *users_file;
  char *username_format;        /* login name normalization (auth/username.h); default %Lu */
  uint64_t failure_delay_ms;    /* default 2s */
  unsigned auth_threads;        /* password hashing threads; default 2 */
  unsigned max_auth_attempts;   /* failed logins per connection; default 3 */
  uint64_t sessiond_wait_ms;    /* a login waits this long for the worker's link to
                                   sessiond (start, restart); default 5s; 0: no wait */
  unsigned sessiond_wait_queue; /* logins a worker holds so; default 1000 */

  /* [ldap]: the password database when uri is set (else the users file) */
  char *ldap_uri;               /* ldap://host:port or ldaps://host:port */
  int ldap_starttls;            /* StartTLS on ldap://; default no */
  char *ldap_ca_file;           /* CA for ldaps/StartTLS; NULL: system store */
  char *ldap_bind_dn;           /* service account for search-then-bind */
  char *ldap_bind_password_file;/* its password; read by sessiond only */
  char *ldap_base;              /* search base */
  char *ldap_filter;            /* with %u (escaped per RFC 4515); default (uid=%u) */
  char *ldap_dn_template;       /* set: DN-template bind, %u escaped per RFC 4514 */
  char *ldap_login_attribute;   /* canonical login name attribute; NULL: none */
  char *ldap_backend_attribute; /* pinned backend attribute; NULL: none */
  unsigned ldap_pool_size;      /* connections; default 4 */
  uint64_t ldap_timeout_ms;     /* every operation; default 5s */
  unsigned ldap_max_inflight;   /* LDAP logins at once; default = pool_size */
  unsigned ldap_queue_max;      /* logins waiting for a slot; default 256 */
  uint64_t ldap_reconnect_max_ms; /* back-off ceiling; default 10s */

  /* [redis]: shared auth cache, throttling counters; optional */
  char *redis_address;          /* host:port or /path/to/socket; NULL: no Redis */
  char *redis_password_file;
  uint64_t redis_timeout_ms;    /* every command; default 250ms */
  char *redis_sentinels;        /* "host:port host:port ..."; set: ask them for the master */
  char *redis_master_name;      /* the Sentinel master name; default "usher" */

  /* [cache] */
  char *cache_secret_file;      /* cluster secret for keyed hashes; needed with Redis */
  uint64_t cache_positive_ttl_ms; /* default 15m */
  uint64_t cache_negative_ttl_ms; /* default 1m */
  uint64_t cache_stale_max_ms;  /* positive entries serve this long past TTL while
                                   the database is down; default 1h */
  unsigned cache_memory_entries;/* in-memory LRU size; default 100000; 0: off */

  /* [throttle] */
  uint64_t throttle_window_ms;  /* failures counted over this; default 15m */
  unsigned throttle_ip_failures;   /* per address (IPv6 /64) before refusal; default 50 */
  unsigned throttle_user_failures; /* per user before refusal; default 10 */
  uint64_t throttle_ban_ms;     /* refusal lasts; default 15m */
  uint64_t throttle_max_delay_ms; /* growing delay ceiling; default 15s */
  uint64_t throttle_known_ms;   /* a user's address stays known after a login; default 30d, 0: off */

  /* [routing] */
  uint64_t seat_expire_ms;      /* default 15m */
  uint64_t backend_retry_ms;    /* a backend marked down is retried after; default 30s */
  uint64_t seat_lease_ms;       /* a proxy's lease on a user's seat in Redis; default 60s */
  /* [peers]: the other proxies of the cluster, asked while Redis is away */
  struct netaddr peers_listen;  /* UDP; len 0: not set */
  struct netaddr peers[CONFIG_MAX_PEERS];
  unsigned n_peers;
  uint64_t peers_timeout_ms;    /* every peer must answer within; default 300ms */
  uint64_t peers_claim_ms;      /* a peer's agreement holds this long; default 5s */
  uint64_t refill_ms;           /* after Redis lost its data: no new seats for this long; 10s */
  int on_redis_down_refuse;     /* on_redis_down = refuse (the default; else fallback) */
  uint64_t health_interval_ms;  /* active backend checks; default 5s; 0: off */
  uint64_t health_timeout_ms;   /* connect + greeting; default 5s */
  unsigned health_rise, health_fall; /* checks in a row to change verdict; default 2, 3 */

  /* [limits] */
  size_t max_line;              /* default 8192 */
  size_t max_literal;           /* pre-auth literal; default 8192 */
  unsigned max_bad_commands;    /* default 10 */
  uint64_t preauth_timeout_ms;  /* idle before login; default 60s */
  uint64_t preauth_budget_ms;   /* total time before login; default 180s */
  uint64_t idle_timeout_ms;     /* relay idle; default 30m */
  uint64_t connect_timeout_ms;  /* backend connect; default 5s */
  uint64_t login_timeout_ms;    /* backend greeting..tagged OK; default 30s */
  unsigned max_connections;     /* per worker; default 10000 */
  unsigned listen_backlog;      /* connections the kernel queues per listener; default 4096 */
  unsigned max_connections_per_ip; /* per worker; default 100; 0 = no limit */
  unsigned max_sessions_per_user;  /* on this proxy; default 100; 0 = no limit */
  unsigned max_sessions_per_user_ip; /* per user and client address; default 50; 0 = none */
  int plaintext_auth;           /* allow LOGIN without TLS from anywhere; default no */
  struct netmask trusted_nets[CONFIG_MAX_NETS]; /* default 127.0.0.0/8 ::1/128 */
  unsigned n_trusted_nets;
};

/* Reads and checks path. On failure returns NULL and writes
 * "FILE:LINE: problem" (LINE 0 when not tied to a line) into err. */
struct config *config_load(const char *path, char *err, size_t errlen);
void config_free(struct config *c);

/* At a reload: the backends of old that fresh lacks and keep(name, arg)
 * still wants are appended to fresh, marked retired, so that sessions and
 * seats on a backend removed from the file keep working until they end. */
void config_carry_retired(struct config *fresh, const struct config *old,
                          int (*keep)(const char *name, void *arg), void *arg);

const struct config_backend *config_backend_find(const struct config *c, const char *name);
const char *tls_mode_name(enum tls_mode m);

/* Prints the reference table of every key (markdown) from the loader's own
 * tables: what docs/configuration.md holds between its markers. */
void config_print_reference(FILE *f);

#endif
