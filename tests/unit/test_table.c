/*
 * test_table.c - unit tests for codec/table.c: every field type round trips
 * with its edge values, nesting (including 10,000+ levels) validates without
 * recursion, and every malformed or truncated table is refused with 502.
 */
#include "table.h"
#include "tap.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>

#define SYNTAX_ERROR 502

/* ---- helpers -------------------------------------------------------------- */

/* Encode one entry `key` = *val as a whole table (length + body) into buf. */
static size_t encode_one(uint8_t *buf, size_t cap, const char *key, const wn_value_t *val) {
    wn_writer_t w;
    wn_writer_init(&w, buf, cap);
    size_t mark = wn_table_begin(&w);
    wn_table_put(&w, key, val);
    wn_table_end(&w, mark);
    return w.overflow ? 0 : w.len;
}

/* Encode *val alone, decode it back through wn_get_table + wn_table_get. */
static bool round_trip(const wn_value_t *val, wn_value_t *out, uint8_t *buf, size_t cap) {
    size_t n = encode_one(buf, cap, "k", val);
    if (n == 0) return false;
    wn_reader_t r;
    wn_reader_init(&r, buf, n);
    wn_bytes_t t = wn_get_table(&r);
    if (r.err || r.p != r.end || wn_table_count(t) != 1) return false;
    return wn_table_get(t, "k", out) && out->type == val->type;
}

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint64_t double_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* ---- round trips ---------------------------------------------------------- */

static void test_integer_round_trips(void) {
    static uint8_t buf[64];
    wn_value_t v, out;

    v = (wn_value_t){.type = WN_FIELD_BOOL, .v.b = true};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.b, "t true round trips");
    v.v.b = false;
    ok(round_trip(&v, &out, buf, sizeof buf) && !out.v.b, "t false round trips");

    int8_t i8s[] = {INT8_MIN, -1, 0, INT8_MAX};
    for (size_t i = 0; i < sizeof i8s; i++) {
        v = (wn_value_t){.type = WN_FIELD_I8, .v.i8 = i8s[i]};
        ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i8 == i8s[i], "b %d", i8s[i]);
    }
    v = (wn_value_t){.type = WN_FIELD_U8, .v.u8 = 255};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.u8 == 255, "B 255");

    v = (wn_value_t){.type = WN_FIELD_I16, .v.i16 = INT16_MIN};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i16 == INT16_MIN, "s INT16_MIN");
    v = (wn_value_t){.type = WN_FIELD_U16, .v.u16 = 0xFFFF};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.u16 == 0xFFFF, "u 0xFFFF");

    v = (wn_value_t){.type = WN_FIELD_I32, .v.i32 = INT32_MIN};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i32 == INT32_MIN, "I INT32_MIN");
    v.v.i32 = -1;
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i32 == -1, "I -1 (negative I)");
    ok(memcmp(buf + 6, "I\xFF\xFF\xFF\xFF", 5) == 0, "I -1 is FF FF FF FF on the wire");
    v = (wn_value_t){.type = WN_FIELD_U32, .v.u32 = 0xFFFFFFFFu};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.u32 == 0xFFFFFFFFu, "i 0xFFFFFFFF");

    v = (wn_value_t){.type = WN_FIELD_I64, .v.i64 = INT64_MIN};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i64 == INT64_MIN, "l INT64_MIN");
    ok(memcmp(buf + 6, "l\x80\0\0\0\0\0\0\0", 9) == 0, "l INT64_MIN is big-endian on the wire");
    v.v.i64 = INT64_MAX;
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.i64 == INT64_MAX, "l INT64_MAX");

    v = (wn_value_t){.type = WN_FIELD_TIMESTAMP, .v.u64 = UINT64_MAX};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.u64 == UINT64_MAX, "T UINT64_MAX");
    v.v.u64 = 1700000000;
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.u64 == 1700000000, "T a real time");

    v = (wn_value_t){.type = WN_FIELD_VOID};
    ok(round_trip(&v, &out, buf, sizeof buf) && encode_one(buf, sizeof buf, "k", &v) == 7,
       "V round trips with no payload");
}

