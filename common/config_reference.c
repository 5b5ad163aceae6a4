/* The configuration reference, printed from the loader's tables as the
 * markdown table that docs/configuration.md holds between its
 * config-reference markers (scripts/config-reference puts it there; the
 * test config_reference fails when the two differ). */
#include <stdio.h>

#include "common/config.h"
#include "common/config_keys.h"

/* The default as a reader should see it: the text the loader parses, else
 * what the code computes, else nothing. */
static void print_default(FILE *f, const struct config_key *k) {
  if (k->def) fprintf(f, "`%s`", k->def);
  else if (k->shown) fputs(k->shown, f);
  else fputs("—", f);
}

void config_print_reference(FILE *f) {
  fputs("| section | key | default | meaning |\n|---|---|---|---|\n", f);
  for (size_t s = 0; s < config_n_sections; s++) {
    const struct config_section *sec = &config_sections[s];
    for (size_t i = 0; i < sec->n_keys; i++) {
      const struct config_key *k = &sec->keys[i];
      if (i > 0) fputs("| ", f);
      else if (sec->named) fprintf(f, "| `[%s NAME]` ", sec->name);
      else fprintf(f, "| `[%s]` ", sec->name);
      fprintf(f, "| `%s` | ", k->key);
      print_default(f, k);
      fprintf(f, " | %s |\n", k->help);
    }
  }
}
