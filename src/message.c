/*
 * message.c - allocation (with a pool of freed small messages), body
 * assembly and release of messages, counted for the memory alarm (memory.h).
 */
#include "message.h"
#include "broker.h"
#include "memory.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>

/* Every message is a malloc and a free, which cost glibc about 200
 * instructions a message once its per-thread cache (7 blocks a size) runs
 * dry, as it does when a read brings thousands of publishes. Freed messages
 * of up to 520 bytes go to a free list per 16-byte size class instead, up to
 * POOL_MAX_BYTES in all. Sizes are rounded as glibc rounds them (8 bytes of
 * header, 16-byte steps), so a pooled message uses no more memory than a
 * malloc of its exact size. Under AddressSanitizer there is no pool: reuse
 * would hide a use after free. */
#define POOL_MAX_BYTES (1u << 20)
#if defined(__SANITIZE_ADDRESS__)
#define POOL_ENABLED 0
#else
#define POOL_ENABLED 1
#endif

/* What malloc would give for n bytes, and its class (-1: not pooled). */
static size_t pool_round(size_t n) {
    return n + 8 <= 32 ? 24 : ((n + 8 + 15) & ~(size_t)15) - 8;
}
static int pool_class(size_t rounded) {
    size_t c = (rounded + 8) / 16 - 2;
    return POOL_ENABLED && c < MESSAGE_POOL_CLASSES ? (int)c : -1;
}

static message_t *message_alloc(size_t size) {
    size_t rounded = pool_round(size);
    int c = pool_class(rounded);
    void *p = c >= 0 ? broker.msg_pool.free[c] : NULL;
    if (!p) return malloc(rounded);
    memcpy(&broker.msg_pool.free[c], p, sizeof(void *)); /* the next free block */
    broker.msg_pool.bytes -= rounded;
    return p;
}

static void message_free(message_t *m) {
    size_t rounded = pool_round(message_size(m));
    int c = pool_class(rounded);
    if (c < 0 || broker.msg_pool.bytes + rounded > POOL_MAX_BYTES) {
        free(m);
        return;
    }
    memcpy(m, &broker.msg_pool.free[c], sizeof(void *));
    broker.msg_pool.free[c] = m;
    broker.msg_pool.bytes += rounded;
}

void message_pool_free(message_pool_t *pool) {
    for (int c = 0; c < MESSAGE_POOL_CLASSES; c++) {
        while (pool->free[c]) {
            void *p = pool->free[c];
            memcpy(&pool->free[c], p, sizeof(void *));
            free(p);
        }
    }
    pool->bytes = 0;
}

message_t *message_new(wn_bytes_t exchange, wn_bytes_t routing_key, const uint8_t *props,
                       uint32_t props_len, wn_bytes_t bcc, uint64_t body_len,
                       const wn_basic_props_t *decoded) {
    size_t size =
        sizeof(message_t) + exchange.len + routing_key.len + props_len + bcc.len + body_len;
    if (body_len > SIZE_MAX / 2) return NULL;
    message_t *m = message_alloc(size);
    if (!m) return NULL;
    mem_charge(size);
    m->refs = 1;
    m->props_len = props_len;
    m->bcc_len = bcc.len;
    m->body_len = body_len;
    m->exchange_len = (uint8_t)exchange.len;
    m->routing_key_len = (uint8_t)routing_key.len;
    m->delivery_mode = (decoded->flags & WN_BASIC_DELIVERY_MODE_FLAG) ? decoded->delivery_mode : 0;
    m->priority = (decoded->flags & WN_BASIC_PRIORITY_FLAG) ? decoded->priority : 0;
    memcpy(m->data, exchange.ptr, exchange.len);
    memcpy(m->data + exchange.len, routing_key.ptr, routing_key.len);
    if (props_len) memcpy(m->data + exchange.len + routing_key.len, props, props_len);
    if (bcc.len) memcpy(m->data + exchange.len + routing_key.len + props_len, bcc.ptr, bcc.len);
    return m;
}

void message_unref(message_t *m) {
    if (--m->refs > 0) return;
    mem_uncharge(message_size(m));
    message_free(m);
}

bool message_put_body(message_t *m, uint64_t at, const uint8_t *p, size_t n) {
    if (at > m->body_len || n > m->body_len - at) return false;
    memcpy((uint8_t *)message_body(m) + at, p, n);
    return true;
}

wn_bytes_t message_headers(const message_t *m) {
    /* Walk the stored properties only as far as the headers table. */
    wn_reader_t r;
    wn_reader_init(&r, message_props(m), m->props_len);
    uint16_t flags = wn_get16(&r);
    for (uint16_t more = flags; (more & 1) && !r.err;)
        more = wn_get16(&r);
    if (!(flags & WN_BASIC_HEADERS_FLAG)) return (wn_bytes_t){NULL, 0};
    if (flags & WN_BASIC_CONTENT_TYPE_FLAG) wn_get_shortstr(&r);
    if (flags & WN_BASIC_CONTENT_ENCODING_FLAG) wn_get_shortstr(&r);
    wn_bytes_t headers = wn_get_table(&r);
    return r.err ? (wn_bytes_t){NULL, 0} : headers;
}

bool message_props_expiration(const uint8_t *props, uint32_t len, uint64_t *ms) {
    wn_reader_t r;
    wn_reader_init(&r, props, len);
    uint16_t flags = wn_get16(&r);
    if (!(flags & WN_BASIC_EXPIRATION_FLAG)) return false;
    for (uint16_t more = flags; (more & 1) && !r.err;)
        more = wn_get16(&r);
    if (flags & WN_BASIC_CONTENT_TYPE_FLAG) wn_get_shortstr(&r);
    if (flags & WN_BASIC_CONTENT_ENCODING_FLAG) wn_get_shortstr(&r);
    if (flags & WN_BASIC_HEADERS_FLAG) wn_get_longstr(&r);
    if (flags & WN_BASIC_DELIVERY_MODE_FLAG) wn_get8(&r);
    if (flags & WN_BASIC_PRIORITY_FLAG) wn_get8(&r);
    if (flags & WN_BASIC_CORRELATION_ID_FLAG) wn_get_shortstr(&r);
    if (flags & WN_BASIC_REPLY_TO_FLAG) wn_get_shortstr(&r);
    wn_bytes_t e = wn_get_shortstr(&r);
    if (r.err) return false;
    /* An optional sign, then digits: "-0" and "+5" are valid, as in RabbitMQ. */
    uint64_t v = 0;
    for (uint32_t i = 0; i < e.len; i++)
        if (e.ptr[i] >= '0' && e.ptr[i] <= '9') v = v * 10 + (uint64_t)(e.ptr[i] - '0');
    *ms = v;
    return true;
}

bool message_expiration(const message_t *m, uint64_t *ms) {
    return message_props_expiration(message_props(m), m->props_len, ms);
}
