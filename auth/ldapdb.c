/* The LDAP pool (see ldapdb.h for the why). A connection's life:
 *
 *   DOWN --timer--> SETUP (thread: connect, TLS, service bind) --> READY
 *   READY --job--> [REBIND service] --> SEARCH --> BIND user --> READY
 *   any error or timeout --> DOWN (back-off)
 *
 * Jobs wait in two FIFO lanes (first: users holding a seat). */
#include "auth/ldapdb.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lber.h>
#include <ldap.h>

#include "auth/ldap_escape.h"
#include "common/log.h"
#include "common/util.h"

#define LDAPDB_MAX_EXPANDED 4096
#define BACKOFF_MIN_MS 100

const uint64_t ldapdb_latency_bounds_us[LDAPDB_LATENCY_BUCKETS] = {
    500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 5000000};

enum lc_state { LC_DOWN, LC_SETUP, LC_READY, LC_REBIND, LC_SEARCH, LC_BIND };

struct job {
  struct ldapdb *db;
  char *login;
  char *password;          /* wiped and freed once the user bind is sent */
  char *dn, *canonical, *backend;
  ldapdb_done_fn done;
  void *cookie;
  uint64_t started_us;
  struct event *timer;     /* queue wait, then operation deadline */
  struct lconn *conn;      /* while running */
  struct job *next;
};

struct lconn {
  struct ldapdb *db;
  unsigned index;
  enum lc_state state;
  LDAP *ld;
  int msgid;
  int bound_as_user;       /* the last bind was a user's: rebind before a search */
  struct event *read_ev;
  struct event *retry_ev;
  uint64_t backoff_ms;
  struct job *job;
  /* set by the setup thread */
  pthread_t thread;
  int thread_running;
  LDAP *setup_ld;
  int setup_rc;
};

struct lane { struct job *head, *tail; };

struct ldapdb {
  struct event_base *base;
  char *uri, *ca_file, *bind_dn, *bind_password, *base_dn, *filter, *dn_template;
  char *login_attr, *backend_attr;
  int starttls;
  uint64_t timeout_ms, reconnect_max_ms;
  unsigned max_inflight, queue_max;
  struct lconn *conns;
  unsigned n_conns;
  struct lane lanes[2];    /* [0] first, [1] the rest */
  int pipe_rd, pipe_wr;
  struct event *pipe_ev;
  struct ldapdb_stats st;
};

static void conn_schedule_retry(struct lconn *c);
static void pump(struct ldapdb *db);

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static char *dup_or_null(const char *s) { return s ? xstrdup(s) : NULL; }

/* ---- jobs ---------------------------------------------------------------- */

static void job_finish(struct job *j, enum ldapdb_result r) {
  struct ldapdb *db = j->db;
  uint64_t us = now_us() - j->started_us;
  db->st.latency_us_sum += us;
  unsigned b = 0;
  while (b < LDAPDB_LATENCY_BUCKETS && us > ldapdb_latency_bounds_us[b]) b++;
  db->st.latency_buckets[b]++;
  switch (r) {
  case LDAPDB_OK: db->st.ok++; break;
  case LDAPDB_INVALID: db->st.invalid++; break;
  case LDAPDB_UNAVAILABLE: db->st.unavailable++; break;
  case LDAPDB_BUSY: db->st.busy++; break;
  }
  const char *canonical = j->canonical ? j->canonical : j->login;
  j->done(j->cookie, r, canonical, j->canonical || !j->dn ? canonical : j->dn, j->backend);
  if (j->timer) event_free(j->timer);
  free(j->login);
  wipe_free_str(j->password);
  ldap_memfree(j->dn);
  free(j->canonical);
  free(j->backend);
  free(j);
}

static void lane_push(struct lane *l, struct job *j) {
  j->next = NULL;
  if (l->tail) l->tail->next = j;
  else l->head = j;
  l->tail = j;
}

static void lane_remove(struct lane *l, struct job *j) {
  struct job **pp = &l->head, *prev = NULL;
  while (*pp && *pp != j) {
    prev = *pp;
    pp = &(*pp)->next;
  }
  if (!*pp) return;
  *pp = j->next;
  if (l->tail == j) l->tail = prev;
}

static struct job *lane_pop(struct ldapdb *db) {
  for (int i = 0; i < 2; i++) {
    struct job *j = db->lanes[i].head;
    if (j) {
      lane_remove(&db->lanes[i], j);
      db->st.queued--;
      return j;
    }
  }
  return NULL;
}

/* ---- connections ----------------------------------------------------------- */