static void test_float_round_trips(void) {
    static uint8_t buf[64];
    wn_value_t v, out;

    float floats[] = {1.5f, -0.0f, FLT_MAX, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++) {
        v = (wn_value_t){.type = WN_FIELD_FLOAT, .v.f32 = floats[i]};
        ok(round_trip(&v, &out, buf, sizeof buf) &&
               float_bits(out.v.f32) == float_bits(floats[i]) && wn_value_equal(&v, &out),
           "f %g round trips bit for bit", (double)floats[i]);
    }
    double doubles[] = {3.141592653589793, -0.0, DBL_MAX, DBL_MIN, INFINITY, -INFINITY, NAN};
    for (size_t i = 0; i < sizeof doubles / sizeof doubles[0]; i++) {
        v = (wn_value_t){.type = WN_FIELD_DOUBLE, .v.f64 = doubles[i]};
        ok(round_trip(&v, &out, buf, sizeof buf) &&
               double_bits(out.v.f64) == double_bits(doubles[i]) && wn_value_equal(&v, &out),
           "d %g round trips bit for bit", doubles[i]);
    }
    ok(isnan(out.v.f64), "d NaN decodes as NaN");

    wn_decimal_t decs[] = {{0, 0}, {2, 12345}, {255, 0xFFFFFFFFu}};
    for (size_t i = 0; i < 3; i++) {
        v = (wn_value_t){.type = WN_FIELD_DECIMAL, .v.decimal = decs[i]};
        ok(round_trip(&v, &out, buf, sizeof buf) && out.v.decimal.scale == decs[i].scale &&
               out.v.decimal.value == decs[i].value,
           "D scale %u value %u", decs[i].scale, decs[i].value);
    }
}

static void test_string_round_trips(void) {
    static uint8_t buf[70000];
    static uint8_t big[65536];
    wn_value_t v, out;

    v = (wn_value_t){.type = WN_FIELD_LONGSTR, .v.bytes = {NULL, 0}};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.bytes.len == 0, "S empty");

    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    v.v.bytes = wn_bytes(big, sizeof big);
    ok(round_trip(&v, &out, buf, sizeof buf) && wn_bytes_eq(out.v.bytes, v.v.bytes), "S of 64 KiB");
    ok(encode_one(buf, 1000, "k", &v) == 0, "S of 64 KiB overflows a 1000-byte writer");

    static const uint8_t nuls[] = {0, 1, 0, 0, 255, 0};
    v = (wn_value_t){.type = WN_FIELD_BYTES, .v.bytes = wn_bytes(nuls, sizeof nuls)};
    ok(round_trip(&v, &out, buf, sizeof buf) && wn_bytes_eq(out.v.bytes, v.v.bytes), "x with NULs");
    v.v.bytes = (wn_bytes_t){NULL, 0};
    ok(round_trip(&v, &out, buf, sizeof buf) && out.v.bytes.len == 0, "x empty");
}

/* ---- wire format written by hand ------------------------------------------ */

/* A table as another client would send it: every type once, in RabbitMQ's
 * encoding. Used by the decoding and truncation tests. */
// clang-format off
static const uint8_t good[] = {
    1, 't', 't', 1,                                          /* true */
    1, 'b', 'b', 0x80,                                       /* -128 */
    1, 'B', 'B', 0xFF,                                       /* 255 */
    1, 's', 's', 0xFF, 0xFE,                                 /* -2 */
    1, 'u', 'u', 0xFF, 0xFF,                                 /* 65535 */
    1, 'I', 'I', 0xFF, 0xFF, 0xFF, 0xFD,                     /* -3 */
    1, 'i', 'i', 0xFF, 0xFF, 0xFF, 0xFF,                     /* 4294967295 */
    1, 'l', 'l', 0x80, 0, 0, 0, 0, 0, 0, 0,                  /* INT64_MIN */
    1, 'f', 'f', 0x3F, 0xC0, 0, 0,                           /* 1.5f */
    1, 'd', 'd', 0x40, 0x09, 0x21, 0xFB, 0x54, 0x44, 0x2D, 0x18, /* pi */
    1, 'D', 'D', 2, 0, 0, 0x30, 0x39,                        /* 123.45 */
    1, 'S', 'S', 0, 0, 0, 3, 'a', 0, 'c',                    /* "a\0c" */
    1, 'A', 'A', 0, 0, 0, 8, 'I', 0, 0, 0, 1, 'V', 't', 1,   /* [1, void, true] */
    1, 'T', 'T', 0, 0, 0, 0, 0x65, 0x53, 0xF1, 0x00,
    1, 'F', 'F', 0, 0, 0, 7, 1, 'n', 'b', 0x7F, 1, 'v', 'V', /* {n: 127, v: void} */
    1, 'V', 'V',
    1, 'x', 'x', 0, 0, 0, 2, 0, 0,
    0, 'S', 0, 0, 0, 0,                                      /* empty key, empty string */
};
// clang-format on

