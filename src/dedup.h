/*
 * dedup.h - idempotent publishing: an exchange or a queue declared with
 * x-message-deduplication = true drops a message whose deduplication header
 * holds a value it has seen within its window, as LavinMQ and the
 * rabbitmq-message-deduplication plugin do. A publisher that retries after
 * a lost confirm so creates no duplicate; the dropped copy is still
 * confirmed.
 *
 * The window is a cache of header values: at most x-cache-size entries
 * (default 128; when full the oldest goes), each kept for x-cache-ttl ms (or
 * the message's own x-cache-ttl header; no limit when neither is given).
 * The header is named by x-deduplication-header (default
 * "x-deduplication-header"); a message without it is never a duplicate.
 *
 * The caches of durable exchanges and queues survive a restart through
 * data_dir/dedup.log (dedup_log.c, docs/journal.md).
 */
#ifndef WARREN_DEDUP_H
#define WARREN_DEDUP_H

#include "bytes.h"
#include "message.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct dedup dedup_t;

/* A redeclaration's deduplication arguments, compared when either side has
 * x-message-deduplication (RabbitMQ's plugin does not; LavinMQ does): 0, or
 * -1 with the "inequivalent arg" text in err. */
int dedup_check_equivalent(wn_bytes_t current, wn_bytes_t received, const char *what, char *err,
                           size_t errlen);

/* Validate the deduplication arguments of a declare that has
 * x-message-deduplication: 0, or -1 with
 * "invalid arg '...' for <what>: reason" in err (sent with 406). */
int dedup_check_args(wn_bytes_t args, const char *what, char *err, size_t errlen);

/* The cache the arguments ask for; NULL when deduplication is off (or
 * memory is short: the declare goes on without it, logged). */
dedup_t *dedup_new(wn_bytes_t args);
void dedup_free(dedup_t *d);

/* Is m a duplicate within the window? If not, its value is remembered (and,
 * for a durable owner, `persist` asks for it to be written down). */
bool dedup_seen(dedup_t *d, const message_t *m, uint64_t now_ms, bool persist);

/* Entries, for the log (dedup_log.c): visit every live entry, oldest first;
 * add one read back at start (an expired one is ignored). */
typedef void (*dedup_visit_fn)(wn_bytes_t key, uint64_t expires_ms, void *ctx);
void dedup_each(dedup_t *d, uint64_t now_ms, dedup_visit_fn fn, void *ctx);
void dedup_restore(dedup_t *d, wn_bytes_t key, uint64_t expires_ms, uint64_t now_ms);
uint32_t dedup_count(const dedup_t *d);
/* Forget every entry (the log replays an owner's deletion). */
void dedup_clear(dedup_t *d);

struct queue;
/* A new queue's cache, from its arguments; a deleted queue's goes. */
void dedup_queue_attach(struct queue *q);
void dedup_queue_detach(struct queue *q);

/* Who owns a cache, for the log: set once the owner exists. */
void dedup_set_owner(dedup_t *d, uint8_t kind, const void *owner);

#endif
