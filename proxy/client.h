/* A client connection in a proxy worker, from accept to close.
 *
 * Lifecycle (client->state):
 *   PROXY_HEADER the balancer's PROXY v2 header is being read (proxied.c)
 *   TLS_ACCEPT   TLS handshake (tlsaccept.c); on implicit TLS the greeting follows it
 *   PREAUTH      reading pre-auth commands (preauth.c)
 *   STARTTLS     "OK Begin TLS" is being flushed; then the TLS handshake
 *   AUTH_WAIT    LOGIN sent to sessiond, or held until the worker's link to
 *                sessiond is up (login_held); client input held (AUTH_WAIT_INPUT_MAX)
 *   AUTH_DELAY   failed login: waiting out the delay before answering NO
 *   BACKEND      connecting and logging in to the backend (backend.c)
 *   RELAY        bytes flow both ways (relay.c)
 *   CLOSING      the last words (BYE, NO) are being flushed; then freed
 *
 * The password lives in client->password from the client's LOGIN until the
 * backend login has been written, and is wiped then (or on close). */
#ifndef USHER_PROXY_CLIENT_H
#define USHER_PROXY_CLIENT_H

#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/netaddr.h"
#include "common/proto.h"

struct worker;
struct imap_parser;

enum client_state {
  CS_PROXY_HEADER,
  CS_TLS_ACCEPT,
  CS_PREAUTH,
  CS_STARTTLS,
  CS_AUTH_WAIT,
  CS_AUTH_DELAY,
  CS_BACKEND,
  CS_RELAY,
  CS_CLOSING,
};

/* The backend login dialogue's steps (backend.c). */
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
};

struct client {
  struct worker *w;
  struct client *prev, *next;       /* worker's list of all clients */
  struct client *req_next;          /* worker's table of requests to sessiond */
  struct client *sid_next;          /* worker's table of sessions by id */

  uint64_t sid;                     /* session id, printed as 16 hex digits */
  char sid_hex[17];
  enum client_state state;
  const char *close_reason;         /* CS_CLOSING: why (a string literal) */
  int fd;                           /* client socket (bufferevents never close it) */
  struct bufferevent *cbev;         /* client side, socket or TLS */
  struct event *timer;              /* pre-auth timeouts, delays; NULL in relay */
  struct netaddr peer;              /* client address */
  struct netaddr local;             /* address it connected to */
  struct netaddr via;               /* the balancer it came through; len 0: direct */
  struct proxy_read *proxy_read;    /* PROXY_HEADER only */
  const struct config_listener *listener;
  struct ssl_st *hs;                /* TLS_ACCEPT: the handshake's SSL (tlsaccept.c) */
  unsigned is_tls : 1;              /* client side runs TLS (now) */
  unsigned plaintext_ok : 1;        /* LOGIN allowed without TLS */
  unsigned counted : 1;             /* counted in the per-address limit */
  unsigned registered : 1;          /* sessiond knows the session (LOGIN OK) */
  unsigned backend_retried : 1;     /* one BACKEND_FAILED round used */
  unsigned free_armed : 1;          /* client_free_soon: freed on the timer */
  unsigned login_held : 1;          /* AUTH_WAIT: the LOGIN waits for the link (sessiond_link.c) */
  unsigned login_resent : 1;        /* the LOGIN was sent again after sessiond died on it */

  /* Pre-auth. */
  struct imap_parser *parser;
  unsigned bad_commands;
  unsigned failed_logins;
  uint64_t accepted_ms;
  char *tag;                        /* tag of the LOGIN/AUTHENTICATE in progress */
  char *user;                       /* as given, then canonical from sessiond */
  char *seat;                       /* the seat's name when it is not user (an LDAP entry's DN) */
  char *password;
  int auth_continue;                /* AUTHENTICATE waiting for the client's line */
  uint32_t req;                     /* request id at sessiond, 0 = none */
  uint64_t login_ms;                /* when the LOGIN in progress began */
  int auth_result;                  /* proto_result waiting out its delay */
  const char *mech;                 /* "LOGIN" or "PLAIN", for logs */

