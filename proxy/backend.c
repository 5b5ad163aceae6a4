/* The backend login: connect, greeting, optional STARTTLS or TLS,
 * CAPABILITY when the greeting did not carry it, ID with the client's
 * address where the backend trusts us, then AUTHENTICATE PLAIN (LOGIN when
 * the backend lacks it). The client gets the tagged OK with the backend's
 * post-login CAPABILITY, and the relay starts (login.c does both).
 *
 * Our tags: S (STARTTLS), C (CAPABILITY), I (ID), L (login), P (CAPABILITY
 * after login). A backend that cannot be reached or breaks the dialogue is
 * reported to the owner (login.c), which asks sessiond once for another
 * seat. No path waits longer than connect_timeout or login_timeout.
 *
 * The dialogue's state is a struct backend_conn in c->backend; the socket
 * is the client's back side (c->back, proxy/side.h). The state is
 * freed before the outcome is reported, so that nothing here touches it
 * after the owner has moved on: code that reports checks c->backend. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>

#include "proxy/backend.h"

#include "common/bev_send.h"
#include "common/log.h"
#include "common/util.h"
#include "proxy/client.h"
#include "proxy/restore.h"
#include "proxy/sasl.h"
#include "proxy/tls.h"

#define BACKEND_MAX_LINE 65536

/* Backend capabilities that the login dialogue cares about. */
#define BCAP_KNOWN    0x01   /* we have seen a CAPABILITY list */
#define BCAP_STARTTLS 0x02
#define BCAP_AUTHPLAIN 0x04
#define BCAP_SASLIR   0x08
#define BCAP_ID       0x10
#define BCAP_LOGINDISABLED 0x20
#define BCAP_LITERALPLUS 0x40

/* The login dialogue's steps. */
enum backend_step {
  BS_CONNECT,
  BS_GREETING,
  BS_STARTTLS,
  BS_TLS,
  BS_CAPABILITY,
  BS_ID,
  BS_AUTH_CONTINUE,
  BS_AUTH,
  BS_POST_CAPABILITY,
  BS_RESTORE,        /* a re-home: the restore dialogue (restore.h) runs */
};

struct backend_conn {
  const struct config_backend *cfg;
  struct netaddr addr;
  backend_done_fn *done;
  enum backend_step step;
  unsigned caps;                    /* BCAP_* of the backend */
  char *capability;                 /* post-login CAPABILITY for the client */
  /* A re-home's login (backend_login): the master user and its password
   * (our copy, wiped once sent), and the restore that follows. */
  char *authcid, *secret;
  struct restore *restore;
};

static void on_backend_read(struct bufferevent *bev, void *arg);
static void on_backend_event(struct bufferevent *bev, short what, void *arg);

void backend_free(struct client *c) {
  struct backend_conn *b = c->backend;
  if (!b) return;
  free(b->capability);
  free(b->authcid);
  wipe_free_str(b->secret);
  free(b);
  c->backend = NULL;
}

/* The dialogue is over: its state goes, then the owner hears how. */
static void finish(struct client *c, enum backend_result r, const char *why) {
  backend_done_fn *done = c->backend->done;
  char *capability = c->backend->capability;
  c->backend->capability = NULL;
  backend_free(c);
  done(c, r, r == BACKEND_LOGGED_IN ? capability : why);
  free(capability);
}

