/*
 * delay.c - the x-delayed-message exchange type (see delay.h): its
 * declaration rules, the heap of held messages, the timer, and the journal
 * glue for durable delayed exchanges.
 *
 * Owns struct delay (exchange_t.delay) and the held messages. Routes due
 * messages through publish.h, as if they were published then; writes to the
 * journal only through store.h.
 */
#include "delay.h"
#include "broker.h"
#include "log.h"
#include "publish.h"
#include "store.h"
#include "table.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DELAY_MAX_MS    4294967295ULL /* the plugin's limit: longer delays route at once */
#define DELAY_HOT_MAX   10000         /* journaled messages held with their body in memory... */
#define DELAY_HOT_BYTES (16u << 20)   /* ...and their body bytes, per exchange */
#define DELAY_BATCH     20000         /* due messages routed per timer callback */

typedef struct delay_entry {
    uint64_t due_us; /* µs since the epoch */
    qentry_t e;      /* e.seq: arrival order; e.seg: where the journal keeps it (0: not kept) */
} delay_entry_t;

struct delay {
    exchange_t *x;
    const exchange_ops_t *inner; /* x-delayed-type */
    delay_entry_t *heap;         /* a binary min-heap by (due_us, seq) */
    uint32_t n, cap;
    uint64_t next_seq;
    uint32_t store_id;         /* durable: the id its journal records name */
    uint32_t hot;              /* journaled entries whose body is in memory... */
    uint64_t hot_bytes;        /* ...and their body bytes */
    ev_timer timer;            /* armed for the earliest entry */
    struct delay *prev, *next; /* broker.delays */
};

/* Times are kept in µs: rounding to ms would route up to 1 ms early or late. */

/* The loop's time, for deciding what is due. */
static uint64_t now_us(void) {
    return (uint64_t)(ev_now(broker.loop) * 1e6);
}

/* The time a message arrives, for its due time: the clock itself, since
 * ev_now may be a whole iteration old and nothing may be routed before its
 * delay is over. */
static uint64_t arrival_us(void) {
    return (uint64_t)(ev_time() * 1e6);
}

/* ---- declaration ---------------------------------------------------------------- */

static const exchange_ops_t *inner_type(wn_bytes_t args) {
    wn_value_t v;
    if (!wn_table_get(args, "x-delayed-type", &v) || v.type != WN_FIELD_LONGSTR) return NULL;
    return exchange_type_find(v.v.bytes);
}

int delay_check_declare(wn_bytes_t args, char *err, size_t errlen) {
    wn_value_t v;
    const exchange_ops_t *ops = inner_type(args);
    if (!wn_table_get(args, "x-delayed-type", &v) || v.type != WN_FIELD_LONGSTR ||
        ops == &exchange_delayed_ops) {
        snprintf(err, errlen,
                 "Invalid argument, 'x-delayed-type' must be an existing exchange type");
        return 406;
    }
    if (!ops) {
        snprintf(err, errlen, "unknown exchange type '%.*s'", (int)v.v.bytes.len,
                 (const char *)v.v.bytes.ptr);
        return 503;
    }
    return 0;
}

/* ---- the x-delay header ------------------------------------------------------------ */

/* The plugin's reading: integers as they are, strings as decimal integers,
 * floats and decimals truncated; anything else routes at once. */
static bool value_delay(const wn_value_t *v, int64_t *out) {
    if (wn_value_as_int(v, out)) return true;
    if (v->type == WN_FIELD_DOUBLE || v->type == WN_FIELD_FLOAT) {
        double d = v->type == WN_FIELD_DOUBLE ? v->v.f64 : (double)v->v.f32;
        if (!isfinite(d) || fabs(d) > 1e18) return false;
        *out = (int64_t)d;
        return true;
    }
    if (v->type == WN_FIELD_DECIMAL) {
        double d = v->v.decimal.value;
        for (uint8_t i = 0; i < v->v.decimal.scale; i++)
            d /= 10;
        *out = (int64_t)d;
        return true;
    }
    if (v->type != WN_FIELD_LONGSTR || v->v.bytes.len == 0 || v->v.bytes.len > 20) return false;
    char buf[24], *end;
    memcpy(buf, v->v.bytes.ptr, v->v.bytes.len);
    buf[v->v.bytes.len] = '\0';
    long long ll = strtoll(buf, &end, 10);
    if (*end != '\0') return false;
    *out = ll;
    return true;
}

uint64_t delay_of(const message_t *m) {
    wn_bytes_t headers = message_headers(m);
    wn_value_t v;
    int64_t d;
    if (!headers.len || !wn_table_get(headers, "x-delay", &v) || !value_delay(&v, &d)) return 0;
    return d > 0 && (uint64_t)d <= DELAY_MAX_MS ? (uint64_t)d : 0;
}

/* Negate a signed integer x-delay in place (same width), as the plugin
 * delivers it: a message is not delayed twice. Other types stay as sent. */
