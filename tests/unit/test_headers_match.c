/*
 * test_headers_match.c - headers exchange matching (src/headers_match.c)
 * case by case as RabbitMQ decides it: every x-match mode, void arguments,
 * x- arguments ignored or considered, the type rules of Erlang's == (each
 * "matches"/"does not match" below was observed on RabbitMQ 3.10 with the
 * same typed tables), nested tables and arrays, repeated keys, empty tables,
 * and the x-match check with RabbitMQ's error texts.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "headers_match.h"
#include "table.h"
#include "tap.h"

/* ---- building tables ---------------------------------------------------------- */

typedef struct entry {
    const char *key;
    wn_value_t v;
} entry_t;

static uint8_t pool[1 << 20];
static size_t pool_used;

/* Table and array bodies are written into the pool and live to the end. */
static wn_bytes_t body_of(const entry_t *e, size_t n, bool is_array) {
    wn_writer_t w;
    wn_writer_init(&w, pool + pool_used, sizeof pool - pool_used);
    for (size_t i = 0; i < n; i++) {
        if (is_array)
            wn_value_put(&w, &e[i].v);
        else
            wn_table_put(&w, e[i].key, &e[i].v);
    }
    wn_bytes_t b = wn_bytes(pool + pool_used, w.len);
    pool_used += w.len;
    int bad = w.overflow ||
              (is_array ? wn_array_validate(b.ptr, b.len) : wn_table_validate(b.ptr, b.len));
    if (bad) diag("test bug: a malformed table");
    return b;
}

#define ENTRIES(...)  ((const entry_t[]){__VA_ARGS__})
#define NENTRIES(...) (sizeof(ENTRIES(__VA_ARGS__)) / sizeof(entry_t))
#define TBL(...)      body_of(ENTRIES(__VA_ARGS__), NENTRIES(__VA_ARGS__), false)
#define ARR(...)      body_of(ENTRIES(__VA_ARGS__), NENTRIES(__VA_ARGS__), true)
#define E(k, val)     ((entry_t){(k), (val)})
#define A_(val)       ((entry_t){NULL, (val)})
/* An empty table: a real pointer, and NULL as a caller may well pass. */
#define EMPTY ((wn_bytes_t){pool, 0})
#define NONE  ((wn_bytes_t){NULL, 0})

static wn_value_t vb(int8_t x) {
    return (wn_value_t){.type = WN_FIELD_I8, .v.i8 = x};
}
static wn_value_t vB(uint8_t x) {
    return (wn_value_t){.type = WN_FIELD_U8, .v.u8 = x};
}
static wn_value_t vs(int16_t x) {
    return (wn_value_t){.type = WN_FIELD_I16, .v.i16 = x};
}
static wn_value_t vu(uint16_t x) {
    return (wn_value_t){.type = WN_FIELD_U16, .v.u16 = x};
}
static wn_value_t vI(int32_t x) {
    return (wn_value_t){.type = WN_FIELD_I32, .v.i32 = x};
}
static wn_value_t vi(uint32_t x) {
    return (wn_value_t){.type = WN_FIELD_U32, .v.u32 = x};
}
static wn_value_t vl(int64_t x) {
    return (wn_value_t){.type = WN_FIELD_I64, .v.i64 = x};
}
static wn_value_t vT(uint64_t x) {
    return (wn_value_t){.type = WN_FIELD_TIMESTAMP, .v.u64 = x};
}
static wn_value_t vf(float x) {
    return (wn_value_t){.type = WN_FIELD_FLOAT, .v.f32 = x};
}
static wn_value_t vd(double x) {
    return (wn_value_t){.type = WN_FIELD_DOUBLE, .v.f64 = x};
}
static wn_value_t vt(bool x) {
    return (wn_value_t){.type = WN_FIELD_BOOL, .v.b = x};
}
static wn_value_t vV(void) {
    return (wn_value_t){.type = WN_FIELD_VOID};
}
static wn_value_t vS(const char *s) {
    return (wn_value_t){.type = WN_FIELD_LONGSTR, .v.bytes = wn_cstr(s)};
}
static wn_value_t vx(const char *s) {
    return (wn_value_t){.type = WN_FIELD_BYTES, .v.bytes = wn_cstr(s)};
}
static wn_value_t vF(wn_bytes_t body) {
    return (wn_value_t){.type = WN_FIELD_TABLE, .v.bytes = body};
}
static wn_value_t vA(wn_bytes_t body) {
    return (wn_value_t){.type = WN_FIELD_ARRAY, .v.bytes = body};
}
static wn_value_t vD(uint8_t scale, uint32_t value) {
    return (wn_value_t){.type = WN_FIELD_DECIMAL, .v.decimal = {scale, value}};
}

