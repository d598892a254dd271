/*
 * args.c - argument equivalence and its error texts, after RabbitMQ's
 * rabbit_misc:assert_args_equivalence.
 */
#include "args.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Integer types compare as one class; float and double as another. */
static int type_class(uint8_t type) {
    switch (type) {
    case WN_FIELD_I8:
    case WN_FIELD_U8:
    case WN_FIELD_I16:
    case WN_FIELD_U16:
    case WN_FIELD_I32:
    case WN_FIELD_U32:
    case WN_FIELD_I64:
        return 'I';
    case WN_FIELD_FLOAT:
    case WN_FIELD_DOUBLE:
        return 'f';
    default:
        return type;
    }
}

static bool values_equivalent(const wn_value_t *a, const wn_value_t *b) {
    int64_t x, y;
    if (type_class(a->type) != type_class(b->type)) return false;
    if (wn_value_as_int(a, &x) && wn_value_as_int(b, &y)) return x == y;
    if (type_class(a->type) == 'f') {
        double da = a->type == WN_FIELD_FLOAT ? a->v.f32 : a->v.f64;
        double db = b->type == WN_FIELD_FLOAT ? b->v.f32 : b->v.f64;
        return da == db;
    }
    return wn_value_equal(a, b);
}

/* The value alone, as Erlang prints it: strings raw, numbers and atoms as terms. */
static void value_text(const wn_value_t *v, char *out, size_t len) {
    int64_t i;
    if (wn_value_as_int(v, &i))
        snprintf(out, len, "%" PRId64, i);
    else if (v->type == WN_FIELD_LONGSTR || v->type == WN_FIELD_BYTES)
        snprintf(out, len, "%.*s", (int)v->v.bytes.len, (const char *)v->v.bytes.ptr);
    else if (v->type == WN_FIELD_BOOL)
        snprintf(out, len, "%s", v->v.b ? "true" : "false");
    else if (v->type == WN_FIELD_FLOAT)
        snprintf(out, len, "%g", (double)v->v.f32);
    else if (v->type == WN_FIELD_DOUBLE)
        snprintf(out, len, "%g", v->v.f64);
    else if (v->type == WN_FIELD_TIMESTAMP || v->type == WN_FIELD_U64)
        snprintf(out, len, "%" PRIu64, v->v.u64);
    else
        snprintf(out, len, "...");
}

void args_describe(const wn_value_t *v, char *out, size_t len) {
    char text[128];
    value_text(v, text, sizeof text);
    snprintf(out, len, "the value '%s' of type '%s'", text, wn_field_type_name(v->type));
}

int args_check_flag(const char *name, const char *what, bool received, bool current, char *err,
                    size_t errlen) {
    if (received == current) return 0;
    snprintf(err, errlen, "inequivalent arg '%s' for %s: received '%s' but current is '%s'", name,
             what, received ? "true" : "false", current ? "true" : "false");
    return -1;
}

int args_check_equivalent(wn_bytes_t current, wn_bytes_t received, const char *const *keys,
                          const char *what, char *err, size_t errlen) {
    for (; *keys; keys++) {
        wn_value_t cur, rec;
        bool has_cur = wn_table_get(current, *keys, &cur);
        bool has_rec = wn_table_get(received, *keys, &rec);
        char cs[160] = "none", rs[160] = "none";
        if (!has_cur && !has_rec) continue;
        if (has_cur && has_rec && values_equivalent(&cur, &rec)) continue;
        /* As RabbitMQ: two values are shown bare, a lone one with its type. */
        if (has_cur && has_rec) {
            char c[128], r[128];
            value_text(&cur, c, sizeof c);
            value_text(&rec, r, sizeof r);
            snprintf(cs, sizeof cs, "'%s'", c);
            snprintf(rs, sizeof rs, "'%s'", r);
        } else if (has_cur) {
            args_describe(&cur, cs, sizeof cs);
        } else {
            args_describe(&rec, rs, sizeof rs);
        }
        snprintf(err, errlen, "inequivalent arg '%s' for %s: received %s but current is %s", *keys,
                 what, rs, cs);
        return -1;
    }
    return 0;
}

/* ---- queue.declare arguments, as RabbitMQ 3.10 validates them ---------------- */

typedef enum {
    CHECK_TTL,
    CHECK_EXPIRES,
    CHECK_NON_NEG,
    CHECK_PRIORITY,
    CHECK_DLX,
    CHECK_DLRK,
    CHECK_OVERFLOW,
    CHECK_MODE,
    CHECK_BOOL,
    CHECK_TYPE
} queue_check_t;

