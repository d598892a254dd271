/*
 * table.c - AMQP field tables and field arrays: validation, iteration,
 * lookup, deep equality and the builder.
 *
 * Tables stay in wire form (see table.h). This file owns the one place that
 * knows how each value type is laid out (table_read_value), and the walk over
 * nested tables and arrays. That walk keeps its own stack of open containers
 * (inline for shallow nesting, on the heap beyond) instead of recursing, so a
 * frame of 10,000 nested tables costs memory in proportion to the frame and
 * never overflows the C stack.
 */
#include "table.h"

#include <stdlib.h>

#ifndef WN_SYNTAX_ERROR
#define WN_SYNTAX_ERROR 502
#endif
#ifndef WN_INTERNAL_ERROR
#define WN_INTERNAL_ERROR 541
#endif

/* Readers over an empty slice whose pointer is NULL (an absent table) start
 * here instead, since even NULL + 0 is undefined behaviour. */
static const uint8_t table_empty[1];

static void table_reader_init(wn_reader_t *r, const uint8_t *p, size_t len) {
    wn_reader_init(r, p ? p : table_empty, p ? len : 0);
}

/* ---- reading one value ---------------------------------------------------- */

/*
 * Read a tag and its payload. For F and A the body is returned in v.bytes and
 * the reader moves past it; whether the body itself is well formed is the
 * walker's business. An unknown tag sets r->err, like a short read.
 */
static void table_read_value(wn_reader_t *r, wn_value_t *v) {
    v->type = wn_get8(r);
    switch (v->type) {
    case WN_FIELD_BOOL:
        /* RabbitMQ reads any non-zero octet as true. */
        v->v.b = wn_get8(r) != 0;
        break;
    case WN_FIELD_I8:
        v->v.i8 = (int8_t)wn_get8(r);
        break;
    case WN_FIELD_U8:
        v->v.u8 = wn_get8(r);
        break;
    case WN_FIELD_I16:
        v->v.i16 = (int16_t)wn_get16(r);
        break;
    case WN_FIELD_U16:
        v->v.u16 = wn_get16(r);
        break;
    case WN_FIELD_I32:
        v->v.i32 = (int32_t)wn_get32(r);
        break;
    case WN_FIELD_U32:
        v->v.u32 = wn_get32(r);
        break;
    case WN_FIELD_I64:
        v->v.i64 = (int64_t)wn_get64(r);
        break;
    case WN_FIELD_TIMESTAMP:
    case WN_FIELD_U64:
        v->v.u64 = wn_get64(r);
        break;
    case WN_FIELD_FLOAT: {
        uint32_t bits = wn_get32(r);
        memcpy(&v->v.f32, &bits, sizeof bits);
        break;
    }
    case WN_FIELD_DOUBLE: {
        uint64_t bits = wn_get64(r);
        memcpy(&v->v.f64, &bits, sizeof bits);
        break;
    }
    case WN_FIELD_DECIMAL:
        v->v.decimal.scale = wn_get8(r);
        v->v.decimal.value = wn_get32(r);
        break;
    case WN_FIELD_LONGSTR:
    case WN_FIELD_BYTES:
    case WN_FIELD_ARRAY:
    case WN_FIELD_TABLE:
        v->v.bytes = wn_get_longstr(r);
        break;
    case WN_FIELD_VOID:
        break;
    default:
        r->err = true;
        break;
    }
}

static bool table_is_container(uint8_t type) {
    return type == WN_FIELD_TABLE || type == WN_FIELD_ARRAY;
}

/* ---- the container stack -------------------------------------------------- */

/* Where an enclosing container ends (in each of up to two walks done in
 * lockstep), and whether its items are bare values or key + value. */
typedef struct table_level {
    const uint8_t *end[2];
    bool is_array;
} table_level_t;

#define TABLE_INLINE_LEVELS 32

typedef struct table_stack {
    table_level_t *levels;
    size_t depth, cap;
    table_level_t inline_levels[TABLE_INLINE_LEVELS];
} table_stack_t;

static void table_stack_init(table_stack_t *s) {
    s->levels = s->inline_levels;
    s->depth = 0;
    s->cap = TABLE_INLINE_LEVELS;
}

static void table_stack_free(table_stack_t *s) {
    if (s->levels != s->inline_levels) free(s->levels);
}

/* Push a level; false only if the heap could not grow the stack. */
static bool table_stack_push(table_stack_t *s, table_level_t level) {
    if (s->depth == s->cap) {
        size_t cap = s->cap * 2;
        table_level_t *grown;
        if (s->levels == s->inline_levels) {
            grown = malloc(cap * sizeof *grown);
            if (grown) memcpy(grown, s->levels, s->depth * sizeof *grown);
        } else {
            grown = realloc(s->levels, cap * sizeof *grown);
        }
        if (!grown) return false;
        s->levels = grown;
        s->cap = cap;
    }
    s->levels[s->depth++] = level;
    return true;
}

