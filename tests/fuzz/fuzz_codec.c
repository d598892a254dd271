/*
 * fuzz_codec.c - the libFuzzer target for everything a peer's bytes reach
 * before the broker acts on them: the frame decoder, the method and content
 * header decoders, and field tables.
 *
 * Beyond "does not crash", each decoder is held to a round trip: whatever
 * decodes must encode again, decode to the same values, and re-encode to the
 * same bytes. A table that validates is walked completely, rebuilt with the
 * builder, and must come out equal (and byte-identical unless it held a
 * boolean octet other than 0 or 1). A broken invariant aborts, which libFuzzer
 * reports as a crash with the input that caused it.
 *
 * The first input byte picks what the rest is fed to (mode % 4):
 *   0  a stream of frames, as read from a socket (frame_max 131072)
 *   1  one method frame payload
 *   2  one content header payload
 *   3  a table body and an array body
 * Every mode also validates the rest as a table and walks it.
 */
#include "frame.h"
#include "methods.h"
#include "table.h"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_FRAME_MAX 131072u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_fail(const char *what, int line) {
    fprintf(stderr, "fuzz_codec.c:%d: invariant broken: %s\n", line, what);
    abort();
}

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) fuzz_fail(#cond, __LINE__);                                                   \
    } while (0)

/* Scratch space for re-encoding: a payload never exceeds the frame_max. */
static uint8_t fuzz_buf1[FUZZ_FRAME_MAX], fuzz_buf2[FUZZ_FRAME_MAX];

/* ---- tables --------------------------------------------------------------- */

/* One open container in a walk: its iterator, and where its copy begins. */
typedef struct fuzz_level {
    wn_table_iter_t it;
    bool is_array;
    size_t mark;
} fuzz_level_t;

/* Checks on one value that need no context. */
static void fuzz_check_value(const wn_value_t *v) {
    int64_t n;
    /* 'L' (unsigned 64) is an integer only while it fits in int64. */
    bool is_int = (v->type != 0 && strchr("bBsuIil", v->type) != NULL) ||
                  (v->type == WN_FIELD_U64 && v->v.u64 <= INT64_MAX);
    FUZZ_CHECK(wn_value_as_int(v, &n) == is_int);
    FUZZ_CHECK(wn_value_equal(v, v));
}

/*
 * Walk a validated body depth first, without recursion, copying every entry
 * into w with the builder. Sets *odd_bool if a boolean octet was neither 0
 * nor 1 (the copy then normalises it, so the bytes may differ).
 */
static void fuzz_walk_copy(wn_bytes_t body, bool is_array, wn_writer_t *w, bool *odd_bool) {
    size_t cap = body.len / 5 + 2;
    fuzz_level_t *stack = malloc(cap * sizeof *stack);
    size_t depth = 1;
    FUZZ_CHECK(stack != NULL);
    stack[0].is_array = is_array;
    stack[0].mark = SIZE_MAX;
    wn_table_iter_init(&stack[0].it, body);

    while (depth > 0) {
        fuzz_level_t *top = &stack[depth - 1];
        wn_bytes_t key = {NULL, 0};
        wn_value_t v;
        bool more = top->is_array ? wn_array_next(&top->it, &v) : wn_table_next(&top->it, &key, &v);
        if (!more) {
            FUZZ_CHECK(!top->it.r.err && wn_reader_left(&top->it.r) == 0);
            if (top->mark != SIZE_MAX) wn_table_end(w, top->mark);
            depth--;
            continue;
        }
        fuzz_check_value(&v);
        if (!top->is_array) wn_put_shortstr(w, key);
        if (v.type == WN_FIELD_BOOL) {
            const uint8_t *octet = top->it.r.p - 1;
            if (*octet > 1) *odd_bool = true;
        }
        if (v.type != WN_FIELD_TABLE && v.type != WN_FIELD_ARRAY) {
            wn_value_put(w, &v);
            continue;
        }
        FUZZ_CHECK(depth < cap);
        fuzz_level_t *child = &stack[depth++];
        child->is_array = v.type == WN_FIELD_ARRAY;
        child->mark = wn_table_begin_nested(w, NULL, v.type);
        wn_table_iter_init(&child->it, v.v.bytes);
    }
    free(stack);
}

static void fuzz_table_lookup(wn_bytes_t body, wn_bytes_t copy) {
    FUZZ_CHECK(wn_table_equal(body, copy));
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t first, v;
    size_t n = 0;
    wn_table_iter_init(&it, body);
    while (wn_table_next(&it, &key, &v))
        n++;
    FUZZ_CHECK(wn_table_count(body) == n);
    if (n == 0) return;

    /* Lookup finds the first entry, if its key can be spelled as a C string. */
    wn_table_iter_init(&it, body);
    wn_table_next(&it, &key, &first);
    if (memchr(key.ptr, 0, key.len)) return;
    char name[256];
    memcpy(name, key.ptr, key.len);
    name[key.len] = 0;
    FUZZ_CHECK(wn_table_get(body, name, &v) && wn_value_equal(&first, &v));
}

