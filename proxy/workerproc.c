/* The worker process's own settings, made once at start (and the
 * scheduling again at a reload): it gives up its privileges, runs as a
 * batch task, and keeps freed heap for the relay's next burst. Each
 * section says why. */
#include "proxy/workerproc.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <pwd.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"

/* ---- privileges --------------------------------------------------------- */

/* After the listeners, TLS keys and ticket keys are in hand, a worker needs
 * no privilege: it becomes [usher] user, for good (a root worker that
 * could get root back would defeat the point), and never dumps core (it
 * holds a password for the length of a login). */
int workerproc_drop_privileges(const struct config *cfg) {
  struct rlimit no_core = {0, 0};
  setrlimit(RLIMIT_CORE, &no_core);
  prctl(PR_SET_DUMPABLE, 0);
  if (!cfg->user) return 0;
  struct passwd *pw = getpwnam(cfg->user);
  if (!pw) {
    log_event(LOG_LVL_ERROR, "privileges", "user=%s error=\"no such user\"", cfg->user);
    return -1;
  }
  if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 ||
      (pw->pw_uid != 0 && setuid(0) == 0)) {
    log_event(LOG_LVL_ERROR, "privileges", "user=%s error=\"%s\"", cfg->user, strerror(errno));
    return -1;
  }
  log_event(LOG_LVL_DEBUG, "privileges", "user=%s uid=%d", cfg->user, (int)pw->pw_uid);
  return 0;
}

/* ---- scheduling ---------------------------------------------------------- */

/* Workers run as SCHED_BATCH unless the operator says otherwise. A worker
 * wakes for every few packets and does tens to hundreds of microseconds of
 * work each time (a LOGIN line, a TLS handshake's flight). Under the
 * normal policy each such wake-up may preempt whatever runs on that core:
 * the other workers, sessiond, whatever else the machine does. Every
 * preemption is a context switch and cold caches for both, and with as
 * many workers as cores it happens on every login. A batch task does not
 * preempt on wake-up; it runs when the core is free or at the next
 * scheduler tick. That costs a woken worker up to about a millisecond of
 * wait, and only when every core is busy; it saved about 12% of the CPU
 * per TLS login and per plaintext login with 2 workers here (README,
 * Performance). It needs no privilege and leaves the nice level alone; a
 * reload may switch it. */
void workerproc_scheduling(const struct config *cfg) {
  struct sched_param none = {0};
  if (sched_setscheduler(0, cfg->worker_batch ? SCHED_BATCH : SCHED_OTHER, &none) != 0)
    log_event(LOG_LVL_WARN, "scheduling", "policy=%s error=\"%s\"",
              cfg->worker_batch ? "batch" : "normal", strerror(errno));
}

/* ---- memory --------------------------------------------------------------- */

/* The relay reads up to 64 KiB at a time into libevent chains of 128 KiB,
 * and up to 256 KiB wait per direction. With glibc's defaults each such
 * chain is above the 128 KiB mmap threshold, or, once glibc has raised
 * that, sits at the top of a heap that free() trims back as soon as 256
 * KiB are free there: either way the next read faults its pages in again.
 * On a VM a page fault is dear (about 20 us here): a FETCH through a fresh
 * worker took 93,000 faults and 1.9 CPU seconds per GiB, against 400 and
 * 0.5-0.6 with the thresholds below. A worker keeps up to 8 MiB of freed heap
 * for the next burst; big allocations (none on our paths) still get their
 * own mapping. */
void workerproc_malloc(void) {
  mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
  mallopt(M_TRIM_THRESHOLD, 8 * 1024 * 1024);
}