static void check(const char *name, wn_bytes_t args, wn_bytes_t headers, bool expect) {
    ok(headers_match(args, headers) == expect, "%s: %s", name, expect ? "matches" : "no match");
}

/* ---- x-match modes -------------------------------------------------------------- */

static void test_all(void) {
    wn_bytes_t hdrs = TBL(E("a", vI(1)), E("b", vS("x")), E("c", vt(true)));
    check("all (default), both present and equal", TBL(E("a", vI(1)), E("b", vS("x"))), hdrs, true);
    check("all explicit", TBL(E("x-match", vS("all")), E("a", vI(1)), E("b", vS("x"))), hdrs, true);
    check("all, one value differs", TBL(E("a", vI(1)), E("b", vS("y"))), hdrs, false);
    check("all, one header absent", TBL(E("a", vI(1)), E("z", vS("x"))), hdrs, false);
    check("all, no headers at all", TBL(E("a", vI(1))), EMPTY, false);
    check("all, NULL headers", TBL(E("a", vI(1))), NONE, false);
    check("all of no arguments matches anything", TBL(E("x-match", vS("all"))), hdrs, true);
    check("all of no arguments, empty headers", TBL(E("x-match", vS("all"))), EMPTY, true);
    check("empty arguments (all of none)", EMPTY, hdrs, true);
    check("NULL arguments, NULL headers", NONE, NONE, true);
    check("x-match in the message headers plays no part", TBL(E("a", vI(1))),
          TBL(E("a", vI(1)), E("x-match", vS("any"))), true);
    check("argument order does not matter", TBL(E("b", vS("x")), E("a", vI(1))), hdrs, true);
}

static void test_any(void) {
    wn_bytes_t hdrs = TBL(E("a", vI(1)), E("b", vS("x")));
    check("any, one of two equal", TBL(E("x-match", vS("any")), E("a", vI(2)), E("b", vS("x"))),
          hdrs, true);
    check("any, none equal", TBL(E("x-match", vS("any")), E("a", vI(2)), E("b", vS("y"))), hdrs,
          false);
    check("any, all absent", TBL(E("x-match", vS("any")), E("z", vI(1))), hdrs, false);
    check("any of no arguments matches nothing", TBL(E("x-match", vS("any"))), hdrs, false);
    check("any, empty headers", TBL(E("x-match", vS("any")), E("a", vI(1))), EMPTY, false);
    check("x-match is found wherever it is",
          TBL(E("a", vI(2)), E("b", vS("x")), E("x-match", vS("any"))), hdrs, true);
    check("the first x-match decides",
          TBL(E("x-match", vS("any")), E("x-match", vS("all")), E("a", vI(2)), E("b", vS("x"))),
          hdrs, true);
}