static void backend_write(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void backend_write(struct client *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  bev_vprintf(c->back.bev, c->backend->step == BS_CONNECT ? -1 : side_plain_fd(&c->back), fmt, ap);
  va_end(ap);
}

/* A secret line: the output buffer references our copy, which is wiped and
 * freed once the bytes have been handed to the kernel (or to OpenSSL). */
static void wipe_cleanup(const void *data, size_t len, void *arg) {
  (void)arg;
  wipe((void *)data, len);
  free((void *)data);
}

static void backend_write_secret(struct client *c, char *line, size_t len) {
  struct evbuffer *out = bufferevent_get_output(c->back.bev);
  size_t done = bev_send_direct(c->back.bev, c->backend->step == BS_CONNECT ? -1 : side_plain_fd(&c->back), line, len);
  if (done == len) {
    wipe_cleanup(line, len, NULL);
    return;
  }
  /* The rest waits in the output buffer as a reference to our own copy. */
  char *rest = xmalloc(len - done);
  memcpy(rest, line + done, len - done);
  wipe_cleanup(line, len, NULL);
  if (evbuffer_add_reference(out, rest, len - done, wipe_cleanup, NULL) != 0)
    wipe_cleanup(rest, len - done, NULL);
}

/* The backend failed before the login completed. */
static void backend_fail(struct client *c, const char *why) {
  char peer[NETADDR_STRLEN];
  log_event(LOG_LVL_WARN, "backend_failed", "session=%s backend=%s address=%s step=%d reason=%s",
            c->sid_hex, c->backend_name, netaddr_str(&c->backend->addr, peer, sizeof peer),
            (int)c->backend->step, why);
  client_close_backend(c);
  finish(c, BACKEND_FAILED, why);
}

void backend_timer(struct client *c) {
  /* A plain connection is seen up by its greeting: if it is up and the
   * greeting is what is late, that wait is the login's. */
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (c->backend->step == BS_CONNECT && c->back.fd >= 0 && getpeername(c->back.fd, (struct sockaddr *)&ss, &len) == 0) {
    c->backend->step = BS_GREETING;
    uint64_t spent = c->env->cfg->connect_timeout_ms;
    uint64_t limit = c->env->cfg->login_timeout_ms;
    client_timer(c, limit > spent ? limit - spent : 1);
    return;
  }
  backend_fail(c, c->backend->step == BS_CONNECT ? "connect_timeout" : "login_timeout");
}

static unsigned capabilities_parse(const char *caps) {
  unsigned f = BCAP_KNOWN;
  char buf[2048];
  snprintf(buf, sizeof buf, "%s", caps);
  for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
    if (!ascii_casecmp(t, "STARTTLS")) f |= BCAP_STARTTLS;
    else if (!ascii_casecmp(t, "AUTH=PLAIN")) f |= BCAP_AUTHPLAIN;
    else if (!ascii_casecmp(t, "SASL-IR")) f |= BCAP_SASLIR;
    else if (!ascii_casecmp(t, "ID")) f |= BCAP_ID;
    else if (!ascii_casecmp(t, "LOGINDISABLED")) f |= BCAP_LOGINDISABLED;
    else if (!ascii_casecmp(t, "LITERAL+")) f |= BCAP_LITERALPLUS;
  }
  return f;
}

/* "[CAPABILITY a b c] text" anywhere in a response line: a malloc'd "a b c". */
static char *capability_code(const char *line) {
  const char *p = strstr(line, "[CAPABILITY ");
  if (!p) return NULL;
  p += strlen("[CAPABILITY ");
  const char *end = strchr(p, ']');
  return end ? strndup(p, (size_t)(end - p)) : NULL;
}

/* "* CAPABILITY a b c": a malloc'd "a b c". */
static char *capability_untagged(const char *line) {
  if (ascii_ncasecmp(line, "* CAPABILITY ", 13) != 0) return NULL;
  return xstrdup(line + 13);
}

static int tagged(const char *line, char tag, const char *status) {
  size_t n = strlen(status);
  return line[0] == tag && line[1] == ' ' && ascii_ncasecmp(line + 2, status, n) == 0 &&
         (line[2 + n] == ' ' || line[2 + n] == '\0');
}

