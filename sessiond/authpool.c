/* The password-hashing threads. Jobs move: queue -> a thread -> done list
 * -> the loop. One mutex guards both lists; a byte on the pipe wakes the
 * loop, which drains the done list in one go. */
#include "sessiond/authpool.h"

#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/util.h"

struct job {
  char *password;
  char *hash;
  authpool_done_fn done;
  void *cookie;
  enum passwd_result result;
  struct job *next;
};

struct authpool {
  pthread_mutex_t lock;
  pthread_cond_t wake;
  struct job *queue_head, *queue_tail;
  struct job *done;
  unsigned queued, queue_max;
  int stopping;
  pthread_t *threads;
  unsigned n_threads;
  int pipe_rd, pipe_wr;
  struct event *ev;
};

static void job_free(struct job *j) {
  wipe_free_str(j->password);
  free(j->hash);
  free(j);
}

static void *worker_thread(void *arg) {
  struct authpool *p = arg;
  pthread_mutex_lock(&p->lock);
  for (;;) {
    while (!p->queue_head && !p->stopping) pthread_cond_wait(&p->wake, &p->lock);
    if (p->stopping) break;
    struct job *j = p->queue_head;
    p->queue_head = j->next;
    if (!p->queue_head) p->queue_tail = NULL;
    p->queued--;
    pthread_mutex_unlock(&p->lock);

    j->result = passwd_verify(j->password, j->hash);
    wipe_free_str(j->password);
    j->password = NULL;

    pthread_mutex_lock(&p->lock);
    int was_empty = p->done == NULL;
    j->next = p->done;
    p->done = j;
    if (was_empty) {
      char b = 1;
      ssize_t w = write(p->pipe_wr, &b, 1);
      (void)w;   /* a full pipe already means "wake up" */
    }
  }
  pthread_mutex_unlock(&p->lock);
  return NULL;
}

static void on_done(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct authpool *p = arg;
  char buf[64];
  while (read(fd, buf, sizeof buf) > 0) {}
  pthread_mutex_lock(&p->lock);
  struct job *list = p->done;
  p->done = NULL;
  pthread_mutex_unlock(&p->lock);
  while (list) {
    struct job *j = list;
    list = j->next;
    j->done(j->cookie, j->result);
    job_free(j);
  }
}

struct authpool *authpool_new(struct event_base *base, unsigned threads, unsigned queue_max) {
  struct authpool *p = xcalloc(1, sizeof *p);
  int fds[2];
  if (pipe(fds) != 0) {
    free(p);
    return NULL;
  }
  fd_set_nonblock_cloexec(fds[0]);
  fd_set_nonblock_cloexec(fds[1]);
  p->pipe_rd = fds[0];
  p->pipe_wr = fds[1];
  p->queue_max = queue_max;
  pthread_mutex_init(&p->lock, NULL);
  pthread_cond_init(&p->wake, NULL);
  p->ev = event_new(base, p->pipe_rd, EV_READ | EV_PERSIST, on_done, p);
  event_add(p->ev, NULL);
  p->threads = xcalloc(threads, sizeof *p->threads);
  for (unsigned i = 0; i < threads; i++)
    if (pthread_create(&p->threads[p->n_threads], NULL, worker_thread, p) == 0) p->n_threads++;
  return p;
}

void authpool_free(struct authpool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->lock);
  p->stopping = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->lock);
  for (unsigned i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
  /* Every job still owes its caller an answer, so the caller can free its
   * cookie: unfinished ones count as mismatches. */
  for (struct job *j = p->queue_head, *n; j; j = n) {
    n = j->next;
    j->done(j->cookie, PASSWD_MISMATCH);
    job_free(j);
  }
  for (struct job *j = p->done, *n; j; j = n) {
    n = j->next;
    j->done(j->cookie, j->result);
    job_free(j);
  }
  event_free(p->ev);
  close(p->pipe_rd);
  close(p->pipe_wr);
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->wake);
  free(p->threads);
  free(p);
}

int authpool_submit(struct authpool *p, const char *password, const char *hash,
                    authpool_done_fn done, void *cookie) {
  pthread_mutex_lock(&p->lock);
  if (p->queued >= p->queue_max) {
    pthread_mutex_unlock(&p->lock);
    return -1;
  }
  struct job *j = xcalloc(1, sizeof *j);
  j->password = xstrdup(password);
  j->hash = xstrdup(hash);
  j->done = done;
  j->cookie = cookie;
  if (p->queue_tail) p->queue_tail->next = j;
  else p->queue_head = j;
  p->queue_tail = j;
  p->queued++;
  pthread_cond_signal(&p->wake);
  pthread_mutex_unlock(&p->lock);
  return 0;
}

unsigned authpool_queued(const struct authpool *p) {
  return p->queued;   /* a racy read is fine for statistics */
}