static void conn_drop(struct lconn *c, const char *why) {
  struct ldapdb *db = c->db;
  if (c->read_ev) {
    event_free(c->read_ev);
    c->read_ev = NULL;
  }
  if (c->ld) {
    ldap_unbind_ext(c->ld, NULL, NULL);
    c->ld = NULL;
  }
  if (c->state >= LC_READY) db->st.conns_ready--;
  log_event(LOG_LVL_WARN, "ldap_conn", "conn=%u state=down reason=\"%s\"", c->index, why);
  c->state = LC_DOWN;
  struct job *j = c->job;
  c->job = NULL;
  if (j) {
    db->st.inflight--;
    job_finish(j, LDAPDB_UNAVAILABLE);
  }
  conn_schedule_retry(c);
}

static void *setup_thread(void *arg) {
  struct lconn *c = arg;
  struct ldapdb *db = c->db;
  LDAP *ld = NULL;
  int rc = ldap_initialize(&ld, db->uri);
  if (rc == LDAP_SUCCESS) {
    int v3 = LDAP_VERSION3, off = 0, demand = LDAP_OPT_X_TLS_DEMAND;
    struct timeval tv;
    ms_to_timeval(db->timeout_ms, &tv);
    ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &v3);
    ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
    ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_TIMEOUT, &tv);
    ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand);
    if (db->ca_file) ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, db->ca_file);
    ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &off);
    if (db->starttls) rc = ldap_start_tls_s(ld, NULL, NULL);
  }
  if (rc == LDAP_SUCCESS) {
    /* The service bind, or an anonymous one that opens the connection. */
    const char *pw = db->bind_dn ? db->bind_password : "";
    struct berval cred = {.bv_len = strlen(pw), .bv_val = (char *)pw};
    rc = ldap_sasl_bind_s(ld, db->bind_dn ? db->bind_dn : "", LDAP_SASL_SIMPLE, &cred, NULL,
                          NULL, NULL);
  }
  if (rc != LDAP_SUCCESS && ld) {
    ldap_unbind_ext(ld, NULL, NULL);
    ld = NULL;
  }
  c->setup_ld = ld;
  c->setup_rc = rc;
  ssize_t w = write(db->pipe_wr, &c, sizeof c);   /* atomic: < PIPE_BUF */
  (void)w;
  return NULL;
}

static void conn_start(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct lconn *c = arg;
  c->state = LC_SETUP;
  if (pthread_create(&c->thread, NULL, setup_thread, c) != 0) {
    c->state = LC_DOWN;
    conn_schedule_retry(c);
    return;
  }
  c->thread_running = 1;
}

static void conn_schedule_retry(struct lconn *c) {
  struct timeval tv;
  ms_to_timeval(c->backoff_ms, &tv);
  event_add(c->retry_ev, &tv);
  c->backoff_ms = c->backoff_ms * 2 > c->db->reconnect_max_ms ? c->db->reconnect_max_ms
                                                               : c->backoff_ms * 2;
}

static void on_readable(evutil_socket_t fd, short what, void *arg);

/* A setup thread has finished: adopt its handle, or back off. */
static void on_setup_done(evutil_socket_t fd, short what, void *arg) {
  (void)what;
  struct ldapdb *db = arg;
  struct lconn *c;
  while (read(fd, &c, sizeof c) == (ssize_t)sizeof c) {
    pthread_join(c->thread, NULL);
    c->thread_running = 0;
    db->st.connects++;
    int sock = -1;
    if (!c->setup_ld || ldap_get_option(c->setup_ld, LDAP_OPT_DESC, &sock) != LDAP_OPT_SUCCESS ||
        sock < 0) {
      db->st.connect_failures++;
      log_event(LOG_LVL_WARN, "ldap_conn", "conn=%u state=down reason=\"%s\"", c->index,
                ldap_err2string(c->setup_rc));
      if (c->setup_ld) ldap_unbind_ext(c->setup_ld, NULL, NULL);
      c->setup_ld = NULL;
      c->state = LC_DOWN;
      conn_schedule_retry(c);
      continue;
    }
    c->ld = c->setup_ld;
    c->setup_ld = NULL;
    c->state = LC_READY;
    c->bound_as_user = 0;
    c->backoff_ms = BACKOFF_MIN_MS;
    db->st.conns_ready++;
    c->read_ev = event_new(db->base, sock, EV_READ | EV_PERSIST, on_readable, c);
    event_add(c->read_ev, NULL);
    log_event(LOG_LVL_INFO, "ldap_conn", "conn=%u state=ready", c->index);
  }
  pump(db);
}

/* ---- the steps of a login ---------------------------------------------------- */

