/*
 * buffer.h - a growable byte buffer with a read offset, for a connection's
 * partial input frames and pending output.
 *
 * Idle connections hold no buffer memory: buffers are allocated when bytes
 * must wait and released once drained (buf_release).
 */
#ifndef WARREN_BUFFER_H
#define WARREN_BUFFER_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data;
    size_t off; /* first unconsumed byte */
    size_t len; /* end of valid bytes */
    size_t cap;
} buf_t;

static inline size_t buf_pending(const buf_t *b) {
    return b->len - b->off;
}
static inline uint8_t *buf_head(const buf_t *b) {
    return b->data + b->off;
}

/* Make room for n more bytes at the end and return where they go. Aborts on
 * allocation failure: the broker cannot run without memory for frames. */
uint8_t *buf_reserve(buf_t *b, size_t n);
static inline void buf_commit(buf_t *b, size_t n) {
    b->len += n;
}
void buf_append(buf_t *b, const void *src, size_t n);
/* Drop n bytes from the front. When it empties, the offsets reset. */
void buf_consume(buf_t *b, size_t n);
/* Free the memory if nothing is pending. */
void buf_release(buf_t *b);
void buf_free(buf_t *b);

#endif
