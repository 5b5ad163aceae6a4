/* Base64 (RFC 4648, strict: no whitespace, padding required) and the SASL
 * PLAIN message (RFC 4616). */
#include "proxy/sasl.h"

#include <string.h>

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

ssize_t base64_decode(const char *in, size_t len, unsigned char *out, size_t cap) {
  if (len == 1 && in[0] == '=') return 0;   /* RFC 4959: an empty response */
  if (len % 4 != 0) return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 4) {
    int v[4], pad = 0;
    for (int j = 0; j < 4; j++) {
      unsigned char c = (unsigned char)in[i + j];
      if (c == '=' && i + 4 == len && j >= 2) {
        v[j] = 0;
        pad++;
        continue;
      }
      if (pad || (v[j] = b64_value(c)) < 0) return -1;   /* no data after '=' */
    }
    unsigned triple = (unsigned)v[0] << 18 | (unsigned)v[1] << 12 | (unsigned)v[2] << 6 | (unsigned)v[3];
    size_t n = 3 - (size_t)pad;
    if (o + n > cap) return -1;
    /* Reject non-canonical encodings whose padding bits are not zero. */
    if ((pad == 1 && (triple & 0xff)) || (pad == 2 && (triple & 0xffff))) return -1;
    out[o++] = (unsigned char)(triple >> 16);
    if (n > 1) out[o++] = (unsigned char)(triple >> 8);
    if (n > 2) out[o++] = (unsigned char)triple;
  }
  return (ssize_t)o;
}

ssize_t base64_encode(const unsigned char *in, size_t len, char *out, size_t cap) {
  size_t need = 4 * ((len + 2) / 3) + 1;
  if (cap < need) return -1;
  size_t o = 0;
  for (size_t i = 0; i < len; i += 3) {
    unsigned triple = (unsigned)in[i] << 16;
    if (i + 1 < len) triple |= (unsigned)in[i + 1] << 8;
    if (i + 2 < len) triple |= in[i + 2];
    out[o++] = b64_alphabet[triple >> 18 & 63];
    out[o++] = b64_alphabet[triple >> 12 & 63];
    out[o++] = i + 1 < len ? b64_alphabet[triple >> 6 & 63] : '=';
    out[o++] = i + 2 < len ? b64_alphabet[triple & 63] : '=';
  }
  out[o] = '\0';
  return (ssize_t)o;
}

int sasl_plain_split(char *msg, size_t len, const char **authzid, const char **authcid,
                     const char **passwd) {
  char *nul1 = memchr(msg, '\0', len);
  if (!nul1) return -1;
  char *nul2 = memchr(nul1 + 1, '\0', len - (size_t)(nul1 + 1 - msg));
  if (!nul2 || memchr(nul2 + 1, '\0', len - (size_t)(nul2 + 1 - msg))) return -1;
  size_t zlen = (size_t)(nul1 - msg), clen = (size_t)(nul2 - nul1 - 1);
  size_t plen = len - (size_t)(nul2 + 1 - msg);
  if (clen == 0 || plen == 0 || zlen > 255 || clen > 255 || plen > 255) return -1;
  /* The password runs to the end of msg, which has no NUL of its own; the
   * caller's buffer has room for one more byte (see preauth.c). */
  msg[len] = '\0';
  *authzid = msg;
  *authcid = nul1 + 1;
  *passwd = nul2 + 1;
  return 0;
}
