/*
 * buffer.c - growable byte buffers (see buffer.h), counted for the memory
 * alarm (memory.h).
 */
#include "buffer.h"
#include "memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint8_t *buf_reserve(buf_t *b, size_t n) {
    if (b->cap - b->len >= n) return b->data + b->len;
    /* Slide pending bytes to the front before growing. */
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= n) return b->data + b->len;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < n)
        cap *= 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) {
        fprintf(stderr, "out of memory growing a buffer to %zu bytes\n", cap);
        abort();
    }
    mem_charge(cap - b->cap);
    b->data = p;
    b->cap = cap;
    return b->data + b->len;
}

void buf_append(buf_t *b, const void *src, size_t n) {
    memcpy(buf_reserve(b, n), src, n);
    b->len += n;
}

void buf_consume(buf_t *b, size_t n) {
    b->off += n;
    if (b->off >= b->len) b->off = b->len = 0;
}

void buf_release(buf_t *b) {
    if (buf_pending(b) == 0) buf_free(b);
}

void buf_free(buf_t *b) {
    mem_uncharge(b->cap);
    free(b->data);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}
