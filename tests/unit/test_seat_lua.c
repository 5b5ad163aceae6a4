/* Unit tests of the seat scripts (sessiond/seat_lua) as a real Redis runs
 * them: the very texts usher sends, with the keys seat_script gives them,
 * checked decision by decision against the keys they leave behind. A
 * redis-server of our own runs on a free 127.0.0.1 port in a temporary
 * directory for the length of the run; without redis-server every test is
 * skipped and the run exits 77 (ctest's SKIP_RETURN_CODE).
 *
 * Leases are long (a minute) wherever a test is not about time running out,
 * so that a slow machine cannot turn a decision into an expiry; where time
 * is the point, the leases are a few hundred ms and the test sleeps past
 * them on Redis's own clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "sessiond/seat_lua.h"

#define LONG_MS "60000"   /* a lease or expiry no test outlives */
#define SKIP_EXIT 77

/* ---- our redis-server ---------------------------------------------------------------- */

static struct {
  pid_t pid;
  int port;
  char dir[64];
  redisContext *c;
} srv;

static int redis_server_installed(void) {
  const char *path = getenv("PATH");
  if (!path) return 0;
  char *dirs = strdup(path), *save = NULL, file[4096];
  int found = 0;
  for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
    snprintf(file, sizeof file, "%s/redis-server", d);
    found = access(file, X_OK) == 0;
  }
  free(dirs);
  return found;
}

/* A port nobody listens on now; another process may take it before Redis
 * binds it, in which case Redis exits and we try again with another. */
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    if (fd >= 0) close(fd);
    return -1;
  }
  close(fd);
  return ntohs(a.sin_port);
}

/* The child dies with us (PR_SET_PDEATHSIG) should the test crash. */
static pid_t spawn_redis(int port) {
  char port_s[16], log[96];
  snprintf(port_s, sizeof port_s, "%d", port);
  snprintf(log, sizeof log, "%s/redis.log", srv.dir);
  pid_t pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  execlp("redis-server", "redis-server", "--port", port_s, "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", srv.dir, "--logfile", log, "--daemonize", "no",
         (char *)NULL);
  _exit(127);
}

/* Connects within ten seconds, or gives up early when the server exited
 * (its port was taken, say). */
static redisContext *connect_to_spawned(pid_t pid, int port) {
  struct timeval tv = {1, 0};
  for (int tries = 0; tries < 200; tries++) {
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && !c->err) return c;
    redisFree(c);
    if (waitpid(pid, NULL, WNOHANG) == pid) return NULL;
    usleep(50 * 1000);
  }
  return NULL;
}

static int start_redis(void) {
  snprintf(srv.dir, sizeof srv.dir, "/tmp/usher-seat-lua-XXXXXX");
  if (!mkdtemp(srv.dir)) return -1;
  for (int attempt = 0; attempt < 5; attempt++) {
    srv.port = free_port();
    if (srv.port < 0) continue;
    srv.pid = spawn_redis(srv.port);
    if (srv.pid < 0) return -1;
    srv.c = connect_to_spawned(srv.pid, srv.port);
    if (srv.c) return 0;
    kill(srv.pid, SIGKILL);
    waitpid(srv.pid, NULL, 0);
  }
  return -1;
}

static void stop_redis(void) {
  redisFree(srv.c);
  srv.c = NULL;
  if (srv.pid > 0) {
    kill(srv.pid, SIGTERM);
    waitpid(srv.pid, NULL, 0);
  }
  char file[128];
  snprintf(file, sizeof file, "%s/redis.log", srv.dir);
  unlink(file);
  snprintf(file, sizeof file, "%s/dump.rdb", srv.dir);
  unlink(file);
  rmdir(srv.dir);
}

/* ---- talking to it ------------------------------------------------------------------- */

static redisReply *command(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(srv.c, fmt, ap);
  va_end(ap);
  assert_non_null(rep);
  assert_int_not_equal(rep->type, REDIS_REPLY_ERROR);
  return rep;
}

static long long command_int(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(srv.c, fmt, ap);
  va_end(ap);
  assert_non_null(rep);
  assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
  long long n = rep->integer;
  freeReplyObject(rep);
  return n;
}

/* A string answer as a number; -1 for nil. */
static long long command_num(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *rep = redisvCommand(srv.c, fmt, ap);
  va_end(ap);
  assert_non_null(rep);
  assert_true(rep->type == REDIS_REPLY_STRING || rep->type == REDIS_REPLY_NIL);
  long long n = rep->type == REDIS_REPLY_NIL ? -1 : strtoll(rep->str, NULL, 10);
  freeReplyObject(rep);
  return n;
}

