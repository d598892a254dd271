/*
 * declare.c - the exchange and queue classes: declare, delete, bind, unbind,
 * purge, with RabbitMQ's checks and error texts.
 *
 * Touches the vhost's exchanges and queues through exchange.h and queue.h;
 * owns nothing of its own.
 */
#include "declare.h"
#include "args.h"
#include "channel.h"
#include "consumer.h"
#include "dedup.h"
#include "delay.h"
#include "exchange.h"
#include "expiry.h"
#include "log.h"
#include "queue.h"
#include "vhost.h"

#include <stdio.h>
#include <string.h>

#define ERRLEN 512

static const char *vh_name(chan_t *ch) {
    return ch->conn->vhost->name;
}

static bool reserved_name(wn_bytes_t name) {
    return name.len >= 4 && memcmp(name.ptr, "amq.", 4) == 0;
}

#define NAMEF(b) (int)(b).len, (const char *)(b).ptr

static void exclusive_locked(chan_t *ch, const queue_t *q, uint32_t method) {
    chan_error(ch, WN_RESOURCE_LOCKED, method,
               "cannot obtain exclusive access to locked queue '%s' in vhost '%s'. It could be "
               "originally declared on another connection or the exclusive property value does "
               "not match that of the original declaration.",
               q->name, q->vhost->name);
}

bool chan_check_exclusive(chan_t *ch, queue_t *q, uint32_t method) {
    if (!q->exclusive || q->owner == ch->conn) return true;
    exclusive_locked(ch, q, method);
    return false;
}

/* ---- exchanges ---------------------------------------------------------------- */

static exchange_t *find_exchange_or_404(chan_t *ch, wn_bytes_t name, uint32_t method) {
    exchange_t *x = exchange_find(ch->conn->vhost, name);
    if (!x)
        chan_error(ch, WN_NOT_FOUND, method, "no exchange '%.*s' in vhost '%s'", NAMEF(name),
                   vh_name(ch));
    return x;
}

static void reply(chan_t *ch, uint32_t id, bool no_wait) {
    if (no_wait) return;
    wn_method_t ok = {.id = id};
    chan_send_method(ch, &ok);
}

/* The arguments of a new exchange: a delayed exchange's x-delayed-type (406
 * or, for an unknown type, 503 as the plugin) and deduplication's. */
static bool check_new_exchange(chan_t *ch, const exchange_ops_t *ops,
                               const wn_exchange_declare_t *m) {
    const uint32_t id = WN_EXCHANGE_DECLARE;
    char what[400], err[ERRLEN];
    int code =
        ops == &exchange_delayed_ops ? delay_check_declare(m->arguments, err, sizeof err) : 0;
    if (code == WN_COMMAND_INVALID) {
        conn_close(ch->conn, WN_COMMAND_INVALID, id, "%s", err);
        return false;
    }
    if (code) {
        chan_error(ch, WN_PRECONDITION_FAILED, id, "%s", err);
        return false;
    }
    snprintf(what, sizeof what, "exchange '%.*s' in vhost '%s'", NAMEF(m->exchange), vh_name(ch));
    if (dedup_check_args(m->arguments, what, err, sizeof err) < 0) {
        chan_error(ch, WN_PRECONDITION_FAILED, id, "%s", err);
        return false;
    }
    return true;
}

