/*
 * bytes.h - byte slices, and the bounds-checked reader and writer that every
 * other part of the codec is built on.
 *
 * A wn_bytes_t never owns its memory: decoded strings and tables point into
 * the frame they came from (parsing is in place), so they live exactly as
 * long as that buffer. All multi-byte integers on the wire are big-endian.
 *
 * The reader never reads past its end: a short read sets `err` and returns
 * zeros, so decoders can read a whole method and check once at the end. The
 * writer likewise sets `overflow` instead of writing past `cap`.
 */
#ifndef WN_BYTES_H
#define WN_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct wn_bytes {
    const uint8_t *ptr;
    uint32_t len;
} wn_bytes_t;

#define WN_BYTES_LIT(s) ((wn_bytes_t){(const uint8_t *)(s), (uint32_t)(sizeof(s) - 1)})

static inline wn_bytes_t wn_bytes(const void *p, size_t len) {
    return (wn_bytes_t){(const uint8_t *)p, (uint32_t)len};
}

static inline wn_bytes_t wn_cstr(const char *s) {
    return (wn_bytes_t){(const uint8_t *)s, (uint32_t)strlen(s)};
}

static inline bool wn_bytes_eq(wn_bytes_t a, wn_bytes_t b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool wn_bytes_eq_cstr(wn_bytes_t a, const char *s) {
    return wn_bytes_eq(a, wn_cstr(s));
}

/* ---- big-endian load/store -------------------------------------------- */

static inline uint16_t wn_load16(const uint8_t *p) {
    return (uint16_t)(p[0] << 8 | p[1]);
}
static inline uint32_t wn_load32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint64_t wn_load64(const uint8_t *p) {
    return (uint64_t)wn_load32(p) << 32 | wn_load32(p + 4);
}
static inline void wn_store16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}
static inline void wn_store32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void wn_store64(uint8_t *p, uint64_t v) {
    wn_store32(p, (uint32_t)(v >> 32));
    wn_store32(p + 4, (uint32_t)v);
}

/* ---- reader -------------------------------------------------------------- */

typedef struct wn_reader {
    const uint8_t *p;   /* next byte */
    const uint8_t *end; /* one past the last readable byte */
    bool err;           /* set by any read past `end`; sticky */
} wn_reader_t;

static inline void wn_reader_init(wn_reader_t *r, const void *p, size_t len) {
    r->p = (const uint8_t *)p;
    r->end = r->p + len;
    r->err = false;
}

static inline size_t wn_reader_left(const wn_reader_t *r) {
    return (size_t)(r->end - r->p);
}

static inline bool wn_reader_need(wn_reader_t *r, size_t n) {
    if (r->err || wn_reader_left(r) < n) {
        r->err = true;
        return false;
    }
    return true;
}

static inline uint8_t wn_get8(wn_reader_t *r) {
    return wn_reader_need(r, 1) ? *r->p++ : 0;
}
static inline uint16_t wn_get16(wn_reader_t *r) {
    if (!wn_reader_need(r, 2)) return 0;
    uint16_t v = wn_load16(r->p);
    r->p += 2;
    return v;
}
static inline uint32_t wn_get32(wn_reader_t *r) {
    if (!wn_reader_need(r, 4)) return 0;
    uint32_t v = wn_load32(r->p);
    r->p += 4;
    return v;
}
static inline uint64_t wn_get64(wn_reader_t *r) {
    if (!wn_reader_need(r, 8)) return 0;
    uint64_t v = wn_load64(r->p);
    r->p += 8;
    return v;
}
static inline wn_bytes_t wn_get_bytes(wn_reader_t *r, size_t n) {
    wn_bytes_t b = {NULL, 0};
    if (!wn_reader_need(r, n)) return b;
    b.ptr = r->p;
    b.len = (uint32_t)n;
    r->p += n;
    return b;
}
/* shortstr: octet length + bytes */
static inline wn_bytes_t wn_get_shortstr(wn_reader_t *r) {
    return wn_get_bytes(r, wn_get8(r));
}
/* longstr: 32-bit length + bytes */
static inline wn_bytes_t wn_get_longstr(wn_reader_t *r) {
    uint32_t n = wn_get32(r);
    return r->err ? (wn_bytes_t){NULL, 0} : wn_get_bytes(r, n);
}

/* ---- writer -------------------------------------------------------------- */

typedef struct wn_writer {
    uint8_t *buf;
    size_t len; /* bytes written so far (not counting what overflowed) */
    size_t cap;
    bool overflow; /* set by any write that did not fit; sticky */
} wn_writer_t;

static inline void wn_writer_init(wn_writer_t *w, void *buf, size_t cap) {
    w->buf = (uint8_t *)buf;
    w->len = 0;
    w->cap = cap;
    w->overflow = false;
}

/* Reserve n bytes and return where to write them, or NULL (and overflow). */
static inline uint8_t *wn_writer_reserve(wn_writer_t *w, size_t n) {
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

static inline void wn_put8(wn_writer_t *w, uint8_t v) {
    uint8_t *p = wn_writer_reserve(w, 1);
    if (p) *p = v;
}
static inline void wn_put16(wn_writer_t *w, uint16_t v) {
    uint8_t *p = wn_writer_reserve(w, 2);
    if (p) wn_store16(p, v);
}
static inline void wn_put32(wn_writer_t *w, uint32_t v) {
    uint8_t *p = wn_writer_reserve(w, 4);
    if (p) wn_store32(p, v);
}
static inline void wn_put64(wn_writer_t *w, uint64_t v) {
    uint8_t *p = wn_writer_reserve(w, 8);
    if (p) wn_store64(p, v);
}
static inline void wn_put_raw(wn_writer_t *w, const void *src, size_t n) {
    uint8_t *p = wn_writer_reserve(w, n);
    if (p && n) memcpy(p, src, n);
}
/* A shortstr longer than 255 bytes cannot be encoded: it sets overflow. */
static inline void wn_put_shortstr(wn_writer_t *w, wn_bytes_t s) {
    if (s.len > 255) {
        w->overflow = true;
        return;
    }
    wn_put8(w, (uint8_t)s.len);
    wn_put_raw(w, s.ptr, s.len);
}
static inline void wn_put_longstr(wn_writer_t *w, wn_bytes_t s) {
    wn_put32(w, s.len);
    wn_put_raw(w, s.ptr, s.len);
}

#endif /* WN_BYTES_H */
