/*
 * exchange_topic.c - the topic exchange type, on the word trie of
 * topic_trie.c: routing cost depends on the key and on what matches, not on
 * how many bindings the exchange has.
 */
#include "exchange.h"
#include "topic_trie.h"

static int topic_init(exchange_t *x) {
    x->index = topic_trie_new();
    return x->index ? 0 : -1;
}
static void topic_destroy(exchange_t *x) {
    topic_trie_free(x->index);
}

static void topic_add(exchange_t *x, binding_t *b) {
    topic_trie_add(x->index, b->key.ptr, b->key.len, b);
}
static void topic_remove(exchange_t *x, binding_t *b) {
    topic_trie_remove(x->index, b->key.ptr, b->key.len, b);
}

static void topic_visit(void *value, void *ctx) {
    route_ctx_add(ctx, value);
}

static void topic_route(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    topic_trie_match(x->index, msg->routing_key.ptr, msg->routing_key.len, topic_visit, ctx);
}

static int topic_check_args(wn_bytes_t args, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    return 0;
}

const exchange_ops_t exchange_topic_ops = {
    .name = "topic",
    .check_args = topic_check_args,
    .init = topic_init,
    .destroy = topic_destroy,
    .add = topic_add,
    .remove = topic_remove,
    .route = topic_route,
};
