/*
 * headers_match.c - INTERIM headers-exchange matching (x-match all/any),
 * so the broker builds until the full matcher lands.
 */
#include "headers_match.h"
#include "table.h"

#include <stdio.h>
#include <string.h>

bool headers_match(wn_bytes_t args, wn_bytes_t headers) {
    wn_value_t xm, v, h;
    wn_bytes_t key;
    wn_table_iter_t it;
    bool any = wn_table_get(args, "x-match", &xm) && xm.type == WN_FIELD_LONGSTR &&
               xm.v.bytes.len >= 3 && memcmp(xm.v.bytes.ptr, "any", 3) == 0;
    wn_table_iter_init(&it, args);
    while (wn_table_next(&it, &key, &v)) {
        if (key.len >= 2 && memcmp(key.ptr, "x-", 2) == 0) continue;
        char k[256];
        snprintf(k, sizeof k, "%.*s", (int)key.len, (const char *)key.ptr);
        bool ok =
            wn_table_get(headers, k, &h) && (v.type == WN_FIELD_VOID || wn_value_equal(&v, &h));
        if (any && ok) return true;
        if (!any && !ok) return false;
    }
    return !any;
}

int headers_check_binding_args(wn_bytes_t args, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    return 0;
}
