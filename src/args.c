/*
 * args.c - argument equivalence and its error texts, after RabbitMQ's
 * rabbit_misc:assert_args_equivalence.
 */
#include "args.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

const char *args_type_name(uint8_t type) {
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

void args_describe(const wn_value_t *v, char *out, size_t len) {
    int64_t i;
    const char *t = args_type_name(v->type);
    if (wn_value_as_int(v, &i))
        snprintf(out, len, "the value '%" PRId64 "' of type '%s'", i, t);
    else if (v->type == WN_FIELD_LONGSTR || v->type == WN_FIELD_BYTES)
        snprintf(out, len, "the value '%.*s' of type '%s'", (int)v->v.bytes.len,
                 (const char *)v->v.bytes.ptr, t);
    else if (v->type == WN_FIELD_BOOL)
        snprintf(out, len, "the value '%s' of type '%s'", v->v.b ? "true" : "false", t);
    else
        snprintf(out, len, "a value of type '%s'", t);
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
        if (has_cur) args_describe(&cur, cs, sizeof cs);
        if (has_rec) args_describe(&rec, rs, sizeof rs);
        snprintf(err, errlen, "inequivalent arg '%s' for %s: received %s but current is %s", *keys,
                 what, rs, cs);
        return -1;
    }
    return 0;
}
