/* usher-epoll-client: IMAP sessions over TLS the way a hand-written fast
 * client drives them, not the way libevent does: non-blocking sockets,
 * epoll, SSL_connect/SSL_read/SSL_write called straight on the socket with
 * their WANT_READ/WANT_WRITE answers handled, many sessions in one thread,
 * and commands pipelined. usher-loadgen (libevent's OpenSSL bufferevents)
 * never lost a session; a client of this kind was reported to (issue 21:
 * "unexpected eof while reading" right after LOGIN's OK). This is that
 * client, to try it.
 *
 *   usher-epoll-client --port N [--tls implicit|starttls] [--sessions N]
 *                      [--concurrency C] [--pipeline MODE] [--idle-ms MS]
 *                      [--user-count K] [--password P] [--timeout S]
 * --pipeline: wait (each command waits for the previous answer, the
 * default), one (LOGIN and SELECT in one SSL_write, so one record), two
 * (LOGIN and SELECT in two SSL_writes back to back, two records, often
 * one segment), all (LOGIN, SELECT and LOGOUT in one SSL_write), early
 * (implicit TLS: LOGIN and SELECT right after the handshake, before the
 * greeting has been read).
 * --idle-ms: after SELECT, IDLE for that long, then DONE and LOGOUT.
 * Each session: connect, (STARTTLS,) handshake, greeting, LOGIN, SELECT
 * INBOX, (IDLE,) LOGOUT; it must see every tagged OK and the BYE. Lost
 * sessions are printed as "lost reason=STEP/PROBLEM sessions=N"; the last
 * line is key=value figures; exit 0 only when none was lost. */
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

enum pipeline { P_WAIT, P_ONE, P_TWO, P_ALL, P_EARLY };
enum step { CONNECTING, PLAIN_GREETING, STARTTLS_OK, HANDSHAKE, GREETING, LOGIN_OK, SELECT_OK,
            IDLE_PLUS, IDLING, IDLE_OK, LOGOUT_OK, DONE };
static const char *const step_names[] = {"connect", "greeting", "starttls", "handshake",
                                         "greeting", "login", "select", "idle", "idling",
                                         "idle_done", "logout", "done"};

static struct {
  int port, starttls;
  unsigned sessions, concurrency, users, idle_ms, timeout_s;
  enum pipeline pipeline;
  const char *password;
} opt = {0, 0, 1000, 50, 40, 0, 30, P_WAIT, "pw"};

struct session {
  unsigned id;
  int fd;
  SSL *ssl;
  enum step step;
  int want_write;             /* the last SSL call wanted writability */
  char out[512];              /* plaintext not yet taken by SSL_write */
  size_t out_len;
  char in[8192];              /* plaintext read, up to a line's end */
  size_t in_len;
  double t0, deadline, idle_until;
};

static int ep;
static SSL_CTX *ctx;
static struct session **live;   /* by id, for the sweep (sweep()) */
static struct sockaddr_in target;
static unsigned started, finished, ok, failed;
static double t_start;
static double *latency;
#define MAX_REASONS 32
static struct { char what[80]; unsigned n; } reasons[MAX_REASONS];
static unsigned n_reasons, complaints;

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void count_lost(const struct session *s, const char *problem) {
  char what[80];
  snprintf(what, sizeof what, "%s/%.*s", step_names[s->step], (int)strcspn(problem, ":(0123456789"),
           problem);
  for (char *p = what; *p; p++)
    if (*p == ' ' || *p == ',' || *p == '=') *p = '_';
  unsigned i;
  for (i = 0; i < n_reasons && strcmp(reasons[i].what, what); i++) {}
  if (i == n_reasons && n_reasons < MAX_REASONS) snprintf(reasons[n_reasons++].what, 80, "%s", what);
  else if (i == n_reasons) i = MAX_REASONS - 1;
  reasons[i].n++;
}

static void session_end(struct session *s, const char *problem) {
  if (problem) {
    failed++;
    count_lost(s, problem);
    if (complaints++ < 10) fprintf(stderr, "session %u at %s: %s\n", s->id, step_names[s->step], problem);
  } else {
    latency[ok++] = now() - s->t0;
  }
  live[s->id] = NULL;
  if (s->ssl) SSL_free(s->ssl);
  close(s->fd);   /* leaves epoll with it */
  free(s);
  finished++;
}