/* The seat's backend, or "" when there is no seat. */
static const char *seat_backend(const char *user) {
  static char backend[64];
  redisReply *rep = command("HGET usher:{%s}:seat backend", user);
  snprintf(backend, sizeof backend, "%s", rep->type == REDIS_REPLY_STRING ? rep->str : "");
  freeReplyObject(rep);
  return backend;
}

static long long redis_now_ms(void) {
  redisReply *rep = command("TIME");
  long long ms = strtoll(rep->element[0]->str, NULL, 10) * 1000 +
                 strtoll(rep->element[1]->str, NULL, 10) / 1000;
  freeReplyObject(rep);
  return ms;
}

/* Runs one script as seat_script does: KEYS seat, leases, refill, moving. */
static redisReply *run(const char *lua, const char *user, int argc, const char **args) {
  char seat[96], leases[96], moving[96];
  snprintf(seat, sizeof seat, "usher:{%s}:seat", user);
  snprintf(leases, sizeof leases, "usher:{%s}:leases", user);
  snprintf(moving, sizeof moving, "usher:{%s}:moving", user);
  const char *argv[16] = {"EVAL", lua, "4", seat, leases, REFILL_KEY, moving};
  for (int i = 0; i < argc; i++) argv[7 + i] = args[i];
  redisReply *rep = redisCommandArgv(srv.c, 7 + argc, argv, NULL);
  assert_non_null(rep);
  if (rep->type == REDIS_REPLY_ERROR) fail_msg("script error: %s", rep->str);
  return rep;
}

static redisReply *attach(const char *user, const char *proposed, const char *proxy,
                          const char *lease, const char *expire) {
  const char *args[] = {proposed, proxy, lease, expire};
  return run(SEAT_ATTACH_LUA, user, 4, args);
}

static redisReply *replace(const char *user, const char *old_backend, const char *old_gen,
                           const char *new_backend, const char *proxy) {
  const char *args[] = {old_backend, old_gen, new_backend, proxy, LONG_MS, LONG_MS};
  return run(SEAT_REPLACE_LUA, user, 6, args);
}

static redisReply *heartbeat(const char *user, const char *backend, const char *gen,
                             const char *proxy, const char *unconfirmed) {
  const char *args[] = {backend, gen, proxy, LONG_MS, LONG_MS, unconfirmed};
  return run(SEAT_HEARTBEAT_LUA, user, 6, args);
}

static void detach(const char *user, const char *proxy, const char *expire) {
  const char *args[] = {proxy, expire};
  freeReplyObject(run(SEAT_DETACH_LUA, user, 2, args));
}

/* A move ('' = kick only); its answer, the new gen (0, -1: see seat_lua.c). */
static long long move(const char *user, const char *backend, const char *lease) {
  const char *args[] = {backend, LONG_MS, lease};
  redisReply *rep = run(SEAT_MOVE_LUA, user, 3, args);
  assert_int_equal(rep->type, REDIS_REPLY_INTEGER);
  long long gen = rep->integer;
  freeReplyObject(rep);
  return gen;
}

/* The answer {backend, gen, flag} of attach and replace ({backend, gen} of
 * the heartbeat when flag < 0), checked and freed. */
static void assert_seat(redisReply *rep, const char *backend, const char *gen, int flag) {
  assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
  assert_int_equal(rep->elements, flag < 0 ? 2 : 3);
  assert_int_equal(rep->element[0]->type, REDIS_REPLY_STRING);
  assert_string_equal(rep->element[0]->str, backend);
  assert_int_equal(rep->element[1]->type, REDIS_REPLY_STRING);
  assert_string_equal(rep->element[1]->str, gen);
  if (flag >= 0) {
    assert_int_equal(rep->element[2]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(rep->element[2]->integer, flag);
  }
  freeReplyObject(rep);
}

/* The answer "ask again in N ms" ({N}); N, the reply freed. */
static long long assert_wait(redisReply *rep) {
  assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
  assert_int_equal(rep->elements, 1);
  assert_int_equal(rep->element[0]->type, REDIS_REPLY_INTEGER);
  long long ms = rep->element[0]->integer;
  freeReplyObject(rep);
  return ms;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* Each test starts from an empty Redis (NEED_REDIS skips it when there
 * is no Redis at all). */
static int fresh_redis(void **state) {
  (void)state;
  if (srv.c) freeReplyObject(command("FLUSHALL"));
  return 0;
}

#define NEED_REDIS() \
  do {               \
    (void)state;     \
    if (!srv.c) skip(); \
  } while (0)

/* ---- attach ---------------------------------------------------------------------------- */

static void test_attach_creates_seat_with_proposal_and_lease(void **state) {
  NEED_REDIS();
  long long before = redis_now_ms();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, "30000"), "b1", "1", 1);
  assert_string_equal(seat_backend("alice"), "b1");
  assert_int_equal(command_num("HGET usher:{alice}:seat gen"), 1);
  assert_true(command_num("HGET usher:{alice}:seat created") >= before);
  long long lease_end = command_num("ZSCORE usher:{alice}:leases p1");
  assert_true(lease_end >= before + 60000 && lease_end <= redis_now_ms() + 60000);
  /* both keys live the lease plus the expiry */
  long long ttl = command_int("PTTL usher:{alice}:seat");
  assert_true(ttl > 80000 && ttl <= 90000);
  ttl = command_int("PTTL usher:{alice}:leases");
  assert_true(ttl > 80000 && ttl <= 90000);
}

