/*
 * syncer.h - the one helper thread that runs fdatasync, so that the event
 * loop never waits for the disk (docs/journal.md, "Sync semantics").
 *
 * The loop writes to a file and asks for the writes so far to be made
 * durable; it gets a ticket. The thread coalesces requests into group
 * commits: requests that arrive while a sync runs (or within the batch
 * delay) share the next one. When a sync completes the loop is woken and
 * `done` is called, on the loop thread, with the highest ticket now durable;
 * tickets complete in order.
 */
#ifndef WARREN_SYNCER_H
#define WARREN_SYNCER_H

#include <ev.h>
#include <stdint.h>

typedef struct syncer syncer_t;

/* err is 0, or the errno of a failed fdatasync (nothing up to ticket is durable). */
typedef void (*syncer_done_fn)(void *ctx, uint64_t ticket, int err);

/* batch_delay: seconds a first request waits for others to join it (0 = none). */
syncer_t *syncer_new(struct ev_loop *loop, syncer_done_fn done, void *ctx, double batch_delay);

/* Everything written to fd so far is to be made durable. Files are synced in
 * the order they were first requested in a round. Returns the ticket, or 0
 * if more than 16 different files are already waiting or fd cannot be
 * duplicated (nothing is promised). */
uint64_t syncer_request(syncer_t *s, int fd);

/* The caller is about to close fd: a later request for the same number is
 * another file. (What was requested for it is still synced, through the
 * thread's own duplicate.) */
void syncer_forget(syncer_t *s, int fd);

/* How many rounds of fdatasync have run (for tests and metrics). */
uint64_t syncer_rounds(syncer_t *s);

/* Finish the requests already made, stop the thread, free. */
void syncer_free(syncer_t *s);

#endif
