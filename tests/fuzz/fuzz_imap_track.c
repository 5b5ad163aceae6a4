/* Fuzz target for proxy/imap_track: the input is a list of steps, a
 * control byte (bit 0: which direction, the rest: the step's length - 1)
 * then that many bytes. One tracker gets each step in one call, another
 * byte by byte; both must end in the same view, and neither may crash,
 * leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/imap_track.h"

static void feed(struct imap_track *t, int to_server, const char *p, size_t n) {
  if (to_server) imap_track_server(t, p, n);
  else imap_track_client(t, p, n);
}

static void check_same(const struct imap_track *a, const struct imap_track *b) {
  struct imap_track_view va, vb;
  imap_track_view(a, &va);
  imap_track_view(b, &vb);
  if (va.mailbox_len != vb.mailbox_len ||
      (va.mailbox_len && memcmp(va.mailbox, vb.mailbox, va.mailbox_len) != 0))
    abort();
  if (va.idle_tag_len != vb.idle_tag_len) abort();
  va.mailbox = vb.mailbox = va.idle_tag = vb.idle_tag = NULL;
  if (memcmp(&va, &vb, sizeof va) != 0) abort();
  const char *wa, *wb;
  int ra = imap_track_rehomable(a, &wa), rb = imap_track_rehomable(b, &wb);
  if (ra != rb || (!ra && (!wa || !wb || strcmp(wa, wb) != 0))) abort();
  if (imap_track_state(a) != imap_track_state(b)) abort();
  char list[64];
  imap_track_enabled_list(&va, list, sizeof list);
  if (strlen(list) >= sizeof list) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct imap_track *whole = imap_track_new(), *bytes = imap_track_new();
  if (!whole || !bytes) abort();
  size_t at = 0;
  while (at < size) {
    int to_server = data[at] & 1;
    size_t n = (size_t)(data[at] >> 1) + 1;
    at++;
    if (n > size - at) n = size - at;
    const char *p = (const char *)data + at;
    feed(whole, to_server, p, n);
    for (size_t i = 0; i < n; i++) feed(bytes, to_server, p + i, 1);
    at += n;
  }
  check_same(whole, bytes);
  imap_track_free(whole);
  imap_track_free(bytes);
  return 0;
}
