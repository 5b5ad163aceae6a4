/* What became of re-homed sessions, as their workers report it
 * (REHOME_DONE, common/proto.h): resumed, with the time from the loss of
 * the old backend to the relay going on, or ended, by reason. sessiond's
 * own counters (context.h: rehome_requests, ...) say what it was asked
 * and how it routed; these say how the moves ended, for usherctl status
 * and the metrics.
 *
 * A worker's report is believed as far as it goes: it comes over an
 * authenticated worker link and names a well-formed session, but a
 * worker that was taken over could report what it likes about its own
 * sessions. The figures are for operators, nothing is decided on them.
 * Reasons are the worker's words ([a-z_], at most REHOME_STATS_REASON_LEN
 * bytes); the first REHOME_STATS_REASONS distinct ones are counted apart,
 * later ones as "other", so a metric's label set stays bounded. */
#ifndef USHER_SESSIOND_REHOME_STATS_H
#define USHER_SESSIOND_REHOME_STATS_H

#include <stdint.h>

#define REHOME_STATS_REASONS 24
#define REHOME_STATS_REASON_LEN 31
#define REHOME_STATS_BUCKETS 8      /* time to resume: bounds in rehome_stats_bounds_us */

/* In microseconds, as the other latency histograms of the metrics. */
extern const uint64_t rehome_stats_bounds_us[REHOME_STATS_BUCKETS];

struct rehome_stats {
  uint64_t resumed;
  uint64_t resume_buckets[REHOME_STATS_BUCKETS + 1];   /* the last: above every bound */
  uint64_t resume_us_sum;
  uint64_t ended, ended_other;
  unsigned n_reasons;
  struct { char name[REHOME_STATS_REASON_LEN + 1]; uint64_t n; } reasons[REHOME_STATS_REASONS];
};

/* A session resumed after ms. */
void rehome_stats_resumed(struct rehome_stats *s, uint64_t ms);
/* A session ended instead of moving; reason as the worker gave it (NULL,
 * empty, too long or not [a-z_]: counted as "other"). */
void rehome_stats_ended(struct rehome_stats *s, const char *reason);
/* The time to resume below which share q (0..1) of the resumed sessions
 * fell, by bucket bound (ms; UINT64_MAX: above the last bound; 0: none). */
uint64_t rehome_stats_quantile_ms(const struct rehome_stats *s, double q);
/* As JSON for usherctl status: ,"rehome_done":{...} */
struct evbuffer;
void rehome_stats_json(const struct rehome_stats *s, struct evbuffer *out);

#endif