/* ---- validation ----------------------------------------------------------- */

/*
 * Walk a body depth first. The reader's `end` is always the end of the
 * innermost open container, so a nested length that crosses its parent's end,
 * or any truncation, fails as a short read. Entering a container narrows `end`
 * to the container's body; leaving it restores the parent's end from the stack.
 */
static int table_validate_body(const uint8_t *p, size_t len, bool is_array) {
    wn_reader_t r;
    table_stack_t stack;
    int rc = 0;

    table_reader_init(&r, p, len);
    table_stack_init(&stack);
    for (;;) {
        if (r.p == r.end) {
            if (stack.depth == 0) break;
            table_level_t up = stack.levels[--stack.depth];
            r.end = up.end[0];
            is_array = up.is_array;
            continue;
        }
        if (!is_array) wn_get_shortstr(&r);
        wn_value_t v;
        table_read_value(&r, &v);
        if (r.err) {
            rc = WN_SYNTAX_ERROR;
            break;
        }
        if (!table_is_container(v.type)) continue;
        /* Step back into the body just skipped and walk it next. */
        if (!table_stack_push(&stack, (table_level_t){{r.end, NULL}, is_array})) {
            rc = WN_INTERNAL_ERROR;
            break;
        }
        r.p = v.v.bytes.ptr;
        r.end = v.v.bytes.ptr + v.v.bytes.len;
        is_array = v.type == WN_FIELD_ARRAY;
    }
    table_stack_free(&stack);
    return rc;
}

int wn_table_validate(const uint8_t *p, size_t len) {
    return table_validate_body(p, len, false);
}

int wn_array_validate(const uint8_t *p, size_t len) {
    return table_validate_body(p, len, true);
}

wn_bytes_t wn_get_table(wn_reader_t *r) {
    wn_bytes_t body = wn_get_longstr(r);
    if (!r->err && wn_table_validate(body.ptr, body.len) == 0) return body;
    r->err = true;
    return (wn_bytes_t){NULL, 0};
}

/* ---- iteration ------------------------------------------------------------ */

void wn_table_iter_init(wn_table_iter_t *it, wn_bytes_t table) {
    table_reader_init(&it->r, table.ptr, table.len);
}

void wn_array_iter_init(wn_table_iter_t *it, wn_bytes_t array) {
    table_reader_init(&it->r, array.ptr, array.len);
}

bool wn_table_next(wn_table_iter_t *it, wn_bytes_t *key, wn_value_t *val) {
    if (it->r.err || wn_reader_left(&it->r) == 0) return false;
    *key = wn_get_shortstr(&it->r);
    table_read_value(&it->r, val);
    return !it->r.err;
}

bool wn_table_next_raw(wn_table_iter_t *it, wn_bytes_t *key, wn_value_t *val, wn_bytes_t *raw) {
    if (!wn_table_next(it, key, val)) return false;
    const uint8_t *start = key->ptr + key->len; /* the value follows its key */
    *raw = wn_bytes(start, (size_t)(it->r.p - start));
    return true;
}

bool wn_array_next(wn_table_iter_t *it, wn_value_t *val) {
    if (it->r.err || wn_reader_left(&it->r) == 0) return false;
    table_read_value(&it->r, val);
    return !it->r.err;
}

bool wn_table_get(wn_bytes_t table, const char *key, wn_value_t *val) {
    wn_bytes_t want = wn_cstr(key), k;
    wn_table_iter_t it;
    wn_table_iter_init(&it, table);
    while (wn_table_next(&it, &k, val))
        if (wn_bytes_eq(k, want)) return true;
    return false;
}

size_t wn_table_count(wn_bytes_t table) {
    wn_table_iter_t it;
    wn_bytes_t k;
    wn_value_t v;
    size_t n = 0;
    wn_table_iter_init(&it, table);
    while (wn_table_next(&it, &k, &v))
        n++;
    return n;
}

bool wn_value_as_int(const wn_value_t *v, int64_t *out) {
    switch (v->type) {
    case WN_FIELD_I8:
        *out = v->v.i8;
        return true;
    case WN_FIELD_U8:
        *out = v->v.u8;
        return true;
    case WN_FIELD_I16:
        *out = v->v.i16;
        return true;
    case WN_FIELD_U16:
        *out = v->v.u16;
        return true;
    case WN_FIELD_I32:
        *out = v->v.i32;
        return true;
    case WN_FIELD_U32:
        *out = v->v.u32;
        return true;
    case WN_FIELD_I64:
        *out = v->v.i64;
        return true;
    case WN_FIELD_U64:
        *out = (int64_t)v->v.u64;
        return v->v.u64 <= INT64_MAX;
    default:
        return false;
    }
}

