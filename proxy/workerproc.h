/* The worker process's settings (workerproc.c says why each): privileges,
 * CPU scheduling, the heap. */
#ifndef USHER_PROXY_WORKERPROC_H
#define USHER_PROXY_WORKERPROC_H

#include "common/config.h"

/* Becomes [usher] user for good and never dumps core. 0 or -1 (logged). */
int workerproc_drop_privileges(const struct config *cfg);
/* SCHED_BATCH unless [usher] worker_batch says no; failures are logged. */
void workerproc_scheduling(const struct config *cfg);
/* malloc's thresholds for the relay's buffers. */
void workerproc_malloc(void);

#endif
