/*
 * exchange.c - the exchange registry of a vhost, bindings, and the routing
 * walk (exchange-to-exchange bindings, alternate exchanges, CC/BCC keys).
 *
 * Owns exchange_t and binding_t. Reads queue_t only to link bindings into
 * the queue's list and to mark queues already routed to.
 */
#include "exchange.h"
#include "args.h"
#include "broker.h"
#include "dedup.h"
#include "dedup_log.h"
#include "definitions.h"
#include "queue.h"
#include "table.h"
#include "vhost.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- types -------------------------------------------------------------- */

static const exchange_ops_t *const exchange_types[] = {
    &exchange_direct_ops,  &exchange_fanout_ops,  &exchange_topic_ops,
    &exchange_headers_ops, &exchange_delayed_ops,
};

const exchange_ops_t *exchange_type_find(wn_bytes_t type) {
    for (size_t i = 0; i < sizeof exchange_types / sizeof exchange_types[0]; i++)
        if (wn_bytes_eq_cstr(type, exchange_types[i]->name)) return exchange_types[i];
    return NULL;
}

/* ---- registry --------------------------------------------------------------- */

static wn_bytes_t bytes_dup(wn_bytes_t b) {
    uint8_t *p = malloc(b.len ? b.len : 1);
    if (p && b.len) memcpy(p, b.ptr, b.len);
    return wn_bytes(p, p ? b.len : 0);
}

exchange_t *exchange_find(vhost_t *vh, wn_bytes_t name) {
    exchange_t *x = NULL;
    HASH_FIND(hh, vh->exchanges, name.ptr ? name.ptr : (const uint8_t *)"", name.len, x);
    return x;
}

exchange_t *exchange_create(vhost_t *vh, wn_bytes_t name, const exchange_ops_t *ops, bool durable,
                            bool auto_delete, bool internal, wn_bytes_t args) {
    exchange_t *x = calloc(1, sizeof *x);
    wn_value_t ae;
    if (!x) return NULL;
    x->name = malloc(name.len + 1u);
    if (name.len) memcpy(x->name, name.ptr, name.len);
    x->name[name.len] = '\0';
    x->name_len = (uint8_t)name.len;
    x->ops = ops;
    x->route_ops = ops;
    x->durable = durable;
    x->auto_delete = auto_delete;
    x->internal = internal;
    x->args = bytes_dup(args);
    if (wn_table_get(x->args, "alternate-exchange", &ae) && ae.type == WN_FIELD_LONGSTR)
        x->alternate = ae.v.bytes;
    x->vhost = vh;
    if (ops->init(x) < 0) {
        free(x->name);
        free((void *)x->args.ptr);
        free(x);
        return NULL;
    }
    HASH_ADD_KEYPTR(hh, vh->exchanges, x->name, x->name_len, x);
    broker.topology_epoch++;
    x->dedup = dedup_new(x->args);
    if (x->dedup) dedup_set_owner(x->dedup, DEDUP_LOG_EXCHANGE, x);
    definitions_exchange(x, true);
    return x;
}

void exchange_delete(exchange_t *x) {
    definitions_exchange(x, false);
    x->auto_delete = false; /* removing its last binding must not delete it twice */
    while (x->bindings)
        binding_remove(x->bindings);
    while (x->dest_bindings)
        binding_remove(x->dest_bindings);
    HASH_DELETE(hh, x->vhost->exchanges, x);
    broker.topology_epoch++;
    if (x->dedup) dedup_log_forget(DEDUP_LOG_EXCHANGE, x);
    dedup_free(x->dedup);
    x->ops->destroy(x);
    free(x->name);
    free((void *)x->args.ptr);
    free(x);
}

int exchange_declare_builtins(vhost_t *vh) {
    static const struct {
        const char *name;
        const exchange_ops_t *ops;
    } builtins[] = {
        {"", &exchange_direct_ops},
        {"amq.direct", &exchange_direct_ops},
        {"amq.fanout", &exchange_fanout_ops},
        {"amq.topic", &exchange_topic_ops},
        {"amq.headers", &exchange_headers_ops},
        {"amq.match", &exchange_headers_ops},
    };
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        exchange_t *x = exchange_create(vh, wn_cstr(builtins[i].name), builtins[i].ops, true, false,
                                        false, (wn_bytes_t){NULL, 0});
        if (!x) return -1;
        x->is_default = builtins[i].name[0] == '\0';
        x->builtin = true;
    }
    return 0;
}

/* ---- equivalence, as RabbitMQ checks it -------------------------------------- */