static int send_bind(struct lconn *c, const char *dn, const char *pw) {
  struct berval cred = {.bv_len = strlen(pw), .bv_val = (char *)pw};
  return ldap_sasl_bind(c->ld, dn, LDAP_SASL_SIMPLE, &cred, NULL, NULL, &c->msgid);
}

static int send_search(struct lconn *c) {
  struct ldapdb *db = c->db;
  struct job *j = c->job;
  char *attrs[3] = {NULL, NULL, NULL};
  int n = 0;
  if (db->login_attr) attrs[n++] = db->login_attr;
  if (db->backend_attr) attrs[n++] = db->backend_attr;
  char no_attrs[] = LDAP_NO_ATTRS;
  if (n == 0) attrs[n++] = no_attrs;
  char *filter = NULL;
  const char *base = db->base_dn;
  int scope = LDAP_SCOPE_SUBTREE;
  if (db->dn_template) {   /* after a template bind: read the user's own entry */
    base = j->dn;
    scope = LDAP_SCOPE_BASE;
  } else {
    filter = ldap_expand(db->filter, j->login, ldap_escape_filter, LDAPDB_MAX_EXPANDED);
    if (!filter) return LDAP_FILTER_ERROR;
  }
  struct timeval tv;
  ms_to_timeval(db->timeout_ms, &tv);
  int rc = ldap_search_ext(c->ld, base, scope, filter ? filter : "(objectClass=*)", attrs, 0, NULL,
                           NULL, &tv, 2, &c->msgid);
  free(filter);
  return rc;
}

/* The user bind: the password leaves memory as soon as it is sent. */
static int send_user_bind(struct lconn *c) {
  struct job *j = c->job;
  int rc = send_bind(c, j->dn, j->password);
  wipe_free_str(j->password);
  j->password = NULL;
  c->bound_as_user = 1;
  return rc;
}

static void job_done_on_conn(struct lconn *c, enum ldapdb_result r) {
  struct job *j = c->job;
  c->job = NULL;
  c->state = LC_READY;
  c->db->st.inflight--;
  job_finish(j, r);
}

/* First value of attr in entry e, or NULL. */
static char *first_value(LDAP *ld, LDAPMessage *e, const char *attr) {
  if (!attr) return NULL;
  struct berval **v = ldap_get_values_len(ld, e, attr);
  char *s = NULL;
  if (v && v[0] && v[0]->bv_len > 0 && v[0]->bv_len < 256 && !memchr(v[0]->bv_val, 0, v[0]->bv_len)) {
    s = xmalloc(v[0]->bv_len + 1);
    memcpy(s, v[0]->bv_val, v[0]->bv_len);
    s[v[0]->bv_len] = '\0';
  }
  ldap_value_free_len(v);
  return s;
}

/* A search answer: exactly one entry, or the login is invalid. */
static enum ldapdb_result take_search(struct lconn *c, LDAPMessage *res) {
  struct job *j = c->job;
  int err = LDAP_OTHER;
  int entries = ldap_count_entries(c->ld, res);
  ldap_parse_result(c->ld, res, &err, NULL, NULL, NULL, NULL, 0);
  if (err == LDAP_SIZELIMIT_EXCEEDED || entries > 1) {
    log_event(LOG_LVL_WARN, "ldap_search", "result=ambiguous entries=%d", entries);
    return LDAPDB_INVALID;
  }
  if (err == LDAP_NO_SUCH_OBJECT && c->db->dn_template) return LDAPDB_OK;  /* no entry to read */
  if (err != LDAP_SUCCESS) return LDAPDB_UNAVAILABLE;
  if (entries == 0) return c->db->dn_template ? LDAPDB_OK : LDAPDB_INVALID;
  LDAPMessage *e = ldap_first_entry(c->ld, res);
  if (!j->dn) j->dn = ldap_get_dn(c->ld, e);
  j->canonical = first_value(c->ld, e, c->db->login_attr);
  j->backend = first_value(c->ld, e, c->db->backend_attr);
  return j->dn ? LDAPDB_OK : LDAPDB_UNAVAILABLE;
}

/* Moves the running job one step on; returns an LDAP error code when the
 * connection must be dropped. */
