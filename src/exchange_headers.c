/*
 * exchange_headers.c - the headers exchange type: each binding's arguments
 * are matched against the message's headers table (headers_match.c).
 */
#include "exchange.h"
#include "headers_match.h"

static int headers_init(exchange_t *x) {
    (void)x;
    return 0;
}
static void headers_destroy(exchange_t *x) {
    (void)x;
}
static void headers_add(exchange_t *x, binding_t *b) {
    (void)x;
    (void)b;
}
static void headers_remove(exchange_t *x, binding_t *b) {
    (void)x;
    (void)b;
}

static void headers_route(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    for (binding_t *b = x->bindings; b; b = b->src_next)
        if (headers_match(b->args, msg->headers)) route_ctx_add(ctx, b);
}

const exchange_ops_t exchange_headers_ops = {
    .name = "headers",
    .check_args = headers_check_binding_args,
    .init = headers_init,
    .destroy = headers_destroy,
    .add = headers_add,
    .remove = headers_remove,
    .route = headers_route,
};