static void test_x_arguments(void) {
    wn_bytes_t hdrs = TBL(E("a", vI(1)), E("x-foo", vI(1)));
    check("all ignores x- arguments", TBL(E("a", vI(1)), E("x-foo", vI(2))), hdrs, true);
    check("all ignores an absent x- argument", TBL(E("a", vI(1)), E("x-bar", vI(2))), hdrs, true);
    check("all with only x- arguments matches anything", TBL(E("x-bar", vI(2))), EMPTY, true);
    check("any with only x- arguments matches nothing",
          TBL(E("x-match", vS("any")), E("x-foo", vI(1))), hdrs, false);
    check("all-with-x considers x- arguments",
          TBL(E("x-match", vS("all-with-x")), E("a", vI(1)), E("x-foo", vI(1))), hdrs, true);
    check("all-with-x, x- argument differs",
          TBL(E("x-match", vS("all-with-x")), E("a", vI(1)), E("x-foo", vI(2))), hdrs, false);
    check("all-with-x, x- header absent", TBL(E("x-match", vS("all-with-x")), E("x-bar", vI(1))),
          hdrs, false);
    check("all-with-x of x-match alone matches anything", TBL(E("x-match", vS("all-with-x"))),
          EMPTY, true);
    check("any-with-x, only the x- argument equal",
          TBL(E("x-match", vS("any-with-x")), E("a", vI(2)), E("x-foo", vI(1))), hdrs, true);
    check("any-with-x, nothing equal",
          TBL(E("x-match", vS("any-with-x")), E("a", vI(2)), E("x-foo", vI(2))), hdrs, false);
    check("'X-foo' is not an x- argument", TBL(E("X-foo", vI(1))), hdrs, false);
    check("'x-' alone is an x- argument", TBL(E("x-", vI(1))), hdrs, true);
}

/* An x-match RabbitMQ would refuse at bind time still routes, as all: a
 * binding made before RabbitMQ checked x-match may carry one. */
static void test_invalid_mode_routes_as_all(void) {
    wn_bytes_t hdrs = TBL(E("a", vI(1)), E("b", vI(2)));
    check("x-match ANY (wrong case) routes as all",
          TBL(E("x-match", vS("ANY")), E("a", vI(1)), E("b", vI(3))), hdrs, false);
    check("x-match 'any' as bytes routes as all",
          TBL(E("x-match", vx("any")), E("a", vI(1)), E("b", vI(3))), hdrs, false);
    check("x-match 'any' as bytes, all equal", TBL(E("x-match", vx("any")), E("a", vI(1))), hdrs,
          true);
}

/* ---- void arguments ---------------------------------------------------------------- */

static void test_void(void) {
    check("void argument, header present (string)", TBL(E("k", vV())), TBL(E("k", vS("zz"))), true);
    check("void argument, header present (table)", TBL(E("k", vV())),
          TBL(E("k", vF(TBL(E("a", vI(1)))))), true);
    check("void argument, header present and void", TBL(E("k", vV())), TBL(E("k", vV())), true);
    check("void argument, header absent", TBL(E("k", vV())), TBL(E("j", vI(1))), false);
    check("any: void argument present", TBL(E("x-match", vS("any")), E("z", vI(1)), E("k", vV())),
          TBL(E("k", vl(7))), true);
    check("empty string argument, void header", TBL(E("k", vS(""))), TBL(E("k", vV())), false);
    check("integer argument, void header", TBL(E("k", vI(0))), TBL(E("k", vV())), false);
}

/* ---- types: Erlang's == on decoded values -------------------------------------------- */

static void test_integer_types(void) {
    wn_bytes_t want = TBL(E("k", vI(1)));
    check("I 1 vs l 1", want, TBL(E("k", vl(1))), true);
    check("I 1 vs b 1", want, TBL(E("k", vb(1))), true);
    check("I 1 vs B 1", want, TBL(E("k", vB(1))), true);
    check("I 1 vs s 1", want, TBL(E("k", vs(1))), true);
    check("I 1 vs u 1", want, TBL(E("k", vu(1))), true);
    check("I 1 vs i 1", want, TBL(E("k", vi(1))), true);
    check("I 1 vs T 1", want, TBL(E("k", vT(1))), true);
    check("I 1 vs I 2", want, TBL(E("k", vI(2))), false);
    check("l 5 vs T 5 (timestamps compare as plain integers)", TBL(E("k", vl(5))),
          TBL(E("k", vT(5))), true);
    check("l 5000 vs T 5", TBL(E("k", vl(5000))), TBL(E("k", vT(5))), false);
    check("I -1 vs i 4294967295 (values, not bits)", TBL(E("k", vI(-1))),
          TBL(E("k", vi(0xffffffffu))), false);
    check("b -1 vs l -1", TBL(E("k", vb(-1))), TBL(E("k", vl(-1))), true);
    check("T 2^64-1 vs l -1", TBL(E("k", vT(UINT64_MAX))), TBL(E("k", vl(-1))), false);
    check("T 2^63 vs T 2^63", TBL(E("k", vT(1ULL << 63))), TBL(E("k", vT(1ULL << 63))), true);
    check("l INT64_MIN vs l INT64_MIN", TBL(E("k", vl(INT64_MIN))), TBL(E("k", vl(INT64_MIN))),
          true);
}

