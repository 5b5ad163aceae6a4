/* usherctl: the operator's front end to sessiond's admin socket.
 *
 *   usherctl [-c CONFIG | -s SOCKET] [--json] COMMAND [ARGS]
 *
 * Commands: status, backends, backend NAME up|drain|down|weight N,
 * backend NAME drain --migrate [--rate N],
 * who USER, sessions [--backend NAME], move USER BACKEND [--kick], kick USER,
 * auth flush USER|--all, auth stats, reload, health.
 * Text for people (the JSON answer laid out as indented lines), --json for
 * scripts. Exit: 0 done (health: this proxy should hold the VIP), 1 the
 * command failed (health: it should not), 2 bad usage, 3 no sessiond. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/config.h"

static const char *const commands[][2] = {
    {"status", ""},          {"backends", ""},        {"backend", "NAME up|drain|down|weight N | NAME drain --migrate [--rate N]"},
    {"who", "USER"},         {"sessions", "[--backend NAME]"}, {"move", "USER BACKEND [--kick]"},
    {"kick", "USER"},        {"auth", "flush USER|--all | stats"}, {"reload", ""},
    {"health", ""}};

static void usage(FILE *f) {
  fprintf(f, "usage: usherctl [-c CONFIG | -s SOCKET] [--json] COMMAND [ARGS]\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %s %s\n", commands[i][0], commands[i][1]);
}

/* Checks the command's name and argument count before bothering sessiond. */
static int valid(int argc, char **argv) {
  const char *c = argv[0];
  if (!strcmp(c, "status") || !strcmp(c, "backends") || !strcmp(c, "reload") || !strcmp(c, "health"))
    return argc == 1;
  if (!strcmp(c, "who") || !strcmp(c, "kick")) return argc == 2;
  if (!strcmp(c, "move")) return argc == 3 || (argc == 4 && !strcmp(argv[3], "--kick"));
  if (!strcmp(c, "sessions")) return argc == 1 || (argc == 3 && !strcmp(argv[1], "--backend"));
  if (!strcmp(c, "backend"))
    return (argc == 3 && strcmp(argv[2], "weight")) || (argc == 4 && !strcmp(argv[2], "weight")) ||
           (argc >= 4 && !strcmp(argv[2], "drain") && !strcmp(argv[3], "--migrate") &&
            (argc == 4 || (argc == 6 && !strcmp(argv[4], "--rate"))));
  if (!strcmp(c, "auth"))
    return (argc == 3 && !strcmp(argv[1], "flush")) || (argc == 2 && !strcmp(argv[1], "stats"));
  return -1;
}

/* Prints JSON as indented "key: value" lines. Strings lose their quotes;
 * arrays of objects become blocks separated by "-". Good enough for
 * people; scripts use --json. */
static void print_text(const char *j) {
  int depth = 0, in_str = 0, at_line_start = 1;
  for (const char *p = j; *p && *p != '\n'; p++) {
    char ch = *p;
    if (in_str) {
      if (ch == '\\' && p[1]) putchar(*++p);
      else if (ch == '"') in_str = 0;
      else putchar(ch);
      continue;
    }
    if (at_line_start && ch != '}' && ch != ']' && ch != ',') {
      printf("%*s", depth * 2, "");
      at_line_start = 0;
    }
    switch (ch) {
    case '"': in_str = 1; break;
    case ':': printf(": "); break;
    case '{': case '[':
      if (p[1] == '}' || p[1] == ']') { printf("(none)"); p++; break; }
      putchar('\n');
      depth++;
      at_line_start = 1;
      break;
    case '}': case ']':
      depth--;
      break;
    case ',':
      putchar('\n');
      if (p[-1] == '}' ) printf("%*s-\n", depth * 2, "");
      at_line_start = 1;
      break;
    default: putchar(ch);
    }
  }
  putchar('\n');
}

int main(int argc, char **argv) {
  const char *conf = NULL, *sock = NULL;
  int json = 0, i = 1;
  for (; i < argc && argv[i][0] == '-'; i++) {
    if (!strcmp(argv[i], "-c") && i + 1 < argc) conf = argv[++i];
    else if (!strcmp(argv[i], "-s") && i + 1 < argc) sock = argv[++i];
    else if (!strcmp(argv[i], "--json")) json = 1;
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    else { usage(stderr); return 2; }
  }
  if (i >= argc) { usage(stderr); return 2; }
  int v = valid(argc - i, argv + i);
  if (v <= 0) {
    fprintf(stderr, v < 0 ? "usherctl: unknown command '%s'\n" : "usherctl: bad arguments for '%s'\n",
            argv[i]);
    usage(stderr);
    return 2;
  }
  char path[256] = "/run/usher/admin.sock";
  if (sock) {
    snprintf(path, sizeof path, "%s", sock);
  } else if (conf) {
    char err[512];
    struct config *c = config_load(conf, err, sizeof err);
    if (!c) { fprintf(stderr, "usherctl: %s\n", err); return 2; }
    snprintf(path, sizeof path, "%s/admin.sock", c->runtime_dir);
    config_free(c);
  }
  char line[4096] = "";
  for (int k = i; k < argc; k++) {
    if (strlen(line) + strlen(argv[k]) + 2 >= sizeof line || strpbrk(argv[k], "\r\n")) {
      fprintf(stderr, "usherctl: argument too long or with a line break\n");
      return 2;
    }
    strcat(line, argv[k]);
    strcat(line, k + 1 < argc ? " " : "\n");
  }
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sun.sun_path) {
    fprintf(stderr, "usherctl: socket path too long: %s\n", path);
    return 2;
  }
  memcpy(sun.sun_path, path, strlen(path) + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&sun, sizeof sun) != 0) {
    fprintf(stderr, "usherctl: cannot reach sessiond at %s: %m\n", path);
    return 3;
  }
  if (write(fd, line, strlen(line)) != (ssize_t)strlen(line)) return 3;
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  for (ssize_t r; (r = read(fd, buf + n, cap - n - 1)) > 0;) {
    n += (size_t)r;
    if (memchr(buf, '\n', n)) break;
    if (n + 1 == cap) buf = realloc(buf, cap *= 2);
  }
  close(fd);
  buf[n] = '\0';
  if (n == 0) { fprintf(stderr, "usherctl: no answer from sessiond\n"); return 3; }
  int failed = strncmp(buf, "{\"error\"", 8) == 0 || strstr(buf, "\"healthy\":false") != NULL;
  if (json) fputs(buf, stdout);
  else if (failed && !strncmp(buf, "{\"error\"", 8)) fprintf(stderr, "usherctl: %s", buf);
  else print_text(buf);
  free(buf);
  return failed ? 1 : 0;
}