static const struct {
    const char *key;
    queue_check_t check;
} queue_checks[] = {
    {"x-expires", CHECK_EXPIRES},
    {"x-message-ttl", CHECK_TTL},
    {"x-dead-letter-exchange", CHECK_DLX},
    {"x-dead-letter-routing-key", CHECK_DLRK},
    {"x-max-length", CHECK_NON_NEG},
    {"x-max-length-bytes", CHECK_NON_NEG},
    {"x-max-in-memory-length", CHECK_NON_NEG},
    {"x-max-in-memory-bytes", CHECK_NON_NEG},
    {"x-delivery-limit", CHECK_NON_NEG},
    {"x-max-priority", CHECK_PRIORITY},
    {"x-overflow", CHECK_OVERFLOW},
    {"x-queue-mode", CHECK_MODE},
    {"x-single-active-consumer", CHECK_BOOL},
    {"x-consumer-timeout", CHECK_NON_NEG},
    {"x-queue-type", CHECK_TYPE},
};

#define MAX_EXPIRY 315360000000LL /* RabbitMQ's longest TTL and x-expires: ten years, in ms */

static bool str_is(const wn_value_t *v, const char *s) {
    return v->type == WN_FIELD_LONGSTR && wn_bytes_eq_cstr(v->v.bytes, s);
}

/* The reason RabbitMQ gives, formatted as its ~p prints the error term; "" if valid. */
static void queue_arg_error(queue_check_t check, const wn_value_t *v, wn_bytes_t args, char *why,
                            size_t len) {
    int64_t i;
    bool is_int =
        v->type != WN_FIELD_U64 && v->type != WN_FIELD_TIMESTAMP && wn_value_as_int(v, &i);
    const char *type = wn_field_type_name(v->type);
    wn_value_t dlx;

    why[0] = '\0';
    switch (check) {
    case CHECK_TTL:
    case CHECK_EXPIRES:
    case CHECK_NON_NEG:
    case CHECK_PRIORITY:
        if (!is_int)
            snprintf(why, len, "\"expected integer, got %s\"", type);
        else if (i < 0)
            snprintf(why, len, "{value_negative,%" PRId64 "}", i);
        else if (check == CHECK_EXPIRES && i == 0)
            snprintf(why, len, "{value_zero,0}");
        else if ((check == CHECK_TTL || check == CHECK_EXPIRES) && i > MAX_EXPIRY)
            snprintf(why, len, "{value_too_large,%" PRId64 "}", i);
        else if (check == CHECK_PRIORITY && i > 255)
            snprintf(why, len, "{max_value_exceeded,%" PRId64 "}", i);
        break;
    case CHECK_DLX:
    case CHECK_DLRK:
    case CHECK_OVERFLOW:
    case CHECK_MODE:
    case CHECK_TYPE:
        if (v->type != WN_FIELD_LONGSTR)
            snprintf(why, len, "{unacceptable_type,%s}", type);
        else if (check == CHECK_DLRK && !wn_table_get(args, "x-dead-letter-exchange", &dlx))
            snprintf(why, len, "routing_key_but_no_dlx_defined");
        else if (check == CHECK_OVERFLOW && !str_is(v, "drop-head") &&
                 !str_is(v, "reject-publish") && !str_is(v, "reject-publish-dlx"))
            snprintf(why, len, "invalid_overflow");
        else if (check == CHECK_MODE && !str_is(v, "default") && !str_is(v, "lazy"))
            snprintf(why, len, "invalid_queue_mode");
        /* Quorum queues are served by Warren's one queue type; streams are not. */
        else if (check == CHECK_TYPE && !str_is(v, "classic") && !str_is(v, "quorum"))
            snprintf(why, len, "invalid_queue_type");
        break;
    case CHECK_BOOL:
        if (v->type != WN_FIELD_BOOL) snprintf(why, len, "{unacceptable_type,%s}", type);
        break;
    }
}

int args_check_queue(wn_bytes_t args, const char *what, char *err, size_t errlen) {
    for (size_t k = 0; k < sizeof queue_checks / sizeof queue_checks[0]; k++) {
        wn_value_t v;
        char why[160];
        if (!wn_table_get(args, queue_checks[k].key, &v)) continue;
        /* RabbitMQ checks the type of this one before its validator runs. */
        if (queue_checks[k].check == CHECK_DLX && v.type != WN_FIELD_LONGSTR) {
            snprintf(err, errlen, "invalid type '%s' for arg '%s' in %s",
                     wn_field_type_name(v.type), queue_checks[k].key, what);
            return -1;
        }
        queue_arg_error(queue_checks[k].check, &v, args, why, sizeof why);
        if (why[0] == '\0') continue;
        snprintf(err, errlen, "invalid arg '%s' for %s: %s", queue_checks[k].key, what, why);
        return -1;
    }
    return 0;
}