static void negate_delay_header(message_t *m) {
    wn_bytes_t headers = message_headers(m);
    wn_table_iter_t it;
    wn_bytes_t key;
    wn_value_t v;
    wn_table_iter_init(&it, headers);
    while (wn_table_next(&it, &key, &v)) {
        if (!wn_bytes_eq_cstr(key, "x-delay")) continue;
        uint8_t *end = (uint8_t *)it.r.p;
        if (v.type == WN_FIELD_I8)
            end[-1] = (uint8_t)(int8_t)-v.v.i8;
        else if (v.type == WN_FIELD_I16)
            wn_store16(end - 2, (uint16_t)(int16_t)-v.v.i16);
        else if (v.type == WN_FIELD_I32)
            wn_store32(end - 4, (uint32_t) - (int64_t)v.v.i32);
        else if (v.type == WN_FIELD_I64 && v.v.i64 > INT64_MIN)
            wn_store64(end - 8, (uint64_t)-v.v.i64);
        return;
    }
}

/* ---- the heap ------------------------------------------------------------------------ */

static bool before(const delay_entry_t *a, const delay_entry_t *b) {
    return a->due_us != b->due_us ? a->due_us < b->due_us : a->e.seq < b->e.seq;
}

static void sift_up(delay_entry_t *h, uint32_t i) {
    delay_entry_t x = h[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!before(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static void sift_down(delay_entry_t *h, uint32_t n, uint32_t i) {
    delay_entry_t x = h[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && before(&h[c + 1], &h[c])) c++;
        if (!before(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static bool heap_push(struct delay *d, const delay_entry_t *e) {
    if (d->n == d->cap) {
        uint32_t cap = d->cap ? d->cap * 2 : 64;
        delay_entry_t *h = realloc(d->heap, (size_t)cap * sizeof *h);
        if (!h) return false;
        d->heap = h;
        d->cap = cap;
    }
    d->heap[d->n] = *e;
    sift_up(d->heap, d->n++);
    return true;
}

static delay_entry_t heap_pop(struct delay *d) {
    delay_entry_t top = d->heap[0];
    d->heap[0] = d->heap[--d->n];
    if (d->n) sift_down(d->heap, d->n, 0);
    if (d->n < d->cap / 4 && d->cap > 64) { /* give memory back as the heap drains */
        delay_entry_t *h = realloc(d->heap, (size_t)(d->cap / 2) * sizeof *h);
        if (h) {
            d->heap = h;
            d->cap /= 2;
        }
    }
    return top;
}

/* ---- the timer -------------------------------------------------------------------- */

static void arm(struct delay *d) {
    ev_timer_stop(broker.loop, &d->timer);
    if (d->n == 0) return;
    double after = (double)d->heap[0].due_us / 1e6 - ev_now(broker.loop);
    ev_timer_set(&d->timer, after > 0. ? after : 0., 0.);
    ev_timer_start(broker.loop, &d->timer);
}

static void entry_release(struct delay *d, qentry_t *e) {
    if (e->msg) {
        if (e->seg) {
            d->hot--;
            d->hot_bytes -= e->msg->body_len;
        }
        message_unref(e->msg);
    }
}

/* Route one due message from the exchange, with its bindings as they are now. */
static void route_due(struct delay *d, delay_entry_t *de) {
    qentry_t *e = &de->e;
    message_t *m = e->msg;
    bool stored = true, journaled = false;
    if (!m)
        m = store_load(e);
    else
        message_ref(m);
    if (m) {
        publish_route(d->x, m, NULL, &stored, &journaled);
        message_unref(m);
    }
    if (e->seg) store_ack_id(d->store_id, true, e);
    entry_release(d, e);
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    struct delay *d = w->data;
    uint64_t now = now_us();
    for (uint32_t i = 0; i < DELAY_BATCH && d->n && d->heap[0].due_us <= now; i++) {
        delay_entry_t de = heap_pop(d);
        route_due(d, &de);
    }
    arm(d);
}

/* ---- holding messages ----------------------------------------------------------------- */

static bool keep_hot(const struct delay *d, const message_t *m) {
    return d->hot < DELAY_HOT_MAX && d->hot_bytes + m->body_len <= DELAY_HOT_BYTES;
}

/* Add an entry; m may be NULL for a journaled one (its body stays on disk). */
static bool hold_entry(struct delay *d, message_t *m, const qentry_t *at, uint64_t due) {
    delay_entry_t de = {.due_us = due};
    if (at) de.e = *at;
    de.e.seq = d->next_seq++;
    if (m && at && !keep_hot(d, m)) m = NULL;
    de.e.msg = m;
    if (!heap_push(d, &de)) return false;
    if (m) {
        message_ref(m);
        if (at) {
            d->hot++;
            d->hot_bytes += m->body_len;
        }
    }
    if (d->n == 1 || d->heap[0].e.seq == de.e.seq) arm(d);
    return true;
}

bool delay_hold(exchange_t *x, message_t *m, uint64_t delay_ms, bool *journaled) {
    struct delay *d = x->delay;
    qentry_t at = {0};
    bool stored_on_disk = false;
    negate_delay_header(m);
    if (d->store_id && m->delivery_mode == 2) {
        if (!store_write_msg_ids(m, &d->store_id, 1, &at)) return false;
        stored_on_disk = true;
        *journaled = true;
    }
    if (hold_entry(d, m, stored_on_disk ? &at : NULL, arrival_us() + delay_ms * 1000)) return true;
    if (stored_on_disk) store_ack_id(d->store_id, true, &at);
    return false;
}

uint32_t delay_count(const exchange_t *x) {
    return x->delay ? x->delay->n : 0;
}

/* ---- the exchange type: the delayed type's rules, plus the heap ---------------------- */

static int delayed_init(exchange_t *x) {
    struct delay *d = calloc(1, sizeof *d);
    if (!d) return -1;
    d->inner = inner_type(x->args);
    if (!d->inner || d->inner == &exchange_delayed_ops || d->inner->init(x) < 0) {
        free(d);
        return -1;
    }
    d->x = x;
    d->next_seq = 1;
    ev_init(&d->timer, on_timer);
    d->timer.data = d;
    x->delay = d;
    x->route_ops = d->inner;
    /* A durable delayed exchange names its journal records by a store id from
     * the queue id space; a replayed one gets its recorded id instead. */
    if (x->durable && !x->builtin && !broker.defs.suspended) d->store_id = broker.next_queue_id++;
    d->next = broker.delays;
    if (broker.delays) broker.delays->prev = d;
    broker.delays = d;
    return 0;
}

static void delayed_destroy(exchange_t *x) {
    struct delay *d = x->delay;
    /* Held messages go with the exchange; its store id is dead in the
     * definitions log, so recovery ignores its records: no ACKs needed. */
    for (uint32_t i = 0; i < d->n; i++) {
        qentry_t *e = &d->heap[i].e;
        if (e->seg) store_ack_id(d->store_id, false, e);
        entry_release(d, e);
    }
    ev_timer_stop(broker.loop, &d->timer);
    if (d->prev)
        d->prev->next = d->next;
    else
        broker.delays = d->next;
    if (d->next) d->next->prev = d->prev;
    d->inner->destroy(x);
    free(d->heap);
    free(d);
    x->delay = NULL;
}

static int delayed_check_args(wn_bytes_t args, char *err, size_t errlen) {
    (void)args;
    (void)err;
    (void)errlen;
    return 0; /* bindings are checked by the delayed type (exchange_t.route_ops) */
}
static void delayed_add(exchange_t *x, binding_t *b) {
    x->delay->inner->add(x, b);
}
static void delayed_remove(exchange_t *x, binding_t *b) {
    x->delay->inner->remove(x, b);
}
static void delayed_route(exchange_t *x, const route_msg_t *msg, route_ctx_t *ctx) {
    x->delay->inner->route(x, msg, ctx);
}

const exchange_ops_t exchange_delayed_ops = {
    .name = "x-delayed-message",
    .check_args = delayed_check_args,
    .init = delayed_init,
    .destroy = delayed_destroy,
    .add = delayed_add,
    .remove = delayed_remove,
    .route = delayed_route,
};

/* ---- the journal's view -------------------------------------------------------------- */

uint32_t delay_store_id(const exchange_t *x) {
    return x->delay ? x->delay->store_id : 0;
}

void delay_set_store_id(exchange_t *x, uint32_t id) {
    if (x->delay) x->delay->store_id = id;
}

void delay_index(exchange_t **by_id, uint32_t n) {
    for (struct delay *d = broker.delays; d; d = d->next)
        if (d->store_id && d->store_id < n) by_id[d->store_id - 1] = d->x;
}

void delay_recover(exchange_t *x, const qentry_t *at) {
    struct delay *d = x->delay;
    uint64_t published_ms = now_us() / 1000;
    message_t *m = store_load_ts(at, &published_ms);
    uint64_t delay = 0;
    if (m) {
        /* Held messages carry their x-delay negated. */
        wn_bytes_t headers = message_headers(m);
        wn_value_t v;
        int64_t ms;
        if (headers.len && wn_table_get(headers, "x-delay", &v) && value_delay(&v, &ms))
            delay = (uint64_t)(ms < 0 ? -ms : ms);
    }
    if (!hold_entry(d, m, at, (published_ms + delay) * 1000))
        log_error("out of memory recovering a delayed message of exchange '%s'", x->name);
    if (m) message_unref(m);
}

void delay_each_stored(delay_visit_fn fn, void *ctx) {
    for (struct delay *d = broker.delays; d; d = d->next)
        for (uint32_t i = 0; i < d->n; i++)
            if (d->heap[i].e.seg) fn(d->store_id, &d->heap[i].e, ctx);
}