int exchange_check_equivalent(const exchange_t *x, const exchange_ops_t *ops, bool durable,
                              bool auto_delete, bool internal, wn_bytes_t args, char *err,
                              size_t errlen) {
    char what[300];
    snprintf(what, sizeof what, "exchange '%s' in vhost '%s'", x->name, x->vhost->name);
    if (ops != x->ops) {
        snprintf(err, errlen, "inequivalent arg 'type' for %s: received '%s' but current is '%s'",
                 what, ops->name, x->ops->name);
        return -1;
    }
    if (args_check_flag("durable", what, durable, x->durable, err, errlen) < 0 ||
        args_check_flag("auto_delete", what, auto_delete, x->auto_delete, err, errlen) < 0 ||
        args_check_flag("internal", what, internal, x->internal, err, errlen) < 0)
        return -1;
    /* RabbitMQ compares alternate-exchange; Warren also compares what makes
     * a delayed or deduplicating exchange behave as it does. */
    static const char *const keys[] = {"alternate-exchange", NULL};
    static const char *const delayed_keys[] = {"alternate-exchange", "x-delayed-type", NULL};
    if (args_check_equivalent(x->args, args, x->delay ? delayed_keys : keys, what, err, errlen) < 0)
        return -1;
    return dedup_check_equivalent(x->args, args, what, err, errlen);
}

/* ---- bindings ------------------------------------------------------------------ */

/* The uniqueness key: source, destination, key and arguments. */
static size_t binding_hkey(uint8_t *out, exchange_t *src, queue_t *q, exchange_t *dst,
                           wn_bytes_t key, wn_bytes_t args) {
    size_t n = 0;
    void *dest = q ? (void *)q : (void *)dst;
    if (out) {
        memcpy(out, &src, sizeof src);
        memcpy(out + sizeof src, &dest, sizeof dest);
        out[2 * sizeof(void *)] = (uint8_t)key.len;
        if (key.len) memcpy(out + 2 * sizeof(void *) + 1, key.ptr, key.len);
        if (args.len) memcpy(out + 2 * sizeof(void *) + 1 + key.len, args.ptr, args.len);
    }
    n = 2 * sizeof(void *) + 1 + key.len + args.len;
    return n;
}

binding_t *binding_find(exchange_t *source, queue_t *q, exchange_t *dest, wn_bytes_t key,
                        wn_bytes_t args) {
    uint8_t stackbuf[512];
    size_t n = binding_hkey(NULL, source, q, dest, key, args);
    uint8_t *hk = n <= sizeof stackbuf ? stackbuf : malloc(n);
    binding_t *b = NULL;
    if (!hk) return NULL;
    binding_hkey(hk, source, q, dest, key, args);
    HASH_FIND(hh, source->vhost->bindings, hk, n, b);
    if (hk != stackbuf) free(hk);
    return b;
}

static binding_t **dest_list(queue_t *q, exchange_t *dest) {
    return q ? &q->bindings : &dest->dest_bindings;
}

binding_t *binding_add(exchange_t *source, queue_t *q, exchange_t *dest, wn_bytes_t key,
                       wn_bytes_t args) {
    binding_t *b = binding_find(source, q, dest, key, args);
    if (b) return b;
    size_t n = binding_hkey(NULL, source, q, dest, key, args);
    b = calloc(1, sizeof *b + n);
    if (!b) return NULL;
    binding_hkey(b->hkey, source, q, dest, key, args);
    b->source = source;
    b->queue = q;
    b->exchange = dest;
    /* Key and arguments are read from the index key, which holds copies. */
    b->key = wn_bytes(b->hkey + 2 * sizeof(void *) + 1, key.len);
    b->args = wn_bytes(b->hkey + 2 * sizeof(void *) + 1 + key.len, args.len);

    b->src_next = source->bindings;
    if (source->bindings) source->bindings->src_prev = b;
    source->bindings = b;
    source->nbindings++;
    binding_t **dl = dest_list(q, dest);
    b->dst_next = *dl;
    if (*dl) (*dl)->dst_prev = b;
    *dl = b;
    HASH_ADD(hh, source->vhost->bindings, hkey, n, b);
    broker.topology_epoch++;
    source->ops->add(source, b);
    definitions_binding(b, true);
    return b;
}

void binding_remove(binding_t *b) {
    exchange_t *src = b->source;
    definitions_binding(b, false);
    src->ops->remove(src, b);
    HASH_DELETE(hh, src->vhost->bindings, b);
    broker.topology_epoch++;
    if (b->src_prev)
        b->src_prev->src_next = b->src_next;
    else
        src->bindings = b->src_next;
    if (b->src_next) b->src_next->src_prev = b->src_prev;
    binding_t **dl = dest_list(b->queue, b->exchange);
    if (b->dst_prev)
        b->dst_prev->dst_next = b->dst_next;
    else
        *dl = b->dst_next;
    if (b->dst_next) b->dst_next->dst_prev = b->dst_prev;
    src->nbindings--;
    free(b);
    /* As RabbitMQ: an auto-delete exchange goes with its last binding. */
    if (src->auto_delete && src->nbindings == 0) exchange_delete(src);
}

void binding_remove_all_to_queue(queue_t *q, binding_t **list) {
    (void)q;
    while (*list)
        binding_remove(*list);
}

/* ---- routing ------------------------------------------------------------------- */

#define ROUTE_MAX_EXCHANGES 64