static void test_float_types(void) {
    check("I 1 vs d 1.0 (Erlang: 1 == 1.0)", TBL(E("k", vI(1))), TBL(E("k", vd(1.0))), true);
    check("d 1.0 vs I 1", TBL(E("k", vd(1.0))), TBL(E("k", vI(1))), true);
    check("l -3 vs d -3.0", TBL(E("k", vl(-3))), TBL(E("k", vd(-3.0))), true);
    check("d 0.5 vs I 0", TBL(E("k", vd(0.5))), TBL(E("k", vI(0))), false);
    check("I 0 vs d -0.0", TBL(E("k", vI(0))), TBL(E("k", vd(-0.0))), true);
    check("l 2^53+1 vs d 2^53 (exact, no rounding)", TBL(E("k", vl((1LL << 53) + 1))),
          TBL(E("k", vd(9007199254740992.0))), false);
    check("l 2^53 vs d 2^53", TBL(E("k", vl(1LL << 53))), TBL(E("k", vd(9007199254740992.0))),
          true);
    check("T 2^63 vs d 2^63", TBL(E("k", vT(1ULL << 63))), TBL(E("k", vd(9223372036854775808.0))),
          true);
    check("T 2^64-1 vs d 2^64", TBL(E("k", vT(UINT64_MAX))),
          TBL(E("k", vd(18446744073709551616.0))), false);
    check("f 1.5 vs d 1.5", TBL(E("k", vf(1.5f))), TBL(E("k", vd(1.5))), true);
    check("f 0.1 vs d 0.1 (a float is not the nearest double)", TBL(E("k", vf(0.1f))),
          TBL(E("k", vd(0.1))), false);
    check("d 0.0 vs d -0.0", TBL(E("k", vd(0.0))), TBL(E("k", vd(-0.0))), true);
    check("d 2.5 vs d 2.5", TBL(E("k", vd(2.5))), TBL(E("k", vd(2.5))), true);
    check("d 2.5 vs S \"2.5\"", TBL(E("k", vd(2.5))), TBL(E("k", vS("2.5"))), false);
}

static void test_other_types(void) {
    check("S vs x with the same bytes", TBL(E("k", vS("v"))), TBL(E("k", vx("v"))), true);
    check("x vs S with the same bytes", TBL(E("k", vx("v"))), TBL(E("k", vS("v"))), true);
    check("S vs S differing", TBL(E("k", vS("v"))), TBL(E("k", vS("w"))), false);
    check("S \"1\" vs I 1", TBL(E("k", vS("1"))), TBL(E("k", vI(1))), false);
    check("S \"\" vs S \"\"", TBL(E("k", vS(""))), TBL(E("k", vS(""))), true);
    check("t true vs I 1", TBL(E("k", vt(true))), TBL(E("k", vI(1))), false);
    check("t false vs t false", TBL(E("k", vt(false))), TBL(E("k", vt(false))), true);
    check("t true vs t false", TBL(E("k", vt(true))), TBL(E("k", vt(false))), false);
    check("D {2,100} vs D {1,10} (not the same term)", TBL(E("k", vD(2, 100))),
          TBL(E("k", vD(1, 10))), false);
    check("D {2,100} vs D {2,100}", TBL(E("k", vD(2, 100))), TBL(E("k", vD(2, 100))), true);
    check("D {0,1} vs I 1", TBL(E("k", vD(0, 1))), TBL(E("k", vI(1))), false);
    /* A 't' octet of 2 is true, as RabbitMQ decodes it (Value /= 0). */
    static const uint8_t t2[] = {1, 'k', 't', 2};
    check("t true vs a 't' octet of 2", TBL(E("k", vt(true))), wn_bytes(t2, sizeof t2), true);
}

