/*
 * definitions.h - durable exchanges, queues and bindings on disk.
 *
 * data_dir/definitions.log is an append-only log of changes, in the records
 * of record.h (docs/journal.md). Each change is written as it happens (to
 * the page cache: a broker crash loses nothing; the fsync thread makes it
 * durable before any message confirm that could depend on it). At start the
 * log is replayed and then rewritten as a snapshot of what is live: written
 * to definitions.log.new, fsynced, renamed over the log, directory fsynced,
 * so a crash at any moment leaves the old or the new log whole.
 *
 * Only durable objects are recorded: durable exchanges other than the
 * built-in ones, durable queues that are not exclusive, and bindings whose
 * source and destination are both durable.
 */
#ifndef WARREN_DEFINITIONS_H
#define WARREN_DEFINITIONS_H

#include <stdbool.h>
#include <stdint.h>

struct exchange;
struct queue;
struct binding;

typedef struct definitions {
    int fd;                 /* the log, open for appending; -1 until definitions_open */
    char *path;             /* data_dir/definitions.log */
    char *dir;              /* data_dir */
    uint64_t size;          /* bytes in the log */
    uint64_t snapshot_size; /* bytes in the last snapshot written */
    bool suspended;         /* replaying or tearing down: changes are not recorded */
    bool compact_due;       /* the log outgrew its snapshot; compact between operations */
} definitions_t;

/* Check data_dir/VERSION, replay the log, write a fresh snapshot. 0 or -1 (logged). */
int definitions_open(definitions_t *d, const char *data_dir);
void definitions_close(definitions_t *d);

/* Rewrite the log as a snapshot if it has grown enough. Called by the loop
 * between operations, never in the middle of one. */
void definitions_compact_if_due(definitions_t *d);

/* Record a change (nothing happens for objects that are not durable). */
void definitions_exchange(struct exchange *x, bool declared);
void definitions_queue(struct queue *q, bool declared);
void definitions_binding(struct binding *b, bool added);

#endif
