/* Prometheus text over HTTP on [usher] metrics, within [metrics]'s limits
 * (see metrics.c for why it stays in sessiond and what that costs). */
#ifndef USHER_SESSIOND_METRICS_H
#define USHER_SESSIOND_METRICS_H

struct sessiond;

int metrics_start(struct sessiond *sd);
void metrics_stop(struct sessiond *sd);

#endif
