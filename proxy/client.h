/* A client connection in a proxy worker, from accept to close: its
 * socket, its timer, writing to it, closing and freeing it. This is the
 * bottom of a connection: it knows none of the stages a connection goes
 * through. The stage running now installs its handlers on the client
 * (client_set_handlers): the client calls them when input comes, when its
 * output is flushed, when its timer runs out. The owner (worker.c) gives
 * the hooks that run when the client goes.
 *
 * The stages, in order (client->state says which one runs):
 *   PROXY_HEADER the balancer's PROXY v2 header is being read (proxied.h)
 *   TLS_ACCEPT   TLS handshake (tlsaccept.h); on implicit TLS the greeting follows it
 *   PREAUTH      reading pre-auth commands (preauth.h)
 *   STARTTLS     "OK Begin TLS" is being flushed; then the TLS handshake
 *   AUTH_WAIT    LOGIN sent to sessiond, or held until the worker's link to
 *                sessiond is up (login.h); client input held (AUTH_WAIT_INPUT_MAX)
 *   AUTH_DELAY   failed login: waiting out the delay before answering NO
 *   BACKEND      connecting and logging in to the backend (backend.h)
 *   RELAY        bytes flow both ways (relay.h), followed by the tracker when
 *                re-homing is on (imap_track.h)
 *   REHOME       the backend behind the client changes (rehome.h); its input waits
 *   CLOSING      the last words (BYE, NO) are being flushed; then freed (here)
 *
 * The password lives in client->login->password from the client's LOGIN
 * until the backend login has been written, and is wiped then (or on
 * close). */
#ifndef USHER_PROXY_CLIENT_H
#define USHER_PROXY_CLIENT_H

#include <stdint.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "common/config.h"
#include "common/htable.h"
#include "common/netaddr.h"
#include "common/proto.h"
#include "proxy/env.h"
#include "proxy/side.h"

struct imap_parser;
struct proxy_read;
struct tls_accept;
struct backend_conn;
struct imap_track;
struct rehome;
struct client;

enum client_state {
  CS_PROXY_HEADER,
  CS_TLS_ACCEPT,
  CS_PREAUTH,
  CS_STARTTLS,
  CS_AUTH_WAIT,
  CS_AUTH_DELAY,
  CS_BACKEND,
  CS_RELAY,
  CS_REHOME,
  CS_CLOSING,
};

/* What the stage running now does with the client's events. Any may be
 * NULL. None is called once the client is CLOSING. */
struct client_handlers {
  void (*input)(struct client *c);     /* bytes came into the client's input */
  void (*flushed)(struct client *c);   /* everything written has left */
  void (*timer)(struct client *c);     /* the client's timer ran out */
  /* A stage that reads plain sockets itself (the relay): the reading
   * events of both sides (struct side's rd) call it, with c as arg. */
  event_callback_fn readable;
};

/* The owner's hooks. */
struct client_hooks {
  /* client_free: the stages let go of what they hold for c and the owner
   * forgets it, before the client's own parts (sockets, timer) go. */
  void (*release)(struct client *c, const char *reason);
  /* The relay lost c's backend connection (not after the client's end):
   * 1 if the owner takes c over (a re-home, rehome.h), 0 to end it as
   * always. */
  int (*backend_lost)(struct client *c);
};

/* What the pre-auth stage and a login under way hold, and a relayed
 * session does not: made when pre-auth starts (preauth.c), freed when the
 * relay starts (login.c) or with the client. The fields are the stages':
 * the parser and bad_commands pre-auth's, the rest login.c's, req and
 * req_node the sessiond link's, password backend.c's too. */
struct client_login {
  struct client *client;            /* whose */
  struct htable_node req_node;      /* the sessiond link's table of requests */
  struct client *wait_prev, *wait_next;   /* logins waiting for the link (login.c) */
  struct imap_parser *parser;
  unsigned bad_commands;
  unsigned failed_logins;
  char *tag;                        /* tag of the LOGIN/AUTHENTICATE in progress */
  char *password;
  int auth_continue;                /* AUTHENTICATE waiting for the client's line */
  uint32_t req;                     /* request id at sessiond, 0 = none */
  uint64_t login_ms;                /* when the LOGIN in progress began */
  int auth_result;                  /* proto_result waiting out its delay */
  const char *mech;                 /* "LOGIN" or "PLAIN", for logs */
  unsigned login_held : 1;          /* AUTH_WAIT: the LOGIN waits for the link (login.c) */
  unsigned login_resent : 1;        /* the LOGIN was sent again after sessiond died on it */
};

