/* Moving users off a backend found down while their sessions still sit on
 * it (issue 24). A backend that crashes resets its connections and each
 * worker re-homes its sessions at once (proxy/rehome.h); one that hangs
 * (frozen, swapping, its disk gone) keeps them open and silent, and only
 * the health checks see it. When this proxy's checks, or a peer's verdict
 * shared through Redis, turn a backend down, every user seated on it here
 * is moved to the backend the hash now gives, and the move re-homes the
 * user's sessions (KICK with re-home): on every proxy at once when the
 * verdict is shared, each moving the users it holds.
 *
 * Not paced, unlike a drain: a backend that dies under its sessions sends
 * them all to the others at once too, and a hung one must not keep its
 * clients waiting for a pace. Nothing is done with re-homing off: the
 * sessions then end as they always have, when their connections do. */
#ifndef USHER_SESSIOND_EVACUATE_H
#define USHER_SESSIOND_EVACUATE_H

struct sessiond;

/* Installs evacuate_backend as sd->backend_down (backends.c calls it). */
void evacuate_init(struct sessiond *sd);
/* Backend idx was just found down (why: "health", "shared"): its users
 * here are moved. Returns how many moves were made. */
int evacuate_backend(struct sessiond *sd, int idx, const char *why);

#endif
