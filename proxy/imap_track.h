/* Following a logged-in IMAP session at protocol level while the relay
 * moves its bytes unchanged, so that a re-homer (rehome.h) knows what the
 * client believes: the selected mailbox, its count and UID tie point,
 * what was ENABLEd, whether the client idles, what is in flight.
 *
 * The relay hands every chunk to the tracker in order, per direction; a
 * chunk may be split anywhere (inside a CRLF, a literal marker, a
 * literal). The tracker never holds more than IMAP_TRACK_LINE_KEEP bytes
 * of a line (plus a short tail, for a literal marker at its end) and skips
 * literals without looking at them. It copies nothing when a line arrives
 * whole in one chunk.
 *
 * What it cannot follow exactly (COMPRESS, garbage, a name too long to
 * keep) makes the session UNTRACKABLE for good, with a reason; parsing
 * then stops and the feeds cost nothing. The tracker never fails a
 * session: it only says whether the session can be moved. */
#ifndef USHER_PROXY_IMAP_TRACK_H
#define USHER_PROXY_IMAP_TRACK_H

#include <stddef.h>
#include <stdint.h>

/* Bounds (compile-time; the tracker takes no configuration of its own):
 * the prefix of a line looked at, a tag, a mailbox name, commands in
 * flight. Past them the session is UNTRACKABLE, never misread. */
#define IMAP_TRACK_LINE_KEEP 1024
#define IMAP_TRACK_TAG_MAX 32
#define IMAP_TRACK_MAILBOX_MAX 1024
#define IMAP_TRACK_INFLIGHT_MAX 64

struct imap_track;

struct imap_track *imap_track_new(void);      /* NULL when out of memory */
void imap_track_free(struct imap_track *t);   /* NULL is fine */

/* The bytes the client sent to the backend, and the backend to the client
 * (after usher's own additions, e.g. the re-homer's EXISTS), in order. */
void imap_track_client(struct imap_track *t, const char *p, size_t n);
void imap_track_server(struct imap_track *t, const char *p, size_t n);

enum imap_track_state {
  IMAP_TRACK_AUTHENTICATED,
  IMAP_TRACK_SELECTED,
  IMAP_TRACK_LOGOUT,        /* * BYE seen, or LOGOUT answered */
  IMAP_TRACK_UNTRACKABLE,   /* see imap_track_reason() */
};
enum imap_track_state imap_track_state(const struct imap_track *t);
/* Why UNTRACKABLE ("compress", "client_syntax", "mailbox_too_long", ...);
 * NULL while trackable. */
const char *imap_track_reason(const struct imap_track *t);

/* The ENABLEd extensions (from * ENABLED). */
#define IMAP_TRACK_EXT_CONDSTORE 0x01u
#define IMAP_TRACK_EXT_QRESYNC 0x02u
#define IMAP_TRACK_EXT_UTF8_ACCEPT 0x04u
#define IMAP_TRACK_EXT_IMAP4REV2 0x08u
#define IMAP_TRACK_EXT_OTHER 0x80u    /* something this list does not know */

/* How the client wrote the mailbox name in its SELECT/EXAMINE. */
enum imap_track_form { IMAP_TRACK_ATOM, IMAP_TRACK_QUOTED, IMAP_TRACK_LITERAL };

struct imap_track_view {
  int selected;                 /* a mailbox is selected (SELECT/EXAMINE answered OK) */
  const char *mailbox; size_t mailbox_len;   /* its name, the client's bytes (unquoted/unescaped) */
  enum imap_track_form mailbox_form;
  int examine;                  /* selected with EXAMINE, or the OK said [READ-ONLY] */
  uint32_t uidvalidity;         /* 0: never seen */
  uint32_t exists;              /* the client's message count */
  uint32_t uidnext;             /* 0: never seen */
  /* The tie point: of the client's messages, exactly known_seq have a UID
     <= known_uid. Set at the SELECT's answer from EXISTS E and UIDNEXT U:
     (E, U-1); raised by "* s FETCH (... UID u ...)" to (s, u) when u >
     known_uid; an EXPUNGE of k <= known_seq lowers known_seq by one; a
     VANISHED (no EARLIER) set lowers it by its UIDs <= known_uid. EXISTS
     leaves it. (0,0): none. */
  uint32_t known_seq, known_uid;
  unsigned enabled;             /* IMAP_TRACK_EXT_* */
  int qresync;                  /* QRESYNC ENABLEd */
  uint64_t highestmodseq;       /* the client's, 0: never seen */
  int idling;                   /* IDLE in progress (the server sent its "+") */
  const char *idle_tag; size_t idle_tag_len;   /* the IDLE command's tag */
  unsigned in_flight;           /* commands sent and not yet answered */
};

/* Fills v; its pointers live until the next feed or imap_track_free. */
void imap_track_view(const struct imap_track *t, struct imap_track_view *v);
/* What t holds now, in bytes: the struct and what it allocated (by the
 * sizes asked of malloc), for the footprint goal of 256 bytes a session. */
size_t imap_track_bytes_held(const struct imap_track *t);
/* The tag of the i-th command in flight (oldest first), NULL past the
 * last; valid until the next feed. */
const char *imap_track_in_flight_tag(const struct imap_track *t, unsigned i, size_t *len);
/* The ENABLEd extensions as a space-separated list for "ENABLE <list>"
   ("" if none); never writes past buf[cap-1], always terminated (cap > 0). */
void imap_track_enabled_list(const struct imap_track_view *v, char *buf, size_t cap);
/* 1 if the session can be moved exactly now; else 0 and *why (a static
 * string): "compress", "untrackable"-like reasons, "logout",
 * "unknown_extension", "in_flight" (an IDLE in progress is no obstacle),
 * "mid_command", "mid_response". */
int imap_track_rehomable(const struct imap_track *t, const char **why);

#endif
