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
  unsigned weight;              /* 0 = takes no new users */
  enum tls_mode tls;
  int tls_verify;
  char *ca_file;                /* NULL: the system's trust store */
  char *server_name;            /* SNI and name to verify; NULL: none/IP */
  int send_id;                  /* backend trusts us: send ID x-originating-ip... */
  int retired;                  /* gone from the file at a reload, kept for the sessions
                                   still seated there: serves them, takes no new seat */
};

/* One field per key; its default and meaning are in its row of the key
 * tables (config_keys.c), not here. */
struct config {
  char *path;                   /* the file this was read from */

  /* [usher] */
  unsigned workers;             /* proxy worker processes */
  char *runtime_dir;            /* sockets live here */
  char *name;                   /* this proxy's name */
  int log_level;                /* enum log_level */
  int syslog;
  struct netaddr metrics;       /* Prometheus endpoint; len 0: off */
  unsigned metrics_max_connections; /* [metrics] at once */
  uint64_t metrics_timeout_ms;  /* [metrics] a connection's whole life */
  size_t metrics_max_header_size; /* [metrics] request line and headers */
  uint64_t metrics_render_interval_ms; /* [metrics] a render serves scrapes this long; 1s */
  char *user;                   /* workers drop to this user after binding; NULL: stay */
  uint64_t drain_ms;            /* SIGTERM: sessions may finish this long */
  int worker_batch;             /* workers run as SCHED_BATCH (worker.c) */
  int worker_peer_check;        /* sessiond talks only to the master's own children
                                   on sessiond.sock (workers.c) */

  /* [listener NAME] */
  struct config_listener listeners[CONFIG_MAX_LISTENERS];
  unsigned n_listeners;

  /* [tls] */
  char *tls_cert;
  char *tls_key;
  char *tls_min_version;        /* "TLSv1.2" or "TLSv1.3" */
  char *tls_ciphers;            /* TLS 1.2 cipher list; NULL: our default */
  char *tls_ciphersuites;       /* TLS 1.3 suites in our order; NULL: our default */
  char *tls_ticket_key_file;    /* secret the ticket keys derive from; NULL: random
                                   at start (then only this proxy resumes) */
  uint64_t tls_ticket_lifetime_ms; /* key period; 0: no tickets */
  int tls_release;              /* TLS 1.3 sessions leave OpenSSL after the handshake
                                   for our record layer (tlsrec.h) */

  /* [certificate NAME] */
  struct config_certificate certificates[CONFIG_MAX_CERTIFICATES];
  unsigned n_certificates;

  /* [backend NAME] */
  struct config_backend backends[CONFIG_MAX_BACKENDS];
  unsigned n_backends;

  /* [auth] */
  char *users_file;
  char *username_format;        /* login name normalization (auth/username.h) */
  uint64_t failure_delay_ms;
  unsigned auth_threads;        /* password hashing threads */
  unsigned max_auth_attempts;   /* failed logins per connection */
  uint64_t sessiond_wait_ms;    /* a login waits this long for the worker's link to
                                   sessiond (start, restart); 0: no wait */
  unsigned sessiond_wait_queue; /* logins a worker holds so */

  /* [ldap]: the password database when uri is set (else the users file) */
  char *ldap_uri;               /* ldap://host:port or ldaps://host:port */
  int ldap_starttls;            /* StartTLS on ldap:// */
  char *ldap_ca_file;           /* CA for ldaps/StartTLS; NULL: system store */
  char *ldap_bind_dn;           /* service account for search-then-bind */
  char *ldap_bind_password_file;/* its password; read by sessiond only */
  char *ldap_base;              /* search base */
  char *ldap_filter;            /* with %u (escaped per RFC 4515) */
  char *ldap_dn_template;       /* set: DN-template bind, %u escaped per RFC 4514 */
  char *ldap_login_attribute;   /* canonical login name attribute; NULL: none */
  char *ldap_backend_attribute; /* pinned backend attribute; NULL: none */
  unsigned ldap_pool_size;      /* connections */
  uint64_t ldap_timeout_ms;     /* every operation */
  unsigned ldap_max_inflight;   /* LDAP logins at once */
  unsigned ldap_queue_max;      /* logins waiting for a slot */
  uint64_t ldap_reconnect_max_ms; /* back-off ceiling */

