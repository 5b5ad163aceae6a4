/* usher-loadgen: drives many IMAP sessions at once against a proxy and
 * reports throughput and latency percentiles. Single-threaded (libevent),
 * so one core of load generation goes a long way.
 *
 *   usher-loadgen --port N [--host 127.0.0.1] [--tls none|starttls|implicit]
 *                 [--tls-resume] --scenario login|fetch|idle --sessions N
 *                 [--concurrency C] [--user-prefix user] [--user-count K]
 *                 [--password-format pw-%02d | --password P]
 *                 [--fetch-size BYTES] [--fetch-loops N] [--idle-hold SECONDS]
 *                 [--timeout SECONDS] [--tls-suites LIST]
 * Older spellings still accepted: --resume, --users K, --user-format FMT
 * (a printf format for the whole name), --hold SECONDS.
 *
 * Scenarios: login = connect, (STARTTLS,) LOGIN, SELECT INBOX, LOGOUT;
 * fetch = login, SELECT, then FETCH 1 BODY[] fetch-loops times, checking
 * that each literal is exactly fetch-size bytes; idle = login, SELECT, IDLE
 * for every session at once, then "IDLE_READY n=N" on stdout and a hold.
 * Session i logs in as prefix + "%02d" of (i % K + 1), the password being
 * the password format applied to the same number.
 * C is the number of sessions in progress at once (parked IDLE sessions do
 * not count, so the idle scenario ramps C at a time).
 * --tls-suites: the TLS 1.3 suites the client offers, in its order
 * (OpenSSL's default puts AES-256-GCM first; NSS, Apple's and BoringSSL's
 * clients put AES-128-GCM first).
 * Every session that did not complete is printed as "lost reason=STEP/PROBLEM
 * sessions=N" lines; the last line on stdout is the key=value figures;
 * exit 0 only when no session was lost. */
#include <getopt.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

enum tls_mode { T_NONE, T_STARTTLS, T_IMPLICIT };
enum scenario { S_LOGIN, S_FETCH, S_IDLE };
enum step { GREETING, STARTTLS_OK, LOGIN_OK, SELECT_OK, FETCH_DATA, FETCH_OK, IDLE_PLUS, PARKED,
            LOGOUT_OK };

static struct {
  const char *host;
  int port;
  enum tls_mode tls;
  int resume;
  enum scenario scenario;
  unsigned sessions, concurrency, users, fetch_loops, hold_s, timeout_s;
  char user_fmt[128];
  const char *pass_fmt, *password, *tls_suites;
  size_t fetch_size;
} opt = {"127.0.0.1", 0, T_NONE, 0, S_LOGIN, 100, 10, 40, 1, 5, 30, "user%02d", "pw-%02d", NULL,
         NULL, 102400};

static struct event_base *base;
static SSL_CTX *ctx;
static SSL_SESSION *saved_session;     /* for --tls-resume */
static struct sockaddr_storage target;
static socklen_t target_len;
static unsigned started, finished, ok, failed, parked, complaints, resumed, nlat;
static int refill_pending, idle_ready;
static uint32_t *latency_us;           /* one per successful session */
static unsigned long long bytes;       /* FETCH literal bytes received */
static struct timespec t_start;

/* One session: its connection, where it is in the script, and its clock. */
struct session {
  unsigned id;
  struct bufferevent *bev;
  enum step step;
  unsigned loops;          /* FETCHes done */
  size_t literal_left;     /* FETCH literal bytes still to come */
  struct timespec t0;
};

static double since(const struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)(now.tv_sec - t->tv_sec) + (double)(now.tv_nsec - t->tv_nsec) / 1e9;
}

static void record_latency(struct session *s) {
  if (nlat < opt.sessions) latency_us[nlat++] = (uint32_t)(since(&s->t0) * 1e6);
}

static void refill(evutil_socket_t fd, short what, void *arg);

/* New sessions start from the loop, never from inside another session's
 * callback: no recursion when connects fail on the spot. */
static void schedule_refill(void) {
  static const struct timeval now = {0, 0};
  if (refill_pending || started == opt.sessions) return;
  refill_pending = 1;
  event_base_once(base, -1, EV_TIMEOUT, refill, NULL, &now);
}

/* In the idle scenario: once every session is parked or has failed, say
 * so and hold them for --idle-hold seconds. */
