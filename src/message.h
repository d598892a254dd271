/*
 * message.h - a published message, stored once and shared by every queue it
 * is routed to.
 *
 * One allocation holds the header, the exchange name, the routing key, the
 * encoded basic properties exactly as the publisher sent them (less a BCC
 * header, which RabbitMQ never delivers), the BCC keys, and the body.
 * Queues and unacknowledged deliveries hold references; the last release
 * frees it. Properties are forwarded to consumers byte-for-byte, so headers
 * tables are never decoded and rebuilt on the way through.
 */
#ifndef WARREN_MESSAGE_H
#define WARREN_MESSAGE_H

#include "bytes.h"
#include "methods.h"

#include <stdint.h>

/* 24 bytes before the data: every queued message pays for each field here. */
typedef struct message {
    uint64_t body_len;
    uint32_t refs;
    uint32_t props_len; /* property flags word(s) + properties, as delivered */
    uint32_t bcc_len;   /* BCC routing keys (array body), kept for routing only */
    uint8_t exchange_len;
    uint8_t routing_key_len;
    uint8_t delivery_mode;
    uint8_t priority;
    uint8_t data[]; /* exchange, routing key, properties, body */
} message_t;
_Static_assert(sizeof(message_t) == 24, "a message's header is 24 bytes");

/* Freed small messages kept for the next ones of the same size, one list per
 * 16-byte size class (message.c). Owned by the broker. */
#define MESSAGE_POOL_CLASSES 32
typedef struct message_pool {
    void *free[MESSAGE_POOL_CLASSES];
    size_t bytes; /* held in the lists */
} message_pool_t;

void message_pool_free(message_pool_t *pool);

/* A message for a publish whose content header has arrived; the body is
 * filled in by message_append_body. NULL if memory is short. */
message_t *message_new(wn_bytes_t exchange, wn_bytes_t routing_key, const uint8_t *props,
                       uint32_t props_len, wn_bytes_t bcc, uint64_t body_len,
                       const wn_basic_props_t *decoded);

static inline void message_ref(message_t *m) {
    m->refs++;
}
void message_unref(message_t *m);

static inline wn_bytes_t message_exchange(const message_t *m) {
    return wn_bytes(m->data, m->exchange_len);
}
static inline wn_bytes_t message_routing_key(const message_t *m) {
    return wn_bytes(m->data + m->exchange_len, m->routing_key_len);
}
static inline const uint8_t *message_props(const message_t *m) {
    return m->data + m->exchange_len + m->routing_key_len;
}
static inline wn_bytes_t message_bcc(const message_t *m) {
    return wn_bytes(m->data + m->exchange_len + m->routing_key_len + m->props_len, m->bcc_len);
}
static inline const uint8_t *message_body(const message_t *m) {
    return m->data + m->exchange_len + m->routing_key_len + m->props_len + m->bcc_len;
}
/* Copy n bytes of body in at offset `at`; false if they would overflow the
 * announced size. The publisher's channel counts what has arrived. */
bool message_put_body(message_t *m, uint64_t at, const uint8_t *p, size_t n);

/* The message's headers table (body), decoded from its properties on demand. */
wn_bytes_t message_headers(const message_t *m);

/* The expiration property in milliseconds (validated at publish); false if
 * the message has none. */
bool message_expiration(const message_t *m, uint64_t *ms);
/* The same from encoded properties (a journal record's). */
bool message_props_expiration(const uint8_t *props, uint32_t len, uint64_t *ms);

/* Bytes a message costs, for memory accounting. */
static inline size_t message_size(const message_t *m) {
    return sizeof *m + m->exchange_len + m->routing_key_len + m->props_len + m->bcc_len +
           m->body_len;
}

#endif