static void test_decode_every_type(void) {
    size_t glen = sizeof good;
    ok(wn_table_validate(good, glen) == 0, "a table with every type validates");

    wn_bytes_t tb = wn_bytes(good, glen);
    wn_value_t v;
    int64_t n;
    ok(wn_table_count(tb) == 18, "count is 18");
    ok(wn_table_get(tb, "t", &v) && v.type == 't' && v.v.b, "t");
    ok(wn_table_get(tb, "b", &v) && wn_value_as_int(&v, &n) && n == -128, "b -128");
    ok(wn_table_get(tb, "B", &v) && wn_value_as_int(&v, &n) && n == 255, "B 255");
    ok(wn_table_get(tb, "s", &v) && wn_value_as_int(&v, &n) && n == -2, "s -2");
    ok(wn_table_get(tb, "u", &v) && wn_value_as_int(&v, &n) && n == 65535, "u 65535");
    ok(wn_table_get(tb, "I", &v) && wn_value_as_int(&v, &n) && n == -3, "I -3");
    ok(wn_table_get(tb, "i", &v) && wn_value_as_int(&v, &n) && n == 4294967295LL, "i 2^32-1");
    ok(wn_table_get(tb, "l", &v) && wn_value_as_int(&v, &n) && n == INT64_MIN, "l INT64_MIN");
    ok(wn_table_get(tb, "f", &v) && v.v.f32 == 1.5f, "f 1.5");
    ok(wn_table_get(tb, "d", &v) && v.v.f64 == 3.141592653589793, "d pi");
    ok(wn_table_get(tb, "D", &v) && v.v.decimal.scale == 2 && v.v.decimal.value == 12345,
       "D 123.45");
    ok(wn_table_get(tb, "S", &v) && wn_bytes_eq(v.v.bytes, wn_bytes("a\0c", 3)), "S a\\0c");
    ok(wn_table_get(tb, "T", &v) && v.v.u64 == 0x6553F100u, "T");
    ok(wn_table_get(tb, "V", &v) && v.type == 'V', "V");
    ok(wn_table_get(tb, "x", &v) && wn_bytes_eq(v.v.bytes, wn_bytes("\0\0", 2)), "x \\0\\0");
    ok(wn_table_get(tb, "", &v) && v.type == 'S' && v.v.bytes.len == 0, "empty key");
    ok(!wn_table_get(tb, "missing", &v), "absent key is not found");

    ok(wn_table_get(tb, "A", &v) && v.type == 'A', "A");
    wn_table_iter_t it;
    wn_value_t e[4];
    size_t ne = 0;
    wn_array_iter_init(&it, v.v.bytes);
    while (ne < 4 && wn_array_next(&it, &e[ne]))
        ne++;
    ok(ne == 3 && e[0].type == 'I' && e[0].v.i32 == 1 && e[1].type == 'V' && e[2].type == 't' &&
           e[2].v.b,
       "array iterates [I 1, V, t true]");

    ok(wn_table_get(tb, "F", &v) && v.type == 'F' && wn_table_count(v.v.bytes) == 2, "F");
    wn_value_t inner;
    ok(wn_table_get(v.v.bytes, "n", &inner) && inner.v.i8 == 127, "F.n is b 127");

    /* Iteration yields entries in wire order with their keys. */
    wn_bytes_t key;
    static const char order[] = "tbBsuIilfdDSATFVx";
    size_t k = 0;
    bool in_order = true;
    wn_table_iter_init(&it, tb);
    while (wn_table_next(&it, &key, &v)) {
        if (k < 17)
            in_order &=
                key.len == 1 && key.ptr[0] == (uint8_t)order[k] && v.type == (uint8_t)order[k];
        k++;
    }
    ok(in_order && k == 18, "iteration visits all 18 entries in wire order");

    /* Truncation: every prefix through wn_get_table is refused. */
    uint8_t framed[sizeof good + 4];
    wn_store32(framed, (uint32_t)glen);
    memcpy(framed + 4, good, glen);
    bool all_refused = true;
    for (size_t cut = 0; cut < sizeof framed; cut++) {
        wn_reader_t r;
        wn_reader_init(&r, framed, cut);
        wn_get_table(&r);
        if (!r.err) {
            diag("prefix of %zu bytes accepted", cut);
            all_refused = false;
        }
    }
    ok(all_refused, "every truncation of a framed table sets the reader's error");

    /* A body cut anywhere but between top-level entries is a 502. */
    bool boundary[sizeof good + 1] = {false};
    wn_table_iter_init(&it, tb);
    boundary[0] = true;
    while (wn_table_next(&it, &key, &v))
        boundary[it.r.p - good] = true;
    bool all_right = true;
    for (size_t cut = 0; cut < glen; cut++) {
        int want = boundary[cut] ? 0 : SYNTAX_ERROR;
        if (wn_table_validate(good, cut) != want) {
            diag("cut at %zu: got %d want %d", cut, wn_table_validate(good, cut), want);
            all_right = false;
        }
    }
    ok(all_right, "every truncation offset inside an entry is 502");
}