/* ---- equality ------------------------------------------------------------- */

/*
 * Floats and doubles compare by their bits: equality stays reflexive (a NaN
 * equals the same NaN, so a redeclare with identical arguments is always
 * equivalent) and +0.0 differs from -0.0, as the bytes on the wire do.
 */
static bool table_scalar_equal(const wn_value_t *a, const wn_value_t *b) {
    switch (a->type) {
    case WN_FIELD_BOOL:
        return a->v.b == b->v.b;
    case WN_FIELD_I8:
    case WN_FIELD_U8:
        return a->v.u8 == b->v.u8;
    case WN_FIELD_I16:
    case WN_FIELD_U16:
        return a->v.u16 == b->v.u16;
    case WN_FIELD_I32:
    case WN_FIELD_U32:
        return a->v.u32 == b->v.u32;
    case WN_FIELD_I64:
    case WN_FIELD_TIMESTAMP:
    case WN_FIELD_U64:
        return a->v.u64 == b->v.u64;
    case WN_FIELD_FLOAT:
        return memcmp(&a->v.f32, &b->v.f32, sizeof a->v.f32) == 0;
    case WN_FIELD_DOUBLE:
        return memcmp(&a->v.f64, &b->v.f64, sizeof a->v.f64) == 0;
    case WN_FIELD_DECIMAL:
        return a->v.decimal.scale == b->v.decimal.scale && a->v.decimal.value == b->v.decimal.value;
    case WN_FIELD_VOID:
        return true;
    default: /* S, x, and F/A bodies compared as bytes */
        return wn_bytes_eq(a->v.bytes, b->v.bytes);
    }
}

/*
 * Compare two validated bodies item by item, descending into nested
 * containers in lockstep. Equal values always have encodings of equal length,
 * so differing lengths settle it at once, and identical bytes are equal (the
 * only non-identical equal encodings are booleans other than 0 and 1).
 */
static bool table_bodies_equal(wn_bytes_t a, wn_bytes_t b, bool is_array) {
    if (a.len != b.len) return false;
    if (wn_bytes_eq(a, b)) return true;

    wn_reader_t ra, rb;
    table_stack_t stack;
    bool equal = true;

    table_reader_init(&ra, a.ptr, a.len);
    table_reader_init(&rb, b.ptr, b.len);
    table_stack_init(&stack);
    while (equal) {
        if (ra.p == ra.end || rb.p == rb.end) {
            if (ra.p != ra.end || rb.p != rb.end) equal = false;
            if (!equal || stack.depth == 0) break;
            table_level_t up = stack.levels[--stack.depth];
            ra.end = up.end[0];
            rb.end = up.end[1];
            is_array = up.is_array;
            continue;
        }
        if (!is_array && !wn_bytes_eq(wn_get_shortstr(&ra), wn_get_shortstr(&rb))) {
            equal = false;
            break;
        }
        wn_value_t va, vb;
        table_read_value(&ra, &va);
        table_read_value(&rb, &vb);
        if (ra.err || rb.err || va.type != vb.type) {
            equal = false;
            break;
        }
        if (!table_is_container(va.type)) {
            equal = table_scalar_equal(&va, &vb);
            continue;
        }
        if (va.v.bytes.len != vb.v.bytes.len) {
            equal = false;
            break;
        }
        if (!table_stack_push(&stack, (table_level_t){{ra.end, rb.end}, is_array})) {
            /* Without memory for a deeper stack, fall back to comparing bytes:
             * exact except for booleans encoded as octets other than 0/1. */
            equal = wn_bytes_eq(va.v.bytes, vb.v.bytes);
            continue;
        }
        ra.p = va.v.bytes.ptr;
        ra.end = ra.p + va.v.bytes.len;
        rb.p = vb.v.bytes.ptr;
        rb.end = rb.p + vb.v.bytes.len;
        is_array = va.type == WN_FIELD_ARRAY;
    }
    table_stack_free(&stack);
    return equal;
}

bool wn_value_equal(const wn_value_t *a, const wn_value_t *b) {
    if (a->type != b->type) return false;
    if (!table_is_container(a->type)) return table_scalar_equal(a, b);
    return table_bodies_equal(a->v.bytes, b->v.bytes, a->type == WN_FIELD_ARRAY);
}

bool wn_table_equal(wn_bytes_t a, wn_bytes_t b) {
    return table_bodies_equal(a, b, false);
}

/* ---- encoding ------------------------------------------------------------- */

void wn_put_table(wn_writer_t *w, wn_bytes_t body) {
    wn_put_longstr(w, body);
}

size_t wn_table_begin(wn_writer_t *w) {
    size_t mark = w->len;
    wn_put32(w, 0); /* patched by wn_table_end */
    return mark;
}

