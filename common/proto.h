/* The worker <-> sessiond protocol.
 *
 * Transport: a unix stream socket (runtime_dir/sessiond.sock). Every message
 * is one frame:
 *
 *   uint32  body length, big-endian (1 .. PROTO_MAX_BODY)
 *   uint8   message type (enum proto_type)
 *   fields  each: uint8 tag (enum proto_tag), uint16 length big-endian, value
 *
 * Integer fields are big-endian of the width their tag implies (u8, u16,
 * u32, u64: see proto.c's table). String fields carry their bytes followed
 * by one NUL that is counted in the length; a string with an interior NUL or
 * without the final NUL is a decoding error. A field's tag may appear once.
 * Unknown tags are skipped, so either side can be upgraded first; a field
 * that is absent decodes as 0 / NULL.
 *
 * Messages (w = worker, s = sessiond):
 *   HELLO          w->s  worker_id, pid
 *   LOGIN          w->s  req, session, user, password, client_addr,
 *                        client_port, local_addr, local_port, tls, mech
 *   LOGIN_REPLY    s->w  req, session, result, delay_ms, user (canonical:
 *                        the name the backend gets; absent in the answer to
 *                        BACKEND_FAILED: the name stays), seat (the name the
 *                        user's seat is kept under, when it is not user),
 *                        backend, backend_addr (host:port), reason (log
 *                        text), and with OK a ticket; a worker that gets an
 *                        OK for a client that has gone answers SESSION_END
 *                        for that session
 *   BACKEND_FAILED w->s  req, session, backend, reason; answered by a
 *                        LOGIN_REPLY with the same req: another seat, or not
 *   SESSION_UP     w->s  session, user, seat, backend, client_addr,
 *                        client_port, ticket (the one of the session's last
 *                        LOGIN_REPLY OK); sent for every relayed session
 *                        when the worker reconnects to a restarted sessiond
 *                        (a session counts from its LOGIN_REPLY OK otherwise)
 *   SESSION_END    w->s  session, bytes_in, bytes_out, duration_ms, reason;
 *                        for every session that got a LOGIN_REPLY OK,
 *                        whether or not it came up
 *   KICK           s->w  session, reason, rehome: close that session with
 *                        * BYE; with rehome = 1 re-home it instead (REHOME),
 *                        and a worker that cannot closes it as without
 *   REHOME         w->s  req, session, user (canonical), seat, backend (the
 *                        old one), ticket (the session's last LOGIN_REPLY
 *                        OK's), reason ("backend_failed", "moved",
 *                        "drain"), client_addr, client_port; sent once the
 *                        worker has closed its connection to the old
 *                        backend. Answered by a LOGIN_REPLY with the same
 *                        req: OK with user, seat, backend, backend_addr, a
 *                        new ticket, master_user and password (log in as
 *                        SASL PLAIN authzid = user, authcid = master_user),
 *                        or UNAVAILABLE (end the session with
 *                        BYE [UNAVAILABLE])
 *   REHOME_DONE    w->s  session, result (0: resumed, 1: ended instead),
 *                        reason (why it ended: the worker's word, [a-z_]),
 *                        duration_ms (from the old backend's loss to the
 *                        relay going on); once per re-home the worker
 *                        started or ended at once (rehome.h), before the
 *                        session's SESSION_END; counted, never acted
 *                        on (sessiond/rehome_stats.h)
 *
 * What sessiond checks (a worker may have been taken over; details and
 * what such a worker can still do: sessiond/workers.c):
 *   - HELLO comes first and once; the peer's pid is the kernel's
 *     (SO_PEERCRED) and, with [usher] worker_peer_check (default), must be
 *     a child of the master and equal HELLO's pid; anything else on the
 *     socket is closed.
 *   - The ticket is HMAC-SHA256, in hex (PROTO_TICKET_HEX_LEN), under a key
 *     the master makes at start and gives every sessiond it starts (never
 *     a worker), over: session NUL seat name (the seat field, else user)
 *     NUL backend NUL worker_id (decimal) NUL pid (decimal). SESSION_UP is believed only with a ticket that
 *     checks for this connection's worker id and pid, on a configured
 *     backend, and, if sessiond knows the session, from its holder with
 *     its user and backend; refused, it is answered with KICK.
 *   - REHOME is believed only with a ticket that checks as SESSION_UP's
 *     does, and, if sessiond knows the session, from its holder with its
 *     user and old backend; refused, it is answered UNAVAILABLE.
 *   - LOGIN, BACKEND_FAILED and SESSION_END name a well-formed session id
 *     (16 hex digits) that no other worker process holds; BACKEND_FAILED
 *     names the backend sessiond gave that session.
 *   Refused messages change nothing and are counted (usherctl status:
 *   worker_refused); the first one of a connection is logged.
 */
#ifndef USHER_PROTO_H
#define USHER_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PROTO_MAX_BODY 65536
#define PROTO_HDR_LEN 4

/* The key sessiond seals tickets with (the master makes it and hands it to
 * each sessiond it starts), and a ticket's length in hex: HMAC-SHA256. */
#define PROTO_SESSION_KEY_LEN 32
#define PROTO_TICKET_HEX_LEN 64

enum proto_type {
  PROTO_HELLO = 1,
  PROTO_LOGIN = 2,
  PROTO_LOGIN_REPLY = 3,
  PROTO_BACKEND_FAILED = 4,
  PROTO_SESSION_UP = 5,
  PROTO_SESSION_END = 6,
  PROTO_KICK = 7,
  PROTO_REHOME = 8,
  PROTO_REHOME_DONE = 9,
};

