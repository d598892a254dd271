/*
 * dedup_log.h - the deduplication caches of durable exchanges and queues on
 * disk: data_dir/dedup.log (docs/journal.md, "Deduplication log").
 *
 * Each value a durable owner remembers for a persistent message is appended
 * as a record, written once per loop iteration before the message journal's
 * flush and synced by the same fsync thread, so a confirmed message's value
 * is on disk when its confirm goes out. At start the log is replayed into
 * the caches of the owners that exist (entries already expired are dropped)
 * and rewritten as a snapshot of what is live; the same happens when it
 * grows past twice the last snapshot plus 1 MiB.
 */
#ifndef WARREN_DEDUP_LOG_H
#define WARREN_DEDUP_LOG_H

#include "buffer.h"
#include "bytes.h"

#include <stdbool.h>
#include <stdint.h>

enum { DEDUP_LOG_EXCHANGE = 1, DEDUP_LOG_QUEUE = 2 };

typedef struct dedup_log {
    int fd;     /* -1 until open: nothing is recorded */
    char *path; /* data_dir/dedup.log */
    char *dir;
    buf_t out; /* records not yet written */
    uint64_t size, snapshot_size;
} dedup_log_t;

/* Replay the log into the caches of the exchanges and queues that exist
 * (definitions_open has created them), then write a snapshot. 0 or -1. */
int dedup_log_open(dedup_log_t *l, const char *data_dir);
void dedup_log_close(dedup_log_t *l);

/* A durable owner remembered a value / is gone (nothing for other owners). */
void dedup_log_add(uint8_t kind, const void *owner, wn_bytes_t key, uint64_t expires_ms);
void dedup_log_forget(uint8_t kind, const void *owner);

/* Write what is buffered and ask for a sync (before the journal's flush). */
void dedup_log_flush(void);

#endif
