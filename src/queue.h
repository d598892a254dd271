/*
 * queue.h - queues: ready messages in order, consumers, and dispatch.
 *
 * Ready messages sit in a ring buffer ordered by their sequence number in the
 * queue; a requeued message goes back to where its number puts it, so order
 * is kept across rejections and channel closes. Delivered-but-unacked
 * messages live on the channel that received them (channel.h), holding a
 * reference to the queue so that a deleted queue outlives its deliveries.
 *
 * Dispatch is deferred: anything that may let a message flow (a publish, an
 * ack, a new consumer, a drained socket) schedules the queue, and the loop
 * runs every scheduled queue once before it sleeps.
 */
#ifndef WARREN_QUEUE_H
#define WARREN_QUEUE_H

#include "bytes.h"
#include "message.h"

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

struct chan;
struct conn;
struct vhost;
struct binding;

enum {
    QENTRY_REDELIVERED = 1,
    QENTRY_DEAD = 2,  /* expired in the middle of the ring: skipped when its turn comes */
    QENTRY_EARLY = 4, /* expires before entries ahead of it may (expiry.h) */
};

struct expiry;

/* A message in a queue. A message kept in the journal (store.h) has its
 * record's place in seg/off/len (seg 0: not kept); its body may be only on
 * disk while it waits (msg NULL: a cold entry), and is read back when it is
 * taken off the queue. */
typedef struct qentry {
    message_t *msg;
    uint64_t seq; /* position in the queue */
    uint32_t seg, off, len;
    uint32_t flags;
} qentry_t;

/* Memory per queued message is a headline figure: expiry times live beside
 * the ring (expiry.h), not in it. */
_Static_assert(sizeof(qentry_t) == 32, "a queue entry is 32 bytes");

typedef struct consumer {
    struct chan *ch;
    struct queue *q;
    uint8_t tag_len;
    char tag[256];
    bool no_ack, exclusive;
    int32_t priority;
    uint32_t prefetch; /* 0 = unlimited */
    uint32_t unacked;
    wn_bytes_t args;                  /* owned */
    struct consumer *q_prev, *q_next; /* the queue's consumers, by priority */
    UT_hash_handle hh;                /* the channel's consumers, by tag */
} consumer_t;

typedef struct queue {
    char *name;
    uint8_t name_len;
    bool durable, exclusive, auto_delete;
    bool deleted;
    bool had_consumer;         /* auto-delete waits for a first consumer */
    struct conn *owner;        /* exclusive queues: the declaring connection */
    bool single_active;        /* x-single-active-consumer */
    uint32_t consumer_timeout; /* x-consumer-timeout in ms; 0: the broker's */
    wn_bytes_t args;           /* owned */
    struct vhost *vhost;
    uint32_t durable_id; /* durable queues: the id the journal knows it by; 0 otherwise */
    struct dedup *dedup; /* x-message-deduplication (dedup.h) */

    qentry_t *ring; /* ready messages, ordered by seq */
    uint32_t head, count, cap;
    uint64_t next_seq;
    uint32_t hot;       /* ready entries whose message is in memory... */
    uint64_t hot_bytes; /* ...and their body bytes */
    uint32_t unacked;
    uint32_t ndead;              /* QENTRY_DEAD entries still in the ring (counted in count) */
    uint64_t ready_bytes;        /* body bytes of the ready messages (limits.h) */
    uint64_t max_len, max_bytes; /* x-max-length, x-max-length-bytes; LIMIT_NONE if unset */
    uint64_t delivery_limit;     /* x-delivery-limit; LIMIT_NONE if unset */
    uint8_t overflow;            /* x-overflow (limits.h's overflow_t) */
    uint8_t max_priority;        /* x-max-priority; 0: not a priority queue */
    struct expiry *expiry;       /* TTL and x-expires state (expiry.h); NULL if never needed */

    consumer_t *consumers, *consumers_tail;
    consumer_t *active; /* single-active-consumer queues: the one being delivered to */
    uint32_t nconsumers;

    struct binding *bindings; /* bindings to this queue */
    uint64_t route_mark;      /* already in the current routing result */
    uint32_t refs;            /* the vhost's, plus one per unacked delivery */
    bool dispatch_scheduled;
    bool flow;                           /* holding back its publishers (flow.h) */
    double last_delivery;                /* ev_now() of the last dispatch that delivered */
    struct queue *flow_prev, *flow_next; /* the broker's queues in flow */
    struct queue *dispatch_next;
    struct queue *owner_next; /* the owner connection's exclusive queues */
    UT_hash_handle hh;
} queue_t;