  /* Backend. */
  char *backend_name;
  /* sessiond's seal on the route it gave (LOGIN_REPLY OK): what this worker
   * shows to re-register the session with a restarted sessiond. */
  char ticket[PROTO_TICKET_HEX_LEN + 1];
  struct netaddr backend_addr;
  const struct config_backend *backend_cfg;
  int bfd;
  struct bufferevent *bbev;
  enum backend_step bstep;
  unsigned bcaps;                   /* BCAP_* of the backend */
  char *bcapability;                /* post-login CAPABILITY for the client */

  /* Relay. */
  uint64_t bytes_in;                /* client -> backend */
  uint64_t bytes_out;               /* backend -> client */
  uint64_t relay_start_ms;
  struct event *rd[2];              /* reading a plain client [0] / backend [1] socket,
                                       from the first byte to the close; on a TLS
                                       client, [0] reads the PROXY header (proxied.c)
                                       and the handshake (tlsaccept.c), and is gone
                                       after it */
  int client_eof, backend_eof;
};

/* What a client may send while its login is under way, kept for the
 * relay (or for the next command, after a failure); then reading pauses. */
#define AUTH_WAIT_INPUT_MAX (64 * 1024)

/* Backend capabilities that the login dialogue cares about. */
#define BCAP_KNOWN    0x01   /* we have seen a CAPABILITY list */
#define BCAP_STARTTLS 0x02
#define BCAP_AUTHPLAIN 0x04
#define BCAP_SASLIR   0x08
#define BCAP_ID       0x10
#define BCAP_LOGINDISABLED 0x20
#define BCAP_LITERALPLUS 0x40

/* client.c */
void client_accept(struct worker *w, int fd, const struct config_listener *ls,
                   const struct sockaddr *sa, int salen);
/* With the client's real address known: limits, TLS, greeting. */
void client_begin(struct client *c);
/* Queues text for the client (it must end in CRLF). */
void client_write(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends the last words (may be NULL) then closes once they are flushed. */
void client_close(struct client *c, const char *last_words, const char *reason);
/* Frees at once. Not from a callback that can run inside a write. */
void client_free(struct client *c, const char *reason);
/* Silences the client now and frees it on the next loop turn: for the
 * callbacks of TLS filters, which can run inside a write whose caller
 * still holds c (see client.c). */
void client_free_soon(struct client *c, const char *reason);
/* (Re)arms the client timer; 0 disarms. */
void client_timer(struct client *c, uint64_t ms);
/* While a login is under way (1), reading stops once AUTH_WAIT_INPUT_MAX
 * bytes wait in the input; 0 lifts the bound. */
void client_hold_input(struct client *c, int hold);
/* Pauses (0) or resumes (1) reading from the client. */
void client_reading(struct client *c, int on);
/* Starts the TLS handshake on the client's socket (implicit TLS or STARTTLS). */
int client_start_tls(struct client *c);
/* tlsaccept.c has finished the handshake: the session goes on on bev;
 * has_input: the client's bytes sent behind its Finished wait in bev's
 * socket side. */
void client_tls_ready(struct client *c, struct bufferevent *bev, int has_input);
/* Wipes and frees the login's user/password/tag. */
void client_forget_login(struct client *c);
/* The sessiond link lost or answered: see sessiond_link.h */

/* tlsaccept.c: the server side of the handshake, on c->fd. 0 or -1. */
int tls_accept_start(struct client *c);
/* A handshake that will not finish: its SSL goes. */
void tls_accept_free(struct client *c);

/* preauth.c */
void preauth_greet(struct client *c);
/* The greeting line into out; its length, 0 if it does not fit. */
size_t preauth_greeting(const struct client *c, char *out, size_t outlen);
void preauth_read(struct client *c);
/* The parser's literal check (imap_parser_set_literal_check), client = c. */
int preauth_literal_refused(void *client, const char *tag, const char *name);
/* sessiond's answer to our LOGIN. */
void preauth_login_reply(struct client *c, int result, uint32_t delay_ms, const char *user,
                         const char *backend, const char *backend_addr);
void preauth_timer(struct client *c);

/* proxied.c: a listener behind a balancer; client_begin follows the header. */
void proxied_start(struct client *c);

/* backend.c */
void backend_start(struct client *c);
void backend_timer(struct client *c);
void backend_free(struct client *c);

/* relay.c */
void relay_start(struct client *c);
/* The read event of a plain socket (either side) once relaying. */
void relay_plain_readable(evutil_socket_t fd, short what, void *arg);


#endif