struct client {
  const struct proxy_env *env;
  const struct client_hooks *hooks;       /* the owner's */
  const struct client_handlers *handlers; /* the stage's */
  struct client *prev, *next;       /* worker's list of all clients */
  struct htable_node sid_node;      /* worker's table of sessions by id */

  uint64_t sid;                     /* session id, printed as 16 hex digits */
  char sid_hex[17];
  enum client_state state;
  const char *close_reason;         /* CS_CLOSING: why (a string literal) */
  /* The client's end: its socket (no bufferevent closes it), a socket or
   * TLS bufferevent, and, on a plain socket, the event that reads it from
   * the first byte to the close; on a TLS client the event reads the PROXY
   * header (proxied.c) and the handshake (tlsaccept.c), and is gone after. */
  struct side front;
  struct event *timer;              /* pre-auth timeouts, delays; NULL in relay */
  struct netaddr peer;              /* client address */
  struct netaddr local;             /* address it connected to */
  struct netaddr via;               /* the balancer it came through; len 0: direct */
  struct proxy_read *proxy_read;    /* PROXY_HEADER only (proxied.c) */
  const struct config_listener *listener;
  struct tls_accept *hs;            /* TLS_ACCEPT: the handshake (tlsaccept.c) */
  unsigned plaintext_ok : 1;        /* LOGIN allowed without TLS */
  unsigned counted : 1;             /* counted in the per-address limit */
  unsigned registered : 1;          /* sessiond knows the session (LOGIN OK) */
  unsigned backend_retried : 1;     /* one BACKEND_FAILED round used */
  unsigned free_armed : 1;          /* client_free_soon: freed on the timer */
  unsigned input_bounded : 1;       /* client_hold_input(c, 1) is in force */

  /* Pre-auth and login: NULL once relaying (see struct client_login). */
  struct client_login *login;
  uint64_t accepted_ms;
  char *user;                       /* as given, then canonical from sessiond */
  char *seat;                       /* the seat's name when it is not user (an LDAP entry's DN) */

  /* Backend. */
  char *backend_name;
  /* sessiond's seal on the route it gave (LOGIN_REPLY OK): what this worker
   * shows to re-register the session with a restarted sessiond. */
  char ticket[PROTO_TICKET_HEX_LEN + 1];
  struct backend_conn *backend;     /* BACKEND: the backend login (backend.h) */
  /* The backend's end: opened by backend.c, relayed by relay.c, closed
   * here (client_close_backend), and can be opened again on the same
   * client. */
  struct side back;

  /* Relay. */
  uint64_t bytes_in;                /* client -> backend */
  uint64_t bytes_out;               /* backend -> client */
  uint64_t relay_start_ms;
  struct imap_track *track;         /* what the client sees (imap_track.h); NULL: not followed */
  struct rehome *rehome;            /* CS_REHOME: the move under way (rehome.h) */
};

/* What a client may send while its login is under way, kept for the
 * relay (or for the next command, after a failure); then reading pauses. */
#define AUTH_WAIT_INPUT_MAX (64 * 1024)

/* A new client on socket fd, accepted on listener ls from sa: its
 * addresses, its session id, its timer. Nothing is read or written yet. */
struct client *client_new(const struct proxy_env *env, const struct client_hooks *hooks, int fd,
                          const struct config_listener *ls, const struct sockaddr *sa,
                          int salen);
/* The stage that runs from now on (h lives as long as the stage). */
void client_set_handlers(struct client *c, const struct client_handlers *h);
/* The plain socket's bufferevent, which only writes, and the client's own
 * event, which reads (see bev_send.h). */
void client_open_plain(struct client *c);
/* Before a TLS handshake on the socket: the plain bufferevent and reading
 * go; the socket stays. */
void client_drop_plain(struct client *c);
/* The TLS handshake is done: the session goes on on bev; has_input: the
 * client's bytes sent behind its Finished wait in bev's socket side. */
void client_tls_ready(struct client *c, struct bufferevent *bev, int has_input);
/* Queues text for the client (it must end in CRLF). */
void client_write(struct client *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sends the last words (may be NULL) then closes once they are flushed.
 * The backend side closes at once. */
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
/* Wipes and frees the login's password and tag (the login state stays). */
void client_forget_login(struct client *c);
/* The pre-auth and login state (struct client_login): made empty, and
 * freed with the password wiped (its parser must be freed already). */
void client_login_new(struct client *c);
void client_login_free(struct client *c);
/* Closes the back side and leaves it empty (side_close): the client and
 * its front side go on, and backend.c may open a fresh back side. After a
 * backend that closed first and was read to the end, with a reset: no
 * TIME_WAIT on the backend. */
void client_close_backend(struct client *c);

#endif