struct route_ctx {
    route_result_t *out;
    exchange_t *work[ROUTE_MAX_EXCHANGES]; /* exchanges still to route through */
    unsigned nwork;
    uint64_t mark;
    bool found;      /* the exchange being routed matched something */
    bool incomplete; /* a queue was left out (no memory): not reusable */
};

static void route_push_exchange(route_ctx_t *ctx, exchange_t *x) {
    if (x->route_mark == ctx->mark || ctx->nwork == ROUTE_MAX_EXCHANGES) return;
    x->route_mark = ctx->mark;
    ctx->work[ctx->nwork++] = x;
}

static void route_push_queue(route_ctx_t *ctx, queue_t *q) {
    route_result_t *r = ctx->out;
    if (q->route_mark == ctx->mark) return;
    q->route_mark = ctx->mark;
    if (r->n == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        queue_t **qs = realloc(r->queues, cap * sizeof *qs);
        if (!qs) {
            ctx->incomplete = true;
            return;
        }
        r->queues = qs;
        r->cap = cap;
    }
    r->queues[r->n++] = q;
}

void route_ctx_add(route_ctx_t *ctx, binding_t *b) {
    ctx->found = true;
    if (b->queue)
        route_push_queue(ctx, b->queue);
    else
        route_push_exchange(ctx, b->exchange);
}

static void route_key(exchange_t *x, const route_msg_t *msg, wn_bytes_t key, route_ctx_t *ctx) {
    if (x->is_default) {
        queue_t *q = queue_find(x->vhost, key);
        if (q) {
            ctx->found = true;
            route_push_queue(ctx, q);
        }
        return;
    }
    route_msg_t one = {key, msg->headers, {NULL, 0}};
    x->ops->route(x, &one, ctx);
}

/* Every longstr in an array body is one more routing key. */
static void route_keys(exchange_t *x, const route_msg_t *msg, wn_bytes_t array, route_ctx_t *ctx) {
    wn_table_iter_t it;
    wn_value_t key;
    wn_array_iter_init(&it, array);
    while (wn_array_next(&it, &key))
        if (key.type == WN_FIELD_LONGSTR && key.v.bytes.len <= 255)
            route_key(x, msg, key.v.bytes, ctx);
}

/* Sender-selected distribution: CC and BCC headers name more routing keys. */
static void route_one_exchange(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    wn_value_t cc;
    route_key(x, msg, msg->routing_key, ctx);
    if (msg->headers.len && wn_table_get(msg->headers, "CC", &cc) && cc.type == WN_FIELD_ARRAY)
        route_keys(x, msg, cc.v.bytes, ctx);
    if (msg->bcc.len) route_keys(x, msg, msg->bcc, ctx);
}

/* Is out what routing msg through x would give again? Without headers (CC,
 * headers-exchange matches) or BCC keys, a message's destinations depend only
 * on the exchange, its routing key and the bindings, exchanges and queues
 * that exist, which broker.topology_epoch stands for. */
static bool route_result_reusable(const route_result_t *out, const exchange_t *x,
                                  const route_msg_t *msg) {
    return out->from == x && out->epoch == broker.topology_epoch && msg->headers.len == 0 &&
           msg->bcc.len == 0 && out->key_len == msg->routing_key.len &&
           (out->key_len == 0 || memcmp(out->key, msg->routing_key.ptr, out->key_len) == 0);
}

static void route_result_remember(route_result_t *out, exchange_t *x, const route_msg_t *msg) {
    out->from = NULL;
    if (msg->headers.len || msg->bcc.len || msg->routing_key.len > sizeof out->key) return;
    out->from = x;
    out->epoch = broker.topology_epoch;
    out->key_len = (uint8_t)msg->routing_key.len;
    if (out->key_len) memcpy(out->key, msg->routing_key.ptr, out->key_len);
}

void exchange_route(exchange_t *x, const route_msg_t *msg, route_result_t *out) {
    route_ctx_t ctx;

    if (route_result_reusable(out, x, msg)) return;
    /* Only the fields the walk reads: ctx.work is filled as it goes. */
    ctx.out = out;
    ctx.nwork = 0;
    ctx.mark = ++broker.route_mark;
    ctx.found = ctx.incomplete = false;
    out->n = 0;
    route_push_exchange(&ctx, x);
    for (unsigned i = 0; i < ctx.nwork; i++) {
        exchange_t *cur = ctx.work[i];
        ctx.found = false;
        route_one_exchange(cur, msg, &ctx);
        /* Nothing matched here: an alternate exchange takes the message. */
        if (!ctx.found && cur->alternate.len) {
            exchange_t *ae = exchange_find(cur->vhost, cur->alternate);
            if (ae) route_push_exchange(&ctx, ae);
        }
    }
    if (ctx.incomplete)
        out->from = NULL;
    else
        route_result_remember(out, x, msg);
}

void route_result_free(route_result_t *r) {
    free(r->queues);
    r->queues = NULL;
    r->n = r->cap = 0;
    r->from = NULL;
}
