/* Configuration values: the kinds a key's value can be, the row that
 * describes a key (struct config_key, the tables of config_keys.c are made
 * of them) and the parsers that read a value into its field. */
#ifndef USHER_CONFIG_PARSE_H
#define USHER_CONFIG_PARSE_H

#include <stddef.h>

enum config_kind {
  CK_STRING,    /* char *, a copy; .parse, if set, only judges the value */
  CK_DURATION,  /* uint64_t milliseconds: 250ms, 30s, 15m, 2h, 1d */
  CK_SIZE,      /* size_t bytes from .min to .max: 512, 8k, 1M */
  CK_UINT,      /* unsigned from .min to .max */
  CK_BOOL,      /* int, 0 or 1 */
  CK_ADDRESS,   /* struct netaddr, numeric host and port */
  CK_NETS,      /* struct netmask[CONFIG_MAX_NETS]; the unsigned count at .count */
  CK_FUNC,      /* .parse reads the value and stores it */
};

struct config_key;

/* Parses value for key k into record (the section's struct: struct config,
 * or one listener, backend or certificate). Returns 0, or -1 with the
 * problem in err as "key: what is wrong". */
typedef int config_parse_fn(const struct config_key *k, const char *value, void *record,
                            char *err, size_t errlen);

struct config_key {
  const char *key;
  enum config_kind kind;
  size_t offset;             /* of the field in the section's record */
  size_t count;              /* CK_NETS and lists: offset of their unsigned count */
  unsigned long min, max;    /* CK_UINT, CK_SIZE */
  const char *def;           /* the default as written in a file; NULL: unset (zero) */
  const char *shown;         /* the default as the reference tells it, when def is NULL
                                because the code computes it (markdown); NULL: "—" */
  config_parse_fn *parse;
  const char *help;          /* its meaning, one markdown table cell */
};

/* Parses value into record as k says (any kind). */
int config_parse_value(const struct config_key *k, const char *value, void *record, char *err,
                       size_t errlen);

/* The parsers of the keys whose values are not of a plain kind. */
config_parse_fn config_parse_tls_mode, config_parse_log_level, config_parse_worker_scheduling,
    config_parse_on_redis_down, config_parse_peers, config_judge_min_version,
    config_judge_username_format, config_judge_ldap_uri, config_judge_has_u,
    config_judge_redis_address, config_judge_sentinels;

#endif
