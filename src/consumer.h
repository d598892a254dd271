/*
 * consumer.h - consumers and deliveries: basic.consume / cancel / qos / get,
 * acknowledgements, and the prefetch windows that decide whether a consumer
 * may take another message.
 *
 * Every delivery that needs an ack is recorded on its channel in order of
 * delivery tag (chan_t.unacked_ring); a settled delivery becomes a tombstone
 * until everything before it is settled too, so lookups stay a binary search.
 */
#ifndef WARREN_CONSUMER_H
#define WARREN_CONSUMER_H

#include "queue.h"

struct chan;

typedef struct delivery {
    uint64_t tag;
    queue_t *q;           /* holds a queue reference */
    consumer_t *consumer; /* NULL for basic.get, or once the consumer is gone */
    qentry_t e;
    uint64_t expires; /* when it expires if it is requeued (expiry.h) */
    bool settled;     /* a tombstone, until everything before it settles */
    bool tx_settled;  /* settled inside an uncommitted transaction... */
    uint8_t tx_how;   /* ...this way, at commit (consumer.c's settle_t) */
    uint32_t at_ms;   /* when it went out, for the acknowledgement timeout */
} delivery_t;

/* May this consumer take one more message now? */
bool consumer_can_take(const consumer_t *c);
/* Send a message to a consumer (basic.deliver) and record it if it needs an ack. */
void consumer_deliver(consumer_t *c, qentry_t *e, uint64_t expires);
/* The queue is going away: tell the client (basic.cancel) if it asked to be told. */
void consumer_cancel_by_broker(consumer_t *c);

/* A name made of `prefix` and 22 random url-safe characters (amq.ctag-, amq.gen-). */
void consumer_make_name(char *out, size_t len, const char *prefix);

/* Method handlers (channel.c dispatches to these). */
void consumer_on_qos(struct chan *ch, const wn_basic_qos_t *m);
void consumer_on_consume(struct chan *ch, const wn_basic_consume_t *m);
void consumer_on_cancel(struct chan *ch, const wn_basic_cancel_t *m);
void consumer_on_get(struct chan *ch, const wn_basic_get_t *m);
void consumer_on_ack(struct chan *ch, uint64_t tag, bool multiple);
void consumer_on_nack(struct chan *ch, uint64_t tag, bool multiple, bool requeue, uint32_t id);
void consumer_on_recover(struct chan *ch, bool requeue, bool async);

/* Transactions: make tx-settled acks real, or forget them. */
void consumer_tx_commit(struct chan *ch);
void consumer_tx_rollback(struct chan *ch);

/* Visit every delivery of the channel that waits for its ack. */
void consumer_each_unacked(struct chan *ch, qentry_visit_fn fn, void *ctx);

/* The channel is closing: cancel its consumers, requeue what it had unacked. */
void consumer_channel_closed(struct chan *ch);

/* The connection's socket drained: let its consumers' queues flow again. */
void consumer_connection_writable(struct conn *c);

#endif
