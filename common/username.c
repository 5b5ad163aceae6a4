/* Login name normalization (see username.h). */
#include "common/username.h"

#include <stdio.h>
#include <string.h>

static int is_blank(char c) { return c == ' ' || c == '\t'; }

static char apply_case(char c, char mod) {
  if (mod == 'L' && c >= 'A' && c <= 'Z') return (char)(c - 'A' + 'a');
  if (mod == 'U' && c >= 'a' && c <= 'z') return (char)(c - 'a' + 'A');
  return c;
}

int username_format_check(const char *fmt, char *err, size_t errlen) {
  for (const char *p = fmt; *p; p++) {
    if (*p != '%') continue;
    p++;
    if (*p == '%') continue;
    if (*p == 'L' || *p == 'U') p++;
    if (*p != 'u' && *p != 'n' && *p != 'd') {
      snprintf(err, errlen, "expected %%u, %%n or %%d (optionally %%Lu, %%Uu...) in '%s'", fmt);
      return -1;
    }
  }
  return 0;
}

long username_normalize(const char *fmt, const char *login, char *out, size_t cap) {
  if (!fmt) fmt = USERNAME_DEFAULT_FORMAT;
  while (is_blank(*login)) login++;
  size_t len = strlen(login);
  while (len && is_blank(login[len - 1])) len--;
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)login[i] < 0x20 || login[i] == 0x7f) return -1;
  /* The parts %n and %d split at the last '@'. */
  const char *at = memrchr(login, '@', len);
  size_t n_len = at ? (size_t)(at - login) : len;
  const char *d = at ? at + 1 : login + len;
  size_t d_len = at ? len - n_len - 1 : 0;
  size_t o = 0;
  for (const char *p = fmt; *p; p++) {
    const char *part = p;
    size_t part_len = 1;
    char mod = 0;
    if (*p == '%' && p[1]) {
      p++;
      if (*p == 'L' || *p == 'U') mod = *p++;
      switch (*p) {
      case 'u': part = login; part_len = len; break;
      case 'n': part = login; part_len = n_len; break;
      case 'd': part = d; part_len = d_len; break;
      default: part = p; part_len = 1; break;   /* %%, or checked away at load */
      }
    }
    if (o + part_len >= cap) return -1;
    for (size_t i = 0; i < part_len; i++) out[o++] = apply_case(part[i], mod);
  }
  out[o] = '\0';
  return o ? (long)o : -1;
}
