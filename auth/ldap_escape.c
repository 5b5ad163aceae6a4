/* RFC 4515 / RFC 4514 escaping. Escaping more than the minimum is allowed by
 * both RFCs and costs nothing, so every non-printable byte is hex-escaped. */
#include "auth/ldap_escape.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static const char hex[] = "0123456789abcdef";

/* Appends one byte, hex-escaped or not. Returns the new length or -1. */
static long put(char *out, size_t cap, long n, unsigned char ch, int escape) {
  size_t need = escape ? 3 : 1;
  if ((size_t)n + need + 1 > cap) return -1;
  if (escape) {
    out[n++] = '\\';
    out[n++] = hex[ch >> 4];
    out[n++] = hex[ch & 15];
  } else {
    out[n++] = (char)ch;
  }
  out[n] = '\0';
  return n;
}

long ldap_escape_filter(const char *value, size_t len, char *out, size_t cap) {
  long n = 0;
  if (cap == 0) return -1;
  out[0] = '\0';
  for (size_t i = 0; i < len && n >= 0; i++) {
    unsigned char ch = (unsigned char)value[i];
    int special = ch == '*' || ch == '(' || ch == ')' || ch == '\\' || ch < 0x20 || ch == 0x7f;
    n = put(out, cap, n, ch, special);
  }
  return n;
}

long ldap_escape_dn(const char *value, size_t len, char *out, size_t cap) {
  long n = 0;
  if (cap == 0) return -1;
  out[0] = '\0';
  for (size_t i = 0; i < len && n >= 0; i++) {
    unsigned char ch = (unsigned char)value[i];
    int special = strchr(",+\"\\<>;=", ch) != NULL || ch < 0x20 || ch == 0x7f ||
                  (i == 0 && (ch == ' ' || ch == '#')) || (i == len - 1 && ch == ' ');
    if (ch == 0) special = 1;   /* strchr finds the terminator for 0 */
    n = put(out, cap, n, ch, special);
  }
  return n;
}

char *ldap_expand(const char *template, const char *login,
                  long (*escape)(const char *, size_t, char *, size_t), size_t max) {
  size_t cap = max + 1;
  char *out = xmalloc(cap);
  size_t n = 0;
  for (const char *p = template; *p; p++) {
    if (p[0] == '%' && p[1] == 'u') {
      long w = escape(login, strlen(login), out + n, cap - n);
      if (w < 0) goto too_long;
      n += (size_t)w;
      p++;
    } else {
      if (n + 2 > cap) goto too_long;
      out[n++] = *p;
    }
  }
  out[n] = '\0';
  return out;
too_long:
  free(out);
  return NULL;
}
