/*
 * expiry.h - things that end when their time comes: messages with a TTL
 * (the queue's x-message-ttl, a message's expiration property; the lower
 * wins) and queues left unused for their x-expires.
 *
 * A queue that needs none of this has no expiry_t and pays one pointer. One
 * that does keeps, beside its ring of ready messages, an array in the same
 * layout saying when each entry expires (8 bytes per message). With one TTL
 * for the whole queue, expiry times grow along the ring (a requeued message
 * goes back to its place with its original time), so the head is always the
 * next to expire; only a message whose own expiration makes it expire before
 * messages ahead of it also goes into a min-heap (16 bytes), from which it is
 * removed in the middle of the ring when its time comes (its slot is marked
 * dead and skipped). One libev timer per queue is armed for the earliest of
 * the head and the heap's top: nothing ever scans a queue.
 */
#ifndef WARREN_EXPIRY_H
#define WARREN_EXPIRY_H

#include "message.h"
#include "queue.h"

#include <ev.h>
#include <stdbool.h>
#include <stdint.h>

#define EXPIRY_NEVER UINT64_MAX

typedef struct expiry_item {
    uint64_t at, seq;
} expiry_item_t;

typedef struct expiry {
    queue_t *q;
    int64_t msg_ttl;     /* x-message-ttl in ms; -1: none */
    uint64_t *at;        /* parallel to q->ring (same slots): ms since the epoch, or NEVER */
    expiry_item_t *heap; /* entries that expire before ones ahead of them; min-heap on at */
    uint32_t nheap, heap_cap;
    ev_timer timer;    /* the next expiry */
    uint64_t armed_at; /* when it is due; EXPIRY_NEVER: stopped */
    int64_t idle_ms;   /* x-expires in ms; -1: none */
    ev_tstamp last_used;
    ev_timer idle_timer;
} expiry_t;

/* The loop's clock in milliseconds since the epoch. */
uint64_t expiry_now_ms(void);

/* A new queue: read x-message-ttl and x-expires from its arguments. */
void expiry_queue_created(queue_t *q);
/* The queue is deleted: stop its timers. */
void expiry_queue_deleted(queue_t *q);
/* The queue's memory goes. */
void expiry_queue_freed(queue_t *q);

/* The queue was used (basic.get, a redeclaration, its last consumer left):
 * its x-expires countdown starts again. */
void expiry_touch(queue_t *q);

/* The ring is about to be resized to ncap slots: a copy of the expiry array
 * in the new layout (from slot 0), to be committed once the ring has been.
 * False if memory is short. */
bool expiry_resize_prepare(const queue_t *q, uint32_t ncap, uint64_t **out);
void expiry_resize_commit(queue_t *q, uint64_t *at);

/* Entry i (from the head) was just pushed with message m (NULL: a cold
 * entry from the journal). */
void expiry_pushed(queue_t *q, uint32_t i, const message_t *m);
/* When a message that entered q at `since` (ms) expires; *early if its own
 * expiration decides (it may expire before entries ahead of it). */
uint64_t expiry_of(const queue_t *q, uint64_t since, bool has_msg_ttl, uint64_t msg_ms,
                   bool *early);
/* Entry i (recovered from the journal) expires at `at`. */
void expiry_restore(queue_t *q, uint32_t i, uint64_t at, bool early);
/* An entry was just inserted at i, expiring at `at`: the entries before it
 * moved back one slot (front: the head moved back) or those after it moved
 * up one, as in the ring. */
void expiry_inserted(queue_t *q, uint32_t i, bool front, uint64_t at);
/* Entry i was just put back with the expiry time it had. */
void expiry_requeued(queue_t *q, uint32_t i, bool front, uint64_t at);
/* Entry `from` moved to position `to` (the ring squeezed out dead slots). */
void expiry_moved(queue_t *q, uint32_t from, uint32_t to);
/* When the head entry expires. */
uint64_t expiry_head(const queue_t *q);
/* Has a message expiring at `at` expired? Dispatch may still hand it to a
 * consumer in the millisecond it expires (TTL 0 for a consumer that was
 * waiting, as in RabbitMQ); basic.get (get) may not. */
bool expiry_passed(uint64_t at, bool get);

#endif
