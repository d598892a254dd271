/*
 * dead_letter.h - a message leaving a queue for good without being acked
 * (rejected, expired, and later dropped by a length or delivery limit) goes
 * to the queue's x-dead-letter-exchange, with an x-death header as RabbitMQ
 * writes it.
 *
 * The copy is pushed onto its queues (and, persistent and bound for durable
 * queues, written to the journal) before the original's removal is
 * recorded, so a crash between the two leaves the message in both places,
 * never in neither.
 */
#ifndef WARREN_DEAD_LETTER_H
#define WARREN_DEAD_LETTER_H

#include "queue.h"

typedef enum {
    DL_REJECTED,       /* basic.reject or basic.nack with requeue=false */
    DL_EXPIRED,        /* its TTL passed */
    DL_MAXLEN,         /* pushed out by x-max-length / x-max-length-bytes */
    DL_DELIVERY_LIMIT, /* delivered x-delivery-limit times */
} dl_reason_t;

/* The entry has been taken off q (popped, or delivered and settled) and
 * leaves it for `reason`: dead-letter a copy if q has a dead-letter exchange
 * that exists, then drop the entry (journal ack, message reference). */
void dead_letter(queue_t *q, qentry_t *e, dl_reason_t reason);

#endif