/* Why an SSL call failed, in OpenSSL's words ("unexpected eof while reading"). */
static const char *ssl_problem(struct session *s, int r) {
  static char buf[200];
  int e = SSL_get_error(s->ssl, r);
  unsigned long code = ERR_peek_error();
  if (e == SSL_ERROR_ZERO_RETURN) return "close_notify from server";
  if (code) snprintf(buf, sizeof buf, "TLS: %s", ERR_reason_error_string(code));
  else if (e == SSL_ERROR_SYSCALL) snprintf(buf, sizeof buf, "syscall: %s", errno ? strerror(errno) : "eof");
  else snprintf(buf, sizeof buf, "TLS error %d", e);
  ERR_clear_error();
  return buf;
}

static void queue(struct session *s, const char *text) {
  size_t n = strlen(text);
  if (s->out_len + n <= sizeof s->out) {
    memcpy(s->out + s->out_len, text, n);
    s->out_len += n;
  }
}

/* Session i logs in as user%02u of (i % K + 1); a password with a "%"
 * in it is a format for the same number (the tests' "pw-%02u"). */
static void queue_login(struct session *s) {
  char line[200], pass[100];
  unsigned n = s->id % opt.users + 1;
  if (strchr(opt.password, '%')) snprintf(pass, sizeof pass, opt.password, n);
  else snprintf(pass, sizeof pass, "%s", opt.password);
  snprintf(line, sizeof line, "a1 LOGIN user%02u \"%s\"\r\n", n, pass);
  queue(s, line);
}

/* Plain text before STARTTLS: written straight to the socket. */
static int plain_send(struct session *s, const char *text) {
  size_t n = strlen(text);
  return send(s->fd, text, n, MSG_NOSIGNAL) == (ssize_t)n ? 0 : -1;
}

/* Hands queued plaintext to OpenSSL: all of it in one SSL_write (one
 * record), or with --pipeline two, line by line (a record each). 0, or -1
 * with the session ended. */
static int flush(struct session *s) {
  while (s->out_len) {
    size_t n = s->out_len;
    const char *eol = memchr(s->out, '\n', s->out_len);
    if (opt.pipeline == P_TWO && eol) n = (size_t)(eol - s->out) + 1;
    ERR_clear_error();
    int r = SSL_write(s->ssl, s->out, (int)n);
    if (r <= 0) {
      int e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        s->want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
      }
      session_end(s, ssl_problem(s, r));
      return -1;
    }
    memmove(s->out, s->out + r, s->out_len - (size_t)r);
    s->out_len -= (size_t)r;
  }
  return 0;
}

static int tagged(const char *line, const char *tag) {
  size_t n = strlen(tag);
  if (line[0] == '*' || line[0] == '+') return 0;
  return !strncmp(line, tag, n) && !strncmp(line + n, " OK", 3) ? 1 : -1;
}

/* After the greeting: the commands, as --pipeline says. */
static void after_greeting(struct session *s) {
  s->step = LOGIN_OK;
  if (opt.pipeline == P_EARLY) return;   /* sent already */
  queue_login(s);
  if (opt.pipeline != P_WAIT) queue(s, "a2 SELECT INBOX\r\n");
  if (opt.pipeline == P_ALL) queue(s, "a3 LOGOUT\r\n");
}

static void after_select(struct session *s) {
  if (opt.idle_ms) {
    queue(s, "a4 IDLE\r\n");
    s->step = IDLE_PLUS;
    return;
  }
  if (opt.pipeline != P_ALL) queue(s, "a3 LOGOUT\r\n");
  s->step = LOGOUT_OK;
}

/* One line of the server's over TLS; a problem, or NULL. */
static const char *on_line(struct session *s, const char *line) {
  switch (s->step) {
  case GREETING:
    if (strncmp(line, "* OK", 4)) return "bad greeting";
    after_greeting(s);
    return NULL;
  case LOGIN_OK:
    switch (tagged(line, "a1")) {
    case -1: return "LOGIN refused";
    case 0: return NULL;
    }
    if (opt.pipeline == P_WAIT) queue(s, "a2 SELECT INBOX\r\n");
    s->step = SELECT_OK;
    return NULL;
  case SELECT_OK:
    switch (tagged(line, "a2")) {
    case -1: return "SELECT refused";
    case 0: return NULL;
    }
    after_select(s);
    return NULL;
  case IDLE_PLUS:
    if (line[0] == '*') return NULL;
    if (line[0] != '+') return "IDLE refused";
    s->step = IDLING;
    s->idle_until = now() + opt.idle_ms / 1000.0;
    s->deadline = s->idle_until + opt.timeout_s;
    return NULL;
  case IDLING:
    return line[0] == '*' ? NULL : "unexpected line in IDLE";
  case IDLE_OK:
    switch (tagged(line, "a4")) {
    case -1: return "IDLE failed";
    case 0: return NULL;
    }
    queue(s, "a3 LOGOUT\r\n");
    s->step = LOGOUT_OK;
    return NULL;
  case LOGOUT_OK:
    switch (tagged(line, "a3")) {
    case -1: return "LOGOUT refused";
    case 0: return NULL;
    }
    s->step = DONE;
    return NULL;
  default:
    return "line out of turn";
  }
}

