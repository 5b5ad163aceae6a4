/* A proxy worker: one event loop owning the connections it accepts on the
 * listening sockets it inherited from the master. It holds no secret from
 * the configuration (it never opens the users file); it asks sessiond.
 * The master starts it by this one entry point; everything else of it is
 * private to worker.c. */
#ifndef USHER_PROXY_WORKER_H
#define USHER_PROXY_WORKER_H

/* Runs worker `id` on listening fds 3.. (count from USHER_LISTEN_FDS) until
 * SIGTERM. Returns the process exit code. */
int worker_main(const char *config_path, unsigned id);

#endif
