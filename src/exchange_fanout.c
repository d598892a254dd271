/*
 * exchange_fanout.c - the fanout exchange type: every binding matches, so
 * the exchange's own list of bindings is the whole index.
 */
#include "exchange.h"

static int fanout_init(exchange_t *x) {
    (void)x;
    return 0;
}
static void fanout_destroy(exchange_t *x) {
    (void)x;
}
static void fanout_add(exchange_t *x, binding_t *b) {
    (void)x;
    (void)b;
}
static void fanout_remove(exchange_t *x, binding_t *b) {
    (void)x;
    (void)b;
}
static int fanout_check_args(wn_bytes_t args, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    return 0;
}

static void fanout_route(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    (void)msg;
    for (binding_t *b = x->bindings; b; b = b->src_next)
        route_ctx_add(ctx, b);
}

const exchange_ops_t exchange_fanout_ops = {
    .name = "fanout",
    .check_args = fanout_check_args,
    .init = fanout_init,
    .destroy = fanout_destroy,
    .add = fanout_add,
    .remove = fanout_remove,
    .route = fanout_route,
};