static void send_id(struct client *c) {
  char cip[NETADDR_STRLEN], lip[NETADDR_STRLEN];
  netaddr_host(&c->peer, cip, sizeof cip);
  netaddr_host(&c->local, lip, sizeof lip);
  backend_write(c,
                "I ID (\"x-originating-ip\" \"%s\" \"x-originating-port\" \"%u\" "
                "\"x-connected-ip\" \"%s\" \"x-connected-port\" \"%u\" "
                "\"x-session-id\" \"%s\" \"x-proxy-ttl\" \"3\")\r\n",
                cip, netaddr_port(&c->peer), lip, netaddr_port(&c->local), c->sid_hex);
}

/* base64("\0user\0password") into a malloc'd buffer (wiped by the caller);
 * for a re-home "user\0master\0master-password": the user is the
 * authorization identity, the master user authenticates. */
static char *plain_response(const struct client *c, size_t *outlen) {
  const struct backend_conn *b = c->backend;
  const char *authz = b->secret ? c->user : "", *authc = b->secret ? b->authcid : c->user;
  const char *pass = b->secret ? b->secret : c->login->password;
  size_t zl = strlen(authz), ul = strlen(authc), pl = strlen(pass);
  size_t raw_len = zl + 1 + ul + 1 + pl;
  unsigned char *raw = xmalloc(raw_len);
  memcpy(raw, authz, zl);
  raw[zl] = '\0';
  memcpy(raw + zl + 1, authc, ul);
  raw[zl + 1 + ul] = '\0';
  memcpy(raw + zl + 2 + ul, pass, pl);
  size_t cap = 4 * ((raw_len + 2) / 3) + 1;
  char *b64 = xmalloc(cap);
  ssize_t n = base64_encode(raw, raw_len, b64, cap);
  wipe(raw, raw_len);
  free(raw);
  *outlen = n < 0 ? 0 : (size_t)n;
  return b64;
}

static int quotable(const char *s) {
  for (; *s; s++)
    if (*s == '\r' || *s == '\n') return 0;
  return 1;
}

/* "L LOGIN "user" "pass"" with \ and " escaped. */
static char *login_line(const struct client *c, size_t *outlen) {
  size_t cap = 16 + 2 * (strlen(c->user) + strlen(c->login->password)) + 8;
  char *line = xmalloc(cap), *p = line;
  p += sprintf(p, "L LOGIN \"");
  for (const char *s = c->user; *s; s++) {
    if (*s == '"' || *s == '\\') *p++ = '\\';
    *p++ = *s;
  }
  p += sprintf(p, "\" \"");
  for (const char *s = c->login->password; *s; s++) {
    if (*s == '"' || *s == '\\') *p++ = '\\';
    *p++ = *s;
  }
  p += sprintf(p, "\"\r\n");
  *outlen = (size_t)(p - line);
  return line;
}

/* The password stays until the backend has answered the login (the login
 * is still in progress): a backend that dies or answers UNAVAILABLE
 * mid-login is then retried once on another seat (login.c) instead of
 * refusing the client. It is wiped at the answer either way. */

/* A re-home's master password goes as soon as it has been sent. */
static void forget_secret(struct client *c) {
  wipe_free_str(c->backend->secret);
  c->backend->secret = NULL;
}

static void send_login(struct client *c) {
  const struct config_backend *b = c->backend->cfg;
  if (b->send_id && (c->backend->caps & BCAP_ID || !(c->backend->caps & BCAP_KNOWN))) send_id(c);

  if (c->backend->caps & BCAP_AUTHPLAIN || !(c->backend->caps & BCAP_KNOWN)) {
    size_t n;
    char *b64 = plain_response(c, &n);
    if (c->backend->caps & BCAP_SASLIR) {
      char *line = xmalloc(n + 32);
      int len = snprintf(line, n + 32, "L AUTHENTICATE PLAIN %s\r\n", b64);
      backend_write_secret(c, line, (size_t)len);
      c->backend->step = BS_AUTH;
      if (c->backend->authcid) forget_secret(c);
    } else {
      backend_write(c, "L AUTHENTICATE PLAIN\r\n");
      c->backend->step = BS_AUTH_CONTINUE;   /* the password waits for the "+" */
    }
    wipe(b64, n);
    free(b64);
    return;
  }
  if (c->backend->authcid || c->backend->caps & BCAP_LOGINDISABLED ||
      !quotable(c->login->password) || !quotable(c->user)) {   /* a master login needs PLAIN */
    backend_fail(c, "no_usable_login_method");
    return;
  }
  size_t n;
  char *line = login_line(c, &n);
  backend_write_secret(c, line, n);
  c->backend->step = BS_AUTH;
}