/* ---- malformed tables ----------------------------------------------------- */

static void test_malformed(void) {
    ok(wn_table_validate((const uint8_t *)"\x01kZ", 3) == SYNTAX_ERROR, "unknown tag Z is 502");
    ok(wn_table_validate((const uint8_t *)"\x01kU\0\x01", 5) == SYNTAX_ERROR,
       "tag U (not in RabbitMQ's set) is 502");
    ok(wn_table_validate((const uint8_t *)"\x01k\0", 3) == SYNTAX_ERROR, "tag NUL is 502");
    ok(wn_array_validate((const uint8_t *)"I\0\0\0\0L", 6) == SYNTAX_ERROR,
       "unknown tag in an array is 502");
    ok(wn_table_validate((const uint8_t *)"\x05k", 2) == SYNTAX_ERROR, "key length past end");
    ok(wn_table_validate((const uint8_t *)"\x01kS\0\0\0\x64"
                                          "abc",
                         10) == SYNTAX_ERROR,
       "longstr length past end is 502");
    ok(wn_table_validate((const uint8_t *)"\x01kS\xFF\xFF\xFF\xFF", 8) == SYNTAX_ERROR,
       "longstr length 2^32-1 is 502");
    ok(wn_table_validate((const uint8_t *)"\x01kx\0\0", 5) == SYNTAX_ERROR,
       "truncated byte-array length is 502");
    ok(wn_table_validate((const uint8_t *)"\x01kI\0\0", 5) == SYNTAX_ERROR,
       "truncated I payload is 502");
    ok(wn_table_validate((const uint8_t *)"\x01k", 2) == SYNTAX_ERROR, "key without tag is 502");

    /* The array's length stays inside the buffer but crosses the end of the
     * table body being validated: the trailing bytes belong to someone else. */
    static const uint8_t crossing[] = {1, 'a', 'A', 0, 0, 0, 5, 'I', 0, 0, 0, 1};
    ok(wn_array_validate(crossing + 7, 5) == 0, "the array's contents alone are valid");
    ok(wn_table_validate(crossing, sizeof crossing) == 0, "the whole buffer is a valid table");
    ok(wn_table_validate(crossing, sizeof crossing - 1) == SYNTAX_ERROR,
       "an array length that crosses the table's end is 502");

    /* A nested table in an array whose length crosses the array's end but
     * not the outer table's. */
    static const uint8_t nested_cross[] = {1, 'a', 'A', 0, 0, 0, 5, 'F', 0, 0, 0, 3, 1, 'k', 'V'};
    ok(wn_table_validate(nested_cross, sizeof nested_cross) == SYNTAX_ERROR,
       "a table length that crosses its array's end is 502");

    static const uint8_t short_array[] = {1, 'a', 'A', 0, 0, 0, 2, 'I', 0, 0, 0, 0, 1};
    ok(wn_table_validate(short_array, sizeof short_array) == SYNTAX_ERROR,
       "a value whose payload runs past its array's end is 502");

    /* Validated iteration stops on damage rather than reading past the end. */
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t v;
    wn_table_iter_init(&it, wn_bytes("\x01kS\0\0\0\x64", 7));
    ok(!wn_table_next(&it, &key, &v), "iterating a damaged table stops");
}

/* ---- nesting -------------------------------------------------------------- */

