/*
 * limits.h - queue length limits and delivery limits.
 *
 * x-max-length and x-max-length-bytes bound a queue's ready messages (not
 * the unacked ones), with x-overflow saying what gives: drop-head (the
 * default) dead-letters the oldest as `maxlen` until the queue is within
 * its limits again; reject-publish refuses the new message for this queue
 * (a confirming publisher gets basic.nack; other queues still take it);
 * reject-publish-dlx does the same and dead-letters the refused message.
 *
 * x-delivery-limit (RabbitMQ has it on quorum queues only): a message
 * returned to the queue (nack or reject with requeue, a consumer or channel
 * gone) more times than the limit is dead-lettered as `delivery_limit`, or
 * dropped without a dead-letter exchange, instead of going round forever;
 * while it goes round, its deliveries carry an `x-delivery-count` header with
 * the number of earlier returns. The count lives in the queue entry's flags
 * and is not journaled: a restart starts it again.
 */
#ifndef WARREN_LIMITS_H
#define WARREN_LIMITS_H

#include "queue.h"

#include <stdbool.h>
#include <stdint.h>

#define LIMIT_NONE UINT64_MAX

typedef enum {
    OVERFLOW_DROP_HEAD,
    OVERFLOW_REJECT_PUBLISH,
    OVERFLOW_REJECT_PUBLISH_DLX
} overflow_t;

/* The entry flags' upper half: returns so far. */
#define QENTRY_RETURNS_SHIFT 16
static inline uint32_t qentry_returns(const qentry_t *e) {
    return e->flags >> QENTRY_RETURNS_SHIFT;
}

/* Read the limits from the queue's arguments (validated by declare.c). */
void limits_read_args(queue_t *q);

/* Before a push: may q take m? False (and m dead-lettered, for
 * reject-publish-dlx) if q is full and refuses new messages. */
bool limits_admit(queue_t *q, message_t *m);
/* After a push: drop (dead-letter) from the head while q is over a limit. */
void limits_enforce(queue_t *q);

/* A delivered message comes back to q: count the return. False if that was
 * one too many: the entry has then been dead-lettered and must not be
 * requeued. */
bool limits_returned(queue_t *q, qentry_t *e);
/* A message is about to be delivered again: give it its x-delivery-count. */
void limits_mark_delivery(queue_t *q, qentry_t *e);

#endif
