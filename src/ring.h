/*
 * ring.h - growing the power-of-two ring buffers that queues (ready
 * messages), channels (unacked deliveries) and confirm queues keep.
 *
 * Each ring is an array of `cap` elements (a power of two) holding `count`
 * elements from index `head`, wrapping around. Growing doubles it and lays
 * the elements out from index 0, oldest first.
 */
#ifndef WARREN_RING_H
#define WARREN_RING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A new array of ncap elements (a power of two, at least count) holding the
 * ring's elements from index 0; frees the old one. NULL (the ring left as it
 * was) if memory is short. The caller sets its head to 0 and cap to ncap. */
static inline void *ring_resize(void *ring, uint32_t head, uint32_t count, uint32_t cap,
                                uint32_t ncap, size_t elem) {
    uint8_t *n = malloc((size_t)ncap * elem);
    if (!n) return NULL;
    uint32_t first = count < cap - head ? count : cap - head; /* up to the end of the array */
    if (count) {
        memcpy(n, (uint8_t *)ring + (size_t)head * elem, (size_t)first * elem);
        memcpy(n + (size_t)first * elem, ring, (size_t)(count - first) * elem);
    }
    free(ring);
    return n;
}

/* ring_resize to `*cap` doubled (16 at first); updates *cap. */
static inline void *ring_grow(void *ring, uint32_t head, uint32_t count, uint32_t *cap,
                              size_t elem) {
    uint32_t ncap = *cap ? *cap * 2 : 16;
    void *n = ring_resize(ring, head, count, *cap, ncap, elem);
    if (n) *cap = ncap;
    return n;
}

#endif
