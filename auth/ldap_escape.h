/* Escaping of values placed into LDAP filters (RFC 4515) and DNs (RFC 4514).
 * Every login name that reaches LDAP goes through one of these: a name like
 * "*)(uid=*" must match nobody rather than everybody. */
#ifndef USHER_LDAP_ESCAPE_H
#define USHER_LDAP_ESCAPE_H

#include <stddef.h>

/* Escapes value for a filter assertion: * ( ) \ NUL and every byte outside
 * printable ASCII become \XX. Returns the length written (without the NUL),
 * or -1 when out (of cap bytes) is too small. */
long ldap_escape_filter(const char *value, size_t len, char *out, size_t cap);

/* Escapes value as one attribute value of a DN: , + " \ < > ; = and a
 * leading space or #, a trailing space, NUL and control bytes. Same return. */
long ldap_escape_dn(const char *value, size_t len, char *out, size_t cap);

/* Replaces every %u in template by the login name escaped with `escape`.
 * Returns a malloc'ed string, or NULL when the result would exceed max. */
char *ldap_expand(const char *template, const char *login,
                  long (*escape)(const char *, size_t, char *, size_t), size_t max);

#endif
