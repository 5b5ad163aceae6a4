/* The master process: binds the listeners, starts sessiond and the workers
 * (fork + exec of this same binary with a role), restarts a child that dies
 * with back-off, forwards SIGHUP, and on SIGTERM stops the children and
 * exits. It does nothing on the data path. */
#ifndef USHER_PROXY_MASTER_H
#define USHER_PROXY_MASTER_H

#include "common/config.h"

int master_main(struct config *cfg, const char *config_path);

#endif
