/* Restoring a re-homed session's IMAP state on its new backend, and
 * proving that the client's view still holds (issue 24).
 *
 * The re-homer (rehome.c) knows, from the tracker, what the client sees:
 * the extensions it ENABLEd, the mailbox it selected and how, its
 * UIDVALIDITY, its message count, a point where sequence numbers are tied
 * to UIDs, its HIGHESTMODSEQ with QRESYNC, and whether it is in IDLE. Once
 * the new backend has logged the user in, this dialogue replays that state
 * and checks the mailbox against the view:
 *
 *   U1 ENABLE ...                          the same extensions, if any
 *   U2 SELECT|EXAMINE mbox [(QRESYNC (uidvalidity modseq))]
 *   U3 UID SEARCH RETURN (COUNT) UID 1:u   how many messages up to the tie point remain
 *   tag IDLE                               the client's own tag; the "+" is swallowed
 *
 * The view holds when UIDVALIDITY is the same, none of the messages the
 * client knows has gone (the count up to the tie point is unchanged; the
 * messages announced after it, whose UIDs usher never saw, are provably
 * there only when QRESYNC reports nothing vanished), and the mailbox has
 * at least as many messages. New messages are then announced with EXISTS,
 * and with QRESYNC the backend's FETCH lines (flag changes) are passed on.
 * Anything else fails with a reason: the session ends, never with a wrong
 * view.
 *
 * This module is the dialogue only: lines in, commands and a verdict out.
 * The backend connection (backend.c) carries it. */
#ifndef USHER_PROXY_RESTORE_H
#define USHER_PROXY_RESTORE_H

#include <stddef.h>
#include <stdint.h>

struct restore_plan {
  const char *enable;        /* "CONDSTORE QRESYNC", or NULL/"": nothing ENABLEd */
  const char *mailbox;       /* an IMAP astring ready to send, or NULL: not selected */
  int examine;               /* selected read-only with EXAMINE */
  uint32_t uidvalidity;      /* the client's; 0: never told */
  uint32_t count;            /* the client's message count */
  /* Ties sequence numbers to UIDs: of the client's messages, exactly
   * known_seq have a UID <= known_uid (0/0: no tie known). */
  uint32_t known_seq, known_uid;
  uint64_t modseq;           /* with QRESYNC ENABLEd: the client's HIGHESTMODSEQ; 0 otherwise */
  const char *idle_tag;      /* in IDLE under this tag, or NULL */
};

enum restore_status { RESTORE_MORE, RESTORE_DONE, RESTORE_FAILED };

struct restore;

/* A dialogue for plan (its strings are copied). */
struct restore *restore_new(const struct restore_plan *plan);
void restore_free(struct restore *r);

/* The next command to send (CRLF included), or NULL when the dialogue
 * waits for answers. Call after restore_new and after each line. */
const char *restore_next(struct restore *r);
/* Where the dialogue stands: DONE at once for a plan with nothing to
 * replay (a session that never selected nor ENABLEd). */
enum restore_status restore_status(const struct restore *r);
/* One line from the backend, without its CRLF. */
enum restore_status restore_line(struct restore *r, const char *line, size_t len);
/* After RESTORE_FAILED: why (a string literal, for counters and logs). */
const char *restore_failure(const struct restore *r);
/* After RESTORE_DONE: what the client must be told before the relay goes
 * on (EXISTS, FETCH lines); may be empty. */
const char *restore_client_text(const struct restore *r, size_t *len);

#endif