enum proto_result {
  PROTO_OK = 0,
  PROTO_AUTH_FAILED = 1,     /* wrong user or password: NO [AUTHENTICATIONFAILED] */
  PROTO_UNAVAILABLE = 2,     /* no backend, database down, overloaded: NO [UNAVAILABLE] */
  PROTO_THROTTLED = 3,       /* too many failures: NO [UNAVAILABLE] after delay */
  PROTO_LIMIT = 4,           /* too many sessions of this user: NO [LIMIT] */
};

enum proto_tag {
  PT_REQ = 1,          /* u32 */
  PT_RESULT = 2,       /* u32 */
  PT_DELAY_MS = 3,     /* u32 */
  PT_WORKER_ID = 4,    /* u32 */
  PT_PID = 5,          /* u32 */
  PT_BYTES_IN = 6,     /* u64 */
  PT_BYTES_OUT = 7,    /* u64 */
  PT_DURATION_MS = 8,  /* u64 */
  PT_CLIENT_PORT = 9,  /* u16 */
  PT_LOCAL_PORT = 10,  /* u16 */
  PT_TLS = 11,         /* u8 */
  PT_REHOME = 12,      /* u8, in KICK: 1 = re-home the session instead of closing it */
  PT_SESSION = 32,     /* string */
  PT_USER = 33,
  PT_PASSWORD = 34,
  PT_CLIENT_ADDR = 35,
  PT_LOCAL_ADDR = 36,
  PT_MECH = 37,
  PT_BACKEND = 38,
  PT_BACKEND_ADDR = 39,
  PT_REASON = 40,
  PT_SEAT = 41,
  PT_TICKET = 42,      /* LOGIN_REPLY OK's seal, presented in SESSION_UP and REHOME */
  PT_MASTER_USER = 43, /* LOGIN_REPLY OK to REHOME: the backend's master user */
};

/* A decoded or to-be-encoded message. Strings are NUL-terminated; after
 * proto_decode they point into the body buffer that was decoded, which must
 * outlive the struct. */
struct proto_msg {
  enum proto_type type;
  uint32_t req;
  uint32_t result;
  uint32_t delay_ms;
  uint32_t worker_id;
  uint32_t pid;
  uint64_t bytes_in;
  uint64_t bytes_out;
  uint64_t duration_ms;
  uint16_t client_port;
  uint16_t local_port;
  uint8_t tls;
  uint8_t rehome;
  const char *session;
  const char *user;
  const char *password;
  const char *client_addr;
  const char *local_addr;
  const char *mech;
  const char *backend;
  const char *backend_addr;
  const char *reason;
  const char *seat;
  const char *ticket;
  const char *master_user;
};

/* Encodes m as a whole frame (header included) into buf. Zero integers and
 * NULL strings are omitted. Returns the frame length, or -1 if it does not
 * fit in cap or the body would exceed PROTO_MAX_BODY. */
ssize_t proto_encode(const struct proto_msg *m, uint8_t *buf, size_t cap);

/* Reads the body length from a 4-byte header; returns 0 if it is out of
 * range (the peer is broken: drop the connection). */
size_t proto_body_len(const uint8_t hdr[PROTO_HDR_LEN]);

/* Decodes a body (without the header) into m. body is modified in place
 * (nothing is copied). Returns 0, or -1 on any malformation. */
int proto_decode(uint8_t *body, size_t len, struct proto_msg *m);

const char *proto_type_name(enum proto_type t);

/* Transport helpers over libevent, shared by both ends. */
struct evbuffer;
struct bufferevent;

/* Takes one whole frame's body out of `in` into body (PROTO_MAX_BODY
 * bytes). Returns 1 with *len set, 0 when the frame is not complete yet,
 * -1 when the length is out of range (drop the connection). */
int proto_frame_pop(struct evbuffer *in, uint8_t *body, size_t *len);

/* Frames to one peer, gathered during a loop turn and sent together at
 * its end: under load one send and one wake-up of the peer carry many
 * logins, replies and session ends, where each used to take its own.
 * Order is kept: every frame to that peer goes through the batch. A frame
 * with a password waits there only until the turn ends; the buffer is
 * wiped once sent or dropped. */
struct event_base;
struct proto_batch;

struct proto_batch *proto_batch_new(struct event_base *base);

/* Where the frames go: a connected socket bufferevent, or NULL (the peer
 * is gone: what waits is dropped). */
void proto_batch_set_bev(struct proto_batch *b, struct bufferevent *bev);

/* Encodes m into the batch. Returns 0, or -1 (no peer, or m does not
 * encode). */
int proto_batch_add(struct proto_batch *b, const struct proto_msg *m);

/* The same for a frame nobody waits on (a session's end): it goes with the
 * next frame that must leave this turn, or at the latest PROTO_LINGER_MS
 * later. Each session's end used to take a send and a wake-up of sessiond
 * of its own; order with the other frames is kept. */
#define PROTO_LINGER_MS 20
int proto_batch_add_lazy(struct proto_batch *b, const struct proto_msg *m);

/* Sends what waits now (also what the end of the turn does). */
void proto_batch_flush(struct proto_batch *b);

/* Drops what waits (nothing is sent) and frees b. */
void proto_batch_free(struct proto_batch *b);

#endif