void wn_table_end(wn_writer_t *w, size_t mark) {
    /* After an overflow the length slot may not exist; the writer's sticky
     * overflow already tells the caller the encoding failed. */
    if (w->overflow || w->len < mark + 4) return;
    size_t body = w->len - mark - 4;
    if (body > UINT32_MAX) {
        w->overflow = true;
        return;
    }
    wn_store32(w->buf + mark, (uint32_t)body);
}

size_t wn_table_begin_nested(wn_writer_t *w, const char *key, uint8_t type) {
    if (key) wn_put_shortstr(w, wn_cstr(key));
    wn_put8(w, type);
    return wn_table_begin(w);
}

static void table_put_float_bits(wn_writer_t *w, const wn_value_t *val) {
    if (val->type == WN_FIELD_FLOAT) {
        uint32_t bits;
        memcpy(&bits, &val->v.f32, sizeof bits);
        wn_put32(w, bits);
    } else {
        uint64_t bits;
        memcpy(&bits, &val->v.f64, sizeof bits);
        wn_put64(w, bits);
    }
}

void wn_value_put(wn_writer_t *w, const wn_value_t *val) {
    wn_put8(w, val->type);
    switch (val->type) {
    case WN_FIELD_BOOL:
        wn_put8(w, val->v.b ? 1 : 0);
        break;
    case WN_FIELD_I8:
    case WN_FIELD_U8:
        wn_put8(w, val->v.u8);
        break;
    case WN_FIELD_I16:
    case WN_FIELD_U16:
        wn_put16(w, val->v.u16);
        break;
    case WN_FIELD_I32:
    case WN_FIELD_U32:
        wn_put32(w, val->v.u32);
        break;
    case WN_FIELD_I64:
    case WN_FIELD_TIMESTAMP:
    case WN_FIELD_U64:
        wn_put64(w, val->v.u64);
        break;
    case WN_FIELD_FLOAT:
    case WN_FIELD_DOUBLE:
        table_put_float_bits(w, val);
        break;
    case WN_FIELD_DECIMAL:
        wn_put8(w, val->v.decimal.scale);
        wn_put32(w, val->v.decimal.value);
        break;
    case WN_FIELD_LONGSTR:
    case WN_FIELD_BYTES:
    case WN_FIELD_ARRAY:
    case WN_FIELD_TABLE:
        wn_put_longstr(w, val->v.bytes);
        break;
    case WN_FIELD_VOID:
        break;
    default:
        /* Writing a tag no peer can read would poison the frame. */
        w->overflow = true;
        break;
    }
}

void wn_table_put(wn_writer_t *w, const char *key, const wn_value_t *val) {
    wn_put_shortstr(w, wn_cstr(key));
    wn_value_put(w, val);
}

void wn_table_put_bool(wn_writer_t *w, const char *key, bool b) {
    wn_value_t v = {.type = WN_FIELD_BOOL, .v.b = b};
    wn_table_put(w, key, &v);
}

void wn_table_put_str(wn_writer_t *w, const char *key, const char *s) {
    wn_table_put_longstr(w, key, wn_cstr(s));
}

void wn_table_put_longstr(wn_writer_t *w, const char *key, wn_bytes_t s) {
    wn_value_t v = {.type = WN_FIELD_LONGSTR, .v.bytes = s};
    wn_table_put(w, key, &v);
}

void wn_table_put_i64(wn_writer_t *w, const char *key, int64_t i) {
    wn_value_t v = {.type = WN_FIELD_I64, .v.i64 = i};
    wn_table_put(w, key, &v);
}

const char *wn_field_type_name(uint8_t type) {
    switch (type) {
    case WN_FIELD_BOOL:
        return "bool";
    case WN_FIELD_I8:
        return "byte";
    case WN_FIELD_U8:
        return "unsignedbyte";
    case WN_FIELD_I16:
        return "short";
    case WN_FIELD_U16:
        return "unsignedshort";
    case WN_FIELD_I32:
        return "signedint";
    case WN_FIELD_U32:
        return "unsignedint";
    case WN_FIELD_I64:
        return "long";
    case WN_FIELD_U64:
        return "unsignedlong";
    case WN_FIELD_FLOAT:
        return "float";
    case WN_FIELD_DOUBLE:
        return "double";
    case WN_FIELD_DECIMAL:
        return "decimal";
    case WN_FIELD_LONGSTR:
        return "longstr";
    case WN_FIELD_ARRAY:
        return "array";
    case WN_FIELD_TIMESTAMP:
        return "timestamp";
    case WN_FIELD_TABLE:
        return "table";
    case WN_FIELD_VOID:
        return "void";
    case WN_FIELD_BYTES:
        return "binary";
    default:
        return "unknown";
    }
}
