/* Small helpers shared by every process. */
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"

static void out_of_memory(size_t n) {
  fprintf(stderr, "usher: out of memory allocating %zu bytes\n", n);
  abort();
}

void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) out_of_memory(n);
  return p;
}

void *xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (!p) out_of_memory(n * size);
  return p;
}

void *xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (!q) out_of_memory(n);
  return q;
}

char *xstrdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = xmalloc(n);
  memcpy(p, s, n);
  return p;
}

void wipe(void *p, size_t n) {
  if (p && n) explicit_bzero(p, n);
}

void wipe_free_str(char *s) {
  if (!s) return;
  wipe(s, strlen(s));
  free(s);
}

uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ms_to_timeval(uint64_t ms, struct timeval *tv) {
  tv->tv_sec = (time_t)(ms / 1000);
  tv->tv_usec = (suseconds_t)((ms % 1000) * 1000);
}

void random_bytes(void *buf, size_t n) {
  unsigned char *p = buf;
  while (n > 0) {
    ssize_t r = getrandom(p, n, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "usher: getrandom failed: %s\n", strerror(errno));
      abort();
    }
    p += r;
    n -= (size_t)r;
  }
}

/* Session ids need to be unique, not secret: they come from a pool
 * refilled 64 at a time, one getrandom call where there were 64. (Each
 * process is exec'd, so no two share a pool.) */
void session_id_new(char out[17]) {
  static const char hex[] = "0123456789abcdef";
  static unsigned char pool[512];
  static size_t left;
  if (left == 0) {
    random_bytes(pool, sizeof pool);
    left = sizeof pool;
  }
  left -= 8;
  const unsigned char *b = pool + left;
  for (int i = 0; i < 8; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[16] = '\0';
}

static int lower(int c) {
  return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

int ascii_casecmp(const char *a, const char *b) {
  for (;; a++, b++) {
    int d = lower((unsigned char)*a) - lower((unsigned char)*b);
    if (d || !*a) return d;
  }
}

int ascii_ncasecmp(const char *a, const char *b, size_t n) {
  for (; n > 0; a++, b++, n--) {
    int d = lower((unsigned char)*a) - lower((unsigned char)*b);
    if (d || !*a) return d;
  }
  return 0;
}

/* A decimal number followed by a unit from the table; no sign, no spaces. */
static int parse_scaled(const char *s, const char *const *units, const uint64_t *scale,
                        uint64_t bare_scale, uint64_t *out) {
  if (!s || *s < '0' || *s > '9') return -1;
  uint64_t n = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    if (n > (UINT64_MAX - 9) / 10) return -1;
    n = n * 10 + (uint64_t)(*s - '0');
  }
  uint64_t mult = 0;
  if (*s == '\0') mult = bare_scale;
  for (size_t i = 0; units[i] && !mult; i++)
    if (!strcmp(s, units[i])) mult = scale[i];
  if (!mult || (n && n > UINT64_MAX / mult)) return -1;
  *out = n * mult;
  return 0;
}

int parse_duration_ms(const char *s, uint64_t *out_ms) {
  static const char *const units[] = {"ms", "s", "m", "h", "d", NULL};
  static const uint64_t scale[] = {1, 1000, 60000, 3600000, 86400000};
  return parse_scaled(s, units, scale, 1000, out_ms);
}

int parse_size(const char *s, uint64_t *out) {
  static const char *const units[] = {"k", "K", "m", "M", "g", "G", NULL};
  static const uint64_t scale[] = {1024, 1024, 1 << 20, 1 << 20, 1 << 30, 1 << 30};
  return parse_scaled(s, units, scale, 1, out);
}

int parse_bool(const char *s, int *out) {
  static const char *const yes[] = {"yes", "true", "on", "1"};
  static const char *const no[] = {"no", "false", "off", "0"};
  for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
    if (!ascii_casecmp(s, yes[i])) { *out = 1; return 0; }
    if (!ascii_casecmp(s, no[i])) { *out = 0; return 0; }
  }
  return -1;
}

int fd_set_nonblock_cloexec(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
  int fdfl = fcntl(fd, F_GETFD);
  if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0) return -1;
  return 0;
}

/* Reads a secret from a file that only this process's user may read; the
 * trailing newline is not part of it. Returns a malloc'ed string or NULL. */
char *secret_file_read(const char *what, const char *path) {
  struct stat st;
  FILE *f = fopen(path, "r");
  if (!f || fstat(fileno(f), &st) != 0) {
    log_event(LOG_LVL_ERROR, "secret_file", "what=%s path=%s error=\"%s\"", what, path,
              strerror(errno));
    if (f) fclose(f);
    return NULL;
  }
  if (st.st_mode & 077) {
    log_event(LOG_LVL_ERROR, "secret_file",
              "what=%s path=%s error=\"readable by group or others; chmod 600\"", what, path);
    fclose(f);
    return NULL;
  }
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
  buf[n] = '\0';
  char *s = xstrdup(buf);
  wipe(buf, sizeof buf);
  return s;
}