static void test_attach_without_proposal_creates_nothing(void **state) {
  NEED_REDIS();
  redisReply *rep = attach("alice", "", "p1", LONG_MS, LONG_MS);
  assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
  assert_int_equal(rep->elements, 0);
  freeReplyObject(rep);
  assert_int_equal(command_int("EXISTS usher:{alice}:seat usher:{alice}:leases"), 0);
}

static void test_second_proxy_gets_the_winners_seat(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(attach("alice", "b2", "p2", LONG_MS, LONG_MS), "b1", "1", 0);
  assert_string_equal(seat_backend("alice"), "b1");
  assert_int_equal(command_int("ZCARD usher:{alice}:leases"), 2);
  assert_true(command_num("ZSCORE usher:{alice}:leases p2") > 0);
  /* without a proposal, a seated user still gets the seat */
  assert_seat(attach("alice", "", "p3", LONG_MS, LONG_MS), "b1", "1", 0);
}

/* ---- replace: compare and set -------------------------------------------------------------- */

static void test_replace_needs_the_current_backend_and_gen(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(replace("alice", "b1", "0", "b2", "p1"), "b1", "1", 0);    /* stale gen */
  assert_seat(replace("alice", "b9", "1", "b2", "p1"), "b1", "1", 0);    /* stale backend */
  assert_string_equal(seat_backend("alice"), "b1");
  assert_seat(replace("alice", "b1", "1", "b2", "p1"), "b2", "2", 1);    /* the current one */
  assert_string_equal(seat_backend("alice"), "b2");
  assert_int_equal(command_num("HGET usher:{alice}:seat gen"), 2);
  /* a second proxy acting on what it saw before loses */
  assert_seat(replace("alice", "b1", "1", "b3", "p2"), "b2", "2", 0);
  assert_string_equal(seat_backend("alice"), "b2");
}

static void test_replace_of_a_lost_seat_creates_it(void **state) {
  NEED_REDIS();
  assert_seat(replace("alice", "b1", "4", "b2", "p1"), "b2", "1", 1);
  assert_string_equal(seat_backend("alice"), "b2");
  assert_true(command_num("ZSCORE usher:{alice}:leases p1") > 0);
}

/* ---- heartbeat ---------------------------------------------------------------------------- */

static void test_heartbeat_renews_the_lease(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", "1000", "1000"), "b1", "1", 1);
  long long first = command_num("ZSCORE usher:{alice}:leases p1");
  assert_true(command_int("PTTL usher:{alice}:seat") <= 2000);
  assert_seat(heartbeat("alice", "b1", "1", "p1", "0"), "b1", "1", -1);
  assert_true(command_num("ZSCORE usher:{alice}:leases p1") >= first + 59000);
  assert_true(command_int("PTTL usher:{alice}:seat") > 100000);
  assert_true(command_int("PTTL usher:{alice}:leases") > 100000);
}

static void test_heartbeat_writes_back_a_seat_redis_lost(void **state) {
  NEED_REDIS();
  assert_seat(heartbeat("alice", "b3", "7", "p1", "0"), "b3", "7", -1);
  assert_string_equal(seat_backend("alice"), "b3");
  assert_int_equal(command_num("HGET usher:{alice}:seat gen"), 7);
  assert_true(command_num("HGET usher:{alice}:seat created") > 0);
  assert_true(command_num("ZSCORE usher:{alice}:leases p1") > 0);
  /* a seat never fenced (gen 0) comes back as the first generation */
  assert_seat(heartbeat("bob", "b3", "0", "p1", "0"), "b3", "1", -1);
}

