/* Password verification off the event loop: a few threads run
 * passwd_verify(); each result comes back to the loop through a pipe and
 * calls the job's callback there. The queue is bounded: past it, submit
 * fails and the caller answers UNAVAILABLE rather than queueing forever. */
#ifndef USHER_SESSIOND_AUTHPOOL_H
#define USHER_SESSIOND_AUTHPOOL_H

#include <event2/event.h>

#include "auth/passwd.h"

typedef void (*authpool_done_fn)(void *cookie, enum passwd_result r);

struct authpool;

struct authpool *authpool_new(struct event_base *base, unsigned threads, unsigned queue_max);
/* Stops the threads; every job not yet delivered gets its callback now
 * (unfinished ones with PASSWD_MISMATCH), so cookies can be freed. */
void authpool_free(struct authpool *p);
/* Copies password and hash (the copy of the password is wiped after use).
 * Returns 0, or -1 when the queue is full. */
int authpool_submit(struct authpool *p, const char *password, const char *hash,
                    authpool_done_fn done, void *cookie);
unsigned authpool_queued(const struct authpool *p);

#endif
