/* usher-stub-backend: an IMAP server that costs almost nothing per session,
 * for benchmarks only. It accepts any login, has one message in INBOX whose
 * BODY[] is --fetch-size bytes of fixed text, and supports IDLE. Its job is
 * to make the proxy's own costs visible at tens of thousands of sessions.
 *
 *   usher-stub-backend PORT [--fetch-size BYTES]
 *
 * Listens on 127.0.0.1:PORT, plaintext only, single-threaded.
 * Commands (case-insensitive): CAPABILITY NOOP ID LOGIN AUTHENTICATE SELECT
 * EXAMINE FETCH (and UID FETCH) IDLE/DONE LOGOUT; anything else is BAD.
 * Literals ({N} and {N+}) at the end of any command line are skipped, with
 * a "+ go" continuation for the synchronising kind.
 *
 * Per connection the stub holds one bufferevent and one small struct; a
 * FETCH body is produced piecemeal as the socket drains, by reference to
 * one static block, so even a 64 MiB body never sits in memory. */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#define CAPS "IMAP4rev1 AUTH=PLAIN LITERAL+ SASL-IR ID IDLE"
#define LOGGED_IN "OK [CAPABILITY IMAP4rev1 IDLE LITERAL+] Logged in"
#define LINE 80                 /* 78 text bytes and CRLF */
#define CHUNK (LINE * 819)      /* ~64 KiB of whole lines */

static size_t fetch_size = 100 * 1024;
static char body_block[CHUNK];  /* the body's text, shared by every FETCH */

/* One connection: a bufferevent and a few words of state. */
struct conn {
  struct bufferevent *bev;
  size_t skip;            /* literal bytes still to skip */
  size_t fetch_left;      /* BODY[] bytes still to send */
  char tag[32];
  char cmd[16];           /* the command of the line in progress */
  unsigned char idling, awaiting_sasl, have_cmd, closing;
};

/* Fills the shared block with lines of "0123456789abcdef..." text. */
static void body_init(void) {
  static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  for (size_t i = 0; i < CHUNK; i++) {
    size_t col = i % LINE;
    body_block[i] = col == LINE - 2 ? '\r' : col == LINE - 1 ? '\n' : alphabet[col % 36];
  }
}

static void send_str(struct conn *c, const char *s) { bufferevent_write(c->bev, s, strlen(s)); }

/* A tagged completion for the command in progress. */
static void reply(struct conn *c, const char *text) {
  evbuffer_add_printf(bufferevent_get_output(c->bev), "%s %s\r\n", c->tag, text);
}

/* Queues body pieces until a few chunks are pending; the write callback
 * (low watermark CHUNK) calls again as they drain. The body's last line
 * ends in CRLF however the size falls. */
static void fetch_fill(struct conn *c) {
  struct evbuffer *out = bufferevent_get_output(c->bev);
  while (c->fetch_left && evbuffer_get_length(out) < 4 * CHUNK) {
    size_t n = c->fetch_left < CHUNK ? c->fetch_left : CHUNK;
    int last = n == c->fetch_left && n >= 2;
    evbuffer_add_reference(out, body_block, last ? n - 2 : n, NULL, NULL);
    if (last) evbuffer_add(out, "\r\n", 2);
    c->fetch_left -= n;
  }
  if (!c->fetch_left) {
    evbuffer_add_printf(out, ")\r\n%s OK FETCH completed\r\n", c->tag);
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
  }
}

/* Starts streaming the one message's BODY[]. */
static void fetch_start(struct conn *c) {
  evbuffer_add_printf(bufferevent_get_output(c->bev), "* 1 FETCH (BODY[] {%zu}\r\n", fetch_size);
  c->fetch_left = fetch_size;
  bufferevent_setwatermark(c->bev, EV_WRITE, CHUNK, 0);
  fetch_fill(c);
}

static void conn_free(struct conn *c) {
  bufferevent_free(c->bev);
  free(c);
}

static void on_read(struct bufferevent *bev, void *arg);

/* Output drained below the watermark: more body, or commands that waited
 * for the body to finish, or the close after LOGOUT. */
static void on_write(struct bufferevent *bev, void *arg) {
  struct conn *c = arg;
  if (c->fetch_left) {
    fetch_fill(c);
    if (!c->fetch_left) on_read(bev, c);   /* commands pipelined behind FETCH */
  } else if (c->closing) {
    conn_free(c);   /* the goodbye is out */
  }
}

/* A whole command has arrived (literals skipped). Returns 0 to close. */
static int command(struct conn *c) {
  const char *k = c->cmd;
  if (!strcmp(k, "CAPABILITY")) {
    send_str(c, "* CAPABILITY " CAPS "\r\n");
    reply(c, "OK CAPABILITY completed");
  } else if (!strcmp(k, "NOOP")) {
    reply(c, "OK NOOP completed");
  } else if (!strcmp(k, "ID")) {
    send_str(c, "* ID (\"name\" \"stub\")\r\n");
    reply(c, "OK ID completed");
  } else if (!strcmp(k, "LOGIN")) {
    reply(c, LOGGED_IN);
  } else if (!strcmp(k, "SELECT") || !strcmp(k, "EXAMINE")) {
    send_str(c, "* 1 EXISTS\r\n* FLAGS (\\Seen)\r\n");
    reply(c, "OK [READ-WRITE] SELECT completed");
  } else if (!strcmp(k, "FETCH") || !strcmp(k, "UID")) {
    fetch_start(c);
  } else if (!strcmp(k, "IDLE")) {
    send_str(c, "+ idling\r\n");
    c->idling = 1;
  } else if (!strcmp(k, "LOGOUT")) {
    send_str(c, "* BYE stub closing\r\n");
    reply(c, "OK LOGOUT completed");
    return 0;
  } else {
    reply(c, "BAD unknown");
  }
  return 1;
}

