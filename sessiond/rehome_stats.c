/* Re-homing outcomes (rehome_stats.h). */
#include "sessiond/rehome_stats.h"

#include <string.h>

#include <event2/buffer.h>

/* From a quiet move (a few ms) to a backend logging in thousands at once. */
const uint64_t rehome_stats_bounds_us[REHOME_STATS_BUCKETS] = {
    10000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000};

void rehome_stats_resumed(struct rehome_stats *s, uint64_t ms) {
  unsigned b = 0;
  while (b < REHOME_STATS_BUCKETS && ms * 1000 > rehome_stats_bounds_us[b]) b++;
  s->resumed++;
  s->resume_buckets[b]++;
  s->resume_us_sum += ms * 1000;
}

static int reason_well_formed(const char *r) {
  size_t n = r ? strlen(r) : 0;
  if (n == 0 || n > REHOME_STATS_REASON_LEN || !strcmp(r, "other")) return 0;
  for (size_t i = 0; i < n; i++)
    if (!((r[i] >= 'a' && r[i] <= 'z') || r[i] == '_')) return 0;
  return 1;
}

void rehome_stats_ended(struct rehome_stats *s, const char *reason) {
  s->ended++;
  if (!reason_well_formed(reason)) {
    s->ended_other++;
    return;
  }
  for (unsigned i = 0; i < s->n_reasons; i++)
    if (!strcmp(s->reasons[i].name, reason)) {
      s->reasons[i].n++;
      return;
    }
  if (s->n_reasons == REHOME_STATS_REASONS) {
    s->ended_other++;
    return;
  }
  strcpy(s->reasons[s->n_reasons].name, reason);   /* length checked above */
  s->reasons[s->n_reasons++].n = 1;
}

uint64_t rehome_stats_quantile_ms(const struct rehome_stats *s, double q) {
  if (s->resumed == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)s->resumed + 0.999999), cum = 0;
  if (want == 0) want = 1;
  for (unsigned b = 0; b < REHOME_STATS_BUCKETS; b++) {
    cum += s->resume_buckets[b];
    if (cum >= want) return rehome_stats_bounds_us[b] / 1000;
  }
  return UINT64_MAX;
}

/* A bucket's bound in ms; -1 above the last bound (JSON has no infinity). */
static long long quantile_json(const struct rehome_stats *s, double q) {
  uint64_t ms = rehome_stats_quantile_ms(s, q);
  return ms == UINT64_MAX ? -1 : (long long)ms;
}

void rehome_stats_json(const struct rehome_stats *s, struct evbuffer *out) {
  evbuffer_add_printf(out, ",\"rehome_done\":{\"resumed\":%llu,\"resume_p50_ms\":%lld,"
                           "\"resume_p99_ms\":%lld,\"ended\":%llu,\"ended_by\":{",
                      (unsigned long long)s->resumed, quantile_json(s, 0.50),
                      quantile_json(s, 0.99), (unsigned long long)s->ended);
  for (unsigned i = 0; i < s->n_reasons; i++)   /* names are [a-z_]: no escaping */
    evbuffer_add_printf(out, "%s\"%s\":%llu", i ? "," : "", s->reasons[i].name,
                        (unsigned long long)s->reasons[i].n);
  if (s->ended_other)
    evbuffer_add_printf(out, "%s\"other\":%llu", s->n_reasons ? "," : "",
                        (unsigned long long)s->ended_other);
  evbuffer_add_printf(out, "}}");
}
