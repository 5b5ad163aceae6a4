/* libFuzzer target: RFC 4515/4514 escaping. No output may carry a filter
 * or DN metacharacter unescaped. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "auth/ldap_escape.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char out[4096];
  long n = ldap_escape_filter((const char *)data, size, out, sizeof out);
  if (n >= 0) {
    if ((size_t)n != strlen(out)) __builtin_trap();   /* no raw NUL inside */
    for (long i = 0; i < n; i++)
      if (out[i] == '*' || out[i] == '(' || out[i] == ')') __builtin_trap();
    for (long i = 0; i < n; i++)   /* every backslash starts \XX */
      if (out[i] == '\\' && (i + 2 >= n || !strchr("0123456789abcdef", out[i + 1]))) __builtin_trap();
  }
  n = ldap_escape_dn((const char *)data, size, out, sizeof out);
  if (n >= 0) {
    if ((size_t)n != strlen(out)) __builtin_trap();
    for (long i = 0; i < n; i++)
      if (strchr(",+\"<>;=", out[i]) && out[i]) __builtin_trap();
  }
  return 0;
}
