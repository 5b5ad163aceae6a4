/* The users file, the embedded password database:
 *
 *   # comment
 *   user:{SCHEME}hash[:extra[:extra...]]
 *
 * {SCHEME} is optional and informative ({CRYPT}, {SHA512-CRYPT},
 * {BLF-CRYPT}, {YESCRYPT}); the hash is a crypt(3) string ($y$, $6$, $2b$...)
 * verified through libcrypt. Extra fields are key=value:
 *   backend=NAME   the user is pinned to that backend
 *   user=NAME      the canonical login name (an alias: both log in as NAME)
 * User names are matched exactly (bytes) against the login after its
 * normalization (common/username.h): with the default format, a name
 * written with capitals is nobody's, and sessiond warns about it at load. Blank lines and # comments are
 * skipped; a malformed line is an error naming the file and line. */
#ifndef USHER_USERFILE_H
#define USHER_USERFILE_H

#include <stddef.h>

struct userfile_entry {
  const char *user;       /* the name as written */
  const char *hash;       /* crypt(3) string */
  const char *canonical;  /* user= field, else == user */
  const char *backend;    /* backend= field, else NULL */
};

struct userfile;

/* Loads path. On failure returns NULL with "PATH:LINE: problem" in err. */
struct userfile *userfile_load(const char *path, char *err, size_t errlen);
/* Wipes the hashes and frees. */
void userfile_free(struct userfile *uf);
/* O(1) average (hash table). NULL when unknown. */
const struct userfile_entry *userfile_lookup(const struct userfile *uf, const char *user);
size_t userfile_count(const struct userfile *uf);
void userfile_foreach(const struct userfile *uf, void (*fn)(const struct userfile_entry *, void *),
                      void *arg);

#endif
