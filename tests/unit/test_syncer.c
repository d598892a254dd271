/*
 * test_syncer.c - the fdatasync thread (src/syncer.c): every request is
 * reported durable, in order, on the loop thread; requests share syncs
 * (group commit); a failed sync is reported; shutdown finishes the work.
 */
#include "syncer.h"
#include "tap.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct result {
    uint64_t last;
    int calls;
    bool in_order;
    int err;
    pthread_t loop_thread;
    bool on_loop_thread;
} result_t;

static void on_done(void *ctx, uint64_t ticket, int err) {
    result_t *r = ctx;
    if (err) {
        r->err = err;
        return;
    }
    if (ticket <= r->last) r->in_order = false;
    r->last = ticket;
    r->calls++;
    if (!pthread_equal(pthread_self(), r->loop_thread)) r->on_loop_thread = false;
}

static int temp_file(void) {
    char path[] = "/tmp/warren-syncer-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) unlink(path);
    return fd;
}

/* Run the loop until `want` is durable or 5 s pass. */
static void run_until(struct ev_loop *loop, result_t *r, uint64_t want) {
    for (int i = 0; i < 5000 && r->last < want && !r->err; i++) {
        ev_run(loop, EVRUN_NOWAIT);
        usleep(1000);
    }
}

static void test_group_commit(double delay) {
    struct ev_loop *loop = ev_loop_new(0);
    result_t r = {.in_order = true, .on_loop_thread = true, .loop_thread = pthread_self()};
    syncer_t *s = syncer_new(loop, on_done, &r, delay);
    int fd = temp_file(), defs = temp_file();
    char block[4096];
    uint64_t last = 0;
    memset(block, 'w', sizeof block);
    for (int i = 0; i < 2000; i++) {
        if (write(fd, block, sizeof block) != (ssize_t)sizeof block) break;
        if (i % 100 == 0) syncer_request(s, defs);
        last = syncer_request(s, fd);
    }
    run_until(loop, &r, last);
    uint64_t rounds = syncer_rounds(s);
    ok(last == 2020 && r.last == last, "delay %.3f: all %llu requests reported durable (last %llu)",
       delay, (unsigned long long)last, (unsigned long long)r.last);
    ok(r.in_order && r.on_loop_thread, "delay %.3f: tickets reported in order, on the loop thread",
       delay);
    ok(rounds >= 1 && rounds < 2000,
       "delay %.3f: group commit: %llu fdatasync rounds for 2020 requests", delay,
       (unsigned long long)rounds);
    syncer_free(s);
    ev_loop_destroy(loop);
    close(fd);
    close(defs);
}

static void test_error(void) {
    struct ev_loop *loop = ev_loop_new(0);
    result_t r = {.in_order = true, .on_loop_thread = true, .loop_thread = pthread_self()};
    syncer_t *s = syncer_new(loop, on_done, &r, 0);
    int p[2];
    if (pipe(p) != 0) abort();
    uint64_t t = syncer_request(s, p[1]); /* fdatasync of a pipe fails with EINVAL */
    run_until(loop, &r, t);
    ok(r.err == EINVAL && r.last == 0, "a failed fdatasync is reported (errno %d), nothing durable",
       r.err);
    syncer_free(s);
    ev_loop_destroy(loop);
    close(p[0]);
    close(p[1]);
}

/* The caller may close its descriptor while the sync of it is pending: the
 * thread syncs its own duplicate, and the number may be reused at once. */
static void test_close_while_pending(void) {
    struct ev_loop *loop = ev_loop_new(0);
    result_t r = {.in_order = true, .on_loop_thread = true, .loop_thread = pthread_self()};
    syncer_t *s = syncer_new(loop, on_done, &r, 0.05);
    int fd = temp_file();
    uint64_t t1 = syncer_request(s, fd);
    syncer_forget(s, fd);
    close(fd);
    int again = temp_file(); /* likely the same number: another file */
    uint64_t t2 = syncer_request(s, again);
    run_until(loop, &r, t2);
    ok(t1 && t2 > t1 && r.err == 0 && r.last >= t2,
       "closing a file while its sync is pending fails nothing (errno %d)", r.err);
    syncer_free(s);
    ev_loop_destroy(loop);
    close(again);
}

static void test_free_finishes(void) {
    struct ev_loop *loop = ev_loop_new(0);
    result_t r = {.in_order = true, .on_loop_thread = true, .loop_thread = pthread_self()};
    syncer_t *s = syncer_new(loop, on_done, &r, 0.05);
    int fd = temp_file();
    uint64_t t = syncer_request(s, fd);
    syncer_free(s); /* before the batch delay has passed */
    ok(r.last == t, "syncer_free finishes and reports the pending request");
    ev_loop_destroy(loop);
    close(fd);
}

static void test_too_many_files(void) {
    struct ev_loop *loop = ev_loop_new(0);
    result_t r = {.in_order = true, .on_loop_thread = true, .loop_thread = pthread_self()};
    syncer_t *s = syncer_new(loop, on_done, &r, 0.2);
    int fds[17];
    uint64_t t = 1;
    for (int i = 0; i < 17; i++)
        fds[i] = temp_file();
    for (int i = 0; i < 16; i++)
        t = syncer_request(s, fds[i]) ? t : 0;
    ok(t != 0 && syncer_request(s, fds[16]) == 0,
       "a 17th waiting file gets no ticket rather than a false promise");
    syncer_free(s);
    ev_loop_destroy(loop);
    for (int i = 0; i < 17; i++)
        close(fds[i]);
}

int main(void) {
    test_group_commit(0);
    test_group_commit(0.002);
    test_error();
    test_close_while_pending();
    test_free_finishes();
    test_too_many_files();
    return tap_done();
}