static void test_nested(void) {
    wn_bytes_t a_i1 = TBL(E("a", vI(1)));
    check("F {a: I 1} vs the same", TBL(E("k", vF(a_i1))), TBL(E("k", vF(TBL(E("a", vI(1)))))),
          true);
    check("F {a: I 1} vs F {a: l 1} (nested types count)", TBL(E("k", vF(a_i1))),
          TBL(E("k", vF(TBL(E("a", vl(1)))))), false);
    check("F {a, b} vs F {b, a} (order counts)", TBL(E("k", vF(TBL(E("a", vI(1)), E("b", vI(2)))))),
          TBL(E("k", vF(TBL(E("b", vI(2)), E("a", vI(1)))))), false);
    check("F {} vs A [] (both are [])", TBL(E("k", vF(EMPTY))), TBL(E("k", vA(EMPTY))), true);
    check("F {} vs F {}", TBL(E("k", vF(EMPTY))), TBL(E("k", vF(EMPTY))), true);
    check("F {} vs S \"\"", TBL(E("k", vF(EMPTY))), TBL(E("k", vS(""))), false);
    check("F {a: I 1} vs A [I 1]", TBL(E("k", vF(a_i1))), TBL(E("k", vA(ARR(A_(vI(1)))))), false);
    check("A [I 1] vs A [l 1]", TBL(E("k", vA(ARR(A_(vI(1)))))), TBL(E("k", vA(ARR(A_(vl(1)))))),
          false);
    check("A [S] vs A [x]", TBL(E("k", vA(ARR(A_(vS("v")))))), TBL(E("k", vA(ARR(A_(vx("v")))))),
          false);
    check("A [I 1, S a] vs the same", TBL(E("k", vA(ARR(A_(vI(1)), A_(vS("a")))))),
          TBL(E("k", vA(ARR(A_(vI(1)), A_(vS("a")))))), true);
    check("A [I 1] vs A [I 1, I 1]", TBL(E("k", vA(ARR(A_(vI(1)))))),
          TBL(E("k", vA(ARR(A_(vI(1)), A_(vI(1)))))), false);
    check("F {a: d 0.0} vs F {a: d -0.0}", TBL(E("k", vF(TBL(E("a", vd(0.0)))))),
          TBL(E("k", vF(TBL(E("a", vd(-0.0)))))), true);
    wn_bytes_t inner_t = TBL(E("b", vA(ARR(A_(vt(true)))))),
               inner_f = TBL(E("b", vA(ARR(A_(vt(false))))));
    wn_bytes_t deep_t = TBL(E("k", vF(TBL(E("a", vF(inner_t)))))),
               deep_t2 = TBL(E("k", vF(TBL(E("a", vF(inner_t)))))),
               deep_f = TBL(E("k", vF(TBL(E("a", vF(inner_f))))));
    check("F {a: F {b: A [t]}} vs the same", deep_t, deep_t2, true);
    check("F {a: F {b: A [t]}} vs F {a: F {b: A [f]}}", deep_t, deep_f, false);
}

/* 40 levels of nesting: past the recursion limit, still compared exactly. */
static void test_deep_nesting(void) {
    wn_value_t a = vI(1), b = vI(1), c = vI(2);
    for (int i = 0; i < 40; i++) {
        a = vF(TBL(E("n", a)));
        b = vF(TBL(E("n", b)));
        c = vF(TBL(E("n", c)));
    }
    check("40 nested tables, equal", TBL(E("k", a)), TBL(E("k", b)), true);
    check("40 nested tables, innermost differs", TBL(E("k", a)), TBL(E("k", c)), false);
}