static void test_nesting(void) {
    static uint8_t buf[1024];
    wn_writer_t w;
    wn_writer_init(&w, buf, sizeof buf);

    /* {a: {b: [ {c: [1, [2, "x"]]}, "y" ]}, z: true} */
    size_t top = wn_table_begin(&w);
    size_t a = wn_table_begin_nested(&w, "a", WN_FIELD_TABLE);
    size_t b = wn_table_begin_nested(&w, "b", WN_FIELD_ARRAY);
    size_t t1 = wn_table_begin_nested(&w, NULL, WN_FIELD_TABLE);
    size_t c = wn_table_begin_nested(&w, "c", WN_FIELD_ARRAY);
    wn_value_t one = {.type = WN_FIELD_I32, .v.i32 = 1};
    wn_value_put(&w, &one);
    size_t inner = wn_table_begin_nested(&w, NULL, WN_FIELD_ARRAY);
    wn_value_t two = {.type = WN_FIELD_I64, .v.i64 = 2};
    wn_value_put(&w, &two);
    wn_value_t x = {.type = WN_FIELD_LONGSTR, .v.bytes = WN_BYTES_LIT("x")};
    wn_value_put(&w, &x);
    wn_table_end(&w, inner);
    wn_table_end(&w, c);
    wn_table_end(&w, t1);
    wn_value_t y = {.type = WN_FIELD_LONGSTR, .v.bytes = WN_BYTES_LIT("y")};
    wn_value_put(&w, &y);
    wn_table_end(&w, b);
    wn_table_end(&w, a);
    wn_table_put_bool(&w, "z", true);
    wn_table_end(&w, top);
    ok(!w.overflow, "nested table builds");

    wn_reader_t r;
    wn_reader_init(&r, buf, w.len);
    wn_bytes_t tb = wn_get_table(&r);
    ok(!r.err && r.p == r.end, "nested table validates and is consumed whole");
    ok(wn_table_count(tb) == 2, "top level has 2 entries");

    wn_value_t va, vb, vt, vc, vi;
    wn_table_iter_t it;
    bool path = wn_table_get(tb, "a", &va) && va.type == 'F' &&
                wn_table_get(va.v.bytes, "b", &vb) && vb.type == 'A';
    ok(path, "a.b is an array inside a table");
    wn_array_iter_init(&it, vb.v.bytes);
    path = path && wn_array_next(&it, &vt) && vt.type == 'F' &&
           wn_table_get(vt.v.bytes, "c", &vc) && vc.type == 'A';
    wn_value_t ys;
    ok(path && wn_array_next(&it, &ys) && wn_bytes_eq_cstr(ys.v.bytes, "y") &&
           !wn_array_next(&it, &ys),
       "a.b is [table, \"y\"]");
    wn_array_iter_init(&it, vc.v.bytes);
    wn_value_t first;
    path = path && wn_array_next(&it, &first) && first.v.i32 == 1 && wn_array_next(&it, &vi) &&
           vi.type == 'A';
    wn_value_t e1, e2;
    wn_array_iter_init(&it, vi.v.bytes);
    ok(path && wn_array_next(&it, &e1) && e1.v.i64 == 2 && wn_array_next(&it, &e2) &&
           wn_bytes_eq_cstr(e2.v.bytes, "x"),
       "a.b[0].c is [1, [2, \"x\"]], four levels down");

    /* A damaged byte four levels down is found by the top-level check. */
    uint8_t *xs = memchr(buf, 'x', w.len);
    uint8_t *tag = xs - 5;
    *tag = 'Q';
    ok(wn_table_validate(buf + 4, w.len - 4) == SYNTAX_ERROR, "bad tag 4 levels down is 502");
    *tag = 'S';
    ok(wn_table_validate(buf + 4, w.len - 4) == 0, "restored table validates again");
}

/* Nested tables {k: {k: {... {}}}} `depth` deep, built with the builder. */
static uint8_t *deep_tables(size_t depth, size_t *len) {
    size_t cap = 4 + depth * 7;
    uint8_t *buf = malloc(cap);
    size_t *marks = malloc((depth + 1) * sizeof *marks);
    wn_writer_t w;
    wn_writer_init(&w, buf, cap);
    marks[0] = wn_table_begin(&w);
    for (size_t i = 1; i <= depth; i++)
        marks[i] = wn_table_begin_nested(&w, "k", WN_FIELD_TABLE);
    for (size_t i = depth + 1; i-- > 0;)
        wn_table_end(&w, marks[i]);
    free(marks);
    *len = w.overflow ? 0 : w.len;
    return buf;
}

/* Arrays [[[...[]]]] `depth` deep, written directly: tag + length each. */
static uint8_t *deep_arrays(size_t depth, size_t *len) {
    *len = depth * 5;
    uint8_t *buf = malloc(*len);
    for (size_t i = 0; i < depth; i++) {
        buf[i * 5] = 'A';
        wn_store32(buf + i * 5 + 1, (uint32_t)((depth - i - 1) * 5));
    }
    return buf;
}