static void fuzz_body(const uint8_t *p, size_t len, bool is_array) {
    int rc = is_array ? wn_array_validate(p, len) : wn_table_validate(p, len);
    FUZZ_CHECK(rc == 0 || rc == WN_SYNTAX_ERROR);
    if (rc != 0) return;

    /* The copy gets its own buffer: p may point into fuzz_buf1 or 2. */
    uint8_t *buf = malloc(len + 1);
    FUZZ_CHECK(buf != NULL);
    wn_bytes_t body = wn_bytes(p, len);
    wn_writer_t w;
    bool odd_bool = false;
    wn_writer_init(&w, buf, len + 1);
    fuzz_walk_copy(body, is_array, &w, &odd_bool);
    FUZZ_CHECK(!w.overflow && w.len == len);
    if (!odd_bool) FUZZ_CHECK(len == 0 || memcmp(buf, p, len) == 0);

    wn_bytes_t copy = wn_bytes(buf, w.len);
    FUZZ_CHECK((is_array ? wn_array_validate(copy.ptr, copy.len)
                         : wn_table_validate(copy.ptr, copy.len)) == 0);
    wn_value_t a = {.type = is_array ? WN_FIELD_ARRAY : WN_FIELD_TABLE, .v.bytes = body};
    wn_value_t b = {.type = a.type, .v.bytes = copy};
    FUZZ_CHECK(wn_value_equal(&a, &b) && wn_value_equal(&b, &a));
    if (!is_array) fuzz_table_lookup(body, copy);
    free(buf);
}

/* ---- methods and content headers ------------------------------------------ */

static bool fuzz_field_equal(const uint8_t *a, const uint8_t *b, wn_field_type_t type) {
    switch (type) {
    case WN_T_BIT:
        return memcmp(a, b, sizeof(bool)) == 0;
    case WN_T_OCTET:
        return *a == *b;
    case WN_T_SHORT:
        return memcmp(a, b, sizeof(uint16_t)) == 0;
    case WN_T_LONG:
        return memcmp(a, b, sizeof(uint32_t)) == 0;
    case WN_T_LONGLONG:
    case WN_T_TIMESTAMP:
        return memcmp(a, b, sizeof(uint64_t)) == 0;
    case WN_T_TABLE: {
        wn_bytes_t ta, tb;
        memcpy(&ta, a, sizeof ta);
        memcpy(&tb, b, sizeof tb);
        return wn_table_equal(ta, tb) && wn_bytes_eq(ta, tb);
    }
    case WN_T_SHORTSTR:
    case WN_T_LONGSTR: {
        wn_bytes_t sa, sb;
        memcpy(&sa, a, sizeof sa);
        memcpy(&sb, b, sizeof sb);
        return wn_bytes_eq(sa, sb);
    }
    }
    return false;
}

static bool fuzz_method_equal(const wn_method_t *a, const wn_method_t *b) {
    const wn_method_info_t *info = wn_method_info(a->id);
    if (a->id != b->id || info == NULL) return false;
    for (size_t i = 0; i < info->nfields; i++) {
        const wn_field_info_t *fi = &info->fields[i];
        if (!fuzz_field_equal((const uint8_t *)&a->u + fi->offset,
                              (const uint8_t *)&b->u + fi->offset, fi->type))
            return false;
    }
    return true;
}

/* Every table argument of a decoded method gets the full table treatment. */
static void fuzz_method_tables(const wn_method_t *m) {
    const wn_method_info_t *info = wn_method_info(m->id);
    for (size_t i = 0; i < info->nfields; i++) {
        if (info->fields[i].type != WN_T_TABLE) continue;
        wn_bytes_t t;
        memcpy(&t, (const uint8_t *)&m->u + info->fields[i].offset, sizeof t);
        fuzz_body(t.ptr, t.len, false);
    }
}

static void fuzz_method(const uint8_t *p, size_t len) {
    wn_method_t m1, m2;
    int rc = wn_method_decode(p, len, &m1);
    FUZZ_CHECK(rc == 0 || rc == WN_SYNTAX_ERROR || rc == WN_COMMAND_INVALID);
    if (rc == WN_COMMAND_INVALID) FUZZ_CHECK(wn_method_info(m1.id) == NULL);
    if (rc != 0) return;
    FUZZ_CHECK(wn_method_info(m1.id) != NULL);
    fuzz_method_tables(&m1);

    /* Same length: only bits past the last bit field may differ. */
    size_t n1 = wn_method_encode(&m1, fuzz_buf1, sizeof fuzz_buf1);
    FUZZ_CHECK(n1 == len);
    FUZZ_CHECK(wn_method_decode(fuzz_buf1, n1, &m2) == 0);
    FUZZ_CHECK(fuzz_method_equal(&m1, &m2));
    size_t n2 = wn_method_encode(&m2, fuzz_buf2, sizeof fuzz_buf2);
    FUZZ_CHECK(n2 == n1 && memcmp(fuzz_buf1, fuzz_buf2, n1) == 0);

    FUZZ_CHECK(wn_frame_encode_method(fuzz_buf2, n1 + 7, 3, &m1) == 0);
    size_t nf = wn_frame_encode_method(fuzz_buf2, sizeof fuzz_buf2, 3, &m1);
    wn_frame_t f;
    FUZZ_CHECK(nf == n1 + 8 && wn_frame_parse(fuzz_buf2, nf, 0, &f) == (long)nf && f.channel == 3 &&
               f.size == n1 && memcmp(f.payload, fuzz_buf1, n1) == 0);
}

