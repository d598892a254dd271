/*
 * tcp_ceiling.c - how many messages of a given size one thread can send to
 * another over loopback TCP on this machine, with no broker in between.
 *
 *   tcp-ceiling [-s SIZE] [-z SECONDS]
 *
 * A broker sits between a producer and a consumer, so for large messages no
 * broker can deliver more than this: every byte is still copied into the
 * kernel by the producer and out of it by the consumer, the broker only adds
 * two copies and a second pass through TCP. bench/compare prints this
 * figure beside the brokers' for the large-message workloads.
 *
 * The writer sends whole messages of SIZE bytes plus 64 bytes (about what
 * basic.publish's method and header frames add) in writes of at least 256
 * KiB, from one buffer filled once; the reader reads 256 KiB at a time and
 * only counts bytes. Both are as cheap as a load generator can be.
 */
#include "autoconfig.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CEILING_FRAMING 64u /* bytes basic.publish adds to a body */
#define CEILING_CHUNK   (256u * 1024)

typedef struct ceiling_s {
    int tx, rx;
    size_t msg;       /* bytes per message, framing included */
    size_t per_write; /* whole messages per write */
    atomic_bool stop;
} ceiling_t;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int write_all_fd(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *ceiling_writer(void *arg) {
    ceiling_t *c = arg;
    size_t len = c->msg * c->per_write;
    char *buf = malloc(len);
    if (buf == NULL) return NULL;
    memset(buf, 'w', len);
    while (!atomic_load(&c->stop))
        if (write_all_fd(c->tx, buf, len) < 0) break;
    shutdown(c->tx, SHUT_WR);
    free(buf);
    return NULL;
}

/* A connected pair of loopback TCP sockets: *tx writes, *rx reads. */
static int loopback_pair(int *tx, int *rx) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0)
        return -1;
    *tx = socket(AF_INET, SOCK_STREAM, 0);
    if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof a) < 0) return -1;
    *rx = accept(l, NULL, NULL);
    close(l);
    return *rx < 0 ? -1 : 0;
}

int main(int argc, char **argv) {
    size_t size = 65536;
    double seconds = 5;
    int opt;
    while ((opt = getopt(argc, argv, "s:z:")) != -1) {
        if (opt == 's')
            size = strtoul(optarg, NULL, 10);
        else if (opt == 'z')
            seconds = atof(optarg);
        else {
            fprintf(stderr, "usage: tcp-ceiling [-s SIZE] [-z SECONDS]\n");
            return 2;
        }
    }
    ceiling_t c = {.msg = size + CEILING_FRAMING};
    c.per_write = c.msg >= CEILING_CHUNK ? 1 : CEILING_CHUNK / c.msg;
    if (loopback_pair(&c.tx, &c.rx) < 0) {
        perror("tcp-ceiling: loopback");
        return 1;
    }
    char *buf = malloc(CEILING_CHUNK);
    pthread_t writer;
    if (buf == NULL || pthread_create(&writer, NULL, ceiling_writer, &c) != 0) return 1;
    uint64_t bytes = 0;
    double start = now_s(), end = start + seconds, t = start;
    for (;;) {
        ssize_t r = read(c.rx, buf, CEILING_CHUNK);
        if (r <= 0) break;
        bytes += (uint64_t)r;
        if ((t = now_s()) >= end) break;
    }
    atomic_store(&c.stop, true);
    close(c.rx); /* the writer's next write fails */
    pthread_join(writer, NULL);
    close(c.tx);
    free(buf);
    double msgs = (double)bytes / (double)c.msg;
    printf("{\"size\": %zu, \"seconds\": %.3f, \"messages\": %.0f, \"rate\": %.0f, "
           "\"bytes_per_second\": %.0f}\n",
           size, t - start, msgs, msgs / (t - start), (double)bytes / (t - start));
    return 0;
}