static void test_deep_nesting(void) {
    size_t len;
    uint8_t *t = deep_tables(10000, &len);
    ok(len == 4 + 10000 * 7, "10,000 nested tables built (%zu bytes)", len);
    ok(wn_table_validate(t + 4, len - 4) == 0, "10,000 nested tables validate");

    uint8_t *u = malloc(len);
    memcpy(u, t, len);
    wn_value_t va = {.type = 'F', .v.bytes = wn_bytes(t + 4, len - 4)};
    wn_value_t vb = {.type = 'F', .v.bytes = wn_bytes(u + 4, len - 4)};
    ok(wn_value_equal(&va, &vb), "two copies of 10,000 nested tables are equal");
    u[len - 2] = 'j'; /* innermost key */
    ok(!wn_value_equal(&va, &vb) && !wn_table_equal(va.v.bytes, vb.v.bytes),
       "a different innermost key makes them unequal");
    u[len - 2] = 'k';
    u[len - 1] = 't'; /* innermost: k: t ... with no payload */
    ok(wn_table_validate(u + 4, len - 4) == SYNTAX_ERROR,
       "a truncated innermost value 10,000 levels down is 502");
    free(u);
    free(t);

    uint8_t *a = deep_arrays(100000, &len);
    ok(wn_array_validate(a, len) == 0, "100,000 nested arrays validate");
    wn_store32(a + 50000 * 5 + 1, (uint32_t)(len)); /* crosses every end */
    ok(wn_array_validate(a, len) == SYNTAX_ERROR, "a length crossing 50,000 ends is 502");
    free(a);

    /* Bools encoded 2 and 1 are equal even deep inside (forces the walk). */
    uint8_t *b1 = deep_arrays(1000, &len);
    uint8_t *b2 = deep_arrays(1000, &len);
    b1[len - 5] = b2[len - 5] = 't'; /* innermost array becomes a bool... */
    b1[len - 4] = 1;
    b2[len - 4] = 2;
    /* ...its parent's length was 5: the bool takes 2 of them; pad with V. */
    b1[len - 3] = b2[len - 3] = b1[len - 2] = b2[len - 2] = b1[len - 1] = b2[len - 1] = 'V';
    wn_value_t x1 = {.type = 'A', .v.bytes = wn_bytes(b1, len)};
    wn_value_t x2 = {.type = 'A', .v.bytes = wn_bytes(b2, len)};
    ok(wn_array_validate(b1, len) == 0 && wn_value_equal(&x1, &x2),
       "true as 1 and as 2, 999 levels down, compare equal");
    b2[len - 4] = 0;
    ok(!wn_value_equal(&x1, &x2), "true and false 999 levels down differ");
    free(b1);
    free(b2);
}

/* ---- equality and integer class ------------------------------------------- */

