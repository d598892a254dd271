/*
 * exchange.h - exchanges, bindings, and routing.
 *
 * An exchange routes a message to the set of queues its bindings select,
 * following exchange-to-exchange bindings and alternate exchanges. Each queue
 * appears once in a result however many paths reach it, and cycles end
 * because every exchange is visited at most once per message.
 *
 * Each exchange type keeps its own index of bindings behind exchange_ops_t
 * (exchange_direct.c, exchange_fanout.c, exchange_topic.c, exchange_headers.c).
 */
#ifndef WARREN_EXCHANGE_H
#define WARREN_EXCHANGE_H

#include "bytes.h"

#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>

struct queue;
struct vhost;
struct exchange;

typedef struct binding {
    struct exchange *source;
    struct queue *queue;                 /* the destination is a queue ... */
    struct exchange *exchange;           /* ... or an exchange (exchange.bind) */
    wn_bytes_t key;                      /* routing / binding key (owned) */
    wn_bytes_t args;                     /* arguments table body (owned) */
    struct binding *src_prev, *src_next; /* all bindings of the source */
    struct binding *dst_prev, *dst_next; /* all bindings to the destination */
    struct binding *type_next;           /* the exchange type's own chaining */
    UT_hash_handle hh;                   /* the vhost's index of bindings, for uniqueness */
    uint8_t hkey[];                      /* source, destination, key, args: the index key */
} binding_t;

/* Everything a message is routed by. */
typedef struct route_msg {
    wn_bytes_t routing_key;
    wn_bytes_t headers; /* table body, may be empty; its CC array adds keys */
    wn_bytes_t bcc;     /* array body of BCC keys, may be empty */
} route_msg_t;

/* The queues a message goes to. The result also says what it was routed
 * from (exchange, key, broker.topology_epoch) so that the next message with
 * the same key and no headers can reuse it without walking the bindings. */
typedef struct route_result {
    struct queue **queues;
    uint32_t n, cap;
    struct exchange *from; /* NULL: not reusable */
    uint64_t epoch;
    uint8_t key_len;
    uint8_t key[255];
} route_result_t;

typedef struct route_ctx route_ctx_t;

typedef struct exchange_ops {
    const char *name;
    /* Check a binding's arguments (headers: x-match); 0 or -1 with err. */
    int (*check_args)(wn_bytes_t args, char *err, size_t errlen);
    int (*init)(struct exchange *x);
    void (*destroy)(struct exchange *x);
    void (*add)(struct exchange *x, binding_t *b);
    void (*remove)(struct exchange *x, binding_t *b);
    /* Call route_ctx_add for each matching binding. */
    void (*route)(struct exchange *x, const route_msg_t *msg, route_ctx_t *ctx);
} exchange_ops_t;

extern const exchange_ops_t exchange_direct_ops, exchange_fanout_ops, exchange_topic_ops,
    exchange_headers_ops, exchange_delayed_ops;

struct delay;
struct dedup;

typedef struct exchange {
    char *name;
    uint8_t name_len;
    bool durable, auto_delete, internal;
    bool is_default; /* "": routes to the queue named by the routing key */
    bool builtin;    /* "" and amq.*: cannot be deleted */
    const exchange_ops_t *ops;
    const exchange_ops_t *route_ops; /* whose rules route and check bindings: ops, or a
                                        delayed exchange's x-delayed-type */
    struct delay *delay;             /* x-delayed-message: held messages (delay.h) */
    struct dedup *dedup;             /* x-message-deduplication (dedup.h) */
    wn_bytes_t args;                 /* owned */
    wn_bytes_t alternate;            /* alternate-exchange argument (points into args) */
    void *index;                     /* the type's index of bindings */
    binding_t *bindings;             /* as source */
    binding_t *dest_bindings;        /* as destination */
    uint32_t nbindings;
    uint64_t route_mark; /* visited during the current routing */
    struct vhost *vhost;
    UT_hash_handle hh;
} exchange_t;

/* The exchange type named `type`, or NULL. */
const exchange_ops_t *exchange_type_find(wn_bytes_t type);

exchange_t *exchange_find(struct vhost *vh, wn_bytes_t name);
/* Create (no checks: the caller validated); NULL on OOM. */
exchange_t *exchange_create(struct vhost *vh, wn_bytes_t name, const exchange_ops_t *ops,
                            bool durable, bool auto_delete, bool internal, wn_bytes_t args);
/* Remove every binding from and to it, then free it. */
void exchange_delete(exchange_t *x);
/* Create the default exchange and amq.* in a new vhost. */
int exchange_declare_builtins(struct vhost *vh);

/*
 * Is a redeclaration equivalent? 0 if so; otherwise -1 with RabbitMQ's
 * "inequivalent arg ..." text in err (sent with 406).
 */
int exchange_check_equivalent(const exchange_t *x, const exchange_ops_t *ops, bool durable,
                              bool auto_delete, bool internal, wn_bytes_t args, char *err,
                              size_t errlen);

/* Bind; returns the binding (existing or new), NULL on OOM. */
binding_t *binding_add(exchange_t *source, struct queue *q, exchange_t *dest, wn_bytes_t key,
                       wn_bytes_t args);
binding_t *binding_find(exchange_t *source, struct queue *q, exchange_t *dest, wn_bytes_t key,
                        wn_bytes_t args);
/* Unbind and free; an auto-delete source whose last binding goes is deleted. */
void binding_remove(binding_t *b);
/* Remove every binding whose destination is q (the queue is going away). */
void binding_remove_all_to_queue(struct queue *q, binding_t **list);

/* Route: fills `out` with distinct queues (out->n may be 0). */
void exchange_route(exchange_t *x, const route_msg_t *msg, route_result_t *out);
void route_result_free(route_result_t *r);

/* For exchange types: report one matching binding. */
void route_ctx_add(route_ctx_t *ctx, binding_t *b);

#endif
