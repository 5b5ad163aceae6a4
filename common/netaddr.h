/* Socket addresses: parsing "host:port" / "[v6]:port", printing, and CIDR
 * networks (for trusted networks and per-network limits). */
#ifndef USHER_NETADDR_H
#define USHER_NETADDR_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct netaddr {
  struct sockaddr_storage ss;
  socklen_t len;
};

/* "127.0.0.1:143", "[::1]:993", "*:143" (all IPv4), "[::]:143".
 * Numeric only: a proxy must not depend on DNS to start. */
int netaddr_parse(const char *s, struct netaddr *out);
/* Numeric host into out ("127.0.0.1", "::1"); returns out. */
const char *netaddr_host(const struct netaddr *a, char *out, size_t outlen);
unsigned netaddr_port(const struct netaddr *a);
/* "127.0.0.1:143" or "[::1]:993". */
const char *netaddr_str(const struct netaddr *a, char *out, size_t outlen);
/* An IPv4-mapped IPv6 address (::ffff:a.b.c.d, from a dual-stack socket or
 * a balancer's PROXY header) becomes the IPv4 address it is, so that
 * limits, throttling (IPv6 by /64 would put every IPv4 client in ::/64),
 * logs and ID all see one client as one IPv4 address. */
int netaddr_from_sockaddr(struct netaddr *out, const struct sockaddr *sa, socklen_t len);
/* 1 if a names no single local address: the wildcard host, or port 0. */
int netaddr_is_wildcard(const struct netaddr *a);

struct netmask {
  int family;             /* AF_INET or AF_INET6 */
  uint8_t addr[16];
  unsigned prefix;
};

/* "10.0.0.0/8", "::1/128", "192.168.1.7" (a host). */
int netmask_parse(const char *s, struct netmask *out);
/* 1 if a (IPv4-mapped IPv6 counts as IPv4) lies in m. */
int netmask_contains(const struct netmask *m, const struct netaddr *a);

#define NETADDR_STRLEN 64

#endif