static void check_idle_ready(void) {
  if (opt.scenario != S_IDLE || idle_ready || parked + failed < opt.sessions) return;
  idle_ready = 1;
  printf("IDLE_READY n=%u\n", parked);
  fflush(stdout);
  struct timeval tv = {opt.hold_s, 0};
  event_base_loopexit(base, parked ? &tv : NULL);
}

/* With --tls-resume keep the newest session; mark this connection shut
 * down cleanly, or OpenSSL would declare the session unresumable on free. */
static void keep_tls_session(SSL *ssl) {
  if (SSL_session_reused(ssl)) resumed++;
  if (!opt.resume) return;
  SSL_set_shutdown(ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_SESSION *sess = SSL_get1_session(ssl);
  if (!sess) return;
  if (saved_session) SSL_SESSION_free(saved_session);
  saved_session = sess;
}

/* Every session that did not complete, counted by why: the step it was at
 * and the problem's first words. A figure measured over lost sessions is
 * no figure, so the summary names them all (a few distinct reasons at
 * most; the rest are counted under "other"). */
#define MAX_REASONS 32
static struct { char what[80]; unsigned n; } reasons[MAX_REASONS];
static unsigned n_reasons;
static const char *const step_names[] = {"greeting", "starttls", "login", "select", "fetch_data",
                                         "fetch", "idle", "parked", "logout"};

static void count_lost(const struct session *s, const char *problem) {
  char what[80];
  size_t plen = strcspn(problem, ":(0123456789");
  snprintf(what, sizeof what, "%s/%.*s", step_names[s->step], (int)plen, problem);
  for (char *p = what; *p; p++)
    if (*p == ' ' || *p == ',' || *p == '=') *p = '_';
  unsigned i;
  for (i = 0; i < n_reasons; i++)
    if (!strcmp(reasons[i].what, what)) break;
  if (i == n_reasons && n_reasons < MAX_REASONS) snprintf(reasons[n_reasons++].what, 80, "%s", what);
  else if (i == n_reasons) i = MAX_REASONS - 1;   /* the last slot takes the rest */
  reasons[i].n++;
}

/* Ends a session, failed when problem is set, and makes room for the next. */
static void session_end(struct session *s, const char *problem) {
  if (problem) {
    failed++;
    count_lost(s, problem);
    if (complaints++ < 10) fprintf(stderr, "session %u: %s\n", s->id, problem);
    if (s->step == PARKED) parked--;
  } else {
    ok++;
    record_latency(s);
  }
  if (s->bev) {
    SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
    if (ssl && !problem) keep_tls_session(ssl);
    bufferevent_free(s->bev);
  }
  free(s);
  finished++;
  schedule_refill();
  if (finished == opt.sessions) event_base_loopexit(base, NULL);
  else check_idle_ready();
}

static void sendf(struct session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sendf(struct session *s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  evbuffer_add_vprintf(bufferevent_get_output(s->bev), fmt, ap);
  va_end(ap);
}

/* A client SSL object, primed with the saved session when resuming. Each
 * connection gets its own copy: OpenSSL's client uses a TLS 1.3 session
 * once, and one object shared by connections in flight together was
 * spoilt by the first to resume, so that the others offered no ticket
 * (13% of "resumed" logins were full handshakes with 2 usher workers). */
static SSL *new_ssl(void) {
  SSL *ssl = SSL_new(ctx);
  SSL_set_tlsext_host_name(ssl, "localhost");
  if (opt.resume && saved_session) {
    SSL_SESSION *copy = SSL_SESSION_dup(saved_session);
    SSL_set_session(ssl, copy ? copy : saved_session);
    SSL_SESSION_free(copy);
  }
  return ssl;
}

static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

/* Callbacks, the per-step timeout and a larger read size for a bufferevent. */
static void bev_setup(struct session *s) {
  struct timeval tv = {opt.timeout_s, 0};
  bufferevent_setcb(s->bev, on_read, NULL, on_event, s);
  bufferevent_set_timeouts(s->bev, &tv, NULL);
  bufferevent_set_max_single_read(s->bev, 256 * 1024);
  bufferevent_enable(s->bev, EV_READ | EV_WRITE);
}

/* a1 LOGIN "user" "password" for this session's user number. */
static void send_login(struct session *s) {
  char user[160], pass[160];
  unsigned n = s->id % opt.users + 1;
  snprintf(user, sizeof user, opt.user_fmt, n);
  if (opt.password) snprintf(pass, sizeof pass, "%s", opt.password);
  else snprintf(pass, sizeof pass, opt.pass_fmt, n);
  sendf(s, "a1 LOGIN \"%s\" \"%s\"\r\n", user, pass);
  s->step = LOGIN_OK;
}

/* STARTTLS accepted: put TLS over the plain connection, then log in. */
static void start_tls(struct session *s) {
  /* From here the filter's timeouts are the session's. The plain
   * bufferevent under it would otherwise keep its own read timeout, which
   * nothing resets once the session idles (a backend that sends nothing
   * in IDLE): every STARTTLS session parked longer than --timeout was
   * counted lost ("parked/timeout") through any proxy. */
  bufferevent_set_timeouts(s->bev, NULL, NULL);
  s->bev = bufferevent_openssl_filter_new(base, s->bev, new_ssl(), BUFFEREVENT_SSL_CONNECTING,
                                          BEV_OPT_CLOSE_ON_FREE);
  bev_setup(s);
  send_login(s);
}

/* After SELECT (and after each FETCH): the scenario's next command. */
static void after_select(struct session *s) {
  if (opt.scenario == S_FETCH && s->loops < opt.fetch_loops) {
    sendf(s, "f%u FETCH 1 BODY[]\r\n", s->loops);
    s->step = FETCH_DATA;
  } else if (opt.scenario == S_IDLE) {
    sendf(s, "i IDLE\r\n");
    s->step = IDLE_PLUS;
  } else {
    sendf(s, "a3 LOGOUT\r\n");
    s->step = LOGOUT_OK;
  }
}

/* A tagged line must be "TAG OK"; untagged lines are passed over. Returns
 * 1 for OK, 0 for untagged, -1 for anything else (NO, BAD, other tag). */
static int tagged_ok(const char *line, const char *tag) {
  if (line[0] == '*') return 0;
  size_t n = strlen(tag);
  return !strncmp(line, tag, n) && !strncmp(line + n, " OK", 3) ? 1 : -1;
}

/* The untagged FETCH line announcing the body literal; checks its size. */
static const char *fetch_header(struct session *s, const char *line) {
  const char *brace = strrchr(line, '{');
  if (line[0] != '*') return "FETCH refused";
  if (!brace) return NULL;   /* some other untagged response */
  s->literal_left = strtoull(brace + 1, NULL, 10);
  if (s->literal_left != opt.fetch_size) return "FETCH literal of the wrong size";
  if (!s->literal_left) s->step = FETCH_OK;
  return NULL;
}

/* The IDLE continuation: park the session, let another one start. */
static const char *idle_parked(struct session *s, const char *line) {
  if (line[0] == '*') return NULL;
  if (line[0] != '+') return "IDLE refused";
  s->step = PARKED;
  bufferevent_set_timeouts(s->bev, NULL, NULL);
  record_latency(s);
  parked++;
  schedule_refill();
  check_idle_ready();
  return NULL;
}

/* One line from the server; returns a problem, "" when the session should
 * stop reading (ended, or its bufferevent changed), or NULL. */
static const char *on_line(struct session *s, const char *line) {
  char tag[16];
  switch (s->step) {
  case GREETING:
    if (strncmp(line, "* OK", 4)) return "bad greeting";
    if (opt.tls != T_STARTTLS) send_login(s);
    else {
      sendf(s, "a STARTTLS\r\n");
      s->step = STARTTLS_OK;
    }
    return NULL;
  case STARTTLS_OK:
    switch (tagged_ok(line, "a")) {
    case 0: return NULL;
    case -1: return "STARTTLS refused";
    }
    start_tls(s);
    return "";
  case LOGIN_OK:
    switch (tagged_ok(line, "a1")) {
    case 0: return NULL;
    case -1: return "LOGIN refused";
    }
    sendf(s, "a2 SELECT INBOX\r\n");
    s->step = SELECT_OK;
    return NULL;
  case SELECT_OK:
    switch (tagged_ok(line, "a2")) {
    case 0: return NULL;
    case -1: return "SELECT refused";
    }
    after_select(s);
    return NULL;
  case FETCH_DATA:
    return fetch_header(s, line);
  case FETCH_OK:
    if (line[0] == ')' || line[0] == '*') return NULL;
    snprintf(tag, sizeof tag, "f%u", s->loops);
    if (tagged_ok(line, tag) != 1) return "FETCH failed";
    s->loops++;
    after_select(s);
    return NULL;
  case IDLE_PLUS:
    return idle_parked(s, line);
  case PARKED:
    return NULL;   /* EXISTS and the like */
  case LOGOUT_OK:
    switch (tagged_ok(line, "a3")) {
    case 0: return NULL;
    case -1: return "LOGOUT refused";
    }
    session_end(s, NULL);
    return "";
  }
  return NULL;
}

/* Drains FETCH literal bytes (counting them) and handles whole lines. */
static void on_read(struct bufferevent *bev, void *arg) {
  struct session *s = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  for (;;) {
    if (s->step == FETCH_DATA && s->literal_left) {
      size_t n = evbuffer_get_length(in);
      size_t d = n < s->literal_left ? n : s->literal_left;
      evbuffer_drain(in, d);
      s->literal_left -= d;
      bytes += d;
      if (s->literal_left) return;
      s->step = FETCH_OK;
    }
    char *line = evbuffer_readln(in, NULL, EVBUFFER_EOL_CRLF);
    if (!line) return;
    const char *problem = on_line(s, line);
    free(line);
    if (problem) {
      if (*problem) session_end(s, problem);
      return;
    }
  }
}

/* Why a connection went wrong, for the message. */
static const char *error_text(struct bufferevent *bev, short what) {
  static char buf[160];
  unsigned long e = bufferevent_get_openssl_error(bev);
  if (what & BEV_EVENT_TIMEOUT) return "timeout";
  if (what & BEV_EVENT_EOF) return "closed by server";
  if (e) {
    snprintf(buf, sizeof buf, "TLS error: %s", ERR_reason_error_string(e));
    return buf;
  }
  snprintf(buf, sizeof buf, "connection error: %s",
           evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
  return buf;
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  if (what & BEV_EVENT_CONNECTED) return;
  session_end(arg, error_text(bev, what));
}

/* Opens one more session: a connection, plain or TLS from the start. */
static void start_session(void) {
  struct session *s = calloc(1, sizeof *s);
  s->id = started++;
  clock_gettime(CLOCK_MONOTONIC, &s->t0);
  if (opt.tls == T_IMPLICIT)
    s->bev = bufferevent_openssl_socket_new(base, -1, new_ssl(), BUFFEREVENT_SSL_CONNECTING,
                                            BEV_OPT_CLOSE_ON_FREE);
  else
    s->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (!s->bev) {
    session_end(s, "out of memory");
    return;
  }
  bev_setup(s);
  if (bufferevent_socket_connect(s->bev, (struct sockaddr *)&target, (int)target_len) != 0)
    session_end(s, "connect failed");
}

/* Starts sessions until C are in progress (parked ones not counted). */
static void refill(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what; (void)arg;
  refill_pending = 0;
  while (started < opt.sessions && started - finished - parked < opt.concurrency) start_session();
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* The p-quantile of the sorted latencies, in milliseconds. */
static double pct(double p) {
  if (!nlat) return 0;
  size_t i = (size_t)(p * (nlat - 1) + 0.5);
  return latency_us[i] / 1000.0;
}

/* --user-prefix P: names are P followed by two digits; % in P is escaped. */
static void set_user_prefix(const char *prefix) {
  size_t j = 0;
  for (const char *p = prefix; *p && j < sizeof opt.user_fmt - 6; p++) {
    if (*p == '%') opt.user_fmt[j++] = '%';
    opt.user_fmt[j++] = *p;
  }
  snprintf(opt.user_fmt + j, sizeof opt.user_fmt - j, "%%02d");
}

static unsigned parse_enum(const char *arg, const char *const *names, unsigned n, const char *what) {
  for (unsigned i = 0; i < n; i++)
    if (!strcmp(arg, names[i])) return i;
  fprintf(stderr, "usher-loadgen: unknown %s '%s'\n", what, arg);
  exit(2);
}

static void parse_args(int argc, char **argv) {
  static const char *const tls_names[] = {"none", "starttls", "implicit"};
  static const char *const scen_names[] = {"login", "fetch", "idle"};
  static const struct option longs[] = {
      {"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"tls", 1, 0, 't'}, {"tls-resume", 0, 0, 'r'},
      {"resume", 0, 0, 'r'}, {"scenario", 1, 0, 's'}, {"sessions", 1, 0, 'n'},
      {"concurrency", 1, 0, 'c'}, {"user-count", 1, 0, 'u'}, {"users", 1, 0, 'u'},
      {"user-prefix", 1, 0, 'x'}, {"user-format", 1, 0, 'U'}, {"password-format", 1, 0, 'P'},
      {"password", 1, 0, 'w'}, {"fetch-size", 1, 0, 'f'}, {"fetch-loops", 1, 0, 'l'},
      {"idle-hold", 1, 0, 'h'}, {"hold", 1, 0, 'h'}, {"timeout", 1, 0, 'T'},
      {"tls-suites", 1, 0, 'S'}, {0, 0, 0, 0}};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (ch) {
    case 'H': opt.host = optarg; break;
    case 'p': opt.port = atoi(optarg); break;
    case 't': opt.tls = (enum tls_mode)parse_enum(optarg, tls_names, 3, "--tls"); break;
    case 'r': opt.resume = 1; break;
    case 's': opt.scenario = (enum scenario)parse_enum(optarg, scen_names, 3, "--scenario"); break;
    case 'n': opt.sessions = (unsigned)atoi(optarg); break;
    case 'c': opt.concurrency = (unsigned)atoi(optarg); break;
    case 'u': opt.users = (unsigned)atoi(optarg); break;
    case 'x': set_user_prefix(optarg); break;
    case 'U': snprintf(opt.user_fmt, sizeof opt.user_fmt, "%s", optarg); break;
    case 'P': opt.pass_fmt = optarg; break;
    case 'w': opt.password = optarg; break;
    case 'f': opt.fetch_size = strtoull(optarg, NULL, 10); break;
    case 'l': opt.fetch_loops = (unsigned)atoi(optarg); break;
    case 'h': opt.hold_s = (unsigned)atoi(optarg); break;
    case 'T': opt.timeout_s = (unsigned)atoi(optarg); break;
    case 'S': opt.tls_suites = optarg; break;
    default: exit(2);
    }
  }
  if (opt.port <= 0 || opt.port > 65535 || !opt.sessions || !opt.users || !opt.concurrency) {
    fprintf(stderr, "usher-loadgen: --port, and positive --sessions, --concurrency and "
                    "--user-count are needed\n");
    exit(2);
  }
}

/* Resolves --host/--port once, up front. */
static void resolve_target(void) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
  char port[16];
  snprintf(port, sizeof port, "%d", opt.port);
  int rc = getaddrinfo(opt.host, port, &hints, &ai);
  if (rc) {
    fprintf(stderr, "usher-loadgen: %s: %s\n", opt.host, gai_strerror(rc));
    exit(2);
  }
  memcpy(&target, ai->ai_addr, ai->ai_addrlen);
  target_len = ai->ai_addrlen;
  freeaddrinfo(ai);
}

/* As many descriptors as the hard limit allows. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

/* A client TLS context that verifies nothing: this is a benchmark. */
static void tls_setup(void) {
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
  if (opt.tls_suites && SSL_CTX_set_ciphersuites(ctx, opt.tls_suites) != 1) {
    fprintf(stderr, "usher-loadgen: bad --tls-suites '%s'\n", opt.tls_suites);
    exit(2);
  }
}

/* The one summary line: figures as key=value. */
static void report(void) {
  double elapsed = since(&t_start);
  qsort(latency_us, nlat, sizeof *latency_us, cmp_u32);
  if (opt.scenario == S_IDLE) ok = parked;
  for (unsigned i = 0; i < n_reasons; i++)   /* before the summary, which stays last */
    printf("lost reason=%s sessions=%u\n", reasons[i].what, reasons[i].n);
  if (opt.scenario == S_IDLE && parked < opt.sessions && !n_reasons)
    printf("lost reason=never_parked sessions=%u\n", opt.sessions - parked);
  printf("sessions=%u ok=%u failed=%u elapsed_s=%.3f rate=%.1f p50_ms=%.2f p90_ms=%.2f "
         "p99_ms=%.2f max_ms=%.2f bytes=%llu resumed=%u\n",
         opt.sessions, ok, failed, elapsed, ok / elapsed, pct(0.5), pct(0.9), pct(0.99),
         pct(1.0), bytes, resumed);
  fflush(stdout);
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  resolve_target();
  raise_nofile();
  base = event_base_new();
  tls_setup();
  latency_us = calloc(opt.sessions, sizeof *latency_us);
  clock_gettime(CLOCK_MONOTONIC, &t_start);
  refill(-1, 0, NULL);
  event_base_dispatch(base);
  report();
  return failed || (opt.scenario == S_IDLE && ok < opt.sessions) ? 1 : 0;
}
