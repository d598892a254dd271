/*
 * headers_match.c - the headers exchange's matching rule and its check of a
 * binding's x-match, both as RabbitMQ 3.x's rabbit_exchange_type_headers has
 * them (checked against RabbitMQ 3.10; docs/routing.md lists every rule and
 * where RabbitMQ 3.13+ differs).
 *
 * RabbitMQ decodes a field table into {Key, Type, Value} triples and compares
 * a binding argument with a header by Value alone, with Erlang's ==: so an
 * 'I' 1 equals an 'l' 1 and even a 'd' 1.0, a longstr equals the same bytes
 * sent as 'x', and an empty table equals an empty array. Nested tables and
 * arrays keep their types inside the Value, so they compare type by type.
 * The rules below reproduce that on the wire form, without decoding.
 *
 * The error texts print the offending value as an Erlang term (~p), so this
 * file ends with a small printer of field values in Erlang's syntax.
 */
#include "headers_match.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

typedef enum headers_mode {
    HEADERS_ALL,
    HEADERS_ANY,
    HEADERS_ALL_WITH_X,
    HEADERS_ANY_WITH_X,
    HEADERS_INVALID,
} headers_mode_t;

/* The nth (from 0) entry named `key`, in table order. */
static bool headers_find(wn_bytes_t table, wn_bytes_t key, size_t nth, wn_value_t *out) {
    wn_table_iter_t it;
    wn_bytes_t k;
    wn_table_iter_init(&it, table);
    while (wn_table_next(&it, &k, out))
        if (wn_bytes_eq(k, key) && nth-- == 0) return true;
    return false;
}

static headers_mode_t headers_parse_mode(const wn_value_t *xm) {
    if (xm->type != WN_FIELD_LONGSTR) return HEADERS_INVALID;
    if (wn_bytes_eq_cstr(xm->v.bytes, "all")) return HEADERS_ALL;
    if (wn_bytes_eq_cstr(xm->v.bytes, "any")) return HEADERS_ANY;
    if (wn_bytes_eq_cstr(xm->v.bytes, "all-with-x")) return HEADERS_ALL_WITH_X;
    if (wn_bytes_eq_cstr(xm->v.bytes, "any-with-x")) return HEADERS_ANY_WITH_X;
    return HEADERS_INVALID;
}

/* The first x-match decides. Absent means all; so does an invalid one, which
 * only a binding made before RabbitMQ validated x-match could carry. */
static headers_mode_t headers_mode(wn_bytes_t args) {
    wn_value_t xm;
    if (!headers_find(args, WN_BYTES_LIT("x-match"), 0, &xm)) return HEADERS_ALL;
    headers_mode_t mode = headers_parse_mode(&xm);
    return mode == HEADERS_INVALID ? HEADERS_ALL : mode;
}

/* ---- value equality, as Erlang's == on decoded values ---------------------- */

/* A number as Erlang holds it: an exact integer, or a double. */
typedef struct headers_num {
    bool is_float;
    bool neg; /* integers: sign and magnitude, as a timestamp may exceed INT64_MAX */
    uint64_t mag;
    double f;
} headers_num_t;

static bool headers_as_num(const wn_value_t *v, headers_num_t *n) {
    int64_t i;
    *n = (headers_num_t){0};
    switch (v->type) {
    case WN_FIELD_FLOAT:
        n->is_float = true;
        n->f = v->v.f32; /* exact: Erlang decodes a 32-bit float to a double too */
        return true;
    case WN_FIELD_DOUBLE:
        n->is_float = true;
        n->f = v->v.f64;
        return true;
    case WN_FIELD_TIMESTAMP:
    case WN_FIELD_U64:
        n->mag = v->v.u64;
        return true;
    default:
        if (!wn_value_as_int(v, &i)) return false;
        n->neg = i < 0;
        n->mag = i < 0 ? 0 - (uint64_t)i : (uint64_t)i;
        return true;
    }
}

/* Erlang's 1 == 1.0: an integer equals a double of exactly its value. */
static bool headers_int_equals_double(const headers_num_t *i, double d) {
    if (d != d) return false; /* NaN */
    if ((d < 0) != i->neg) return false;
    double ad = d < 0 ? -d : d;
    if (!(ad < 18446744073709551616.0)) return false; /* 2^64, or infinite */
    uint64_t u = (uint64_t)ad;
    return (double)u == ad && u == i->mag; /* integral, and the same integer */
}

