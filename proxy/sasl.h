/* SASL helpers for the pre-auth dialogue: base64 (RFC 4648, strict) and the
 * PLAIN mechanism (RFC 4616). */
#ifndef USHER_SASL_H
#define USHER_SASL_H

#include <stddef.h>
#include <sys/types.h>

/* Decodes base64 text (len bytes, no whitespace allowed, padding required)
 * into out. Returns the decoded length, or -1 on any invalid input or if
 * out (cap bytes) is too small. "=" alone (RFC 4959 empty response) decodes
 * to length 0. */
ssize_t base64_decode(const char *in, size_t len, unsigned char *out, size_t cap);
/* Encodes len bytes into out (NUL-terminated). Returns the text length, or
 * -1 if cap is too small (needs 4*ceil(len/3)+1). */
ssize_t base64_encode(const unsigned char *in, size_t len, char *out, size_t cap);

/* Splits a decoded PLAIN message "authzid NUL authcid NUL passwd".
 * msg is modified in place and must have room for one byte past len (the
 * password's terminating NUL); the output pointers point into it. Fails (-1) when there are not exactly two NULs,
 * authcid or passwd is empty, or any part exceeds 255 bytes. */
int sasl_plain_split(char *msg, size_t len, const char **authzid,
                     const char **authcid, const char **passwd);

#endif