static int step(struct lconn *c, LDAPMessage *res) {
  struct ldapdb *db = c->db;
  int err = LDAP_OTHER;
  switch (c->state) {
  case LC_REBIND:
    ldap_parse_result(c->ld, res, &err, NULL, NULL, NULL, NULL, 0);
    if (err != LDAP_SUCCESS) return err;
    c->bound_as_user = 0;
    c->state = LC_SEARCH;
    return send_search(c);
  case LC_SEARCH: {
    enum ldapdb_result r = take_search(c, res);
    if (r != LDAPDB_OK || db->dn_template) {
      job_done_on_conn(c, r);
      return LDAP_SUCCESS;
    }
    c->state = LC_BIND;
    return send_user_bind(c);
  }
  case LC_BIND:
    ldap_parse_result(c->ld, res, &err, NULL, NULL, NULL, NULL, 0);
    if (err == LDAP_INVALID_CREDENTIALS || err == LDAP_INAPPROPRIATE_AUTH ||
        err == LDAP_INVALID_DN_SYNTAX || err == LDAP_NO_SUCH_OBJECT) {
      job_done_on_conn(c, LDAPDB_INVALID);
      return LDAP_SUCCESS;
    }
    if (err != LDAP_SUCCESS) {
      job_done_on_conn(c, LDAPDB_UNAVAILABLE);
      return LDAP_SUCCESS;
    }
    if (db->dn_template && (db->login_attr || db->backend_attr)) {
      c->state = LC_SEARCH;   /* read the attributes routing needs */
      return send_search(c);
    }
    job_done_on_conn(c, LDAPDB_OK);
    return LDAP_SUCCESS;
  default:
    return LDAP_SUCCESS;   /* nothing outstanding */
  }
}

static void on_readable(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct lconn *c = arg;
  struct timeval zero = {0, 0};
  for (;;) {
    LDAPMessage *res = NULL;
    int type = ldap_result(c->ld, LDAP_RES_ANY, LDAP_MSG_ALL, &zero, &res);
    if (type == 0) return;   /* nothing complete yet */
    if (type < 0) {
      conn_drop(c, "connection lost");
      pump(c->db);
      return;
    }
    int rc = LDAP_SUCCESS;
    if (ldap_msgid(res) == c->msgid && c->job) rc = step(c, res);
    ldap_msgfree(res);
    if (rc != LDAP_SUCCESS) {
      conn_drop(c, ldap_err2string(rc));
      break;
    }
    if (c->state == LC_READY) break;
  }
  pump(c->db);
}

/* Starts job j on ready connection c. */
static void job_start(struct lconn *c, struct job *j) {
  struct ldapdb *db = c->db;
  c->job = j;
  j->conn = c;
  db->st.inflight++;
  struct timeval tv;
  ms_to_timeval(db->timeout_ms, &tv);
  event_add(j->timer, &tv);   /* now the operation deadline */
  int rc;
  if (db->dn_template) {
    j->dn = NULL;
    char *dn = ldap_expand(db->dn_template, j->login, ldap_escape_dn, LDAPDB_MAX_EXPANDED);
    if (!dn) {
      job_done_on_conn(c, LDAPDB_INVALID);
      return;
    }
    j->dn = ldap_strdup(dn);
    free(dn);
    c->state = LC_BIND;
    rc = send_user_bind(c);
  } else if (c->bound_as_user) {
    c->state = LC_REBIND;
    rc = send_bind(c, db->bind_dn ? db->bind_dn : "", db->bind_dn ? db->bind_password : "");
  } else {
    c->state = LC_SEARCH;
    rc = send_search(c);
  }
  if (rc != LDAP_SUCCESS) conn_drop(c, ldap_err2string(rc));
}

static void on_job_timer(evutil_socket_t fd, short what, void *arg) {
  (void)fd; (void)what;
  struct job *j = arg;
  struct ldapdb *db = j->db;
  db->st.timeouts++;
  if (j->conn) {   /* running: the connection's state is unknown now */
    conn_drop(j->conn, "operation timed out");
  } else {         /* waited in the queue too long */
    for (int i = 0; i < 2; i++) lane_remove(&db->lanes[i], j);
    db->st.queued--;
    job_finish(j, LDAPDB_BUSY);
  }
  pump(db);
}

static void pump(struct ldapdb *db) {
  for (unsigned i = 0; i < db->n_conns && db->st.inflight < db->max_inflight; i++) {
    struct lconn *c = &db->conns[i];
    if (c->state != LC_READY || c->job) continue;
    struct job *j = lane_pop(db);
    if (!j) return;
    job_start(c, j);
  }
}

/* ---- the interface ------------------------------------------------------------ */