static bool headers_num_equal(const headers_num_t *a, const headers_num_t *b) {
    if (a->is_float && b->is_float) return a->f == b->f; /* so 0.0 == -0.0, as in Erlang */
    if (a->is_float) return headers_int_equals_double(b, a->f);
    if (b->is_float) return headers_int_equals_double(a, b->f);
    return a->neg == b->neg && a->mag == b->mag;
}

static bool headers_is_binary(uint8_t type) {
    return type == WN_FIELD_LONGSTR || type == WN_FIELD_BYTES;
}

static bool headers_is_list(uint8_t type) {
    return type == WN_FIELD_TABLE || type == WN_FIELD_ARRAY;
}

/* Past this depth nested values compare by wn_value_equal, which needs no C
 * stack but takes 0.0 and -0.0 as different; no real binding nests so deep. */
#define HEADERS_MAX_DEPTH 32

static bool headers_nested_equal(const wn_value_t *a, const wn_value_t *b, int depth);

/* Two table or array bodies, element by element. Inside them Erlang keeps
 * each element's type, so types must be equal, and values compare with ==. */
static bool headers_bodies_equal(wn_bytes_t a, wn_bytes_t b, bool is_array, int depth) {
    wn_table_iter_t ia, ib;
    wn_bytes_t ka = {0}, kb = {0};
    wn_value_t va, vb;
    if (is_array) {
        wn_array_iter_init(&ia, a);
        wn_array_iter_init(&ib, b);
    } else {
        wn_table_iter_init(&ia, a);
        wn_table_iter_init(&ib, b);
    }
    for (;;) {
        bool more_a = is_array ? wn_array_next(&ia, &va) : wn_table_next(&ia, &ka, &va);
        bool more_b = is_array ? wn_array_next(&ib, &vb) : wn_table_next(&ib, &kb, &vb);
        if (!more_a || !more_b) return more_a == more_b;
        if (!wn_bytes_eq(ka, kb) || !headers_nested_equal(&va, &vb, depth)) return false;
    }
}

static bool headers_nested_equal(const wn_value_t *a, const wn_value_t *b, int depth) {
    if (a->type != b->type) return false;
    if (a->type == WN_FIELD_FLOAT) return a->v.f32 == b->v.f32; /* 0.0 == -0.0 */
    if (a->type == WN_FIELD_DOUBLE) return a->v.f64 == b->v.f64;
    if (!headers_is_list(a->type) || depth >= HEADERS_MAX_DEPTH) return wn_value_equal(a, b);
    return headers_bodies_equal(a->v.bytes, b->v.bytes, a->type == WN_FIELD_ARRAY, depth + 1);
}

static bool headers_values_equal(const wn_value_t *a, const wn_value_t *b) {
    headers_num_t na, nb;
    if (headers_as_num(a, &na) && headers_as_num(b, &nb)) return headers_num_equal(&na, &nb);
    if (headers_is_binary(a->type) && headers_is_binary(b->type))
        return wn_bytes_eq(a->v.bytes, b->v.bytes);
    /* Both decode to Erlang lists; the empty ones are the same term, []. */
    if (headers_is_list(a->type) && headers_is_list(b->type) && a->v.bytes.len == 0 &&
        b->v.bytes.len == 0)
        return true;
    /* What is left compares type and value: bool, decimal ({Scale, Value}),
     * void, and non-empty tables and arrays. */
    return headers_nested_equal(a, b, 0);
}

/* ---- matching --------------------------------------------------------------- */

static bool headers_is_x_key(wn_bytes_t key) {
    return key.len >= 2 && key.ptr[0] == 'x' && key.ptr[1] == '-';
}

/* x-match itself never takes part; other x- arguments only in the
 * -with-x modes (RabbitMQ 3.10+). */
static bool headers_skipped(wn_bytes_t key, bool with_x) {
    return wn_bytes_eq_cstr(key, "x-match") || (!with_x && headers_is_x_key(key));
}

/* How many arguments before the one whose key is at `key.ptr` share its key. */
static size_t headers_rank(wn_bytes_t args, wn_bytes_t key) {
    wn_table_iter_t it;
    wn_bytes_t k;
    wn_value_t v;
    size_t rank = 0;
    wn_table_iter_init(&it, args);
    while (wn_table_next(&it, &k, &v) && k.ptr != key.ptr)
        if (wn_bytes_eq(k, key)) rank++;
    return rank;
}

