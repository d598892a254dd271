/*
 * syncer.c - the fdatasync thread (see syncer.h).
 *
 * Owns the thread and the pending request set. Shared with the loop thread
 * only through the mutex-protected fields below and the ev_async watcher,
 * whose ev_async_send is the one libev call that is safe from another thread.
 *
 * The thread syncs duplicates of the callers' descriptors (dup'd when a file
 * joins a round, closed when the round is done), so a caller may close its
 * own descriptor while a sync of it is pending or running.
 */
#include "syncer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define SYNCER_MAX_FDS 16

struct syncer {
    struct ev_loop *loop;
    ev_async wakeup;
    syncer_done_fn done;
    void *ctx;
    double batch_delay;
    pthread_t thread;

    /* Under mu: */
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int fds[SYNCER_MAX_FDS];  /* files to sync in the next round (our duplicates)... */
    int orig[SYNCER_MAX_FDS]; /* ...and the callers' descriptors they stand for (-1: forgotten) */
    int nfds;
    uint64_t requested; /* last ticket handed out */
    uint64_t durable;   /* last ticket made durable */
    int err;            /* errno of the last failed round, reported once */
    uint64_t rounds;
    struct timespec first; /* when the oldest pending request came */
    bool stopping;

    uint64_t reported; /* loop thread only: last ticket passed to done */
};

static void syncer_on_wakeup(struct ev_loop *loop, ev_async *w, int revents) {
    syncer_t *s = w->data;
    uint64_t durable;
    int err;
    (void)loop;
    (void)revents;
    pthread_mutex_lock(&s->mu);
    durable = s->durable;
    err = s->err;
    s->err = 0;
    pthread_mutex_unlock(&s->mu);
    if (durable > s->reported || err) {
        s->reported = durable > s->reported ? durable : s->reported;
        s->done(s->ctx, durable, err);
    }
}

static void timespec_add(struct timespec *t, double secs) {
    long ns = (long)(secs * 1e9);
    t->tv_sec += ns / 1000000000L;
    t->tv_nsec += ns % 1000000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

/* Take one round of work: the files to sync and the ticket they cover. */
static int syncer_take(syncer_t *s, int *fds, uint64_t *upto) {
    while (s->nfds == 0 && !s->stopping)
        pthread_cond_wait(&s->cond, &s->mu);
    if (s->nfds == 0) return -1;
    if (s->batch_delay > 0 && !s->stopping) {
        /* Let others join the oldest request, up to the batch delay. */
        struct timespec until = s->first;
        timespec_add(&until, s->batch_delay);
        while (!s->stopping && pthread_cond_timedwait(&s->cond, &s->mu, &until) != ETIMEDOUT)
            ;
    }
    int n = s->nfds;
    for (int i = 0; i < n; i++)
        fds[i] = s->fds[i];
    s->nfds = 0;
    *upto = s->requested;
    return n;
}

static void *syncer_main(void *arg) {
    syncer_t *s = arg;
    int fds[SYNCER_MAX_FDS];
    uint64_t upto;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int n = syncer_take(s, fds, &upto);
        if (n < 0) break;
        pthread_mutex_unlock(&s->mu);
        int err = 0;
        for (int i = 0; i < n; i++) {
            if (!err && fdatasync(fds[i]) != 0) err = errno;
            close(fds[i]);
        }
        pthread_mutex_lock(&s->mu);
        s->rounds++;
        if (err)
            s->err = err;
        else
            s->durable = upto;
        ev_async_send(s->loop, &s->wakeup);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

syncer_t *syncer_new(struct ev_loop *loop, syncer_done_fn done, void *ctx, double batch_delay) {
    syncer_t *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->loop = loop;
    s->done = done;
    s->ctx = ctx;
    s->batch_delay = batch_delay;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    ev_async_init(&s->wakeup, syncer_on_wakeup);
    s->wakeup.data = s;
    ev_async_start(loop, &s->wakeup);
    if (pthread_create(&s->thread, NULL, syncer_main, s) != 0) {
        ev_async_stop(loop, &s->wakeup);
        free(s);
        return NULL;
    }
    return s;
}

uint64_t syncer_request(syncer_t *s, int fd) {
    uint64_t ticket;
    bool present = false;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nfds; i++)
        present |= s->orig[i] == fd;
    if (!present) {
        int dup_fd = s->nfds < SYNCER_MAX_FDS ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
        if (dup_fd < 0) {
            pthread_mutex_unlock(&s->mu);
            return 0; /* a ticket now would claim durability for a file never synced */
        }
        if (s->nfds == 0) clock_gettime(CLOCK_REALTIME, &s->first);
        s->orig[s->nfds] = fd;
        s->fds[s->nfds++] = dup_fd;
    }
    ticket = ++s->requested;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    return ticket;
}

void syncer_forget(syncer_t *s, int fd) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->nfds; i++)
        if (s->orig[i] == fd) s->orig[i] = -1;
    pthread_mutex_unlock(&s->mu);
}

uint64_t syncer_rounds(syncer_t *s) {
    uint64_t n;
    pthread_mutex_lock(&s->mu);
    n = s->rounds;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void syncer_free(syncer_t *s) {
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    syncer_on_wakeup(s->loop, &s->wakeup, 0); /* report the last round */
    ev_async_stop(s->loop, &s->wakeup);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    free(s);
}