  /* [redis]: shared auth cache, throttling counters; optional */
  char *redis_address;          /* host:port or /path/to/socket; NULL: no Redis */
  char *redis_password_file;
  uint64_t redis_timeout_ms;    /* every command */
  char *redis_sentinels;        /* "host:port host:port ..."; set: ask them for the master */
  char *redis_master_name;      /* the Sentinel master name */

  /* [cache] */
  char *cache_secret_file;      /* cluster secret for keyed hashes; needed with Redis */
  uint64_t cache_positive_ttl_ms;
  uint64_t cache_negative_ttl_ms;
  uint64_t cache_stale_max_ms;  /* positive entries serve this long past TTL while
                                   the database is down */
  unsigned cache_memory_entries;/* in-memory LRU size; 0: off */

  /* [throttle] */
  uint64_t throttle_window_ms;  /* failures counted over this */
  unsigned throttle_ip_failures;   /* per address (IPv6 /64) before refusal */
  unsigned throttle_user_failures; /* per user before refusal */
  uint64_t throttle_ban_ms;     /* refusal lasts */
  uint64_t throttle_max_delay_ms; /* growing delay ceiling */
  uint64_t throttle_known_ms;   /* a user's address stays known after a login; 0: off */

  /* [routing] */
  uint64_t seat_expire_ms;
  uint64_t backend_retry_ms;    /* a backend marked down is retried after */
  uint64_t seat_lease_ms;       /* a proxy's lease on a user's seat in Redis */
  /* [peers]: the other proxies of the cluster, asked while Redis is away */
  struct netaddr peers_listen;  /* UDP; len 0: not set */
  struct netaddr peers[CONFIG_MAX_PEERS];
  unsigned n_peers;
  uint64_t peers_timeout_ms;    /* every peer must answer within */
  uint64_t peers_claim_ms;      /* a peer's agreement holds this long */
  uint64_t refill_ms;           /* after Redis lost its data: no new seats for this long; 10s */
  int on_redis_down_refuse;     /* on_redis_down = refuse (else fallback) */
  int rehome;                   /* failures and moves re-home live sessions (with master_user) */
  char *master_user;            /* the backends' master user; "" (never NULL): no re-homing */
  char *master_password_file;   /* its password: only the path here, sessiond reads the file;
                                 * "" (never NULL) when unset */
  uint64_t rehome_timeout_ms;   /* a worker's bound on one whole re-home; 15s */
  unsigned drain_rate;          /* users a second a drain --migrate moves */
  uint64_t health_interval_ms;  /* active backend checks; 0: off */
  uint64_t health_timeout_ms;   /* connect + greeting */
  unsigned health_rise, health_fall; /* checks in a row to change verdict */
  int share_health;             /* own down/up verdicts published to, and heard from, peers */

  /* [limits] */
  size_t max_line;
  size_t max_literal;           /* pre-auth literal */
  unsigned max_bad_commands;
  uint64_t preauth_timeout_ms;  /* idle before login */
  uint64_t preauth_budget_ms;   /* total time before login */
  uint64_t idle_timeout_ms;     /* relay idle */
  uint64_t connect_timeout_ms;  /* backend connect */
  uint64_t login_timeout_ms;    /* backend greeting..tagged OK */
  unsigned max_connections;     /* per worker */
  unsigned listen_backlog;      /* connections the kernel queues per listener */
  unsigned max_connections_per_ip; /* per worker; 0 = no limit */
  unsigned max_sessions_per_user;  /* on this proxy; 0 = no limit */
  unsigned max_sessions_per_user_ip; /* per user and client address; 0 = none */
  int plaintext_auth;           /* allow LOGIN without TLS from anywhere */
  struct netmask trusted_nets[CONFIG_MAX_NETS]; /* may log in without TLS */
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