/* AUTHENTICATE: with SASL-IR ("tag AUTHENTICATE PLAIN b64") the response
 * is on the line; without it, ask for it and accept whatever comes. */
static void authenticate(struct conn *c, const char *line) {
  unsigned words = 1;
  for (const char *p = line; *p; p++) words += *p == ' ' && p[1] && p[1] != ' ';
  if (words >= 4) {
    reply(c, LOGGED_IN);
  } else {
    send_str(c, "+ \r\n");
    c->awaiting_sasl = 1;
  }
}

/* The first line of a command: remember its tag and upper-cased name. */
static void begin(struct conn *c, const char *line) {
  size_t t = strcspn(line, " ");
  snprintf(c->tag, sizeof c->tag, "%.*s", (int)(t < 31 ? t : 31), line);
  const char *name = line[t] ? line + t + 1 : "";
  size_t n = strcspn(name, " ");
  size_t i;
  for (i = 0; i < n && i < sizeof c->cmd - 1; i++) c->cmd[i] = (char)toupper((unsigned char)name[i]);
  c->cmd[i] = '\0';
  c->have_cmd = 1;
}

/* A literal announced at the end of a line, {N} or {N+}: arrange to skip
 * its bytes. Returns 1 when the command continues after the literal. */
static int literal_at_end(struct conn *c, const char *line, size_t len) {
  if (len < 3 || line[len - 1] != '}') return 0;
  const char *open = memrchr(line, '{', len);
  if (!open) return 0;
  c->skip = strtoull(open + 1, NULL, 10);
  if (line[len - 2] != '+') send_str(c, "+ go\r\n");
  return 1;
}

/* One line from the client, in whatever state. Returns 0 to close. */
static int on_line(struct conn *c, const char *line, size_t len) {
  if (c->idling) {   /* only DONE ends IDLE */
    if (!strcasecmp(line, "DONE")) {
      c->idling = 0;
      reply(c, "OK IDLE terminated");
    }
    return 1;
  }
  if (c->awaiting_sasl) {   /* the SASL response; any is fine */
    c->awaiting_sasl = 0;
    reply(c, LOGGED_IN);
    return 1;
  }
  if (!c->have_cmd) begin(c, line);
  if (literal_at_end(c, line, len)) return 1;
  c->have_cmd = 0;
  if (!strcmp(c->cmd, "AUTHENTICATE")) {
    authenticate(c, line);
    return 1;
  }
  return command(c);
}

/* Skips literal bytes and handles whole lines, but holds off while a FETCH
 * body is still streaming so that replies never land inside it. */
static void on_read(struct bufferevent *bev, void *arg) {
  struct conn *c = arg;
  struct evbuffer *in = bufferevent_get_input(bev);
  while (!c->fetch_left && !c->closing) {
    if (c->skip) {
      size_t n = evbuffer_get_length(in);
      if (n == 0) return;
      size_t d = n < c->skip ? n : c->skip;
      evbuffer_drain(in, d);
      c->skip -= d;
      continue;
    }
    size_t len;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF);
    if (!line) return;
    int keep = on_line(c, line, len);
    free(line);
    if (!keep) {   /* close once the goodbye is written (on_write) */
      c->closing = 1;
      bufferevent_disable(bev, EV_READ);
    }
  }
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
  (void)bev;
  if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) conn_free(arg);
}

/* A new client: a small struct, a bufferevent and the greeting. */
static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg) {
  (void)sa; (void)salen; (void)arg;
  struct conn *c = calloc(1, sizeof *c);
  if (!c) {
    evutil_closesocket(fd);
    return;
  }
  c->bev = bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE);
  if (!c->bev) {
    evutil_closesocket(fd);
    free(c);
    return;
  }
  bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
  bufferevent_enable(c->bev, EV_READ | EV_WRITE);
  send_str(c, "* OK [CAPABILITY " CAPS "] stub ready\r\n");
}

/* Accept errors (EMFILE under overload) are reported, not fatal. */
static void on_accept_error(struct evconnlistener *l, void *arg) {
  (void)l; (void)arg;
  fprintf(stderr, "usher-stub-backend: accept: %s\n",
          evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

/* As many descriptors as the hard limit allows. */
static void raise_nofile(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

int main(int argc, char **argv) {
  int port = argc >= 2 ? atoi(argv[1]) : 0;
  if (port <= 0 || port > 65535) {
    fprintf(stderr, "usage: %s PORT [--fetch-size BYTES]\n", argv[0]);
    return 2;
  }
  for (int i = 2; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--fetch-size")) fetch_size = strtoull(argv[++i], NULL, 10);
  raise_nofile();
  body_init();
  struct event_base *base = event_base_new();
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  struct evconnlistener *l = evconnlistener_new_bind(
      base, on_accept, NULL, LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 4096,
      (struct sockaddr *)&sin, sizeof sin);
  if (!l) {
    perror("usher-stub-backend: listen");
    return 1;
  }
  evconnlistener_set_error_cb(l, on_accept_error);
  event_base_dispatch(base);
  evconnlistener_free(l);
  event_base_free(base);
  return 0;
}