static void test_heartbeat_keeps_the_clusters_seat_when_it_differs(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  /* confirmed: the cluster's seat wins, whoever holds it */
  assert_seat(heartbeat("alice", "b2", "1", "p1", "0"), "b1", "1", -1);
  /* unconfirmed, but p1 holds a live lease on b1: still b1 */
  assert_seat(heartbeat("alice", "b2", "1", "p2", "1"), "b1", "1", -1);
  assert_string_equal(seat_backend("alice"), "b1");
}

static void test_unconfirmed_heartbeat_replaces_a_seat_nobody_else_holds(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(heartbeat("alice", "b2", "1", "p1", "1"), "b2", "2", -1);
  assert_string_equal(seat_backend("alice"), "b2");
}

/* ---- detach and expiry ------------------------------------------------------------------- */

static void test_detach_removes_the_lease_and_keeps_the_others(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(attach("alice", "b1", "p2", LONG_MS, LONG_MS), "b1", "1", 0);
  detach("alice", "p1", "5000");
  assert_int_equal(command_num("ZSCORE usher:{alice}:leases p1"), -1);
  assert_true(command_num("ZSCORE usher:{alice}:leases p2") > 0);
  /* the seat lives the expiry past p2's lease */
  long long ttl = command_int("PTTL usher:{alice}:seat");
  assert_true(ttl > 60000 && ttl <= 65000);
  detach("alice", "p2", "5000");
  assert_int_equal(command_int("EXISTS usher:{alice}:leases"), 0);
  ttl = command_int("PTTL usher:{alice}:seat");
  assert_true(ttl > 0 && ttl <= 5000);
  assert_string_equal(seat_backend("alice"), "b1");
}

static void test_seat_expires_after_the_last_lease(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", "300", "300"), "b1", "1", 1);
  assert_seat(attach("alice", "b1", "p2", "300", "300"), "b1", "1", 0);
  detach("alice", "p1", "300");
  /* p2's lease still runs: lease plus expiry at most */
  long long ttl = command_int("PTTL usher:{alice}:seat");
  assert_true(ttl > 300 && ttl <= 600);
  sleep_ms(900);
  assert_int_equal(command_int("EXISTS usher:{alice}:seat"), 0);
  assert_int_equal(command_int("EXISTS usher:{alice}:leases"), 0);
  /* gone for good: the next attach starts a new seat */
  assert_seat(attach("alice", "b2", "p3", LONG_MS, LONG_MS), "b2", "1", 1);
}

/* ---- move and kick ---------------------------------------------------------------------- */

static void test_move_sets_backend_bumps_gen_and_records_holders(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(attach("alice", "b1", "p2", LONG_MS, LONG_MS), "b1", "1", 0);
  assert_int_equal(move("alice", "b2", "20000"), 2);
  assert_string_equal(seat_backend("alice"), "b2");
  assert_int_equal(command_num("HGET usher:{alice}:seat gen"), 2);
  assert_int_equal(command_int("SCARD usher:{alice}:moving"), 2);
  assert_int_equal(command_int("SISMEMBER usher:{alice}:moving p1"), 1);
  assert_int_equal(command_int("SISMEMBER usher:{alice}:moving p2"), 1);
  long long ttl = command_int("PTTL usher:{alice}:moving");   /* one lease at most */
  assert_true(ttl > 0 && ttl <= 20000);
}

static void test_attach_waits_until_each_holder_acks(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_seat(attach("alice", "b1", "p2", LONG_MS, LONG_MS), "b1", "1", 0);
  assert_int_equal(move("alice", "b2", LONG_MS), 2);
  assert_int_equal(assert_wait(attach("alice", "b3", "p3", LONG_MS, LONG_MS)), 100);
  freeReplyObject(command("SREM usher:{alice}:moving p1"));   /* seatstore's ack */
  assert_int_equal(assert_wait(attach("alice", "b3", "p3", LONG_MS, LONG_MS)), 100);
  freeReplyObject(command("SREM usher:{alice}:moving p2"));
  assert_seat(attach("alice", "b3", "p3", LONG_MS, LONG_MS), "b2", "2", 0);
}

static void test_attach_stops_waiting_when_a_holders_lease_runs_out(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", "300", LONG_MS), "b1", "1", 1);
  assert_int_equal(move("alice", "b2", LONG_MS), 2);
  assert_int_equal(assert_wait(attach("alice", "", "p3", LONG_MS, LONG_MS)), 100);
  sleep_ms(500);   /* p1 never acks, but its lease ends */
  assert_seat(attach("alice", "", "p3", LONG_MS, LONG_MS), "b2", "2", 0);
  assert_int_equal(command_int("EXISTS usher:{alice}:moving"), 0);
}

