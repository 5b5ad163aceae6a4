/* The cluster's event bus: the Redis channel usher:events that every
 * sessiond subscribes to, and the resync after Redis (re)connects. One
 * place that knows which module each kind of event belongs to:
 *   kick HEX GEN          a seat moved or was kicked (seatstore)
 *   backend NAME ...      an operator changed a backend, or
 *     ... health down|up MS PROXY  a proxy's own health verdict (backends)
 *   flush HEX, flushall   auth cache entries to forget
 *   ban ip|user|pair ...  a throttling ban (throttle) */
#ifndef USHER_SESSIOND_EVENTS_H
#define USHER_SESSIOND_EVENTS_H

#include <stddef.h>

/* Both take the struct sessiond as a void pointer: they are Redis's callbacks. */
void events_on_message(void *sd, const char *payload, size_t len);
/* Events may have been missed while the subscription was down. */
void events_on_resync(void *sd);

#endif