static bool fuzz_props_equal(const wn_basic_props_t *a, const wn_basic_props_t *b) {
    return a->flags == b->flags && wn_bytes_eq(a->content_type, b->content_type) &&
           wn_bytes_eq(a->content_encoding, b->content_encoding) &&
           wn_bytes_eq(a->headers, b->headers) && a->delivery_mode == b->delivery_mode &&
           a->priority == b->priority && wn_bytes_eq(a->correlation_id, b->correlation_id) &&
           wn_bytes_eq(a->reply_to, b->reply_to) && wn_bytes_eq(a->expiration, b->expiration) &&
           wn_bytes_eq(a->message_id, b->message_id) && a->timestamp == b->timestamp &&
           wn_bytes_eq(a->type, b->type) && wn_bytes_eq(a->user_id, b->user_id) &&
           wn_bytes_eq(a->app_id, b->app_id) && wn_bytes_eq(a->cluster_id, b->cluster_id);
}

static void fuzz_header(const uint8_t *p, size_t len) {
    wn_content_header_t h1, h2;
    int rc = wn_content_header_decode(p, len, &h1);
    FUZZ_CHECK(rc == 0 || rc == WN_SYNTAX_ERROR);
    if (rc != 0) return;

    /* Shorter only if the peer sent empty continuation flag words. */
    size_t n1 = wn_content_header_encode(&h1, fuzz_buf1, sizeof fuzz_buf1);
    FUZZ_CHECK(n1 > 0 && n1 <= len);
    FUZZ_CHECK(wn_content_header_decode(fuzz_buf1, n1, &h2) == 0);
    FUZZ_CHECK(h1.class_id == h2.class_id && h1.weight == h2.weight &&
               h1.body_size == h2.body_size && fuzz_props_equal(&h1.props, &h2.props));
    size_t n2 = wn_content_header_encode(&h2, fuzz_buf2, sizeof fuzz_buf2);
    FUZZ_CHECK(n2 == n1 && memcmp(fuzz_buf1, fuzz_buf2, n1) == 0);
    if (h1.props.flags & WN_BASIC_HEADERS_FLAG)
        fuzz_body(h1.props.headers.ptr, h1.props.headers.len, false);

    size_t nf = wn_frame_encode_header(fuzz_buf2, sizeof fuzz_buf2, 7, &h1);
    wn_frame_t f;
    FUZZ_CHECK(nf == n1 + 8 && wn_frame_parse(fuzz_buf2, nf, 0, &f) == (long)nf &&
               f.type == WN_FRAME_HEADER && f.channel == 7);
}

/* ---- frames --------------------------------------------------------------- */

/* What a shorter read of the same bytes must say, given the full answer. */
static void fuzz_check_prefix(const uint8_t *p, size_t cut, long full) {
    wn_frame_t f;
    long rc = wn_frame_parse(p, cut, FUZZ_FRAME_MAX, &f);
    if (full > 0)
        FUZZ_CHECK(rc == 0);
    else
        FUZZ_CHECK(rc == 0 || rc == full);
}

static void fuzz_stream(const uint8_t *p, size_t len) {
    int hc = wn_protocol_header_check(p, len);
    FUZZ_CHECK(hc == 1 ? len >= 8 : hc == 0 ? len < 8 : hc == -1);

    size_t off = 0;
    while (off < len) {
        wn_frame_t f;
        size_t left = len - off;
        long rc = wn_frame_parse(p + off, left, FUZZ_FRAME_MAX, &f);
        FUZZ_CHECK(rc >= 0 || rc == -WN_FRAME_ERROR);
        fuzz_check_prefix(p + off, 0, rc);
        if (left > 7) fuzz_check_prefix(p + off, 7, rc);
        if (rc > 0) fuzz_check_prefix(p + off, (size_t)rc - 1, rc);
        if (rc <= 0) break;
        FUZZ_CHECK((size_t)rc == (size_t)f.size + 8 && (size_t)rc <= left &&
                   f.payload == p + off + 7 && (size_t)rc <= FUZZ_FRAME_MAX);
        if (f.type == WN_FRAME_METHOD) fuzz_method(f.payload, f.size);
        if (f.type == WN_FRAME_HEADER) fuzz_header(f.payload, f.size);
        off += (size_t)rc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    const uint8_t *p = data + 1;
    size_t len = size - 1;
    switch (data[0] % 4) {
    case 0:
        fuzz_stream(p, len);
        break;
    case 1:
        fuzz_method(p, len);
        break;
    case 2:
        fuzz_header(p, len);
        break;
    case 3:
        fuzz_body(p, len, true);
        break;
    }
    fuzz_body(p, len, false);
    return 0;
}