static void test_equality(void) {
    wn_value_t i5 = {.type = WN_FIELD_I32, .v.i32 = 5};
    wn_value_t l5 = {.type = WN_FIELD_I64, .v.i64 = 5};
    wn_value_t b5 = {.type = WN_FIELD_U8, .v.u8 = 5};
    wn_value_t s5 = {.type = WN_FIELD_LONGSTR, .v.bytes = WN_BYTES_LIT("5")};
    int64_t n1, n2;
    ok(!wn_value_equal(&i5, &l5), "I 5 and l 5 are different values");
    ok(wn_value_as_int(&i5, &n1) && wn_value_as_int(&l5, &n2) && n1 == n2,
       "I 5 and l 5 are the same integer");
    ok(wn_value_as_int(&b5, &n1) && n1 == 5, "B 5 is an integer");
    ok(!wn_value_as_int(&s5, &n1), "S \"5\" is not an integer");
    wn_value_t ts = {.type = WN_FIELD_TIMESTAMP, .v.u64 = 5};
    wn_value_t d = {.type = WN_FIELD_DOUBLE, .v.f64 = 5.0};
    ok(!wn_value_as_int(&ts, &n1) && !wn_value_as_int(&d, &n1), "T and d are not integers");
    wn_value_t u32 = {.type = WN_FIELD_U32, .v.u32 = 0xFFFFFFFFu};
    wn_value_t im1 = {.type = WN_FIELD_I32, .v.i32 = -1};
    ok(wn_value_as_int(&u32, &n1) && n1 == 4294967295LL && wn_value_as_int(&im1, &n2) && n2 == -1,
       "i 0xFFFFFFFF is 4294967295, I -1 is -1");
    ok(wn_value_equal(&i5, &i5), "I 5 equals itself");
    wn_value_t i6 = {.type = WN_FIELD_I32, .v.i32 = 6};
    ok(!wn_value_equal(&i5, &i6), "I 5 differs from I 6");

    wn_value_t s = {.type = WN_FIELD_LONGSTR, .v.bytes = WN_BYTES_LIT("ab")};
    wn_value_t x = {.type = WN_FIELD_BYTES, .v.bytes = WN_BYTES_LIT("ab")};
    ok(!wn_value_equal(&s, &x), "S and x with the same bytes differ");

    wn_value_t n1v = {.type = WN_FIELD_DOUBLE, .v.f64 = NAN};
    wn_value_t n2v = n1v;
    ok(wn_value_equal(&n1v, &n2v), "a NaN equals the same NaN (bitwise)");
    wn_value_t pz = {.type = WN_FIELD_DOUBLE, .v.f64 = 0.0};
    wn_value_t nz = {.type = WN_FIELD_DOUBLE, .v.f64 = -0.0};
    ok(!wn_value_equal(&pz, &nz), "+0.0 and -0.0 differ (bitwise)");
    wn_value_t d1 = {.type = WN_FIELD_DECIMAL, .v.decimal = {1, 10}};
    wn_value_t d2 = {.type = WN_FIELD_DECIMAL, .v.decimal = {0, 1}};
    ok(!wn_value_equal(&d1, &d2), "decimals compare scale and value as sent");

    /* Tables: same entries in the same order. */
    wn_bytes_t ab = wn_bytes("\x01"
                             "aI\0\0\0\x01\x01"
                             "bV",
                             10);
    wn_bytes_t ab2 = wn_bytes("\x01"
                              "aI\0\0\0\x01\x01"
                              "bV",
                              10);
    wn_bytes_t ba = wn_bytes("\x01"
                             "bV\x01"
                             "aI\0\0\0\x01",
                             10);
    wn_bytes_t abl = wn_bytes("\x01"
                              "al\0\0\0\0\0\0\0\x01\x01"
                              "bV",
                              14);
    ok(wn_table_equal(ab, ab2), "identical tables are equal");
    ok(!wn_table_equal(ab, ba), "the same entries in another order differ");
    ok(!wn_table_equal(ab, abl), "I 1 vs l 1 in a table differ");
    ok(wn_table_equal(wn_bytes("", 0), (wn_bytes_t){NULL, 0}), "empty tables are equal");
    wn_bytes_t t1 = wn_bytes("\x01"
                             "at\x01",
                             4),
               t2 = wn_bytes("\x01"
                             "at\x07",
                             4);
    ok(wn_table_equal(t1, t2), "bool octets 1 and 7 are both true");
    wn_bytes_t ka = wn_bytes("\x01"
                             "aV",
                             3),
               kb = wn_bytes("\x01"
                             "bV",
                             3);
    ok(!wn_table_equal(ka, kb), "different keys differ");

    /* Arrays element-wise, with floats inside. */
    wn_value_t arr1 = {.type = 'A', .v.bytes = wn_bytes("f\x7f\xc0\0\0t\x01", 7)};
    wn_value_t arr2 = {.type = 'A', .v.bytes = wn_bytes("f\x7f\xc0\0\0t\x05", 7)};
    wn_value_t arr3 = {.type = 'A', .v.bytes = wn_bytes("f\x7f\xc0\0\0t\x00", 7)};
    ok(wn_value_equal(&arr1, &arr2), "arrays [NaN, true] equal element-wise");
    ok(!wn_value_equal(&arr1, &arr3), "[NaN, true] and [NaN, false] differ");
    wn_value_t tab = {.type = 'F', .v.bytes = arr1.v.bytes};
    ok(!wn_value_equal(&arr1, &tab), "an array never equals a table");
}

/* ---- builder edge cases --------------------------------------------------- */

