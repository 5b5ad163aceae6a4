/* PROXY protocol version 2 (HAProxy's proxy-protocol.txt, section 2.2):
 * the binary header an L4 balancer puts before the client's first byte,
 * telling who the client is. Parsing only; who may send one is the
 * caller's business (a header from anyone else is a lie to believe). */
#ifndef USHER_PROXYPROTO_H
#define USHER_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/netaddr.h"

#define PROXYPROTO_SIG_LEN 12
#define PROXYPROTO_FIXED_LEN 16     /* signature, version/command, family, length */
#define PROXYPROTO_MAX_LEN (16 + 65535)

struct proxyproto_header {
  int local;                 /* command LOCAL: the balancer's own connection (a check) */
  struct netaddr src, dst;   /* PROXY over TCP4/TCP6: the client and what it reached;
                                len 0 for LOCAL and for families we do not take */
  size_t length;             /* the whole header: bytes to take from the socket */
};

/* Looks at the len bytes received so far.
 *  1: a complete, valid header, *h filled;
 *  0: valid so far, incomplete: read more;
 * -1: not a v2 header (signature, version, command, with PROXY a family
 *     above 3 or a transport above 2, an address block shorter than its
 *     family needs) or longer than max_len.
 * A prefix that already contradicts the signature is -1 at once, so a
 * client speaking IMAP to such a listener is refused on its first bytes.
 * TLVs after the addresses are skipped. PROXY over UNSPEC, UNIX or
 * datagrams is taken with src and dst of len 0: the caller keeps the
 * socket's own addresses, as the spec allows. */
int proxyproto_parse(const uint8_t *buf, size_t len, size_t max_len,
                     struct proxyproto_header *h);

/* For tests and tools: a PROXY header from src to dst (same family, IPv4
 * or IPv6), or LOCAL when src is NULL. Returns its length, 0 if out is too
 * small or the families do not fit. */
size_t proxyproto_build(uint8_t *out, size_t outlen, const struct netaddr *src,
                        const struct netaddr *dst);

#endif