static void send_plain_continuation(struct client *c) {
  size_t n;
  char *b64 = plain_response(c, &n);
  char *line = xmalloc(n + 3);
  memcpy(line, b64, n);
  memcpy(line + n, "\r\n", 2);
  backend_write_secret(c, line, n + 2);
  wipe(b64, n);
  free(b64);
  c->backend->step = BS_AUTH;
  if (c->backend->authcid) forget_secret(c);
}

/* A re-home: the restore dialogue's next command, or its end. */
static void restore_step(struct client *c) {
  struct restore *r = c->backend->restore;
  const char *cmd = restore_next(r);
  if (cmd) backend_write(c, "%s", cmd);
  enum restore_status st = restore_status(r);
  if (st == RESTORE_DONE) finish(c, BACKEND_LOGGED_IN, NULL);
  else if (st == RESTORE_FAILED) backend_fail(c, restore_failure(r));
}

/* The backend accepted the login. */
static void login_done(struct client *c) {
  finish(c, BACKEND_LOGGED_IN, NULL);
}

/* The backend refused the credentials that sessiond accepted (the two
 * databases disagree), or answered BAD. */
static void login_refused(struct client *c, const char *line) {
  int auth = strstr(line, "[AUTHENTICATIONFAILED]") != NULL;
  char user[LOG_QUOTE_MAX];
  log_event(LOG_LVL_WARN, "backend_refused", "session=%s backend=%s user=%s auth=%d", c->sid_hex,
            c->backend_name, log_quote(user, sizeof user, c->user, strlen(c->user)), auth);
  if (!auth) {   /* not the credentials: a backend going away, say; another seat may do */
    backend_fail(c, "backend_unavailable");
    return;
  }
  client_close_backend(c);
  finish(c, BACKEND_REFUSED, "backend_refused");
}

static void switch_to_tls(struct client *c) {
  SSL_CTX *ctx = c->env->tls_backend[c->backend->cfg - c->env->cfg->backends];
  SSL *ssl = ctx ? tls_backend_ssl_new(ctx, c->backend->cfg) : NULL;
  if (!ssl) {
    backend_fail(c, "tls_setup_failed");
    return;
  }
  side_drop_plain(&c->back);   /* the plain reading ends; the fd stays */
  struct bufferevent *bev = bufferevent_openssl_socket_new(c->env->base, c->back.fd, ssl,
                                                           BUFFEREVENT_SSL_CONNECTING,
                                                           BEV_OPT_CLOSE_ON_FREE);
  if (!bev) {
    SSL_free(ssl);
    backend_fail(c, "tls_setup_failed");
    return;
  }
  side_tls_owns(&c->back, bev);
  bufferevent_setcb(bev, on_backend_read, NULL, on_backend_event, c);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
  c->backend->step = BS_TLS;
}

static void after_greeting(struct client *c) {
  if (c->backend->cfg->tls == TLS_STARTTLS) {
    backend_write(c, "S STARTTLS\r\n");
    c->backend->step = BS_STARTTLS;
  } else if (c->backend->caps & BCAP_KNOWN) {
    send_login(c);
  } else {
    backend_write(c, "C CAPABILITY\r\n");
    c->backend->step = BS_CAPABILITY;
  }
}

