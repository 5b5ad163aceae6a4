/* The admin socket (runtime_dir/admin.sock): one command line, one JSON
 * answer; what usherctl speaks. */
#ifndef USHER_SESSIOND_ADMIN_H
#define USHER_SESSIOND_ADMIN_H

#include <event2/listener.h>

void admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                  void *arg);

#endif
