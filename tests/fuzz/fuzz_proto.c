/* libFuzzer target: the worker<->sessiond codec. A body that decodes must
 * encode to a frame that decodes to the same message. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto.h"

#define SAME_STR(a, b) ((!(a) && !(b)) || ((a) && (b) && !strcmp((a), (b))))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > PROTO_MAX_BODY) return 0;
  uint8_t *body = malloc(size ? size : 1);
  memcpy(body, data, size);
  struct proto_msg m;
  if (proto_decode(body, size, &m) == 0) {
    uint8_t *frame = malloc(PROTO_HDR_LEN + PROTO_MAX_BODY);
    ssize_t n = proto_encode(&m, frame, PROTO_HDR_LEN + PROTO_MAX_BODY);
    if (n >= PROTO_HDR_LEN) {
      struct proto_msg m2;
      if (proto_body_len(frame) != (size_t)n - PROTO_HDR_LEN) __builtin_trap();
      if (proto_decode(frame + PROTO_HDR_LEN, (size_t)n - PROTO_HDR_LEN, &m2) != 0) __builtin_trap();
      if (m2.type != m.type || m2.req != m.req || m2.bytes_in != m.bytes_in ||
          !SAME_STR(m.user, m2.user) || !SAME_STR(m.session, m2.session) ||
          !SAME_STR(m.password, m2.password))
        __builtin_trap();
    }
    free(frame);
  }
  free(body);
  return 0;
}
