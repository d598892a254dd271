/*
 * exchange_direct.c - the direct exchange type: a hash from routing key to
 * the bindings with exactly that key, so routing costs one lookup however
 * many bindings there are.
 */
#include "exchange.h"

#include <stdlib.h>

typedef struct direct_bucket {
    binding_t *bindings; /* chained through type_next */
    UT_hash_handle hh;   /* keyed by the first binding's key bytes */
} direct_bucket_t;

typedef struct direct_index {
    direct_bucket_t *buckets;
} direct_index_t;

static int direct_init(exchange_t *x) {
    x->index = calloc(1, sizeof(direct_index_t));
    return x->index ? 0 : -1;
}

static direct_bucket_t *direct_find(direct_index_t *ix, wn_bytes_t key) {
    direct_bucket_t *bk = NULL;
    HASH_FIND(hh, ix->buckets, key.len ? key.ptr : (const uint8_t *)"", key.len, bk);
    return bk;
}

static void direct_add(exchange_t *x, binding_t *b) {
    direct_index_t *ix = x->index;
    direct_bucket_t *bk = direct_find(ix, b->key);
    if (!bk) {
        bk = calloc(1, sizeof *bk);
        if (!bk) return;
        bk->bindings = b;
        b->type_next = NULL;
        /* The key lives in the binding; a bucket is re-keyed if that binding goes. */
        HASH_ADD_KEYPTR(hh, ix->buckets, b->key.len ? b->key.ptr : (const uint8_t *)"", b->key.len,
                        bk);
        return;
    }
    b->type_next = bk->bindings->type_next;
    bk->bindings->type_next = b;
}

static void direct_remove(exchange_t *x, binding_t *b) {
    direct_index_t *ix = x->index;
    direct_bucket_t *bk = direct_find(ix, b->key);
    if (!bk) return;
    if (bk->bindings != b) {
        binding_t *p = bk->bindings;
        while (p->type_next && p->type_next != b)
            p = p->type_next;
        if (p->type_next == b) p->type_next = b->type_next;
        return;
    }
    /* The bucket's hash key points into b: re-insert under the next binding. */
    HASH_DELETE(hh, ix->buckets, bk);
    bk->bindings = b->type_next;
    if (!bk->bindings) {
        free(bk);
        return;
    }
    HASH_ADD_KEYPTR(hh, ix->buckets,
                    bk->bindings->key.len ? bk->bindings->key.ptr : (const uint8_t *)"",
                    bk->bindings->key.len, bk);
}

static void direct_route(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    direct_bucket_t *bk = direct_find(x->index, msg->routing_key);
    if (!bk) return;
    for (binding_t *b = bk->bindings; b; b = b->type_next)
        route_ctx_add(ctx, b);
}

static void direct_destroy(exchange_t *x) {
    direct_index_t *ix = x->index;
    direct_bucket_t *bk, *tmp;
    HASH_ITER(hh, ix->buckets, bk, tmp) {
        HASH_DELETE(hh, ix->buckets, bk);
        free(bk);
    }
    free(ix);
}

static int no_arg_check(wn_bytes_t args, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    return 0;
}

const exchange_ops_t exchange_direct_ops = {
    .name = "direct",
    .check_args = no_arg_check,
    .init = direct_init,
    .destroy = direct_destroy,
    .add = direct_add,
    .remove = direct_remove,
    .route = direct_route,
};
