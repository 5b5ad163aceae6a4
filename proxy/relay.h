/* The relay: after login, bytes flow both ways between the client and
 * its backend untouched, with back-pressure, until either side ends
 * (relay.c says how). It takes the client's handlers over and frees the
 * client when the session ends. */
#ifndef USHER_PROXY_RELAY_H
#define USHER_PROXY_RELAY_H

struct client;

/* Starts relaying between c's client side and its logged-in backend
 * side; what either has sent ahead goes on at once. */
void relay_start(struct client *c);
/* c goes away: the tracker goes with it. */
void relay_free(struct client *c);

#endif
