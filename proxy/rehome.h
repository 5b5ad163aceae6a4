/* Re-homing a relayed session (issue 24): its backend connection has
 * failed, or sessiond asks to move it (usherctl move, a drain), and the
 * client keeps its connection while only the backend behind it changes.
 *
 *   1. The tracker (imap_track.h) says whether the session can move
 *      exactly: no command in flight but IDLE, both directions at a
 *      boundary, no COMPRESS. If not, the session ends as before.
 *   2. The old backend connection is closed first and the client's input
 *      is held (bounded by time: [routing] rehome_timeout), then sessiond
 *      is asked for a route (REHOME with the session's ticket). sessiond
 *      keeps the seat rule: the user's sessions leave the old backend
 *      everywhere before the new seat is given out.
 *   3. The new backend logs the user in with the master credential that
 *      sessiond hands out for this one login (SASL PLAIN, the user as
 *      authorization identity); it is wiped once sent.
 *   4. The restore dialogue (restore.h) replays ENABLE, the selection and
 *      IDLE, and judges the client's view; what changed is told to the
 *      client (EXISTS, FETCH) and the relay goes on.
 *   Any failure ends the session with * BYE [UNAVAILABLE], logged with
 *   its reason (event=rehome_end). */
#ifndef USHER_PROXY_REHOME_H
#define USHER_PROXY_REHOME_H

struct client;
struct proto_msg;

/* Starts re-homing c (a relayed session) for reason ("backend_failed",
 * "moved"). Returns 1 if it took c: the move started (c belongs to this
 * module until the relay resumes or c is closed), or c could not move
 * exactly and is being closed with * BYE [UNAVAILABLE]. Returns 0 when
 * re-homing is off or the session was ending anyway (LOGOUT, the server's
 * BYE): the caller ends it as it always has. The reason is logged here. */
int rehome_begin(struct client *c, const char *reason);
/* sessiond's LOGIN_REPLY to c's REHOME. */
void rehome_reply(struct client *c, const struct proto_msg *m);
/* c is re-homing on the route sessiond gave (its REHOME is answered):
 * a restarted sessiond must learn of it as of a relayed session, with
 * the new backend and ticket (SESSION_UP). */
int rehome_routed(const struct client *c);
/* sessiond went away before answering: the session ends. */
void rehome_lost(struct client *c);
/* c goes away: what the re-home holds is freed. */
void rehome_release(struct client *c);

#endif