void declare_exchange(chan_t *ch, const wn_exchange_declare_t *m) {
    const uint32_t id = WN_EXCHANGE_DECLARE;
    char err[ERRLEN];
    const exchange_ops_t *ops = exchange_type_find(m->type);
    exchange_t *x;

    if (m->exchange.len == 0) {
        chan_error(ch, WN_ACCESS_REFUSED, id, "operation not permitted on the default exchange");
        return;
    }
    if (m->passive) {
        if (find_exchange_or_404(ch, m->exchange, id))
            reply(ch, WN_EXCHANGE_DECLARE_OK, m->no_wait);
        return;
    }
    if (!ops) {
        conn_close(ch->conn, WN_COMMAND_INVALID, id, "unknown exchange type '%.*s'",
                   NAMEF(m->type));
        return;
    }
    x = exchange_find(ch->conn->vhost, m->exchange);
    if (x) {
        /* An equivalent redeclaration is fine, amq.* exchanges included. */
        if (exchange_check_equivalent(x, ops, m->durable, m->auto_delete, m->internal, m->arguments,
                                      err, sizeof err) < 0) {
            chan_error(ch, WN_PRECONDITION_FAILED, id, "%s", err);
            return;
        }
    } else if (reserved_name(m->exchange)) {
        chan_error(ch, WN_ACCESS_REFUSED, id,
                   "exchange name '%.*s' contains reserved prefix 'amq.*'", NAMEF(m->exchange));
        return;
    } else if (!check_new_exchange(ch, ops, m)) {
        return;
    } else if (!exchange_create(ch->conn->vhost, m->exchange, ops, m->durable, m->auto_delete,
                                m->internal, m->arguments)) {
        chan_error(ch, WN_INTERNAL_ERROR, id, "out of memory");
        return;
    }
    reply(ch, WN_EXCHANGE_DECLARE_OK, m->no_wait);
}

void declare_exchange_delete(chan_t *ch, const wn_exchange_delete_t *m) {
    const uint32_t id = WN_EXCHANGE_DELETE;
    exchange_t *x;
    if (m->exchange.len == 0) {
        chan_error(ch, WN_ACCESS_REFUSED, id, "operation not permitted on the default exchange");
        return;
    }
    x = exchange_find(ch->conn->vhost, m->exchange);
    if (x && x->builtin) {
        chan_error(ch, WN_ACCESS_REFUSED, id,
                   "deletion of system exchange '%s' in vhost '%s' not allowed", x->name,
                   vh_name(ch));
        return;
    }
    if (x && m->if_unused && x->bindings) {
        chan_error(ch, WN_PRECONDITION_FAILED, id, "exchange '%s' in vhost '%s' in use", x->name,
                   vh_name(ch));
        return;
    }
    if (x) exchange_delete(x);
    reply(ch, WN_EXCHANGE_DELETE_OK, m->no_wait);
}

/* Add or remove a binding from src to a queue or an exchange, then reply. */
static void apply_binding(chan_t *ch, exchange_t *src, queue_t *q, exchange_t *dest, wn_bytes_t key,
                          wn_bytes_t args, bool bind, uint32_t id) {
    char err[ERRLEN];
    if (!bind) {
        binding_t *b = binding_find(src, q, dest, key, args);
        if (b) binding_remove(b);
        return;
    }
    if (src->route_ops->check_args(args, err, sizeof err) < 0)
        chan_error(ch, WN_PRECONDITION_FAILED, id, "%s", err);
    else if (!binding_add(src, q, dest, key, args))
        chan_error(ch, WN_INTERNAL_ERROR, id, "out of memory");
}

/* Shared by exchange.bind/unbind and queue.bind/unbind. */
static bool check_binding_source(chan_t *ch, exchange_t *src, uint32_t id) {
    if (src->is_default) {
        chan_error(ch, WN_ACCESS_REFUSED, id, "operation not permitted on the default exchange");
        return false;
    }
    return true;
}

static void bind_exchange(chan_t *ch, wn_bytes_t dest_name, wn_bytes_t src_name, wn_bytes_t key,
                          wn_bytes_t args, bool bind, uint32_t id, uint32_t ok_id, bool no_wait) {
    exchange_t *dest = find_exchange_or_404(ch, dest_name, id);
    if (!dest) return;
    exchange_t *src = find_exchange_or_404(ch, src_name, id);
    if (!src || !check_binding_source(ch, src, id) || !check_binding_source(ch, dest, id)) return;
    apply_binding(ch, src, NULL, dest, key, args, bind, id);
    if (ch->state == CHAN_OPEN) reply(ch, ok_id, no_wait);
}

void declare_exchange_bind(chan_t *ch, const wn_exchange_bind_t *m) {
    bind_exchange(ch, m->destination, m->source, m->routing_key, m->arguments, true,
                  WN_EXCHANGE_BIND, WN_EXCHANGE_BIND_OK, m->no_wait);
}

void declare_exchange_unbind(chan_t *ch, const wn_exchange_unbind_t *m) {
    bind_exchange(ch, m->destination, m->source, m->routing_key, m->arguments, false,
                  WN_EXCHANGE_UNBIND, WN_EXCHANGE_UNBIND_OK, m->no_wait);
}

