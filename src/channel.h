/*
 * channel.h - AMQP channels: open/close, and the dispatch of every method
 * that arrives on a channel to the module that handles it.
 */
#ifndef WARREN_CHANNEL_H
#define WARREN_CHANNEL_H

#include "connection.h"

typedef enum chan_state {
    CHAN_OPEN,
    CHAN_CLOSING, /* we sent channel.close; waiting for close-ok */
} chan_state_t;

struct consumer;
struct delivery;
struct message;
struct tx_publish;

typedef enum chan_publish_state {
    PUB_IDLE,
    PUB_AWAIT_HEADER, /* basic.publish seen; its content header comes next */
    PUB_AWAIT_BODY,   /* header seen; body frames until the announced size */
} chan_publish_state_t;

typedef struct chan {
    conn_t *conn;
    uint16_t id;
    chan_state_t state;

    /* A publish being assembled (publish.c). */
    chan_publish_state_t pub_state;
    bool pub_mandatory;
    uint8_t pub_exchange_len, pub_routing_key_len;
    char pub_exchange[256], pub_routing_key[256];
    struct message *pub_msg;
    uint64_t pub_received; /* bytes of its body that have arrived */
    /* The exchange last published to, valid while broker.topology_epoch is
     * pub_x_epoch: a publisher names the same exchange over and over. */
    struct exchange *pub_x;
    uint64_t pub_x_epoch;

    /* Publisher confirms: sequence numbers from 1, acked in batches. */
    bool confirm;
    uint64_t publish_seq;  /* last sequence number handed out */
    uint64_t confirm_upto; /* everything up to here may be acked... */
    uint64_t confirm_sent; /* ...and everything up to here has been */
    bool confirm_queued;   /* on the connection's list of channels to confirm */
    struct chan *confirm_next;
    /* Replies that wait for the journal's sync, in order (publish.c). */
    struct confirm_wait *waits;
    uint32_t waits_head, waits_count, waits_cap;
    struct chan *durable_prev, *durable_next; /* broker.durable_waiters */

    /* Transactions. */
    bool tx;
    struct tx_publish *tx_publishes, *tx_publishes_tail;

    /* Consumers and unacked deliveries (consumer.c). */
    struct consumer *consumers; /* by tag */
    uint16_t prefetch_consumer; /* basic.qos global=false: for new consumers */
    uint16_t prefetch_channel;  /* basic.qos global=true: shared by the channel */
    uint32_t unacked;           /* live entries in the ring */
    uint64_t next_tag;
    struct delivery *ring;
    uint32_t ring_head, ring_count, ring_cap;
    ev_timer ack_timer; /* the oldest deliveries' acknowledgement timeout */

    /* The queue most recently declared here, for the empty-name shorthand. */
    char last_queue[256];
    uint8_t last_queue_len;
} chan_t;

/* A frame for a channel other than 0 on an open connection. */
void chan_handle_frame(conn_t *c, const wn_frame_t *f);

/*
 * A soft error: send channel.close with `code` and "<REPLY_NAME> - <fmt...>",
 * naming the method that caused it, and ignore the channel's frames until
 * close-ok arrives.
 */
void chan_error(chan_t *ch, uint16_t code, uint32_t method_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Send a method on the channel. */
void chan_send_method(chan_t *ch, const wn_method_t *m);

/* Free every channel of a connection that is going away. */
void chan_close_all(conn_t *c);

#endif
