/* The one spelling of a login name.
 *
 * Every name a client gives goes through username_normalize() before it is
 * used for anything: throttling counters, the auth cache, the password
 * database, seats, logs and the name the backend gets. Without it "alice",
 * "Alice" and " alice" are three users to usher and one mailbox to Dovecot
 * (whose auth_username_format is %Lu by default): two writers on one index.
 *
 * The name is first trimmed of leading and trailing blanks (space, tab),
 * then written through a format in Dovecot's notation:
 *   %u  the whole name      %n  the part before the last '@' (all if none)
 *   %d  the part after the last '@' (empty if none)
 *   %%  a percent sign
 * each optionally with a modifier: %Lu lowercase, %Uu uppercase. Any other
 * character is copied. The default, USERNAME_DEFAULT_FORMAT, is %Lu. */
#ifndef USHER_COMMON_USERNAME_H
#define USHER_COMMON_USERNAME_H

#include <stddef.h>

#define USERNAME_DEFAULT_FORMAT "%Lu"
/* Room for a normalized name and its NUL; longer logins are nobody's. */
#define USERNAME_MAX 512

/* 0 when fmt is a usable format; else -1 with a reason in err. */
int username_format_check(const char *fmt, char *err, size_t errlen);

/* Writes the normalized form of login into out (cap bytes with the NUL).
 * Returns its length, or -1 when it would be empty, would not fit, or the
 * login holds a control byte (no such name is anybody's). fmt NULL means
 * the default. */
long username_normalize(const char *fmt, const char *login, char *out, size_t cap);

#endif