/* ---- queues ---------------------------------------------------------------------- */

/* Arguments RabbitMQ compares when a queue is declared again. */
static const char *const queue_equivalence_keys[] = {
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-single-active-consumer",
    "x-queue-type",
    "x-delivery-limit",
    NULL,
};

queue_t *chan_find_queue(chan_t *ch, wn_bytes_t name, uint32_t method) {
    queue_t *q;
    /* An empty name means the queue last declared on this channel, as the spec says. */
    if (name.len == 0) {
        if (ch->last_queue_len == 0) {
            chan_error(ch, WN_NOT_FOUND, method, "no previously declared queue");
            return NULL;
        }
        name = wn_bytes(ch->last_queue, ch->last_queue_len);
    }
    q = queue_find(ch->conn->vhost, name);
    if (!q)
        chan_error(ch, WN_NOT_FOUND, method, "no queue '%.*s' in vhost '%s'", NAMEF(name),
                   vh_name(ch));
    return q;
}

static void remember_queue(chan_t *ch, const queue_t *q) {
    memcpy(ch->last_queue, q->name, q->name_len);
    ch->last_queue_len = q->name_len;
}

static void send_declare_ok(chan_t *ch, const queue_t *q, bool no_wait) {
    if (no_wait) return;
    wn_method_t ok = {.id = WN_QUEUE_DECLARE_OK};
    ok.u.queue_declare_ok.queue = wn_bytes(q->name, q->name_len);
    ok.u.queue_declare_ok.message_count = queue_ready(q);
    ok.u.queue_declare_ok.consumer_count = q->nconsumers;
    chan_send_method(ch, &ok);
}

static bool check_queue_equivalent(chan_t *ch, const queue_t *q, const wn_queue_declare_t *m) {
    char what[400], err[ERRLEN];
    snprintf(what, sizeof what, "queue '%s' in vhost '%s'", q->name, vh_name(ch));
    if (args_check_flag("durable", what, m->durable, q->durable, err, sizeof err) < 0 ||
        args_check_flag("auto_delete", what, m->auto_delete, q->auto_delete, err, sizeof err) < 0 ||
        args_check_equivalent(q->args, m->arguments, queue_equivalence_keys, what, err,
                              sizeof err) < 0 ||
        dedup_check_equivalent(q->args, m->arguments, what, err, sizeof err) < 0) {
        chan_error(ch, WN_PRECONDITION_FAILED, WN_QUEUE_DECLARE, "%s", err);
        return false;
    }
    return true;
}

void declare_queue(chan_t *ch, const wn_queue_declare_t *m) {
    const uint32_t id = WN_QUEUE_DECLARE;
    char gen[64];
    wn_bytes_t name = m->queue;
    queue_t *q;

    if (m->passive) {
        q = queue_find(ch->conn->vhost, name); /* no empty-name shorthand here */
        if (!q)
            chan_error(ch, WN_NOT_FOUND, id, "no queue '%.*s' in vhost '%s'", NAMEF(name),
                       vh_name(ch));
        if (!q || !chan_check_exclusive(ch, q, id)) return;
        expiry_touch(q); /* a passive declaration counts as use too, as in RabbitMQ */
        remember_queue(ch, q);
        send_declare_ok(ch, q, m->no_wait);
        return;
    }
    if (name.len == 0) {
        consumer_make_name(gen, sizeof gen, "amq.gen-");
        name = wn_cstr(gen);
    } else if (reserved_name(name)) {
        chan_error(ch, WN_ACCESS_REFUSED, id, "queue name '%.*s' contains reserved prefix 'amq.*'",
                   NAMEF(name));
        return;
    }
    q = queue_find(ch->conn->vhost, name);
    if (q) {
        /* Another connection's exclusive queue, or a declaration whose
         * exclusive flag differs from the queue's, as RabbitMQ checks it. */
        if ((q->exclusive && q->owner != ch->conn) || q->exclusive != m->exclusive) {
            exclusive_locked(ch, q, id);
            return;
        }
        if (!check_queue_equivalent(ch, q, m)) return;
        expiry_touch(q);
    } else {
        char what[400], err[ERRLEN];
        snprintf(what, sizeof what, "queue '%.*s' in vhost '%s'", NAMEF(name), vh_name(ch));
        if (args_check_queue(m->arguments, what, err, sizeof err) < 0 ||
            dedup_check_args(m->arguments, what, err, sizeof err) < 0) {
            chan_error(ch, WN_PRECONDITION_FAILED, id, "%s", err);
            return;
        }
        q = queue_create(ch->conn->vhost, name, m->durable, m->exclusive, m->auto_delete, ch->conn,
                         m->arguments);
        if (!q) {
            chan_error(ch, WN_INTERNAL_ERROR, id, "out of memory");
            return;
        }
    }
    remember_queue(ch, q);
    send_declare_ok(ch, q, m->no_wait);
}

