/* PROXY protocol v2 header parsing. The layout:
 *
 *   12 bytes  signature \r\n\r\n\0\r\nQUIT\n
 *    1 byte   version (high nibble, 2) and command (low: 0 LOCAL, 1 PROXY)
 *    1 byte   family (high: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX) and
 *             transport (low: 0 UNSPEC, 1 STREAM, 2 DGRAM)
 *    2 bytes  length of what follows, network order
 *   then      addresses (INET: 4+4+2+2, INET6: 16+16+2+2), then TLVs. */
#include "proxy/proxyproto.h"

#include <netinet/in.h>
#include <string.h>

static const uint8_t signature[PROXYPROTO_SIG_LEN] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

#define COMMAND_LOCAL 0x0
#define COMMAND_PROXY 0x1
#define FAMILY_INET 0x1
#define FAMILY_INET6 0x2
#define FAMILY_UNIX 0x3
#define TRANSPORT_STREAM 0x1
#define TRANSPORT_DGRAM 0x2
#define INET_BLOCK 12
#define INET6_BLOCK 36

static void set_inet(struct netaddr *a, const uint8_t *addr, const uint8_t *port) {
  struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
  memset(a, 0, sizeof *a);
  s4->sin_family = AF_INET;
  memcpy(&s4->sin_addr, addr, 4);
  memcpy(&s4->sin_port, port, 2);   /* both in network order */
  a->len = sizeof *s4;
}

static void set_inet6(struct netaddr *a, const uint8_t *addr, const uint8_t *port) {
  static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (!memcmp(addr, v4_mapped, sizeof v4_mapped)) {   /* an IPv4 client: see netaddr.h */
    set_inet(a, addr + 12, port);
    return;
  }
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
  memset(a, 0, sizeof *a);
  s6->sin6_family = AF_INET6;
  memcpy(&s6->sin6_addr, addr, 16);
  memcpy(&s6->sin6_port, port, 2);
  a->len = sizeof *s6;
}

/* The address block of a PROXY command; -1 if too short for its family. */
static int parse_addresses(const uint8_t *body, size_t body_len, uint8_t fam_byte,
                           struct proxyproto_header *h) {
  unsigned family = fam_byte >> 4, transport = fam_byte & 0xf;
  if (transport != TRANSPORT_STREAM || (family != FAMILY_INET && family != FAMILY_INET6))
    return 0;   /* UNSPEC, UNIX, datagrams: the caller keeps the socket's addresses */
  if (family == FAMILY_INET) {
    if (body_len < INET_BLOCK) return -1;
    set_inet(&h->src, body, body + 8);
    set_inet(&h->dst, body + 4, body + 10);
  } else {
    if (body_len < INET6_BLOCK) return -1;
    set_inet6(&h->src, body, body + 32);
    set_inet6(&h->dst, body + 16, body + 34);
  }
  return 0;
}

/* Bytes 13 and 14, as far as they have arrived: -1 as soon as they rule
 * the header out, so a bad sender is dropped without waiting for more. */
static int check_command_family(const uint8_t *buf, size_t len) {
  if (len <= 12) return 0;
  unsigned version = buf[12] >> 4, command = buf[12] & 0xf;
  if (version != 2 || command > COMMAND_PROXY) return -1;
  if (len <= 13 || command == COMMAND_LOCAL) return 0;   /* LOCAL ignores the family */
  /* The spec names families 0-3 and transports 0-2, and tells receivers
   * to refuse anything else. */
  unsigned family = buf[13] >> 4, transport = buf[13] & 0xf;
  if (family > FAMILY_UNIX || transport > TRANSPORT_DGRAM) return -1;
  return 0;
}

int proxyproto_parse(const uint8_t *buf, size_t len, size_t max_len,
                     struct proxyproto_header *h) {
  if (len == 0) return 0;   /* buf may be NULL, which memcmp must not see */
  size_t sig_have = len < PROXYPROTO_SIG_LEN ? len : PROXYPROTO_SIG_LEN;
  if (memcmp(buf, signature, sig_have) != 0) return -1;
  if (check_command_family(buf, len) != 0) return -1;
  if (len < PROXYPROTO_FIXED_LEN) return 0;
  size_t body_len = (size_t)buf[14] << 8 | buf[15];
  size_t total = PROXYPROTO_FIXED_LEN + body_len;
  if (total > max_len) return -1;
  if (len < total) return 0;

  memset(h, 0, sizeof *h);
  h->length = total;
  h->local = (buf[12] & 0xf) == COMMAND_LOCAL;
  if (h->local) return 1;   /* addresses, if any, are to be ignored */
  if (parse_addresses(buf + PROXYPROTO_FIXED_LEN, body_len, buf[13], h) != 0) return -1;
  return 1;
}

size_t proxyproto_build(uint8_t *out, size_t outlen, const struct netaddr *src,
                        const struct netaddr *dst) {
  size_t body = 0;
  uint8_t fam = 0;
  if (src) {
    if (!dst || src->ss.ss_family != dst->ss.ss_family) return 0;
    if (src->ss.ss_family == AF_INET) body = INET_BLOCK, fam = FAMILY_INET << 4 | TRANSPORT_STREAM;
    else if (src->ss.ss_family == AF_INET6)
      body = INET6_BLOCK, fam = FAMILY_INET6 << 4 | TRANSPORT_STREAM;
    else return 0;
  }
  if (outlen < PROXYPROTO_FIXED_LEN + body) return 0;
  memcpy(out, signature, PROXYPROTO_SIG_LEN);
  out[12] = src ? 0x21 : 0x20;
  out[13] = fam;
  out[14] = (uint8_t)(body >> 8);
  out[15] = (uint8_t)body;
  uint8_t *p = out + PROXYPROTO_FIXED_LEN;
  if (src && src->ss.ss_family == AF_INET) {
    const struct sockaddr_in *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
    memcpy(p, &s->sin_addr, 4);
    memcpy(p + 4, &d->sin_addr, 4);
    memcpy(p + 8, &s->sin_port, 2);
    memcpy(p + 10, &d->sin_port, 2);
  } else if (src) {
    const struct sockaddr_in6 *s = (const void *)&src->ss, *d = (const void *)&dst->ss;
    memcpy(p, &s->sin6_addr, 16);
    memcpy(p + 16, &d->sin6_addr, 16);
    memcpy(p + 32, &s->sin6_port, 2);
    memcpy(p + 34, &d->sin6_port, 2);
  }
  return PROXYPROTO_FIXED_LEN + body;
}