/* Reads what OpenSSL has and handles whole lines. */
static int pump_read(struct session *s) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(s->ssl, s->in + s->in_len, (int)(sizeof s->in - s->in_len - 1));
    if (r <= 0) {
      int e = SSL_get_error(s->ssl, r);
      if (e == SSL_ERROR_WANT_READ) return 0;
      if (e == SSL_ERROR_WANT_WRITE) {
        s->want_write = 1;
        return 0;
      }
      session_end(s, ssl_problem(s, r));
      return -1;
    }
    s->in_len += (size_t)r;
    char *eol;
    while ((eol = memchr(s->in, '\n', s->in_len))) {
      *eol = 0;
      if (eol > s->in && eol[-1] == '\r') eol[-1] = 0;
      const char *problem = on_line(s, s->in);
      size_t used = (size_t)(eol + 1 - s->in);
      memmove(s->in, eol + 1, s->in_len - used);
      s->in_len -= used;
      if (problem) {
        session_end(s, problem);
        return -1;
      }
      if (s->step == DONE) {
        session_end(s, NULL);
        return -1;
      }
    }
    if (s->in_len == sizeof s->in - 1) {
      session_end(s, "line too long");
      return -1;
    }
  }
}

static void watch(struct session *s, int op) {
  struct epoll_event ev = {.events = EPOLLIN | (s->want_write || s->step == CONNECTING ? EPOLLOUT : 0),
                           .data.ptr = s};
  epoll_ctl(ep, op, s->fd, &ev);
}

/* The TLS handshake, and with --pipeline early the first commands. */
static int handshake(struct session *s) {
  ERR_clear_error();
  int r = SSL_connect(s->ssl);
  if (r == 1) {
    s->step = GREETING;
    if (opt.starttls) after_greeting(s);   /* the greeting came before TLS */
    else if (opt.pipeline == P_EARLY) {
      queue_login(s);
      queue(s, "a2 SELECT INBOX\r\n");
    }
    return 0;
  }
  int e = SSL_get_error(s->ssl, r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    s->want_write = e == SSL_ERROR_WANT_WRITE;
    return 1;   /* not yet */
  }
  session_end(s, ssl_problem(s, r));
  return -1;
}

static int start_tls(struct session *s) {
  s->ssl = SSL_new(ctx);
  SSL_set_fd(s->ssl, s->fd);
  SSL_set_tlsext_host_name(s->ssl, "localhost");
  s->step = HANDSHAKE;
  return handshake(s);
}

/* Before TLS on a STARTTLS port: the plain greeting and STARTTLS's OK,
 * read a byte at a time so that nothing of TLS is taken with them. */
static int plain_step(struct session *s) {
  for (;;) {
    char ch;
    ssize_t n = recv(s->fd, &ch, 1, 0);
    if (n < 0 && errno == EAGAIN) return 0;
    if (n <= 0) {
      session_end(s, n == 0 ? "eof before TLS" : "error before TLS");
      return -1;
    }
    if (s->in_len < sizeof s->in - 1) s->in[s->in_len++] = ch;
    if (ch != '\n') continue;
    s->in[s->in_len] = 0;
    s->in_len = 0;
    if (s->step == PLAIN_GREETING) {
      if (strncmp(s->in, "* OK", 4) || plain_send(s, "s STARTTLS\r\n") != 0) {
        session_end(s, "bad plain greeting");
        return -1;
      }
      s->step = STARTTLS_OK;
    } else if (tagged(s->in, "s") == 1) {
      return start_tls(s) < 0 ? -1 : 0;
    } else if (tagged(s->in, "s") == -1) {
      session_end(s, "STARTTLS refused");
      return -1;
    }
  }
}

/* Everything a session does when its socket is ready. */
static void on_ready(struct session *s, unsigned events) {
  (void)events;
  s->want_write = 0;
  if (s->step == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      session_end(s, "connect failed");
      return;
    }
    if (opt.starttls) s->step = PLAIN_GREETING;
    else if (start_tls(s) < 0) return;
  }
  if (s->step == PLAIN_GREETING || s->step == STARTTLS_OK) {
    if (plain_step(s) < 0) return;
    if (s->step != HANDSHAKE) {
      watch(s, EPOLL_CTL_MOD);
      return;
    }
  }
  if (s->step == HANDSHAKE) {
    int r = handshake(s);
    if (r < 0) return;
    if (r > 0) {
      watch(s, EPOLL_CTL_MOD);
      return;
    }
  }
  if (flush(s) < 0 || pump_read(s) < 0 || flush(s) < 0) return;
  watch(s, EPOLL_CTL_MOD);
}