static void bind_queue(chan_t *ch, wn_bytes_t qname, wn_bytes_t xname, wn_bytes_t key,
                       wn_bytes_t args, bool bind, uint32_t id, uint32_t ok_id, bool no_wait) {
    queue_t *q = chan_find_queue(ch, qname, id);
    if (!q || !chan_check_exclusive(ch, q, id)) return;
    /* As RabbitMQ, unbinding from an exchange that does not exist succeeds. */
    if (!bind && !exchange_find(ch->conn->vhost, xname)) {
        reply(ch, ok_id, no_wait);
        return;
    }
    exchange_t *x = find_exchange_or_404(ch, xname, id);
    if (!x || !check_binding_source(ch, x, id)) return;
    /* With both names empty, the routing key is the queue's name too. */
    if (qname.len == 0 && key.len == 0) key = wn_bytes(q->name, q->name_len);
    apply_binding(ch, x, q, NULL, key, args, bind, id);
    if (ch->state == CHAN_OPEN) reply(ch, ok_id, no_wait);
}

void declare_queue_bind(chan_t *ch, const wn_queue_bind_t *m) {
    bind_queue(ch, m->queue, m->exchange, m->routing_key, m->arguments, true, WN_QUEUE_BIND,
               WN_QUEUE_BIND_OK, m->no_wait);
}

void declare_queue_unbind(chan_t *ch, const wn_queue_unbind_t *m) {
    bind_queue(ch, m->queue, m->exchange, m->routing_key, m->arguments, false, WN_QUEUE_UNBIND,
               WN_QUEUE_UNBIND_OK, false);
}

void declare_queue_purge(chan_t *ch, const wn_queue_purge_t *m) {
    queue_t *q = chan_find_queue(ch, m->queue, WN_QUEUE_PURGE);
    if (!q || !chan_check_exclusive(ch, q, WN_QUEUE_PURGE)) return;
    uint32_t n = queue_purge(q);
    if (m->no_wait) return;
    wn_method_t ok = {.id = WN_QUEUE_PURGE_OK};
    ok.u.queue_purge_ok.message_count = n;
    chan_send_method(ch, &ok);
}

void declare_queue_delete(chan_t *ch, const wn_queue_delete_t *m) {
    const uint32_t id = WN_QUEUE_DELETE;
    queue_t *q;
    uint32_t n = 0;
    if (m->queue.len == 0 && ch->last_queue_len == 0) {
        chan_error(ch, WN_NOT_FOUND, id, "no previously declared queue");
        return;
    }
    q = queue_find(ch->conn->vhost,
                   m->queue.len ? m->queue : wn_bytes(ch->last_queue, ch->last_queue_len));
    if (q) {
        if (!chan_check_exclusive(ch, q, id)) return;
        if (m->if_unused && q->nconsumers) {
            chan_error(ch, WN_PRECONDITION_FAILED, id, "queue '%s' in vhost '%s' in use", q->name,
                       vh_name(ch));
            return;
        }
        if (m->if_empty && queue_ready(q)) {
            chan_error(ch, WN_PRECONDITION_FAILED, id, "queue '%s' in vhost '%s' not empty",
                       q->name, vh_name(ch));
            return;
        }
        n = queue_delete(q);
    }
    if (m->no_wait) return;
    wn_method_t ok = {.id = WN_QUEUE_DELETE_OK};
    ok.u.queue_delete_ok.message_count = n;
    chan_send_method(ch, &ok);
}
