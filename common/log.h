/* Logging: one line per event, key=value pairs, to stderr (or syslog).
 *
 *   log_event(LOG_INFO, "login", "session=%s user=%s backend=%s", ...);
 *
 * prints   ts=2026-11-22T10:00:00.123Z level=info proc=worker1 event=login session=...
 *
 * Values that may contain spaces or come from clients must go through
 * log_quote() so that a hostile user name cannot forge fields. Passwords are
 * never passed to this module. */
#ifndef USHER_LOG_H
#define USHER_LOG_H

#include <stddef.h>

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* proc: this process's role for the proc= field ("master", "sessiond",
 * "worker3"). Call once per process, again after fork. */
void log_init(const char *proc, enum log_level level, int use_syslog);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
int log_level_parse(const char *s, enum log_level *out);

void log_event(enum log_level level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Shorthands for messages that are not structured events. */
#define log_error(...) log_event(LOG_LVL_ERROR, "error", __VA_ARGS__)
#define log_warn(...)  log_event(LOG_LVL_WARN, "warning", __VA_ARGS__)
#define log_info(...)  log_event(LOG_LVL_INFO, "info", __VA_ARGS__)
#define log_debug(...) do { if (log_get_level() >= LOG_LVL_DEBUG) \
    log_event(LOG_LVL_DEBUG, "debug", __VA_ARGS__); } while (0)

/* Renders s (len bytes, may hold any byte) as a double-quoted value with \",
 * \\ and \xNN escapes for controls and non-ASCII, truncated to fit out
 * (at most 128 input bytes are rendered; longer input ends in "..."). Returns out. */
const char *log_quote(char *out, size_t outlen, const char *s, size_t len);
#define LOG_QUOTE_MAX 520

#endif