/* One response line from the backend; returns -1 once the dialogue is over
 * for this read (done, failed, or switched transport). */
static int backend_line(struct client *c, const char *line) {
  char *caps;
  switch (c->backend->step) {
  case BS_GREETING:
    if (ascii_ncasecmp(line, "* OK", 4) != 0) {
      backend_fail(c, "bad_greeting");
      return -1;
    }
    if ((caps = capability_code(line))) {
      c->backend->caps = capabilities_parse(caps);
      free(caps);
    }
    after_greeting(c);
    return !c->backend || c->backend->step == BS_STARTTLS ? -1 : 0;
  case BS_STARTTLS:
    if (tagged(line, 'S', "OK")) {
      switch_to_tls(c);
      return -1;
    }
    if (line[0] == 'S') {
      backend_fail(c, "starttls_refused");
      return -1;
    }
    return 0;
  case BS_CAPABILITY:
    if ((caps = capability_untagged(line))) {
      c->backend->caps = capabilities_parse(caps);
      free(caps);
    } else if (line[0] == 'C' && line[1] == ' ') {
      send_login(c);
      return c->backend ? 0 : -1;
    }
    return 0;
  case BS_AUTH_CONTINUE:
    if (line[0] == '+') {
      send_plain_continuation(c);
      return 0;
    }
    __attribute__((fallthrough));   /* a tagged answer instead of a continuation */
  case BS_AUTH:
  case BS_POST_CAPABILITY:
    if ((caps = capability_untagged(line))) {
      free(c->backend->capability);
      c->backend->capability = caps;
      return 0;
    }
    if (tagged(line, 'L', "OK")) {
      if ((caps = capability_code(line))) {
        free(c->backend->capability);
        c->backend->capability = caps;
      }
      if (c->backend->restore) {
        c->backend->step = BS_RESTORE;
        restore_step(c);
        return c->backend ? 0 : -1;
      }
      if (c->backend->capability) {
        login_done(c);
        return -1;
      }
      backend_write(c, "P CAPABILITY\r\n");
      c->backend->step = BS_POST_CAPABILITY;
      return 0;
    }
    if (line[0] == 'L' && line[1] == ' ') {
      login_refused(c, line);
      return -1;
    }
    if (tagged(line, 'P', "OK")) {
      login_done(c);
      return -1;
    }
    return 0;   /* untagged data, or the answer to ID */
  case BS_RESTORE: {
    enum restore_status st = restore_line(c->backend->restore, line, strlen(line));
    if (st == RESTORE_MORE) {
      restore_step(c);
      return c->backend ? 0 : -1;
    }
    if (st == RESTORE_DONE) finish(c, BACKEND_LOGGED_IN, NULL);
    else backend_fail(c, restore_failure(c->backend->restore));
    return -1;
  }
  default:
    return 0;
  }
}

static void on_backend_read(struct bufferevent *bev, void *arg) {
  struct client *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  char *line;
  size_t n;
  while (c->backend && (line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF))) {
    int r = backend_line(c, line);
    free(line);
    if (r < 0) return;
  }
  if (c->backend && evbuffer_get_length(in) > BACKEND_MAX_LINE)
    backend_fail(c, "line_too_long");
}

/* A plain backend socket is read by us (see bev_send.h), with one event
 * from the connect to the close; once the login is done, the stage with
 * its own reading (the relay) takes it over. Its first byte, the
 * greeting, also says the connection is up: no wait for writability and
 * no SO_ERROR query. */
static void on_backend_readable(evutil_socket_t fd, short what, void *arg) {
  struct client *c = arg;
  if (!c->backend) {
    if (c->handlers && c->handlers->readable) c->handlers->readable(fd, what, arg);
    return;
  }
  ssize_t n = sock_read_into(fd, bufferevent_get_input(c->back.bev));
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    backend_fail(c, c->backend->step == BS_CONNECT ? "connect_failed" : "backend_closed");
    return;
  }
  if (c->backend->step == BS_CONNECT) {
    c->backend->step = BS_GREETING;
    client_timer(c, c->env->cfg->login_timeout_ms);
  }
  on_backend_read(c->back.bev, c);
}