queue_t *queue_find(struct vhost *vh, wn_bytes_t name);
queue_t *queue_create(struct vhost *vh, wn_bytes_t name, bool durable, bool exclusive,
                      bool auto_delete, struct conn *owner, wn_bytes_t args);
/* Unbind, cancel consumers (with basic.cancel where the client asked for it),
 * drop ready messages; returns how many ready messages there were. */
uint32_t queue_delete(queue_t *q);
void queue_unref(queue_t *q);
static inline void queue_ref(queue_t *q) {
    q->refs++;
}

/* Ready messages. */
static inline uint32_t queue_ready(const queue_t *q) {
    return q->count - q->ndead;
}
/* The ring slot of the i-th entry from the head, and the entry. */
static inline uint32_t queue_slot(const queue_t *q, uint32_t i) {
    return (q->head + i) & (q->cap - 1);
}
static inline qentry_t *queue_at(const queue_t *q, uint32_t i) {
    return &q->ring[queue_slot(q, i)];
}
/* Add a message at the tail. `at` says where the journal keeps it (NULL: not
 * kept); m may then be NULL, or be left out of memory if the queue holds
 * enough already. Takes a new reference to m when it keeps it. */
bool queue_push(queue_t *q, message_t *m, const qentry_t *at);
/* The same, saying at which position the entry went (a priority queue puts
 * a message ahead of those of lower priority). */
bool queue_push_pos(queue_t *q, message_t *m, const qentry_t *at, uint32_t *pos);
/* Back in its place, redelivered, expiring when it would have (expiry.h). */
void queue_requeue(queue_t *q, const qentry_t *e, uint64_t expires);
/* Take the head, its message in memory (read back from the journal if need be);
 * expired messages on the way are dead-lettered. *expires: when it expires.
 * get: for basic.get, which a TTL of 0 never reaches (expiry.h). */
bool queue_pop(queue_t *q, qentry_t *out, uint64_t *expires, bool get);
/* Take the i-th entry (leaving a dead slot unless it is the head); false if
 * that slot was already dead. */
bool queue_take_at(queue_t *q, uint32_t i, qentry_t *out);
/* The position of the entry with this sequence number, or -1. */
int64_t queue_find_seq(const queue_t *q, uint64_t seq);
uint32_t queue_purge(queue_t *q);
/* Give back most of a ring that is less than an eighth full (queue_pop and
 * queue_purge do; call it after taking entries some other way). */
void queue_trim(queue_t *q);

/* Visit every ready entry (delivered: it had been delivered before). */
typedef void (*qentry_visit_fn)(queue_t *q, qentry_t *e, bool delivered, void *ctx);
void queue_each_ready(queue_t *q, qentry_visit_fn fn, void *ctx);

/* Consumers. */
void queue_add_consumer(queue_t *q, consumer_t *c);
/* Detach a consumer; an auto-delete queue whose last consumer goes is deleted. */
void queue_remove_consumer(queue_t *q, consumer_t *c);

/* Make messages flow to consumers before the loop sleeps. */
void queue_schedule_dispatch(queue_t *q);
/* Run every scheduled dispatch (the loop's prepare step). */
void queue_dispatch_all(void);

#endif
