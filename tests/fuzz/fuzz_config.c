/* libFuzzer target: the configuration loader (libinih plus our checks).
 * Every input either loads or fails with "FILE:LINE: problem". */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/usher-fuzz-config-%d", (int)getpid());
  FILE *f = fopen(path, "w");
  if (!f) return 0;
  fwrite(data, 1, size, f);
  fclose(f);
  char err[512] = "";
  struct config *c = config_load(path, err, sizeof err);
  if (c) config_free(c);
  else if (strncmp(err, path, strlen(path)) != 0) __builtin_trap();
  return 0;
}
