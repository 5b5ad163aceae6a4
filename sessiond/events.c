/* The cluster's event bus (see events.h): each event to the module it
 * belongs to. */
#include "sessiond/events.h"

#include <string.h>

#include "auth/authcache.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/seatstore.h"
#include "sessiond/throttle.h"

void events_on_message(void *arg, const char *payload, size_t len) {
  struct sessiond *sd = arg;
  uint8_t key[AUTHCACHE_HASH_LEN];
  if (len > 5 && !memcmp(payload, "kick ", 5)) {
    seatstore_on_event(sd, payload, len);
  } else if (len > 8 && !memcmp(payload, "backend ", 8)) {
    backends_on_event(sd, payload, len);
  } else if (len == 8 && !memcmp(payload, "flushall", 8)) {
    authcache_clear(sd->cache);
  } else if (len == 6 + AUTHCACHE_HEX_LEN && !memcmp(payload, "flush ", 6)) {
    if (authcache_unhex(payload + 6, AUTHCACHE_HEX_LEN, key) == 0) authcache_forget(sd->cache, key);
  } else if (len > 4 && !memcmp(payload, "ban ", 4)) {
    throttle_on_event(sd->throttle, payload, len);
  }
}

/* Events may have been missed while the subscription was down: whatever
 * the memory layer holds may have been flushed elsewhere meanwhile. */
void events_on_resync(void *arg) {
  struct sessiond *sd = arg;
  authcache_clear(sd->cache);
  backends_load(sd);
  seatstore_resync(sd);
}