/* RabbitMQ walks both tables sorted by key (a stable sort) and steps past a
 * header whenever it has compared it: so with repeated keys, the nth argument
 * named k meets the nth header named k, and without repeats, the first. */
static bool headers_arg_matches(wn_bytes_t args, wn_bytes_t key, const wn_value_t *want,
                                wn_bytes_t headers) {
    wn_value_t have;
    if (!headers_find(headers, key, headers_rank(args, key), &have)) return false;
    return want->type == WN_FIELD_VOID || headers_values_equal(want, &have);
}

bool headers_match(wn_bytes_t args, wn_bytes_t headers) {
    headers_mode_t mode = headers_mode(args);
    bool any = mode == HEADERS_ANY || mode == HEADERS_ANY_WITH_X;
    bool with_x = mode == HEADERS_ALL_WITH_X || mode == HEADERS_ANY_WITH_X;
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t want;
    wn_table_iter_init(&it, args);
    while (wn_table_next(&it, &key, &want)) {
        if (headers_skipped(key, with_x)) continue;
        bool matched = headers_arg_matches(args, key, &want, headers);
        if (any && matched) return true;
        if (!any && !matched) return false;
    }
    return !any; /* all of none is true; any of none is false */
}

/* ---- x-match check and its error texts ------------------------------------- */

/* A bounded output buffer: text past its end is dropped, never overrun. */
typedef struct headers_out {
    char *buf;
    size_t cap, len;
} headers_out_t;

static bool headers_out_full(const headers_out_t *o) {
    return o->len + 1 >= o->cap;
}

static void headers_put(headers_out_t *o, const char *s, size_t n) {
    if (headers_out_full(o)) return;
    size_t room = o->cap - 1 - o->len;
    if (n > room) n = room;
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void headers_puts(headers_out_t *o, const char *s) {
    headers_put(o, s, strlen(s));
}

/* The escape ~p writes for a printable control character, or NULL. */
static const char *headers_escape(uint8_t c) {
    switch (c) {
    case '\b':
        return "\\b";
    case '\t':
        return "\\t";
    case '\n':
        return "\\n";
    case '\v':
        return "\\v";
    case '\f':
        return "\\f";
    case '\r':
        return "\\r";
    case 27:
        return "\\e";
    case '"':
        return "\\\"";
    case '\\':
        return "\\\\";
    default:
        return NULL;
    }
}

/* Printable in Erlang's default (latin1) sense: such a binary prints as
 * <<"text">>, any other as <<1,2,3>>. */
static bool headers_printable(wn_bytes_t b) {
    for (uint32_t i = 0; i < b.len; i++) {
        uint8_t c = b.ptr[i];
        if (!((c >= 32 && c <= 126) || c >= 160 || headers_escape(c))) return false;
    }
    return true;
}

static void headers_term_binary(headers_out_t *o, wn_bytes_t b) {
    char num[8];
    headers_puts(o, "<<");
    if (b.len && headers_printable(b)) {
        headers_puts(o, "\"");
        for (uint32_t i = 0; i < b.len && !headers_out_full(o); i++) {
            const char *esc = headers_escape(b.ptr[i]);
            if (esc)
                headers_puts(o, esc);
            else
                headers_put(o, (const char *)b.ptr + i, 1);
        }
        headers_puts(o, "\"");
    } else {
        for (uint32_t i = 0; i < b.len && !headers_out_full(o); i++) {
            snprintf(num, sizeof num, "%s%u", i ? "," : "", b.ptr[i]);
            headers_puts(o, num);
        }
    }
    headers_puts(o, ">>");
}

static void headers_put_zeros(headers_out_t *o, int n) {
    for (; n > 0; n--)
        headers_puts(o, "0");
}

/* A double as Erlang prints it: the shortest digits that read back the same,
 * placed as io_lib_format:fwrite_g places them ("1.0", "0.001", "1.0e20"):
 * plainly unless an exponent is shorter. */
static void headers_term_float(headers_out_t *o, double d) {
    char sci[40], digits[24], exp[8];
    if (d != d || d - d != 0) { /* NaN and infinities have no Erlang form */
        headers_puts(o, d != d ? "nan" : (d < 0 ? "-inf" : "inf"));
        return;
    }
    for (int prec = 0; prec <= 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, d);
        if (strtod(sci, NULL) == d) break;
    }
    const char *p = sci + (sci[0] == '-');
    int len = 0;
    for (; *p != 'e'; p++)
        if (*p != '.') digits[len++] = *p;
    digits[len] = '\0';
    int place = atoi(p + 1) + 1; /* where the point goes in digits */
    snprintf(exp, sizeof exp, "%d", place - 1);
    int exp_cost = (int)strlen(exp) + 1 + (len == 1 ? 2 : 1);
    if (sci[0] == '-') headers_puts(o, "-");
    if (place <= 0 && (place == 0 || 2 - place <= exp_cost)) {
        headers_puts(o, "0.");
        headers_put_zeros(o, -place);
        headers_puts(o, digits);
    } else if (place > 0 && place < len) {
        headers_put(o, digits, (size_t)place);
        headers_puts(o, ".");
        headers_puts(o, digits + place);
    } else if (place >= len && place - len + 2 <= exp_cost) {
        headers_puts(o, digits);
        headers_put_zeros(o, place - len);
        headers_puts(o, ".0");
    } else {
        headers_put(o, digits, 1);
        headers_puts(o, ".");
        headers_puts(o, len == 1 ? "0" : digits + 1);
        headers_puts(o, "e");
        headers_puts(o, exp);
    }
}

