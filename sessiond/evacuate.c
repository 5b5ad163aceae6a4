/* Moving users off a backend found down (evacuate.h). */
#include "sessiond/evacuate.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "sessiond/backends.h"
#include "sessiond/context.h"
#include "sessiond/rehome.h"
#include "sessiond/seats.h"
#include "sessiond/seatstore.h"

struct seated { const char *backend; char **users; size_t n; };

/* The names first: a move changes the seat table being walked. */
static void collect(struct seat *s, void *arg) {
  struct seated *l = arg;
  if (strcmp(s->backend, l->backend)) return;
  l->users = xrealloc(l->users, (l->n + 1) * sizeof *l->users);
  l->users[l->n++] = xstrdup(s->user);
}

int evacuate_backend(struct sessiond *sd, int idx, const char *why) {
  if (idx < 0 || !rehome_on(sd)) return 0;
  const char *name = sd->cfg->backends[idx].name;
  struct seated l = {.backend = name};
  seats_foreach(sd->seats, collect, &l);
  int moved = 0, unmovable = 0;
  uint64_t now = now_ms();
  for (size_t i = 0; i < l.n; i++) {
    struct seat *seat = seat_find(sd->seats, l.users[i], now);
    /* A re-home or a login may have moved it meanwhile. */
    if (seat && !strcmp(seat->backend, name)) {
      int to = backends_choose(sd, l.users[i], NULL);
      char err[160];
      if (to >= 0 && seatstore_move(sd, l.users[i], sd->cfg->backends[to].name, 1, err,
                                    sizeof err) >= 0)
        moved++;
      else
        unmovable++;
    }
    free(l.users[i]);
  }
  free(l.users);
  if (l.n)
    log_event(LOG_LVL_WARN, "evacuate", "backend=%s cause=%s users=%zu moved=%d unmovable=%d",
              name, why, l.n, moved, unmovable);
  return moved;
}

static void on_backend_down(struct sessiond *sd, int idx, const char *why) {
  evacuate_backend(sd, idx, why);
}

void evacuate_init(struct sessiond *sd) { sd->backend_down = on_backend_down; }
