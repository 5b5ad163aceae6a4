/* The IMAP dialogue before login (preauth.c): the greeting, CAPABILITY,
 * NOOP, LOGOUT, ID, STARTTLS (through tlsaccept.h), LOGIN and
 * AUTHENTICATE PLAIN. It owns the client from its start (after the PROXY
 * header, if any) until a LOGIN with credentials, which it hands to the
 * login handler; the login brings it back after a failure. */
#ifndef USHER_PROXY_PREAUTH_H
#define USHER_PROXY_PREAUTH_H

struct client;

/* Takes a client's credentials (checked for length, not yet for
 * anything else). From then on the client is the handler's; tag, user and
 * pass are copied if they are kept. */
typedef void preauth_login_fn(struct client *c, const char *tag, const char *user,
                              const char *pass, const char *mech);

/* Once per worker: who takes the logins. */
void preauth_setup(preauth_login_fn *login);
/* The stage begins on c: the parser, the pre-auth timer, then the
 * greeting, or on implicit TLS the handshake and the greeting behind it.
 * A failure to start TLS frees c. */
void preauth_start(struct client *c);
/* Back to reading commands after a login that was answered NO: the
 * login's tag and password are forgotten, pipelined commands run. */
void preauth_resume(struct client *c);
/* The parser goes: at the relay, or when c goes away. */
void preauth_free(struct client *c);

#endif
