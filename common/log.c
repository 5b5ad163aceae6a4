/* Logging: a line is built in one buffer and written with one write(2), so
 * lines from several processes sharing stderr never interleave. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static char log_proc[32] = "usher";
static enum log_level log_level = LOG_LVL_INFO;
static int log_syslog;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void log_init(const char *proc, enum log_level level, int use_syslog) {
  snprintf(log_proc, sizeof log_proc, "%s", proc);
  log_level = level;
  log_syslog = use_syslog;
  if (use_syslog) openlog("usher", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_set_level(enum log_level level) { log_level = level; }
enum log_level log_get_level(void) { return log_level; }

int log_level_parse(const char *s, enum log_level *out) {
  for (int i = 0; i <= LOG_LVL_DEBUG; i++)
    if (!strcmp(s, level_names[i])) {
      *out = (enum log_level)i;
      return 0;
    }
  if (!strcmp(s, "warning")) {
    *out = LOG_LVL_WARN;
    return 0;
  }
  return -1;
}

void log_event(enum log_level level, const char *event, const char *fmt, ...) {
  if (level > log_level) return;
  char line[LOG_LINE_MAX];
  size_t n = 0;
  if (!log_syslog) {
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof line - n, ".%03dZ ", (int)(tv.tv_usec / 1000));
  }
  n += (size_t)snprintf(line + n, sizeof line - n, "level=%s proc=%s event=%s ",
                        level_names[level], log_proc, event);
  if (n < sizeof line) {
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    va_end(ap);
    if (m > 0) n += (size_t)m;
  }
  if (n > sizeof line - 2) n = sizeof line - 2;   /* truncated: still one line */
  if (log_syslog) {
    static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
    line[n] = '\0';
    syslog(prio[level], "%s", line);
    return;
  }
  line[n++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;   /* nowhere to report a failing stderr */
}

const char *log_quote(char *out, size_t outlen, const char *s, size_t len) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0, shown = len > 128 ? 128 : len;
  if (outlen < 8) {
    if (outlen) out[0] = '\0';
    return out;
  }
  out[o++] = '"';
  for (size_t i = 0; i < shown && o + 8 < outlen; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '"' || ch == '\\') {
      out[o++] = '\\';
      out[o++] = (char)ch;
    } else if (ch < 0x20 || ch >= 0x7f) {
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[ch >> 4];
      out[o++] = hex[ch & 15];
    } else {
      out[o++] = (char)ch;
    }
  }
  if (shown < len && o + 5 < outlen) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o++] = '"';
  out[o] = '\0';
  return out;
}
