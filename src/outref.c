/*
 * outref.c - body slices written from the shared message (see outref.h).
 */
#include "outref.h"
#include "ring.h"

#include <stdlib.h>

static outref_t *outref_at(const outrefs_t *r, uint32_t i) {
    return &r->ring[(r->head + i) & (r->cap - 1)];
}

bool outref_add(outrefs_t *r, const buf_t *out, message_t *msg, const uint8_t *p, size_t len) {
    if (r->count == r->cap) {
        outref_t *ring = ring_grow(r->ring, r->head, r->count, &r->cap, sizeof *ring);
        if (!ring) return false;
        r->ring = ring;
        r->head = 0;
    }
    size_t gap = buf_pending(out) - r->gaps;
    *outref_at(r, r->count++) = (outref_t){gap, msg, p, len};
    message_ref(msg);
    r->gaps += gap;
    r->bytes += len;
    return true;
}

int outref_iov(const outrefs_t *r, const buf_t *out, struct iovec *iov, int max) {
    uint8_t *p = buf_head(out);
    size_t left = buf_pending(out);
    int n = 0;
    for (uint32_t i = 0; i < r->count; i++) {
        const outref_t *s = outref_at(r, i);
        if (n + 2 > max) return n;
        if (s->gap) {
            iov[n++] = (struct iovec){p, s->gap};
            p += s->gap;
            left -= s->gap;
        }
        iov[n++] = (struct iovec){(void *)s->p, s->len};
    }
    if (left && n < max) iov[n++] = (struct iovec){p, left};
    return n;
}

static void outref_pop(outrefs_t *r) {
    message_unref(outref_at(r, 0)->msg);
    r->head = (r->head + 1) & (r->cap - 1);
    if (--r->count == 0) {
        free(r->ring); /* idle connections hold none */
        *r = (outrefs_t){0};
    }
}

void outref_consume(outrefs_t *r, buf_t *out, size_t n) {
    while (n > 0 && r->count > 0) {
        outref_t *s = outref_at(r, 0);
        size_t k = n < s->gap ? n : s->gap;
        buf_consume(out, k);
        s->gap -= k;
        r->gaps -= k;
        n -= k;
        if (s->gap > 0) return;
        k = n < s->len ? n : s->len;
        s->p += k;
        s->len -= k;
        r->bytes -= k;
        n -= k;
        if (s->len == 0) outref_pop(r);
    }
    buf_consume(out, n);
}

void outref_free(outrefs_t *r) {
    while (r->count > 0)
        outref_pop(r);
}