/* RabbitMQ walks both tables sorted by key and steps past each header it has
 * compared: the nth argument named k meets the nth header named k. */
static void test_repeated_keys(void) {
    wn_bytes_t ab = TBL(E("k", vS("a")), E("k", vS("b")));
    check("repeated header: the first counts", TBL(E("k", vS("a"))), ab, true);
    check("repeated header: the second does not", TBL(E("k", vS("b"))), ab, false);
    check("repeated argument and header, in order", ab, ab, true);
    check("repeated argument and header, out of order", ab, TBL(E("k", vS("b")), E("k", vS("a"))),
          false);
    check("any, repeated argument, one header (pairs with the first)",
          TBL(E("x-match", vS("any")), E("k", vS("a")), E("k", vS("b"))), TBL(E("k", vS("b"))),
          false);
    check("any, repeated argument, first pairs",
          TBL(E("x-match", vS("any")), E("k", vS("a")), E("k", vS("b"))), TBL(E("k", vS("a"))),
          true);
}

static void test_keys(void) {
    static const uint8_t nul_key[] = {3, 'k', 0, 'z', 'I', 0, 0, 0, 1};
    static const uint8_t other_key[] = {3, 'k', 0, 'y', 'I', 0, 0, 0, 1};
    wn_bytes_t nul = wn_bytes(nul_key, sizeof nul_key);
    check("a key with a NUL byte", nul, nul, true);
    check("keys differing after a NUL byte", nul, wn_bytes(other_key, sizeof other_key), false);
    check("the empty key", TBL(E("", vI(1))), TBL(E("", vI(1))), true);
    check("keys are case-sensitive", TBL(E("K", vI(1))), TBL(E("k", vI(1))), false);
}

/* ---- the x-match check ------------------------------------------------------------------ */

static void bad_x_match(wn_value_t xm, const char *want) {
    char err[256];
    memset(err, 'Z', sizeof err);
    int rc = headers_check_binding_args(TBL(E("a", vI(1)), E("x-match", xm)), err, sizeof err);
    ok(rc == -1 && strcmp(err, want) == 0, "rejected with: %s", want);
    if (rc != -1 || strcmp(err, want) != 0) diag("got: %s", err);
}

#define WANT_VALUE(v)                                                                              \
    "Invalid x-match field value " v "; expected all, any, all-with-x, or any-with-x"
#define WANT_TYPE(t, v) "Invalid x-match field type " t " (value " v "); expected longstr"