static void test_builder(void) {
    uint8_t buf[64];
    wn_writer_t w;
    wn_writer_init(&w, buf, sizeof buf);
    size_t mark = wn_table_begin(&w);
    wn_table_end(&w, mark);
    ok(!w.overflow && w.len == 4 && wn_load32(buf) == 0, "an empty table is four zero bytes");
    ok(wn_table_validate(buf + 4, 0) == 0 && wn_table_count(wn_bytes(buf + 4, 0)) == 0,
       "the empty table validates and has no entries");
    ok(wn_table_validate(NULL, 0) == 0 && wn_table_count((wn_bytes_t){NULL, 0}) == 0,
       "a NULL empty table is valid and empty");

    wn_writer_init(&w, buf, sizeof buf);
    mark = wn_table_begin(&w);
    wn_table_put_str(&w, "k", "v");
    wn_table_put_i64(&w, "n", -1);
    wn_table_end(&w, mark);
    static const uint8_t want[] = {0, 0,   0,   19,  1,   'k', 'S', 0,   0,   0,   1,  'v',
                                   1, 'n', 'l', 255, 255, 255, 255, 255, 255, 255, 255};
    ok(w.len == sizeof want && memcmp(buf, want, sizeof want) == 0,
       "builder writes the exact wire bytes, length patched");
    ok(wn_load32(buf) == 19, "table length counts the body only");

    wn_writer_init(&w, buf, 10);
    mark = wn_table_begin(&w);
    wn_table_put_str(&w, "k", "value");
    wn_table_end(&w, mark);
    ok(w.overflow, "a table that does not fit sets overflow");

    char key256[257];
    memset(key256, 'k', 256);
    key256[256] = 0;
    wn_writer_init(&w, buf, sizeof buf);
    wn_table_put_bool(&w, key256, true);
    ok(w.overflow, "a 256-byte key cannot be encoded");

    static uint8_t big[512];
    wn_writer_init(&w, big, sizeof big);
    mark = wn_table_begin(&w);
    wn_table_put_bool(&w, key256 + 1, true);
    wn_put_shortstr(&w, wn_bytes("\xff\0\x01", 3));
    wn_put8(&w, 'V');
    wn_table_end(&w, mark);
    wn_value_t v;
    ok(!w.overflow && wn_table_validate(big + 4, w.len - 4) == 0 &&
           wn_table_get(wn_bytes(big + 4, w.len - 4), key256 + 1, &v) && v.v.b,
       "a 255-byte key and a key of arbitrary bytes (0xFF, NUL) are accepted");

    wn_value_t bad = {.type = 'Z'};
    wn_writer_init(&w, buf, sizeof buf);
    wn_value_put(&w, &bad);
    ok(w.overflow, "writing an unknown tag fails instead of emitting it");

    wn_writer_init(&w, buf, sizeof buf);
    wn_put_table(&w, wn_bytes("\x01kV", 3));
    ok(w.len == 7 && wn_load32(buf) == 3 && buf[6] == 'V', "wn_put_table frames a body");

    wn_reader_t r;
    uint8_t two[] = {0, 0, 0, 3, 1, 'k', 'V', 0, 0, 0, 0, 0xAA};
    wn_reader_init(&r, two, sizeof two);
    wn_bytes_t t1 = wn_get_table(&r);
    wn_bytes_t t2 = wn_get_table(&r);
    ok(!r.err && t1.len == 3 && t2.len == 0 && wn_get8(&r) == 0xAA,
       "wn_get_table reads tables back to back");
    uint8_t badt[] = {0, 0, 0, 3, 1, 'k', 'Z'};
    wn_reader_init(&r, badt, sizeof badt);
    wn_bytes_t t3 = wn_get_table(&r);
    ok(r.err && t3.len == 0, "wn_get_table sets err on a bad tag");
}

/* wn_table_next_raw gives each value still encoded, ready to copy. */
static void test_next_raw(void) {
    uint8_t buf[128];
    wn_writer_t w;
    wn_table_iter_t it;
    wn_bytes_t key, raw;
    wn_value_t v;
    wn_writer_init(&w, buf, sizeof buf);
    wn_table_put_i64(&w, "", 7);
    wn_table_put_str(&w, "s", "abc");
    wn_table_iter_init(&it, wn_bytes(buf, w.len));
    ok(wn_table_next_raw(&it, &key, &v, &raw) && key.len == 0 && raw.len == 9 &&
           raw.ptr[0] == 'l' && v.v.i64 == 7,
       "next_raw: an empty key, then the long's 9 encoded bytes");
    ok(wn_table_next_raw(&it, &key, &v, &raw) && raw.len == 8 &&
           memcmp(raw.ptr, "S\0\0\0\3abc", 8) == 0,
       "next_raw: a longstr's type, length and bytes");
    ok(!wn_table_next_raw(&it, &key, &v, &raw), "next_raw: false at the end");
}

int main(void) {
    test_integer_round_trips();
    test_float_round_trips();
    test_string_round_trips();
    test_decode_every_type();
    test_malformed();
    test_nesting();
    test_deep_nesting();
    test_equality();
    test_builder();
    test_next_raw();
    return tap_done();
}
