/*
 * listener.h - listening TCP sockets; each accepted socket becomes a conn.
 */
#ifndef WARREN_LISTENER_H
#define WARREN_LISTENER_H

#include "broker.h"

/* Bind and listen on one configured address. 0, or -1 with a log line. */
int listener_open(listener_t *l, const config_listener_t *addr);
void listener_close(listener_t *l);
/* Raise the open-file limit to its hard maximum so that many clients fit. */
void listener_raise_fd_limit(void);

#endif
