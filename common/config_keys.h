/* The configuration's keys as data. Every key the loader accepts is one row
 * of one section's table (config_keys.c): its name, the kind of value, where
 * it is stored, its default and its meaning. The loader (config_load.c) walks
 * these tables to parse the file and to apply the defaults through the same
 * parsers (config_parse.h); the reference documentation is printed from them
 * (config_reference.c). Adding a key is adding a row. */
#ifndef USHER_CONFIG_KEYS_H
#define USHER_CONFIG_KEYS_H

#include <stddef.h>

#include "common/config_parse.h"

/* A section: [NAME], or [NAME X] for the named ones (listener, backend,
 * certificate), whose records live in an array of struct config. */
struct config_section {
  const char *name;
  const struct config_key *keys;
  size_t n_keys;
  int named;
  size_t array, n_array;     /* named: offsets of the array and its count in struct config */
  size_t record_size;        /* named: sizeof one record, whose first field is its name */
  unsigned max;              /* named: records at most */
};

extern const struct config_section config_sections[];
extern const size_t config_n_sections;

const struct config_key *config_key_find(const struct config_section *s, const char *key);

#endif
