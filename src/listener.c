/*
 * listener.c - binds the AMQP listeners and accepts connections.
 * Owns the listening sockets; hands every accepted socket to conn_new().
 */
#include "listener.h"
#include "connection.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

void listener_raise_fd_limit(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            log_warning("could not raise the open file limit: %s", strerror(errno));
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        log_info("open file limit: %llu", (unsigned long long)rl.rlim_cur);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents) {
    listener_t *l = w->data;
    (void)loop;
    (void)revents;
    /* Accept a bounded batch per wakeup so one busy listener cannot starve the loop. */
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sslen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            if (errno == EMFILE || errno == ENFILE) {
                log_error("accept on %s: %s", l->name, strerror(errno));
                return;
            }
            if (errno == ECONNABORTED) continue;
            log_error("accept on %s: %s", l->name, strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_new(fd, (struct sockaddr *)&ss, sslen);
    }
}

static int bind_one(listener_t *l, const struct addrinfo *ai) {
    int one = 1;
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (ai->ai_family == AF_INET6) {
        int zero = 0; /* dual-stack: "::" takes IPv4 too */
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    l->fd = fd;
    return 0;
}

int listener_open(listener_t *l, const config_listener_t *addr) {
    struct addrinfo hints = {0}, *res = NULL, *ai;
    char port[8];
    const char *host = addr->host[0] ? addr->host : NULL;
    int rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    snprintf(port, sizeof port, "%u", addr->port);
    snprintf(l->name, sizeof l->name, "%s:%u", host ? host : "[::]", addr->port);
    l->fd = -1;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
        log_error("cannot listen on %s: %s", l->name, gai_strerror(rc));
        return -1;
    }
    /* For the wildcard, prefer the dual-stack IPv6 socket, then IPv4. */
    for (int pass = 0; pass < 2 && l->fd < 0; pass++)
        for (ai = res; ai && l->fd < 0; ai = ai->ai_next)
            if ((pass == 0) == (ai->ai_family == AF_INET6 || host != NULL)) bind_one(l, ai);
    freeaddrinfo(res);
    if (l->fd < 0) {
        log_error("cannot listen on %s: %s", l->name, strerror(errno));
        return -1;
    }
    ev_io_init(&l->io, on_accept, l->fd, EV_READ);
    l->io.data = l;
    ev_io_start(broker.loop, &l->io);
    log_info("started TCP listener on %s", l->name);
    return 0;
}

void listener_close(listener_t *l) {
    if (l->fd < 0) return;
    ev_io_stop(broker.loop, &l->io);
    close(l->fd);
    l->fd = -1;
}
