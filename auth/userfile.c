/* The users file: read once (and again on reload) into a hash table. */
#include "auth/userfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/htable.h"
#include "common/util.h"

#define LINE_MAX_LEN 4096

struct uf_node {
  struct userfile_entry e;
  char *line;               /* the entry's strings point into this copy */
  size_t line_len;
  struct htable_node node;  /* by user name */
};

struct userfile {
  struct htable users;
};

/* Parses "user:hash[:k=v...]" in place. Returns NULL or an error text. */
static const char *parse_line(char *line, struct userfile_entry *e) {
  /* strsep, not strtok: an empty field is an error, not skipped. */
  char *rest = line;
  char *user = strsep(&rest, ":");
  char *hash = strsep(&rest, ":");
  if (!user || !*user) return "missing user name";
  if (!hash || !*hash) return "missing password hash";
  if (hash[0] == '{') {   /* optional {SCHEME} prefix, informative only */
    char *end = strchr(hash, '}');
    if (!end || !end[1]) return "bad {SCHEME} prefix";
    hash = end + 1;
  }
  if (hash[0] != '$') return "password hash is not a crypt(3) string ($y$, $6$, $2b$...)";
  *e = (struct userfile_entry){.user = user, .hash = hash, .canonical = user};
  for (char *f; (f = strsep(&rest, ":"));) {
    if (!strncmp(f, "backend=", 8) && f[8]) e->backend = f + 8;
    else if (!strncmp(f, "user=", 5) && f[5]) e->canonical = f + 5;
    else if (!*f) continue;
    else return "unknown extra field (expected backend=NAME or user=NAME)";
  }
  return NULL;
}

static void node_free(struct uf_node *x) {
  wipe(x->line, x->line_len);
  free(x->line);
  free(x);
}

struct userfile *userfile_load(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  if (!f) {
    snprintf(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  struct userfile *uf = xcalloc(1, sizeof *uf);
  htable_init(&uf->users, 64);
  char buf[LINE_MAX_LEN];
  unsigned lineno = 0;
  while (fgets(buf, sizeof buf, f)) {
    lineno++;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') buf[--n] = '\0';
    else if (!feof(f)) {
      snprintf(err, errlen, "%s:%u: line too long", path, lineno);
      goto fail;
    }
    if (n && buf[n - 1] == '\r') buf[--n] = '\0';
    size_t lead = strspn(buf, " \t");
    if (lead == n || buf[lead] == '#') continue;   /* blank or comment */
    struct uf_node *x = xcalloc(1, sizeof *x);
    x->line = xstrdup(buf);
    x->line_len = n;
    const char *problem = parse_line(x->line, &x->e);
    if (!problem && userfile_lookup(uf, x->e.user)) problem = "duplicate user";
    if (problem) {
      snprintf(err, errlen, "%s:%u: %s", path, lineno, problem);
      node_free(x);
      goto fail;
    }
    htable_insert(&uf->users, &x->node, htable_hash_str(x->e.user));
  }
  wipe(buf, sizeof buf);
  fclose(f);
  return uf;
fail:
  wipe(buf, sizeof buf);
  fclose(f);
  userfile_free(uf);
  return NULL;
}

void userfile_free(struct userfile *uf) {
  if (!uf) return;
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&uf->users, &it); n; n = htable_iter_next(&uf->users, &it))
    node_free(HTABLE_ENTRY(n, struct uf_node, node));
  htable_destroy(&uf->users);
  free(uf);
}

const struct userfile_entry *userfile_lookup(const struct userfile *uf, const char *user) {
  uint64_t h = htable_hash_str(user);
  for (struct htable_node *n = htable_first_with(&uf->users, h); n; n = htable_next_same(n)) {
    const struct uf_node *x = HTABLE_ENTRY(n, struct uf_node, node);
    if (!strcmp(x->e.user, user)) return &x->e;
  }
  return NULL;
}

void userfile_foreach(const struct userfile *uf, void (*fn)(const struct userfile_entry *, void *),
                      void *arg) {
  struct htable_iter it;
  for (struct htable_node *n = htable_iter_first(&uf->users, &it); n; n = htable_iter_next(&uf->users, &it))
    fn(&HTABLE_ENTRY(n, struct uf_node, node)->e, arg);
}

size_t userfile_count(const struct userfile *uf) {
  return uf->users.count;
}
