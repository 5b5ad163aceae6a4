/* The configuration's keys: one table per section, in the order of the
 * reference documentation. A row is a key: its kind, its field, its default
 * as one would write it in the file (parsed by the same code as the file),
 * and its meaning, from which docs/configuration.md is generated
 * (`usher --config-reference`, checked by the test config_reference). */
#include "common/config_keys.h"

#include <string.h>

#include "common/config.h"
#include "common/username.h"
#include "common/util.h"

#define C(field) offsetof(struct config, field)
#define L(field) offsetof(struct config_listener, field)
#define B(field) offsetof(struct config_backend, field)
#define CERT(field) offsetof(struct config_certificate, field)
#define TABLE(name, keys) {name, keys, ARRAY_SIZE(keys), 0, 0, 0, 0, 0}
/* The loader finds a named record by the name its first field holds. */
_Static_assert(offsetof(struct config_listener, name) == 0, "a listener starts with its name");
_Static_assert(offsetof(struct config_backend, name) == 0, "a backend starts with its name");
_Static_assert(offsetof(struct config_certificate, name) == 0, "a certificate starts with its name");
#define NAMED(name, keys, arr, type, max) \
  {name, keys, ARRAY_SIZE(keys), 1, C(arr), C(n_##arr), sizeof(type), max}

static const struct config_key usher_keys[] = {
    {.key = "workers", .kind = CK_UINT, .offset = C(workers), .min = 1, .max = 256,
     .shown = "CPUs", .help = "proxy worker processes"},
    {.key = "drain_time", .kind = CK_DURATION, .offset = C(drain_ms), .def = "10s",
     .help = "on SIGTERM, relayed sessions may run on this long before `* BYE [UNAVAILABLE]`"},
    {.key = "worker_scheduling", .kind = CK_FUNC, .offset = C(worker_batch), .def = "batch",
     .parse = config_parse_worker_scheduling,
     .help = "`batch`: workers run as `SCHED_BATCH`, so that a worker woken by a packet does not "
             "preempt the other workers or sessiond (a context switch and cold caches every "
             "time); it waits for a free core or the next scheduler tick instead, about a "
             "millisecond at most, and only when every core is busy. About 12% less CPU per "
             "login with 2 workers ([bench/README.md](../bench/README.md)). `normal`: the "
             "default Linux policy"},
    {.key = "runtime_dir", .kind = CK_STRING, .offset = C(runtime_dir), .def = "/run/usher",
     .help = "`sessiond.sock` and `admin.sock` live here (mode 0700)"},
    {.key = "name", .kind = CK_STRING, .offset = C(name), .shown = "host name",
     .help = "this proxy's name in logs and in its Redis leases (unique per proxy)"},
    {.key = "log_level", .kind = CK_FUNC, .offset = C(log_level), .def = "info",
     .parse = config_parse_log_level, .help = "`error`, `warn`, `info`, `debug`"},
    {.key = "syslog", .kind = CK_BOOL, .offset = C(syslog), .def = "no",
     .help = "log to syslog (facility mail) instead of stderr"},
    {.key = "metrics", .kind = CK_ADDRESS, .offset = C(metrics),
     .help = "address for Prometheus metrics over HTTP (`GET /metrics`), e.g. `127.0.0.1:9100`; "
             "served by sessiond within the `[metrics]` limits, so bind it to loopback or a "
             "management network"},
    {.key = "worker_peer_check", .kind = CK_BOOL, .offset = C(worker_peer_check), .def = "yes",
     .help = "sessiond talks on `sessiond.sock` only to the master's own workers: the connecting "
             "process (its pid from the kernel, `SO_PEERCRED`) must be a child of the master, or "
             "it is closed at its `HELLO` and counted in `worker_refused`. `no` lets any process "
             "that may open the socket speak as a worker (tests); its claims are still checked "
             "(tickets, session holders)"},
    {.key = "user", .kind = CK_STRING, .offset = C(user),
     .help = "workers drop to this user (and its group) once the listeners, TLS keys and ticket "
             "keys are loaded; `sessiond.sock` is then theirs and `runtime_dir` becomes 0710 for "
             "that group (TLS keys must be readable by it for a reload to re-read them)"},
};

static const struct config_key metrics_keys[] = {
    {.key = "max_connections", .kind = CK_UINT, .offset = C(metrics_max_connections), .min = 1,
     .max = 100000, .def = "64",
     .help = "connections to the metrics endpoint at once; one more closes the oldest, so idle or "
             "slow connections can neither take sessiond's descriptors nor keep a scraper out"},
    {.key = "timeout", .kind = CK_DURATION, .offset = C(metrics_timeout_ms), .def = "5s",
     .help = "a metrics connection's whole life, request and answer (at least `100ms`): idle and "
             "slowloris clients are closed when it runs out"},
    {.key = "max_header_size", .kind = CK_SIZE, .offset = C(metrics_max_header_size),
     .min = 256, .max = 1 << 20, .def = "8k",
     .help = "longest request line and headers (256 to 1M); past it `431`. Only `GET` and `HEAD` "
             "of `/metrics`, one request per connection, no body"},
    {.key = "render_interval", .kind = CK_DURATION, .offset = C(metrics_render_interval_ms),
     .def = "1s",
     .help = "one render serves every scrape for this long, so scraping in a loop costs sessiond "
             "at most one render per interval (`0`: render each scrape)"},
};

static const struct config_key listener_keys[] = {
    {.key = "address", .kind = CK_ADDRESS, .offset = L(addr),
     .help = "`127.0.0.1:143`, `[::]:993`, `*:143` (numeric only); required"},
    {.key = "tls", .kind = CK_FUNC, .offset = L(tls), .def = "none",
     .parse = config_parse_tls_mode, .help = "`none`, `starttls`, `implicit`"},
    {.key = "proxy_protocol", .kind = CK_BOOL, .offset = L(proxy_protocol), .def = "no",
     .help = "`yes`: each connection starts with a PROXY v2 header from an L4 balancer; the "
             "client address in it is what usher logs, limits and throttles on, and forwards in "
             "`ID`"},
    {.key = "proxy_from", .kind = CK_NETS, .offset = L(proxy_from), .count = L(n_proxy_from),
     .help = "the balancers' networks (CIDR list), required with `proxy_protocol`; anyone else is "
             "closed without a word, and so is a bad header"},
};

static const struct config_key tls_keys[] = {
    {.key = "cert", .kind = CK_STRING, .offset = C(tls_cert),
     .help = "PEM chain, needed when a listener uses TLS; the certificate for clients that send "
             "no name or one no `[certificate]` matches"},
    {.key = "key", .kind = CK_STRING, .offset = C(tls_key),
     .help = "the private key of `cert` (PEM)"},
    {.key = "min_version", .kind = CK_STRING, .offset = C(tls_min_version), .def = "TLSv1.2",
     .parse = config_judge_min_version, .help = "or `TLSv1.3`"},
    {.key = "ciphers", .kind = CK_STRING, .offset = C(tls_ciphers),
     .shown = "`ECDHE+AES128+AESGCM:ECDHE+AESGCM:ECDHE+CHACHA20`",
     .help = "TLS 1.2 suites, in usher's order of preference"},
    {.key = "ciphersuites", .kind = CK_STRING, .offset = C(tls_ciphersuites),
     .shown = "`TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256`",
     .help = "TLS 1.3 suites, in usher's order of preference; AES-128-GCM first as in Mozilla's "
             "recommended server settings: its SHA-256 key schedule makes a handshake about 8% "
             "cheaper than AES-256-GCM's SHA-384 one"},
    {.key = "ticket_lifetime", .kind = CK_DURATION, .offset = C(tls_ticket_lifetime_ms),
     .def = "1h",
     .help = "session-ticket keys change every period (at least `1s`); a ticket resumes for one "
             "to two periods; `0`: no tickets"},
    {.key = "ticket_key_file", .kind = CK_STRING, .offset = C(tls_ticket_key_file),
     .shown = "random per start",
     .help = "secret (mode 0600, 16+ bytes) the ticket keys derive from; give a VIP pair or a "
             "cluster the same file and a client resumes its TLS session on any of them"},
    {.key = "release_after_handshake", .kind = CK_BOOL, .offset = C(tls_release), .def = "yes",
     .help = "TLS 1.3 sessions (AES-GCM, ChaCha20-Poly1305) leave OpenSSL once the handshake is "
             "done and run on usher's own record layer (about 0.2 KiB per session instead of "
             "OpenSSL's 14 KiB); `no` keeps OpenSSL for the whole session"},
};

static const struct config_key certificate_keys[] = {
    {.key = "cert", .kind = CK_STRING, .offset = CERT(cert),
     .help = "another certificate (PEM chain), served to clients whose SNI name it is valid for "
             "(its subjectAltName DNS names, wildcards included); read again on reload"},
    {.key = "key", .kind = CK_STRING, .offset = CERT(key),
     .help = "its private key (PEM); both are required"},
};

static const struct config_key backend_keys[] = {
    {.key = "address", .kind = CK_ADDRESS, .offset = B(addr),
     .help = "backend's address and port (numeric); required"},
    {.key = "weight", .kind = CK_UINT, .offset = B(weight), .min = 0, .max = 1000, .def = "1",
     .help = "share of new users (0..1000; 0 = no new users)"},
    {.key = "tls", .kind = CK_FUNC, .offset = B(tls), .def = "none",
     .parse = config_parse_tls_mode, .help = "`none`, `starttls`, `implicit` to the backend"},
    {.key = "tls_verify", .kind = CK_BOOL, .offset = B(tls_verify), .def = "yes",
     .help = "verify the backend's certificate"},
    {.key = "ca_file", .kind = CK_STRING, .offset = B(ca_file), .shown = "system store",
     .help = "CA for that verification"},
    {.key = "server_name", .kind = CK_STRING, .offset = B(server_name),
     .help = "SNI and name checked in the certificate (else its IP)"},
    {.key = "send_id", .kind = CK_BOOL, .offset = B(send_id), .def = "no",
     .help = "send `ID` with `x-originating-ip/port`, `x-connected-ip/port`, `x-session-id` (the "
             "backend must trust the proxy, e.g. Dovecot's `login_trusted_networks`)"},
};

static const struct config_key auth_keys[] = {
    {.key = "users_file", .kind = CK_STRING, .offset = C(users_file),
     .help = "the users file (the password database when `[ldap]` has no `uri`)"},
    {.key = "username_format", .kind = CK_STRING, .offset = C(username_format),
     .def = USERNAME_DEFAULT_FORMAT, .parse = config_judge_username_format,
     .help = "how a login name is normalized before anything uses it (trimmed of blanks first): "
             "`%u` the name, `%n` before the last `@`, `%d` after it, `%L…`/`%U…` lower/upper "
             "case; throttling, the cache, seats, logs and the backend all see the result"},
    {.key = "failure_delay", .kind = CK_DURATION, .offset = C(failure_delay_ms), .def = "2s",
     .help = "delay before a failed login is answered"},
    {.key = "threads", .kind = CK_UINT, .offset = C(auth_threads), .min = 1, .max = 64,
     .def = "2", .help = "sessiond threads that verify password hashes"},
    {.key = "max_attempts", .kind = CK_UINT, .offset = C(max_auth_attempts), .min = 1,
     .max = 100, .def = "3", .help = "failed logins per connection before `BYE`"},
    {.key = "sessiond_wait", .kind = CK_DURATION, .offset = C(sessiond_wait_ms), .def = "5s",
     .help = "how long a login waits for its worker's link to sessiond (while usher starts or "
             "sessiond restarts) before `NO [UNAVAILABLE]`; never longer than `login_timeout`; "
             "`0` = no wait"},
    {.key = "sessiond_wait_queue", .kind = CK_UINT, .offset = C(sessiond_wait_queue), .min = 0,
     .max = 1000000, .def = "1000",
     .help = "logins a worker holds so at once; the next get `NO [UNAVAILABLE]`"},
};

static const struct config_key ldap_keys[] = {
    {.key = "uri", .kind = CK_STRING, .offset = C(ldap_uri), .parse = config_judge_ldap_uri,
     .help = "`ldap://host:port` or `ldaps://host:port`; set: LDAP is the password database"},
    {.key = "starttls", .kind = CK_BOOL, .offset = C(ldap_starttls), .def = "no",
     .help = "StartTLS on `ldap://`"},
    {.key = "ca_file", .kind = CK_STRING, .offset = C(ldap_ca_file), .shown = "system store",
     .help = "CA that signs the LDAP server's certificate (always verified)"},
    {.key = "bind_dn", .kind = CK_STRING, .offset = C(ldap_bind_dn),
     .help = "service account for search-then-bind"},
    {.key = "bind_password_file", .kind = CK_STRING, .offset = C(ldap_bind_password_file),
     .help = "its password (the file mode 0600); required with `bind_dn`"},
    {.key = "base", .kind = CK_STRING, .offset = C(ldap_base),
     .help = "search-then-bind: where to search"},
    {.key = "filter", .kind = CK_STRING, .offset = C(ldap_filter), .shown = "`(uid=%u)`",
     .parse = config_judge_has_u,
     .help = "search-then-bind: what to search; `%u` is escaped per RFC 4515"},
    {.key = "dn_template", .kind = CK_STRING, .offset = C(ldap_dn_template),
     .parse = config_judge_has_u,
     .help = "DN-template bind instead, e.g. `uid=%u,ou=people,dc=example,dc=org` (RFC 4514 "
             "escaping)"},
    {.key = "login_attribute", .kind = CK_STRING, .offset = C(ldap_login_attribute),
     .help = "attribute holding the canonical login name (aliases share one user and one seat)"},
    {.key = "backend_attribute", .kind = CK_STRING, .offset = C(ldap_backend_attribute),
     .help = "attribute naming a backend the user is pinned to"},
    {.key = "pool_size", .kind = CK_UINT, .offset = C(ldap_pool_size), .min = 1, .max = 256,
     .def = "4", .help = "LDAP connections (one login at a time each)"},
    {.key = "timeout", .kind = CK_DURATION, .offset = C(ldap_timeout_ms), .def = "5s",
     .help = "every LDAP operation, and the longest wait in the queue"},
    {.key = "max_inflight", .kind = CK_UINT, .offset = C(ldap_max_inflight), .min = 1,
     .max = 4096, .shown = "`pool_size`",
     .help = "logins using LDAP at once (at most `pool_size`)"},
    {.key = "queue_max", .kind = CK_UINT, .offset = C(ldap_queue_max), .min = 0, .max = 1000000,
     .def = "256",
     .help = "logins waiting for LDAP; past it `NO [UNAVAILABLE] ... try again later`"},
    {.key = "reconnect_max", .kind = CK_DURATION, .offset = C(ldap_reconnect_max_ms),
     .def = "10s", .help = "reconnect back-off ceiling (from 100 ms, doubling)"},
};

static const struct config_key peers_keys[] = {
    {.key = "listen", .kind = CK_ADDRESS, .offset = C(peers_listen),
     .help = "UDP address this sessiond answers its peers on (needs `[cache] secret_file`, which "
             "seals every message)"},
    {.key = "peers", .kind = CK_FUNC, .offset = C(peers), .count = C(n_peers),
     .parse = config_parse_peers,
     .help = "the other proxies' `listen` addresses, space or comma separated: while Redis is "
             "away, a login for a user not held here is seated only where every peer agrees (see "
             "[operations.md](operations.md#seats-while-redis-is-away) and "
             "[architecture.md](architecture.md#seats))"},
    {.key = "timeout", .kind = CK_DURATION, .offset = C(peers_timeout_ms), .def = "300ms",
     .help = "every peer must answer within this, else the login is refused"},
    {.key = "claim_time", .kind = CK_DURATION, .offset = C(peers_claim_ms), .def = "5s",
     .help = "how long a peer's agreement (or question) binds it"},
};

static const struct config_key redis_keys[] = {
    {.key = "address", .kind = CK_STRING, .offset = C(redis_address),
     .parse = config_judge_redis_address,
     .help = "`127.0.0.1:6379` or a unix socket path; set: the auth cache, throttling, seats and "
             "operator states are shared"},
    {.key = "password_file", .kind = CK_STRING, .offset = C(redis_password_file),
     .help = "Redis AUTH password (mode 0600)"},
    {.key = "timeout", .kind = CK_DURATION, .offset = C(redis_timeout_ms), .def = "250ms",
     .help = "every command; a login never waits longer on Redis"},
    {.key = "sentinels", .kind = CK_STRING, .offset = C(redis_sentinels),
     .parse = config_judge_sentinels,
     .help = "`host:port host:port ...`: ask these Sentinels for the master (instead of "
             "`address`)"},
    {.key = "master_name", .kind = CK_STRING, .offset = C(redis_master_name),
     .shown = "`usher`", .help = "the Sentinel master name"},
};

static const struct config_key cache_keys[] = {
    {.key = "secret_file", .kind = CK_STRING, .offset = C(cache_secret_file),
     .shown = "random per process",
     .help = "cluster secret (mode 0600, 16+ bytes) keying every hash stored; required with "
             "`[redis]` and `[peers]`"},
    {.key = "positive_ttl", .kind = CK_DURATION, .offset = C(cache_positive_ttl_ms),
     .def = "15m", .help = "a verified password is trusted this long"},
    {.key = "negative_ttl", .kind = CK_DURATION, .offset = C(cache_negative_ttl_ms), .def = "1m",
     .help = "a refused password is refused from the cache this long"},
    {.key = "stale_max", .kind = CK_DURATION, .offset = C(cache_stale_max_ms), .def = "1h",
     .help = "past `positive_ttl`, still accepted while the database is down"},
    {.key = "memory_entries", .kind = CK_UINT, .offset = C(cache_memory_entries), .min = 0,
     .max = 10000000, .def = "100000", .help = "in-memory LRU size (0: off)"},
};

static const struct config_key throttle_keys[] = {
    {.key = "window", .kind = CK_DURATION, .offset = C(throttle_window_ms), .def = "15m",
     .help = "failures are counted over this"},
    {.key = "ip_failures", .kind = CK_UINT, .offset = C(throttle_ip_failures), .min = 0,
     .max = 1000000, .def = "50",
     .help = "failures from one address (IPv6: its /64) before refusal (0: never)"},
    {.key = "user_failures", .kind = CK_UINT, .offset = C(throttle_user_failures), .min = 0,
     .max = 1000000, .def = "10",
     .help = "failures for one login name before refusal (0: never)"},
    {.key = "ban_time", .kind = CK_DURATION, .offset = C(throttle_ban_ms), .def = "15m",
     .help = "how long a refusal lasts"},
    {.key = "max_delay", .kind = CK_DURATION, .offset = C(throttle_max_delay_ms), .def = "15s",
     .help = "failed-login delay grows from `failure_delay` doubling up to this"},
    {.key = "known_address_ttl", .kind = CK_DURATION, .offset = C(throttle_known_ms),
     .def = "30d",
     .help = "an address a user logged in from stays *known* for the user this long; bans of the "
             "user or the address do not apply to it (`0`: they do)"},
};

static const struct config_key routing_keys[] = {
    {.key = "seat_expire", .kind = CK_DURATION, .offset = C(seat_expire_ms), .def = "15m",
     .help = "a seat outlives the user's last session (anywhere) by this"},
    {.key = "backend_retry", .kind = CK_DURATION, .offset = C(backend_retry_ms), .def = "30s",
     .help = "a backend that failed a connect gets no new seats for this long, or until "
             "`health_rise` health checks pass after the failure"},
    {.key = "seat_lease", .kind = CK_DURATION, .offset = C(seat_lease_ms), .def = "60s",
     .help = "a proxy's lease on a seat in Redis, renewed every third of it"},
    {.key = "refill_time", .kind = CK_DURATION, .offset = C(refill_ms), .def = "10s",
     .help = "after a proxy finds Redis to be another server process (a restart, maybe empty; a "
             "Sentinel failover), no seat is created for this long while every proxy writes its "
             "seats back; a login for a user with no seat waits (asking every 100 ms) at most "
             "this long; so does a login for a user just moved to another backend, until every "
             "proxy that held the old seat has closed its sessions there"},
    {.key = "rehome", .kind = CK_BOOL, .offset = C(rehome), .def = "yes",
     .help = "a backend failure or a move re-homes the user's live sessions (the client keeps "
             "its connection; the worker logs in at the new backend as `master_user` on the "
             "user's behalf and restores the session's state) instead of closing them; needs "
             "`master_user`"},
    {.key = "master_user", .kind = CK_STRING, .offset = C(master_user),
     .help = "the backends' master user (Dovecot: a passdb with `master=yes`), for re-homing: "
             "SASL PLAIN with authorization identity the user; unset: re-homing is off and "
             "moves close sessions"},
    {.key = "master_password_file", .kind = CK_STRING, .offset = C(master_password_file),
     .help = "its password (the file mode 0600), read by sessiond only at its start; required "
             "with `master_user`"},
    {.key = "rehome_timeout", .kind = CK_DURATION, .offset = C(rehome_timeout_ms), .def = "15s",
     .help = "a worker's bound on one whole re-home (the new route, the login at the new "
             "backend, the state restored; at least `1s`); the client's commands wait "
             "meanwhile, and past it the session ends with `* BYE [UNAVAILABLE]`. sessiond's "
             "own wait for the route is bounded by `refill_time`, as a login's is"},
    {.key = "drain_rate", .kind = CK_UINT, .offset = C(drain_rate), .def = "50", .min = 1,
     .max = 100000,
     .help = "`usherctl backend NAME drain --migrate` moves this many users a second off the "
             "backend (`--rate N` overrides it for one drain)"},
    {.key = "on_redis_down", .kind = CK_FUNC, .offset = C(on_redis_down_refuse),
     .def = "refuse", .parse = config_parse_on_redis_down,
     .help = "while Redis is away: `refuse` lets in only users who hold sessions on this proxy "
             "(on their seat), and with `[peers]` those every peer agrees on; others get "
             "`NO [UNAVAILABLE]`; `fallback` routes by the consistent hash and writes seats back "
             "later, and can seat one user on two backends in a cluster"},
    {.key = "health_interval", .kind = CK_DURATION, .offset = C(health_interval_ms),
     .def = "5s", .help = "active check of each backend (connect + greeting); `0`: off"},
    {.key = "health_timeout", .kind = CK_DURATION, .offset = C(health_timeout_ms), .def = "5s",
     .help = "a check slower than this fails"},
    {.key = "health_rise", .kind = CK_UINT, .offset = C(health_rise), .min = 1, .max = 100,
     .def = "2", .help = "checks in a row that make a backend healthy"},
    {.key = "health_fall", .kind = CK_UINT, .offset = C(health_fall), .min = 1, .max = 100,
     .def = "3", .help = "checks in a row that make a backend unhealthy"},
    {.key = "share_health", .kind = CK_BOOL, .offset = C(share_health), .def = "yes",
     .help = "with `[redis]`: this proxy's own verdict that a backend is down (failed checks or "
             "connects) is published to the other proxies and kept in Redis for "
             "`backend_retry`, and theirs are heeded here: a peer's verdict holds for "
             "`backend_retry` or until this proxy's own `health_rise` checks pass, or the peer "
             "sees the backend up again"},
};

static const struct config_key limits_keys[] = {
    {.key = "max_line", .kind = CK_SIZE, .offset = C(max_line), .min = 512, .max = 1 << 20,
     .def = "8k", .help = "longest pre-auth command line"},
    {.key = "max_literal", .kind = CK_SIZE, .offset = C(max_literal), .min = 256,
     .max = 1 << 20, .def = "8k", .help = "largest pre-auth literal (`{n}` and `{n+}`)"},
    {.key = "max_bad_commands", .kind = CK_UINT, .offset = C(max_bad_commands), .min = 1,
     .max = 1000, .def = "10", .help = "unknown/malformed commands before `BYE`"},
    {.key = "preauth_timeout", .kind = CK_DURATION, .offset = C(preauth_timeout_ms),
     .def = "60s", .help = "idle time before login"},
    {.key = "preauth_budget", .kind = CK_DURATION, .offset = C(preauth_budget_ms), .def = "3m",
     .help = "total time allowed to log in (slowloris)"},
    {.key = "idle_timeout", .kind = CK_DURATION, .offset = C(idle_timeout_ms), .def = "30m",
     .help = "idle time of an established session"},
    {.key = "connect_timeout", .kind = CK_DURATION, .offset = C(connect_timeout_ms),
     .def = "5s", .help = "backend connect"},
    {.key = "login_timeout", .kind = CK_DURATION, .offset = C(login_timeout_ms), .def = "30s",
     .help = "backend greeting to logged in; also sessiond's answer"},
    {.key = "max_connections", .kind = CK_UINT, .offset = C(max_connections), .min = 1,
     .max = 1000000, .def = "10000", .help = "per worker"},
    {.key = "listen_backlog", .kind = CK_UINT, .offset = C(listen_backlog), .min = 16,
     .max = 65535, .def = "4096",
     .help = "connections the kernel queues per listener until a worker accepts them (at most "
             "`net.core.somaxconn`); needs a restart"},
    {.key = "max_connections_per_ip", .kind = CK_UINT, .offset = C(max_connections_per_ip),
     .min = 0, .max = 1000000, .def = "100",
     .help = "per worker and client address (0 = no limit)"},
    {.key = "max_sessions_per_user", .kind = CK_UINT, .offset = C(max_sessions_per_user),
     .min = 0, .max = 1000000, .def = "100",
     .help = "logged-in sessions of one user on this proxy; past it `NO [LIMIT]` (0 = none)"},
    {.key = "max_sessions_per_user_ip", .kind = CK_UINT, .offset = C(max_sessions_per_user_ip),
     .min = 0, .max = 1000000, .def = "50",
     .help = "the same per user and client address (0 = none)"},
    {.key = "plaintext_auth", .kind = CK_BOOL, .offset = C(plaintext_auth), .def = "no",
     .help = "allow LOGIN/AUTHENTICATE without TLS from anywhere"},
    {.key = "trusted_networks", .kind = CK_NETS, .offset = C(trusted_nets),
     .count = C(n_trusted_nets), .def = "127.0.0.0/8 ::1/128",
     .help = "may log in without TLS"},
};

const struct config_section config_sections[] = {
    TABLE("usher", usher_keys),
    TABLE("metrics", metrics_keys),
    NAMED("listener", listener_keys, listeners, struct config_listener, CONFIG_MAX_LISTENERS),
    TABLE("tls", tls_keys),
    NAMED("certificate", certificate_keys, certificates, struct config_certificate,
          CONFIG_MAX_CERTIFICATES),
    NAMED("backend", backend_keys, backends, struct config_backend, CONFIG_MAX_BACKENDS),
    TABLE("auth", auth_keys),
    TABLE("ldap", ldap_keys),
    TABLE("peers", peers_keys),
    TABLE("redis", redis_keys),
    TABLE("cache", cache_keys),
    TABLE("throttle", throttle_keys),
    TABLE("routing", routing_keys),
    TABLE("limits", limits_keys),
};
const size_t config_n_sections = ARRAY_SIZE(config_sections);

const struct config_key *config_key_find(const struct config_section *s, const char *key) {
  for (size_t i = 0; i < s->n_keys; i++)
    if (!strcmp(s->keys[i].key, key)) return &s->keys[i];
  return NULL;
}