/* Also a plain backend's write errors. */
static void on_backend_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  struct client *c = arg;
  if (what & BEV_EVENT_CONNECTED) {
    if (c->backend->step == BS_CONNECT) {
      c->backend->step = BS_GREETING;
      client_timer(c, c->env->cfg->login_timeout_ms);
    } else if (c->backend->step == BS_TLS) {
      backend_write(c, "C CAPABILITY\r\n");   /* capabilities change after TLS */
      c->backend->caps = 0;
      c->backend->step = BS_CAPABILITY;
    }
    return;
  }
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
    backend_fail(c, c->backend->step == BS_CONNECT ? "connect_failed"
                    : c->backend->step == BS_TLS   ? "tls_handshake_failed"
                                           : "backend_closed");
}

/* The bufferevent only writes (see bev_send.h); the side's event reads. */
static void backend_connect_plain(struct client *c, int fd) {
  const struct proxy_env *env = c->env;
  side_open(&c->back, fd);
  if (connect(fd, (struct sockaddr *)&c->backend->addr.ss, c->backend->addr.len) != 0 &&
      errno != EINPROGRESS) {
    backend_fail(c, "connect_failed");
    return;
  }
  c->back.bev = bufferevent_socket_new(env->base, fd, 0);
  bufferevent_setcb(c->back.bev, NULL, NULL, on_backend_event, c);
  bev_read_by_us(c->back.bev);
  /* EV_CLOSED: the relay sees the FIN come with the last answer (relay.c). */
  side_watch(&c->back, env->base, EV_READ | EV_CLOSED, on_backend_readable, c);
  client_timer(c, env->cfg->connect_timeout_ms);
}

void backend_start(struct client *c, const struct config_backend *b, const struct netaddr *addr,
                   const struct backend_login *how, backend_done_fn *done) {
  const struct proxy_env *env = c->env;
  backend_free(c);
  client_close_backend(c);   /* a back side still open goes first: the new one starts empty */
  c->backend = xcalloc(1, sizeof *c->backend);
  c->backend->cfg = b;
  c->backend->addr = *addr;
  c->backend->done = done;
  c->backend->step = BS_CONNECT;
  if (how) {
    c->backend->authcid = xstrdup(how->authcid);
    c->backend->secret = xstrdup(how->password);
    c->backend->restore = how->restore;
  }
  int fd = socket(c->backend->addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    backend_fail(c, "socket_failed");
    return;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (b->tls == TLS_IMPLICIT) {
    SSL_CTX *ctx = env->tls_backend[b - env->cfg->backends];
    SSL *ssl = ctx ? tls_backend_ssl_new(ctx, b) : NULL;
    struct bufferevent *bev = ssl ? bufferevent_openssl_socket_new(env->base, fd, ssl,
                                                                   BUFFEREVENT_SSL_CONNECTING,
                                                                   BEV_OPT_CLOSE_ON_FREE)
                                  : NULL;
    if (!bev) {
      if (ssl) SSL_free(ssl);
      close(fd);
      backend_fail(c, "tls_setup_failed");
      return;
    }
    side_tls_owns(&c->back, bev);
  } else {
    backend_connect_plain(c, fd);
    return;
  }
  bufferevent_setcb(c->back.bev, on_backend_read, NULL, on_backend_event, c);
  bufferevent_enable(c->back.bev, EV_READ | EV_WRITE);
  client_timer(c, env->cfg->connect_timeout_ms);
  if (bufferevent_socket_connect(c->back.bev, (struct sockaddr *)&c->backend->addr.ss,
                                 (int)c->backend->addr.len) != 0)
    backend_fail(c, "connect_failed");
}