static void headers_term(headers_out_t *o, const wn_value_t *v);

/* A table as [{<<"key">>,type,value},...], an array as [{type,value},...]. */
static void headers_term_list(headers_out_t *o, wn_bytes_t body, bool is_array) {
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t v;
    bool first = true;
    headers_puts(o, "[");
    if (is_array)
        wn_array_iter_init(&it, body);
    else
        wn_table_iter_init(&it, body);
    /* Stopping once the buffer is full also bounds the recursion depth. */
    while (!headers_out_full(o) &&
           (is_array ? wn_array_next(&it, &v) : wn_table_next(&it, &key, &v))) {
        headers_puts(o, first ? "{" : ",{");
        first = false;
        if (!is_array) {
            headers_term_binary(o, key);
            headers_puts(o, ",");
        }
        headers_puts(o, wn_field_type_name(v.type));
        headers_puts(o, ",");
        headers_term(o, &v);
        headers_puts(o, "}");
    }
    headers_puts(o, "]");
}

static void headers_term(headers_out_t *o, const wn_value_t *v) {
    char num[48];
    int64_t i;
    num[0] = '\0';
    switch (v->type) {
    case WN_FIELD_BOOL:
        headers_puts(o, v->v.b ? "true" : "false");
        return;
    case WN_FIELD_FLOAT:
        headers_term_float(o, v->v.f32);
        return;
    case WN_FIELD_DOUBLE:
        headers_term_float(o, v->v.f64);
        return;
    case WN_FIELD_LONGSTR:
    case WN_FIELD_BYTES:
        headers_term_binary(o, v->v.bytes);
        return;
    case WN_FIELD_TABLE:
    case WN_FIELD_ARRAY:
        headers_term_list(o, v->v.bytes, v->type == WN_FIELD_ARRAY);
        return;
    case WN_FIELD_VOID:
        headers_puts(o, "undefined");
        return;
    case WN_FIELD_TIMESTAMP:
    case WN_FIELD_U64:
        snprintf(num, sizeof num, "%" PRIu64, v->v.u64);
        break;
    case WN_FIELD_DECIMAL:
        snprintf(num, sizeof num, "{%u,%" PRIu32 "}", v->v.decimal.scale, v->v.decimal.value);
        break;
    default:
        if (wn_value_as_int(v, &i)) snprintf(num, sizeof num, "%" PRId64, i);
        break;
    }
    headers_puts(o, num);
}

int headers_check_binding_args(wn_bytes_t args, char *err, size_t errlen) {
    wn_value_t xm;
    if (!headers_find(args, WN_BYTES_LIT("x-match"), 0, &xm)) return 0;
    if (headers_parse_mode(&xm) != HEADERS_INVALID) return 0;
    headers_out_t o = {err, errlen, 0};
    if (errlen) err[0] = '\0';
    if (xm.type == WN_FIELD_LONGSTR) {
        headers_puts(&o, "Invalid x-match field value ");
        headers_term(&o, &xm);
        headers_puts(&o, "; expected all, any, all-with-x, or any-with-x");
    } else {
        headers_puts(&o, "Invalid x-match field type ");
        headers_puts(&o, wn_field_type_name(xm.type));
        headers_puts(&o, " (value ");
        headers_term(&o, &xm);
        headers_puts(&o, "); expected longstr");
    }
    return -1;
}
