/* usher: entry point. The master runs by default; the same binary runs
 * sessiond and the workers when the master execs it with a role:
 *
 *   usher -c FILE          master, in the foreground
 *   usher -t -c FILE       check the configuration, exit 0 or 1
 *   usher --config-reference   print every configuration key (markdown)
 *   usher --role sessiond -c FILE          (started by the master)
 *   usher --role worker --id N -c FILE     (started by the master)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "master/master.h"
#include "proxy/worker.h"
#include "sessiond/sessiond.h"

#ifndef USHER_VERSION
#define USHER_VERSION "0.1.0"
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: usher [-t] -c FILE\n"
          "  -c FILE   configuration file (see configs/usher.conf)\n"
          "  -t        check the configuration and exit\n"
          "  -v        print the version and exit\n"
          "  --config-reference  print every configuration key, its default and meaning\n");
}

int main(int argc, char **argv) {
  const char *path = NULL, *role = NULL;
  unsigned id = 0;
  int check = 0;

  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-c") && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "-t")) check = 1;
    else if (!strcmp(argv[i], "--role") && i + 1 < argc) role = argv[++i];
    else if (!strcmp(argv[i], "--id") && i + 1 < argc) id = (unsigned)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--config-reference")) { config_print_reference(stdout); return 0; }
    else if (!strcmp(argv[i], "-v")) { printf("usher %s\n", USHER_VERSION); return 0; }
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    else { usage(stderr); return 1; }
  }
  if (!path) { usage(stderr); return 1; }

  if (role && !strcmp(role, "sessiond")) return sessiond_main(path);
  if (role && !strcmp(role, "worker")) return worker_main(path, id);
  if (role) { fprintf(stderr, "usher: unknown role '%s'\n", role); return 1; }

  char err[512];
  struct config *cfg = config_load(path, err, sizeof err);
  if (!cfg) {
    fprintf(stderr, "usher: %s\n", err);
    return 1;
  }
  if (check) {
    printf("usher: configuration %s is valid\n", path);
    config_free(cfg);
    return 0;
  }
  return master_main(cfg, path);
}