static void test_move_in_place_and_kick_record_no_holders(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  assert_int_equal(move("alice", "b1", LONG_MS), 2);   /* same backend: nobody to wait for */
  assert_int_equal(move("alice", "", LONG_MS), 3);     /* kick: a new gen, same backend */
  assert_string_equal(seat_backend("alice"), "b1");
  assert_int_equal(command_int("EXISTS usher:{alice}:moving"), 0);
  assert_seat(attach("alice", "", "p2", LONG_MS, LONG_MS), "b1", "3", 0);
  /* a kick of a user without a seat leaves none behind */
  assert_int_equal(move("bob", "", LONG_MS), 0);
  assert_int_equal(command_int("EXISTS usher:{bob}:seat"), 0);
}

/* ---- the refill window ------------------------------------------------------------------ */

static void test_refill_makes_unseated_users_wait_not_seated_ones(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  freeReplyObject(command("SET " REFILL_KEY " p1 PX 2000"));
  long long wait = assert_wait(attach("bob", "b2", "p1", LONG_MS, LONG_MS));
  assert_true(wait > 0 && wait <= 2000);
  assert_int_equal(command_int("EXISTS usher:{bob}:seat usher:{bob}:leases"), 0);
  wait = assert_wait(replace("bob", "b1", "1", "b2", "p1"));   /* nor by a replace */
  assert_true(wait > 0 && wait <= 2000);
  assert_int_equal(command_int("EXISTS usher:{bob}:seat"), 0);
  assert_seat(attach("alice", "b2", "p2", LONG_MS, LONG_MS), "b1", "1", 0);
  /* once the window closes, the unseated user gets a seat */
  freeReplyObject(command("DEL " REFILL_KEY));
  assert_seat(attach("bob", "b2", "p1", LONG_MS, LONG_MS), "b2", "1", 1);
}

static void test_move_is_refused_while_refilling_but_a_kick_is_not(void **state) {
  NEED_REDIS();
  assert_seat(attach("alice", "b1", "p1", LONG_MS, LONG_MS), "b1", "1", 1);
  freeReplyObject(command("SET " REFILL_KEY " p1 PX 5000"));
  assert_int_equal(move("alice", "b2", LONG_MS), -1);
  assert_string_equal(seat_backend("alice"), "b1");
  assert_int_equal(command_num("HGET usher:{alice}:seat gen"), 1);
  assert_int_equal(move("alice", "", LONG_MS), 2);
}

/* ---- the run ------------------------------------------------------------------------------ */

int main(void) {
  int have_redis = redis_server_installed();
  if (!have_redis)
    fprintf(stderr, "redis-server not found in PATH: every test skipped\n");
  else if (start_redis() != 0) {
    fprintf(stderr, "redis-server did not start (see %s/redis.log)\n", srv.dir);
    return 1;
  }
#define T(name) cmocka_unit_test_setup(name, fresh_redis)
  const struct CMUnitTest tests[] = {
      T(test_attach_creates_seat_with_proposal_and_lease),
      T(test_attach_without_proposal_creates_nothing),
      T(test_second_proxy_gets_the_winners_seat),
      T(test_replace_needs_the_current_backend_and_gen),
      T(test_replace_of_a_lost_seat_creates_it),
      T(test_heartbeat_renews_the_lease),
      T(test_heartbeat_writes_back_a_seat_redis_lost),
      T(test_heartbeat_keeps_the_clusters_seat_when_it_differs),
      T(test_unconfirmed_heartbeat_replaces_a_seat_nobody_else_holds),
      T(test_detach_removes_the_lease_and_keeps_the_others),
      T(test_seat_expires_after_the_last_lease),
      T(test_move_sets_backend_bumps_gen_and_records_holders),
      T(test_attach_waits_until_each_holder_acks),
      T(test_attach_stops_waiting_when_a_holders_lease_runs_out),
      T(test_move_in_place_and_kick_record_no_holders),
      T(test_refill_makes_unseated_users_wait_not_seated_ones),
      T(test_move_is_refused_while_refilling_but_a_kick_is_not),
  };
#undef T
  int failed = cmocka_run_group_tests(tests, NULL, NULL);
  if (have_redis) stop_redis();
  return have_redis ? failed : SKIP_EXIT;
}
