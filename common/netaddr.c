/* Numeric socket addresses and CIDR networks. */
#include "common/netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *s, unsigned *port) {
  char *end;
  if (!*s || *s == '-' || *s == '+') return -1;
  unsigned long p = strtoul(s, &end, 10);
  if (*end || p == 0 || p > 65535) return -1;
  *port = (unsigned)p;
  return 0;
}

int netaddr_parse(const char *s, struct netaddr *out) {
  char host[INET6_ADDRSTRLEN + 2];
  const char *colon;
  unsigned port;
  memset(out, 0, sizeof *out);
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof host) return -1;
    memcpy(host, s + 1, (size_t)(close - s - 1));
    host[close - s - 1] = '\0';
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host) return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
  }
  if (parse_port(colon + 1, &port) != 0) return -1;

  struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
  struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
  if (s[0] != '[' && (!strcmp(host, "*") || inet_pton(AF_INET, host, &s4->sin_addr) == 1)) {
    if (!strcmp(host, "*")) s4->sin_addr.s_addr = htonl(INADDR_ANY);
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    out->len = sizeof *s4;
    return 0;
  }
  if (s[0] == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    out->len = sizeof *s6;
    return 0;
  }
  memset(out, 0, sizeof *out);
  return -1;
}

const char *netaddr_host(const struct netaddr *a, char *out, size_t outlen) {
  const void *src = NULL;
  if (a->ss.ss_family == AF_INET) src = &((const struct sockaddr_in *)&a->ss)->sin_addr;
  else if (a->ss.ss_family == AF_INET6) src = &((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
  if (!src || !inet_ntop(a->ss.ss_family, src, out, (socklen_t)outlen))
    snprintf(out, outlen, "?");
  return out;
}

unsigned netaddr_port(const struct netaddr *a) {
  if (a->ss.ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
  if (a->ss.ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
  return 0;
}

int netaddr_is_wildcard(const struct netaddr *a) {
  if (netaddr_port(a) == 0) return 1;
  if (a->ss.ss_family == AF_INET)
    return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_ANY);
  if (a->ss.ss_family == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
  return 1;
}

const char *netaddr_str(const struct netaddr *a, char *out, size_t outlen) {
  char host[INET6_ADDRSTRLEN];
  netaddr_host(a, host, sizeof host);
  if (a->ss.ss_family == AF_INET6) snprintf(out, outlen, "[%s]:%u", host, netaddr_port(a));
  else snprintf(out, outlen, "%s:%u", host, netaddr_port(a));
  return out;
}

int netaddr_from_sockaddr(struct netaddr *out, const struct sockaddr *sa, socklen_t len) {
  memset(out, 0, sizeof *out);
  if (len > sizeof out->ss) return -1;
  const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
  if (sa->sa_family == AF_INET6 && len >= sizeof *s6 && IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;   /* see netaddr.h */
    s4->sin_family = AF_INET;
    s4->sin_port = s6->sin6_port;
    memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
    out->len = sizeof *s4;
    return 0;
  }
  memcpy(&out->ss, sa, len);
  out->len = len;
  return 0;
}

int netmask_parse(const char *s, struct netmask *out) {
  char host[INET6_ADDRSTRLEN + 1];
  const char *slash = strchr(s, '/');
  size_t hl = slash ? (size_t)(slash - s) : strlen(s);
  if (hl == 0 || hl >= sizeof host) return -1;
  memcpy(host, s, hl);
  host[hl] = '\0';
  memset(out, 0, sizeof *out);
  unsigned max;
  if (inet_pton(AF_INET, host, out->addr) == 1) {
    out->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
    out->family = AF_INET6;
    max = 128;
  } else {
    return -1;
  }
  out->prefix = max;
  if (slash) {
    char *end;
    if (!slash[1] || slash[1] == '-' || slash[1] == '+') return -1;
    unsigned long p = strtoul(slash + 1, &end, 10);
    if (*end || p > max) return -1;
    out->prefix = (unsigned)p;
  }
  return 0;
}

static int prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits) {
  unsigned bytes = bits / 8, rest = bits % 8;
  if (memcmp(a, b, bytes) != 0) return 0;
  if (!rest) return 1;
  uint8_t mask = (uint8_t)(0xff << (8 - rest));
  return (a[bytes] & mask) == (b[bytes] & mask);
}

int netmask_contains(const struct netmask *m, const struct netaddr *a) {
  static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *bytes;
  int family = a->ss.ss_family;
  if (family == AF_INET) {
    bytes = (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
  } else if (family == AF_INET6) {
    bytes = ((const struct sockaddr_in6 *)&a->ss)->sin6_addr.s6_addr;
    if (memcmp(bytes, v4mapped, 12) == 0) {
      bytes += 12;
      family = AF_INET;
    }
  } else {
    return 0;
  }
  return family == m->family && prefix_equal(bytes, m->addr, m->prefix);
}
