/* Small helpers shared by every process. */
#ifndef USHER_UTIL_H
#define USHER_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation that cannot fail: aborts with a message on out-of-memory,
 * because a half-allocated session is worse than a restarted worker. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Overwrites n bytes in a way the compiler cannot elide. */
void wipe(void *p, size_t n);
/* Wipes and frees a NUL-terminated string (for passwords). */
void wipe_free_str(char *s);
/* A secret from a file that only this process's user may read (mode 0600
 * or stricter, else refused and logged); the trailing newline is not part
 * of it. what names it in the log. Returns a malloc'ed string or NULL. */
char *secret_file_read(const char *what, const char *path);

/* Monotonic clock in milliseconds. */
uint64_t now_ms(void);
/* Wall clock in milliseconds since the epoch: for expiries shared with other
 * proxies (through Redis), which only agree on wall time. */
uint64_t wall_ms(void);
void ms_to_timeval(uint64_t ms, struct timeval *tv);

/* Random bytes from the kernel (getrandom); aborts if unavailable. */
void random_bytes(void *buf, size_t n);
/* A 16-character lowercase hex session id, unique with overwhelming odds. */
void session_id_new(char out[17]);

/* Case-insensitive ASCII comparison (locale-independent). */
int ascii_casecmp(const char *a, const char *b);
int ascii_ncasecmp(const char *a, const char *b, size_t n);

/* Parses a duration: "250ms", "30s", "15m", "2h", "1d", or a bare number of
 * seconds. Returns 0 on success. */
int parse_duration_ms(const char *s, uint64_t *out_ms);
/* Parses a size: "64k", "10M", "1G" (powers of 1024) or a bare byte count. */
int parse_size(const char *s, uint64_t *out);
/* Parses yes/no/true/false/on/off/1/0. */
int parse_bool(const char *s, int *out);

/* Sets O_NONBLOCK and FD_CLOEXEC. Returns 0 or -1. */
int fd_set_nonblock_cloexec(int fd);

#endif
