/* Password verification against crypt(3) hashes (libcrypt: yescrypt,
 * sha512-crypt, bcrypt, ...). Thread-safe (crypt_rn with per-call state):
 * sessiond runs it on its auth threads, never on the event loop. */
#ifndef USHER_PASSWD_H
#define USHER_PASSWD_H

enum passwd_result { PASSWD_MISMATCH = 0, PASSWD_MATCH = 1, PASSWD_BAD_HASH = -1 };

/* Compares in constant time. hash may carry a leading {SCHEME} prefix. */
enum passwd_result passwd_verify(const char *password, const char *hash);

/* A valid hash of a random password, made once per process, of the same
 * scheme and cost as `like` (or yescrypt when like is NULL). Verify against it
 * for unknown users, so that the time taken does not tell whether a user
 * exists. The returned string lives as long as the process. */
const char *passwd_dummy_hash(const char *like);

#endif
