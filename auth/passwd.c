/* Password verification through libcrypt. crypt_rn() with a heap-allocated
 * crypt_data per call is thread-safe; the struct is ~32 KiB, too big for
 * the auth threads' stacks to carry comfortably. */
#include "auth/passwd.h"

#include <crypt.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/util.h"

static const char *strip_scheme(const char *hash) {
  if (hash[0] == '{') {
    const char *end = strchr(hash, '}');
    if (end) return end + 1;
  }
  return hash;
}

enum passwd_result passwd_verify(const char *password, const char *hash) {
  hash = strip_scheme(hash);
  if (hash[0] != '$') return PASSWD_BAD_HASH;
  struct crypt_data *cd = xcalloc(1, sizeof *cd);
  const char *out = crypt_rn(password, hash, cd, sizeof *cd);
  enum passwd_result r;
  if (!out || out[0] == '*') r = PASSWD_BAD_HASH;
  else {
    size_t n = strlen(hash);
    r = strlen(out) == n && CRYPTO_memcmp(out, hash, n) == 0 ? PASSWD_MATCH : PASSWD_MISMATCH;
  }
  wipe(cd, sizeof *cd);
  free(cd);
  return r;
}

/* One dummy hash per scheme prefix, made on first use. */
struct dummy {
  char prefix[8];
  char *hash;
};
static struct dummy dummies[8];
static pthread_mutex_t dummy_lock = PTHREAD_MUTEX_INITIALIZER;

static char *dummy_make(const char *prefix) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  unsigned char pw[16];
  char pwhex[33];
  if (!crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof salt)) return NULL;
  random_bytes(pw, sizeof pw);
  for (int i = 0; i < 16; i++) {
    pwhex[2 * i] = "0123456789abcdef"[pw[i] >> 4];
    pwhex[2 * i + 1] = "0123456789abcdef"[pw[i] & 15];
  }
  pwhex[32] = '\0';
  struct crypt_data *cd = xcalloc(1, sizeof *cd);
  const char *out = crypt_rn(pwhex, salt, cd, sizeof *cd);
  char *hash = out && out[0] != '*' ? xstrdup(out) : NULL;
  free(cd);
  return hash;
}

const char *passwd_dummy_hash(const char *like) {
  char prefix[8] = "$y$";
  if (like) {
    like = strip_scheme(like);
    const char *end = like[0] == '$' ? strchr(like + 1, '$') : NULL;
    if (end && (size_t)(end - like) + 1 < sizeof prefix) {
      memcpy(prefix, like, (size_t)(end - like) + 1);
      prefix[end - like + 1] = '\0';
    }
  }
  const char *result = NULL;
  pthread_mutex_lock(&dummy_lock);
  for (size_t i = 0; i < ARRAY_SIZE(dummies) && !result; i++) {
    if (dummies[i].hash && !strcmp(dummies[i].prefix, prefix)) result = dummies[i].hash;
    else if (!dummies[i].hash) {
      char *h = dummy_make(prefix);
      if (!h && strcmp(prefix, "$y$") != 0) h = dummy_make("$y$");
      if (h) {
        snprintf(dummies[i].prefix, sizeof dummies[i].prefix, "%s", prefix);
        dummies[i].hash = h;
        result = h;
      }
      break;
    }
  }
  pthread_mutex_unlock(&dummy_lock);
  return result ? result : "$y$j9T$unusable$unusable";
}