static void test_check_args(void) {
    char err[256] = "untouched";
    const char *good[] = {"all", "any", "all-with-x", "any-with-x"};
    for (int i = 0; i < 4; i++)
        ok(headers_check_binding_args(TBL(E("x-match", vS(good[i])), E("a", vV())), err,
                                      sizeof err) == 0,
           "x-match %s is accepted", good[i]);
    ok(headers_check_binding_args(TBL(E("a", vI(1))), err, sizeof err) == 0,
       "no x-match: accepted");
    ok(headers_check_binding_args(EMPTY, err, sizeof err) == 0, "empty arguments: accepted");
    ok(headers_check_binding_args(NONE, err, sizeof err) == 0, "NULL arguments: accepted");
    ok(headers_check_binding_args(TBL(E("x-match", vS("any")), E("x-match", vS("foo"))), err,
                                  sizeof err) == 0,
       "only the first x-match is checked");
    ok(strcmp(err, "untouched") == 0, "err is left alone when the arguments are good");

    /* Each text below is what RabbitMQ 3.10 sent for the same argument. */
    bad_x_match(vS("foo"), WANT_VALUE("<<\"foo\">>"));
    bad_x_match(vS("ANY"), WANT_VALUE("<<\"ANY\">>"));
    bad_x_match(vS(""), WANT_VALUE("<<>>"));
    bad_x_match(vS("a\"b\\c"), WANT_VALUE("<<\"a\\\"b\\\\c\">>"));
    bad_x_match(vS("a\nb\tc"), WANT_VALUE("<<\"a\\nb\\tc\">>"));
    bad_x_match(vS("\xe9"), WANT_VALUE("<<\"\xe9\">>"));
    bad_x_match(vS("\x80\x81"), WANT_VALUE("<<128,129>>"));
    bad_x_match(vS("\x1b\x07"), WANT_VALUE("<<27,7>>"));
    bad_x_match(vS("\x7f"), WANT_VALUE("<<127>>"));
    bad_x_match(vI(1), WANT_TYPE("signedint", "1"));
    bad_x_match(vl(-5), WANT_TYPE("long", "-5"));
    bad_x_match(vu(7), WANT_TYPE("unsignedshort", "7"));
    bad_x_match(vT(1700000000), WANT_TYPE("timestamp", "1700000000"));
    bad_x_match(vx("any"), WANT_TYPE("binary", "<<\"any\">>"));
    bad_x_match(vt(true), WANT_TYPE("bool", "true"));
    bad_x_match(vt(false), WANT_TYPE("bool", "false"));
    bad_x_match(vV(), WANT_TYPE("void", "undefined"));
    bad_x_match(vD(2, 100), WANT_TYPE("decimal", "{2,100}"));
    bad_x_match(vd(1.5), WANT_TYPE("double", "1.5"));
    bad_x_match(vd(1.0), WANT_TYPE("double", "1.0"));
    bad_x_match(vd(1e20), WANT_TYPE("double", "1.0e20"));
    bad_x_match(vd(1e15), WANT_TYPE("double", "1.0e15"));
    bad_x_match(vd(0.1), WANT_TYPE("double", "0.1"));
    bad_x_match(vd(0.001), WANT_TYPE("double", "0.001"));
    bad_x_match(vd(0.0001), WANT_TYPE("double", "0.0001"));
    bad_x_match(vd(-2.5e-7), WANT_TYPE("double", "-2.5e-7"));
    bad_x_match(vd(123456789012.0), WANT_TYPE("double", "123456789012.0"));
    bad_x_match(vf(0.1f), WANT_TYPE("float", "0.10000000149011612"));
    bad_x_match(vF(TBL(E("a", vI(1)))), WANT_TYPE("table", "[{<<\"a\">>,signedint,1}]"));
    bad_x_match(vF(TBL(E("a", vF(TBL(E("b", vt(false))))))),
                WANT_TYPE("table", "[{<<\"a\">>,table,[{<<\"b\">>,bool,false}]}]"));
    /* RabbitMQ breaks long terms over lines (~p); this one fits on one. */
    bad_x_match(vA(ARR(A_(vI(1)), A_(vS("x")))),
                WANT_TYPE("array", "[{signedint,1},{longstr,<<\"x\">>}]"));
}

static void test_check_args_truncates(void) {
    char err[16];
    memset(err, 'Z', sizeof err);
    int rc = headers_check_binding_args(TBL(E("x-match", vS("foo"))), err, sizeof err);
    ok(rc == -1 && strlen(err) == sizeof err - 1 && strncmp(err, "Invalid x-match", 15) == 0,
       "a short buffer gets the start of the text, NUL-terminated");
    ok(headers_check_binding_args(TBL(E("x-match", vS("foo"))), NULL, 0) == -1,
       "no buffer at all: still -1");
    char big[4096];
    wn_value_t deep = vI(1);
    for (int i = 0; i < 200; i++)
        deep = vA(ARR(A_(deep)));
    rc = headers_check_binding_args(TBL(E("x-match", deep)), big, 64);
    ok(rc == -1 && strlen(big) == 63, "a deeply nested value is cut at the buffer's end");
}

int main(void) {
    test_all();
    test_any();
    test_x_arguments();
    test_invalid_mode_routes_as_all();
    test_void();
    test_integer_types();
    test_float_types();
    test_other_types();
    test_nested();
    test_deep_nesting();
    test_repeated_keys();
    test_keys();
    test_check_args();
    test_check_args_truncates();
    return tap_done();
}
