/*
 * outref.h - message bodies a connection writes straight from the shared
 * message, without copying them into its output buffer.
 *
 * A connection's output is its byte buffer (frame headers, methods, content
 * headers, small bodies) interleaved with these references: each says how
 * many bytes of the buffer go before it, and holds a reference to the
 * message whose body slice it is. The writer gathers both into one writev.
 * Copying a 64 KiB body into the buffer cost as much as everything else a
 * delivery does; a reference costs an iovec.
 */
#ifndef WARREN_OUTREF_H
#define WARREN_OUTREF_H

#include "buffer.h"
#include "message.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Bodies smaller than this are copied: a memcpy is cheaper than an iovec. */
#define OUTREF_MIN_BODY 8192

typedef struct outref {
    size_t gap; /* bytes of the output buffer written before this slice */
    message_t *msg;
    const uint8_t *p; /* what is left of the slice */
    size_t len;
} outref_t;

typedef struct outrefs {
    outref_t *ring;
    uint32_t head, count, cap;
    size_t gaps;  /* sum of the gaps: buffer bytes that precede the last slice */
    size_t bytes; /* body bytes still to write */
} outrefs_t;

/* Queue a body slice after everything now in out; takes a message reference.
 * False if memory is short (the caller copies instead). */
bool outref_add(outrefs_t *r, const buf_t *out, message_t *msg, const uint8_t *p, size_t len);

/* Fill at most max iovecs with the output in order; returns how many. */
int outref_iov(const outrefs_t *r, const buf_t *out, struct iovec *iov, int max);

/* n bytes of output were written: drop them from out and from the slices. */
void outref_consume(outrefs_t *r, buf_t *out, size_t n);

/* Release every slice (the connection is going away). */
void outref_free(outrefs_t *r);

#endif