struct ldapdb *ldapdb_new(struct event_base *base, const struct config *cfg,
                          const char *bind_password) {
  struct ldapdb *db = xcalloc(1, sizeof *db);
  int fds[2];
  if (pipe(fds) != 0) {
    free(db);
    return NULL;
  }
  fd_set_nonblock_cloexec(fds[0]);
  fd_set_nonblock_cloexec(fds[1]);
  db->pipe_rd = fds[0];
  db->pipe_wr = fds[1];
  db->base = base;
  db->uri = xstrdup(cfg->ldap_uri);
  db->ca_file = dup_or_null(cfg->ldap_ca_file);
  db->bind_dn = dup_or_null(cfg->ldap_bind_dn);
  db->bind_password = xstrdup(bind_password ? bind_password : "");
  db->base_dn = dup_or_null(cfg->ldap_base);
  db->filter = dup_or_null(cfg->ldap_filter);
  db->dn_template = dup_or_null(cfg->ldap_dn_template);
  db->login_attr = dup_or_null(cfg->ldap_login_attribute);
  db->backend_attr = dup_or_null(cfg->ldap_backend_attribute);
  db->starttls = cfg->ldap_starttls;
  db->timeout_ms = cfg->ldap_timeout_ms;
  db->reconnect_max_ms = cfg->ldap_reconnect_max_ms;
  db->max_inflight = cfg->ldap_max_inflight ? cfg->ldap_max_inflight : cfg->ldap_pool_size;
  db->queue_max = cfg->ldap_queue_max;
  db->pipe_ev = event_new(base, db->pipe_rd, EV_READ | EV_PERSIST, on_setup_done, db);
  event_add(db->pipe_ev, NULL);
  db->n_conns = cfg->ldap_pool_size;
  db->conns = xcalloc(db->n_conns, sizeof *db->conns);
  for (unsigned i = 0; i < db->n_conns; i++) {
    struct lconn *c = &db->conns[i];
    c->db = db;
    c->index = i;
    c->backoff_ms = BACKOFF_MIN_MS;
    c->retry_ev = evtimer_new(base, conn_start, c);
    conn_start(-1, 0, c);
  }
  return db;
}

void ldapdb_free(struct ldapdb *db) {
  if (!db) return;
  for (unsigned i = 0; i < db->n_conns; i++) {
    struct lconn *c = &db->conns[i];
    if (c->thread_running) {   /* bounded by the network timeout */
      pthread_join(c->thread, NULL);
      if (c->setup_ld) ldap_unbind_ext(c->setup_ld, NULL, NULL);
    }
    if (c->job) {
      db->st.inflight--;
      job_finish(c->job, LDAPDB_UNAVAILABLE);
      c->job = NULL;
    }
    if (c->read_ev) event_free(c->read_ev);
    if (c->ld) ldap_unbind_ext(c->ld, NULL, NULL);
    event_free(c->retry_ev);
  }
  for (struct job *j; (j = lane_pop(db));) job_finish(j, LDAPDB_UNAVAILABLE);
  event_free(db->pipe_ev);
  close(db->pipe_rd);
  close(db->pipe_wr);
  wipe_free_str(db->bind_password);
  char *strs[] = {db->uri, db->ca_file, db->bind_dn, db->base_dn, db->filter,
                  db->dn_template, db->login_attr, db->backend_attr};
  for (size_t i = 0; i < ARRAY_SIZE(strs); i++) free(strs[i]);
  free(db->conns);
  free(db);
}

void ldapdb_verify(struct ldapdb *db, const char *login, const char *password, int first,
                   ldapdb_done_fn done, void *cookie) {
  struct job *j = xcalloc(1, sizeof *j);
  j->db = db;
  j->login = xstrdup(login);
  j->password = xstrdup(password);
  j->done = done;
  j->cookie = cookie;
  j->started_us = now_us();
  db->st.requests++;
  if (password[0] == '\0' || login[0] == '\0') {   /* an anonymous bind is no proof */
    job_finish(j, LDAPDB_INVALID);
    return;
  }
  int reachable = 0;
  for (unsigned i = 0; i < db->n_conns && !reachable; i++)
    reachable = db->conns[i].state != LC_DOWN;
  if (!reachable) {
    job_finish(j, LDAPDB_UNAVAILABLE);
    return;
  }
  if (db->st.queued >= db->queue_max && db->st.inflight >= db->max_inflight) {
    job_finish(j, LDAPDB_BUSY);
    return;
  }
  j->timer = evtimer_new(db->base, on_job_timer, j);
  struct timeval tv;
  ms_to_timeval(db->timeout_ms, &tv);
  event_add(j->timer, &tv);   /* the longest wait in the queue */
  lane_push(&db->lanes[first ? 0 : 1], j);
  db->st.queued++;
  pump(db);
}

const struct ldapdb_stats *ldapdb_stats(const struct ldapdb *db) { return &db->st; }

int ldapdb_up(const struct ldapdb *db) { return db->st.conns_ready > 0; }
