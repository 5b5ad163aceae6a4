/* sessiond: the process that holds the secrets. It answers the workers over
 * runtime_dir/sessiond.sock (common/proto.h), authenticates (auth/), seats
 * users on backends (seats.h, hashring.h), keeps the session table, and
 * serves the admin socket runtime_dir/admin.sock (admin.h). */
#ifndef USHER_SESSIOND_H
#define USHER_SESSIOND_H

/* Runs sessiond until SIGTERM; returns the process exit code. */
int sessiond_main(const char *config_path);

#endif