static void start_session(void) {
  struct session *s = calloc(1, sizeof *s);
  s->id = started++;
  s->t0 = now();
  s->deadline = s->t0 + opt.timeout_s;
  live[s->id] = s;
  s->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(s->fd, (struct sockaddr *)&target, sizeof target) != 0 && errno != EINPROGRESS) {
    session_end(s, "connect failed");
    return;
  }
  s->step = CONNECTING;
  watch(s, EPOLL_CTL_ADD);
}

/* Timeouts and the end of IDLE: a sweep over the live sessions. */
static void sweep(void) {
  double t = now();
  for (unsigned i = 0; i < opt.sessions; i++) {
    struct session *s = live[i];
    if (!s) continue;
    if (s->step == IDLING && t >= s->idle_until) {
      queue(s, "DONE\r\n");
      s->step = IDLE_OK;
      s->deadline = t + opt.timeout_s;
      if (flush(s) == 0) watch(s, EPOLL_CTL_MOD);
    } else if (t >= s->deadline) {
      session_end(s, "timeout");
    }
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double pct(double p) {
  return ok ? latency[(size_t)(p * (ok - 1) + 0.5)] * 1000 : 0;
}

static void parse_args(int argc, char **argv) {
  static const struct option longs[] = {
      {"port", 1, 0, 'p'}, {"tls", 1, 0, 't'}, {"sessions", 1, 0, 'n'}, {"concurrency", 1, 0, 'c'},
      {"pipeline", 1, 0, 'P'}, {"idle-ms", 1, 0, 'i'}, {"user-count", 1, 0, 'u'},
      {"password", 1, 0, 'w'}, {"timeout", 1, 0, 'T'}, {0, 0, 0, 0}};
  static const char *const modes[] = {"wait", "one", "two", "all", "early"};
  int ch;
  while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
    switch (ch) {
    case 'p': opt.port = atoi(optarg); break;
    case 't': opt.starttls = !strcmp(optarg, "starttls"); break;
    case 'n': opt.sessions = (unsigned)atoi(optarg); break;
    case 'c': opt.concurrency = (unsigned)atoi(optarg); break;
    case 'i': opt.idle_ms = (unsigned)atoi(optarg); break;
    case 'u': opt.users = (unsigned)atoi(optarg); break;
    case 'w': opt.password = optarg; break;
    case 'T': opt.timeout_s = (unsigned)atoi(optarg); break;
    case 'P':
      for (opt.pipeline = P_WAIT; opt.pipeline <= P_EARLY; opt.pipeline++)
        if (!strcmp(optarg, modes[opt.pipeline])) break;
      if (opt.pipeline > P_EARLY) {
        fprintf(stderr, "usher-epoll-client: unknown --pipeline '%s'\n", optarg);
        exit(2);
      }
      break;
    default: exit(2);
    }
  }
  if (opt.port <= 0 || !opt.sessions || !opt.concurrency || !opt.users) {
    fprintf(stderr, "usher-epoll-client: --port and positive counts are needed\n");
    exit(2);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  target.sin_family = AF_INET;
  target.sin_port = htons((uint16_t)opt.port);
  target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
  ep = epoll_create1(0);
  latency = calloc(opt.sessions, sizeof *latency);
  live = calloc(opt.sessions, sizeof *live);
  t_start = now();
  struct epoll_event evs[256];
  while (finished < opt.sessions) {
    while (started < opt.sessions && started - finished < opt.concurrency) start_session();
    int n = epoll_wait(ep, evs, 256, 100);
    for (int i = 0; i < n; i++) on_ready(evs[i].data.ptr, evs[i].events);
    sweep();
  }
  qsort(latency, ok, sizeof *latency, cmp_double);
  for (unsigned i = 0; i < n_reasons; i++)
    printf("lost reason=%s sessions=%u\n", reasons[i].what, reasons[i].n);
  double elapsed = now() - t_start;
  printf("sessions=%u ok=%u failed=%u elapsed_s=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
         opt.sessions, ok, failed, elapsed, ok / elapsed, pct(0.5), pct(0.99), pct(1.0));
  return failed ? 1 : 0;
}
