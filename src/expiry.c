/*
 * expiry.c - message TTL and queue x-expires (see expiry.h).
 *
 * Owns expiry_t: the per-queue array of expiry times parallel to the ring,
 * the heap of out-of-order expiries, and the two timers. Takes expired
 * messages off the queue through queue.h and hands them to dead_letter.c.
 */
#include "expiry.h"
#include "broker.h"
#include "dead_letter.h"
#include "log.h"
#include "table.h"
#include "vhost.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

uint64_t expiry_now_ms(void) {
    return (uint64_t)(ev_now(broker.loop) * 1000.0);
}

bool expiry_passed(uint64_t at, bool get) {
    uint64_t now = expiry_now_ms();
    return at != EXPIRY_NEVER && (get ? at <= now : at < now);
}

#define EXPIRY_BATCH 10000 /* messages expired per timer callback at most */

static void on_ttl_timer(struct ev_loop *loop, ev_timer *w, int revents);
static void on_idle_timer(struct ev_loop *loop, ev_timer *w, int revents);

/* An integer argument, or -1 if absent (declare.c validated it). */
static int64_t int_arg(const queue_t *q, const char *key) {
    wn_value_t v;
    int64_t i;
    return wn_table_get(q->args, key, &v) && wn_value_as_int(&v, &i) && i >= 0 ? i : -1;
}

static expiry_t *expiry_get(queue_t *q) {
    if (q->expiry) return q->expiry;
    expiry_t *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    x->q = q;
    x->msg_ttl = x->idle_ms = -1;
    x->armed_at = EXPIRY_NEVER;
    ev_init(&x->timer, on_ttl_timer);
    x->timer.data = q;
    ev_init(&x->idle_timer, on_idle_timer);
    x->idle_timer.data = q;
    q->expiry = x;
    return x;
}

void expiry_queue_created(queue_t *q) {
    int64_t ttl = int_arg(q, "x-message-ttl"), idle = int_arg(q, "x-expires");
    if (ttl < 0 && idle <= 0) return;
    expiry_t *x = expiry_get(q);
    if (!x) return; /* out of memory: the queue works, without its timers */
    x->msg_ttl = ttl;
    x->idle_ms = idle > 0 ? idle : -1;
    if (x->idle_ms > 0) {
        x->last_used = ev_now(broker.loop);
        ev_timer_set(&x->idle_timer, (double)x->idle_ms / 1000.0, 0.);
        ev_timer_start(broker.loop, &x->idle_timer);
    }
}

void expiry_queue_deleted(queue_t *q) {
    expiry_t *x = q->expiry;
    if (!x) return;
    ev_timer_stop(broker.loop, &x->timer);
    ev_timer_stop(broker.loop, &x->idle_timer);
    x->armed_at = EXPIRY_NEVER;
}

void expiry_queue_freed(queue_t *q) {
    expiry_t *x = q->expiry;
    if (!x) return;
    expiry_queue_deleted(q);
    free(x->at);
    free(x->heap);
    free(x);
    q->expiry = NULL;
}

void expiry_touch(queue_t *q) {
    if (q->expiry) q->expiry->last_used = ev_now(broker.loop);
}

/* ---- the array beside the ring ----------------------------------------------- */

bool expiry_resize_prepare(const queue_t *q, uint32_t ncap, uint64_t **out) {
    const expiry_t *x = q->expiry;
    *out = NULL;
    if (!x || !x->at) return true;
    uint64_t *at = malloc((size_t)ncap * sizeof *at);
    if (!at) return false;
    for (uint32_t i = 0; i < q->count; i++)
        at[i] = x->at[queue_slot(q, i)];
    *out = at;
    return true;
}

void expiry_resize_commit(queue_t *q, uint64_t *at) {
    if (!at) return;
    free(q->expiry->at);
    q->expiry->at = at;
}

/* The array, created (every entry NEVER) the first time an entry expires. */
static uint64_t *expiry_array(queue_t *q, expiry_t *x) {
    if (x->at) return x->at;
    x->at = malloc((size_t)q->cap * sizeof *x->at);
    if (x->at)
        for (uint32_t i = 0; i < q->cap; i++)
            x->at[i] = EXPIRY_NEVER;
    return x->at;
}

void expiry_moved(queue_t *q, uint32_t from, uint32_t to) {
    expiry_t *x = q->expiry;
    if (x && x->at) x->at[queue_slot(q, to)] = x->at[queue_slot(q, from)];
}

uint64_t expiry_head(const queue_t *q) {
    const expiry_t *x = q->expiry;
    return x && x->at && q->count ? x->at[queue_slot(q, 0)] : EXPIRY_NEVER;
}

/* ---- the heap of out-of-order expiries ---------------------------------------- */

static void heap_swap(expiry_item_t *h, uint32_t a, uint32_t b) {
    expiry_item_t t = h[a];
    h[a] = h[b];
    h[b] = t;
}

static void heap_sift_down(expiry_item_t *h, uint32_t n, uint32_t i) {
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && h[l].at < h[m].at) m = l;
        if (r < n && h[r].at < h[m].at) m = r;
        if (m == i) return;
        heap_swap(h, i, m);
        i = m;
    }
}

/* An item is stale once its message left the ring (delivered, expired) or
 * came back with another time. */
static bool heap_item_live(const queue_t *q, const expiry_item_t *it) {
    int64_t i = queue_find_seq(q, it->seq);
    return i >= 0 && !(queue_at(q, (uint32_t)i)->flags & QENTRY_DEAD) &&
           q->expiry->at[queue_slot(q, (uint32_t)i)] == it->at;
}

/* Drop stale items. Messages that are consumed long before they would
 * expire (RPC replies with an expiration) leave one each; pruning whenever
 * there are twice as many items as ready messages keeps the heap in
 * proportion to the queue, at O(log n) per push amortised. */
static void heap_prune(const queue_t *q, expiry_t *x) {
    uint32_t n = 0;
    for (uint32_t i = 0; i < x->nheap; i++)
        if (heap_item_live(q, &x->heap[i])) x->heap[n++] = x->heap[i];
    x->nheap = n;
    for (uint32_t i = n / 2; i-- > 0;)
        heap_sift_down(x->heap, n, i);
}

static bool heap_push(const queue_t *q, expiry_t *x, uint64_t at, uint64_t seq) {
    if (x->nheap >= 2 * (uint64_t)q->count + 1024) heap_prune(q, x);
    if (x->nheap == x->heap_cap) {
        uint32_t cap = x->heap_cap ? x->heap_cap * 2 : 16;
        expiry_item_t *h = realloc(x->heap, (size_t)cap * sizeof *h);
        if (!h) return false;
        x->heap = h;
        x->heap_cap = cap;
    }
    uint32_t i = x->nheap++;
    x->heap[i] = (expiry_item_t){at, seq};
    while (i > 0 && x->heap[(i - 1) / 2].at > x->heap[i].at) {
        heap_swap(x->heap, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
    return true;
}

static void heap_pop(expiry_t *x) {
    uint32_t n = --x->nheap;
    x->heap[0] = x->heap[n];
    heap_sift_down(x->heap, n, 0);
    if (n == 0 && x->heap_cap > 1024) { /* give a burst's memory back */
        free(x->heap);
        x->heap = NULL;
        x->heap_cap = 0;
    }
}

/* ---- arming ------------------------------------------------------------------- */

static void arm(expiry_t *x, uint64_t at) {
    if (at >= x->armed_at) return;
    uint64_t now = expiry_now_ms();
    ev_timer_stop(broker.loop, &x->timer);
    x->armed_at = at;
    ev_timer_set(&x->timer, at > now ? (double)(at - now) / 1000.0 : 0., 0.);
    ev_timer_start(broker.loop, &x->timer);
}

/* Track entry i expiring at `at`: in the heap too if it expires before
 * entries ahead of it may (QENTRY_EARLY, which stays with it through a
 * delivery and a requeue), and the timer armed early enough. */
static void track(queue_t *q, expiry_t *x, uint32_t i, uint64_t at) {
    qentry_t *e = queue_at(q, i);
    x->at[queue_slot(q, i)] = at;
    if (at == EXPIRY_NEVER) return;
    if ((e->flags & QENTRY_EARLY) && !heap_push(q, x, at, e->seq))
        log_error("queue '%s': out of memory tracking an expiring message", q->name);
    arm(x, at);
}

uint64_t expiry_of(const queue_t *q, uint64_t since, bool has_msg_ttl, uint64_t msg_ms,
                   bool *early) {
    int64_t ttl = q->expiry ? q->expiry->msg_ttl : -1;
    uint64_t at = ttl >= 0 ? since + (uint64_t)ttl : EXPIRY_NEVER;
    bool shorter = has_msg_ttl && since + msg_ms < at;
    if (shorter) at = since + msg_ms;
    /* In a priority queue the ring is not in arrival order: any entry may
     * expire before those ahead of it. */
    *early = shorter || (q->max_priority && at != EXPIRY_NEVER);
    return at;
}

void expiry_restore(queue_t *q, uint32_t i, uint64_t at, bool early) {
    expiry_t *x = q->expiry;
    if (at == EXPIRY_NEVER && (!x || !x->at)) return;
    if (!x) x = expiry_get(q);
    if (!x || !expiry_array(q, x)) return;
    if (early) queue_at(q, i)->flags |= QENTRY_EARLY;
    track(q, x, i, at);
}

void expiry_pushed(queue_t *q, uint32_t i, const message_t *m) {
    uint64_t msg_ms = 0;
    bool has_msg_ttl = m && message_expiration(m, &msg_ms), early;
    if (!has_msg_ttl && (!q->expiry || q->expiry->msg_ttl < 0)) {
        if (q->expiry && q->expiry->at) q->expiry->at[queue_slot(q, i)] = EXPIRY_NEVER;
        return;
    }
    uint64_t at = expiry_of(q, expiry_now_ms(), has_msg_ttl, msg_ms, &early);
    expiry_restore(q, i, at, early);
}

void expiry_inserted(queue_t *q, uint32_t i, bool front, uint64_t at) {
    expiry_t *x = q->expiry;
    if (!x || !x->at) return;
    if (front) {
        for (uint32_t j = 0; j < i; j++)
            x->at[queue_slot(q, j)] = x->at[queue_slot(q, j + 1)];
    } else {
        for (uint32_t j = q->count - 1; j > i; j--)
            x->at[queue_slot(q, j)] = x->at[queue_slot(q, j - 1)];
    }
    track(q, x, i, at);
}

void expiry_requeued(queue_t *q, uint32_t i, bool front, uint64_t at) {
    expiry_inserted(q, i, front, at);
}

/* ---- expiring -------------------------------------------------------------------- */

/* Dead-letter the head while it has expired (dead slots just go). */
static void expire_head(queue_t *q, expiry_t *x, uint64_t now, uint32_t *budget) {
    qentry_t e;
    while (q->count && !q->deleted && *budget) {
        bool dead = queue_at(q, 0)->flags & QENTRY_DEAD;
        if (!dead && x->at[queue_slot(q, 0)] > now) break;
        if (queue_take_at(q, 0, &e)) {
            dead_letter(q, &e, DL_EXPIRED);
            --*budget;
        }
    }
}

/* Dead-letter the heap's entries whose time has come, wherever they are. */
static void expire_heap(queue_t *q, expiry_t *x, uint64_t now, uint32_t *budget) {
    qentry_t e;
    while (x->nheap && x->heap[0].at <= now && !q->deleted && *budget) {
        expiry_item_t it = x->heap[0];
        heap_pop(x);
        if (!heap_item_live(q, &it)) continue;
        if (queue_take_at(q, (uint32_t)queue_find_seq(q, it.seq), &e)) {
            dead_letter(q, &e, DL_EXPIRED);
            --*budget;
        }
    }
}

/* The earliest expiry still pending: the first live entry or the heap's top. */
static uint64_t next_due(queue_t *q, const expiry_t *x) {
    uint64_t at = x->nheap ? x->heap[0].at : EXPIRY_NEVER;
    for (uint32_t i = 0; i < q->count; i++) {
        if (queue_at(q, i)->flags & QENTRY_DEAD) continue;
        uint64_t h = x->at[queue_slot(q, i)];
        return h < at ? h : at;
    }
    return at;
}

static void on_ttl_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)loop;
    (void)revents;
    queue_t *q = w->data;
    expiry_t *x = q->expiry;
    uint64_t now = expiry_now_ms();
    x->armed_at = EXPIRY_NEVER;
    if (q->deleted || !x->at) return;
    queue_ref(q);
    /* A bounded batch per timer: a million messages expiring at once must
     * not keep the loop from its sockets; the rest go in the next rounds. */
    uint32_t budget = EXPIRY_BATCH;
    expire_head(q, x, now, &budget);
    expire_heap(q, x, now, &budget);
    if (!q->deleted) {
        queue_trim(q);
        uint64_t at = next_due(q, x);
        if (at != EXPIRY_NEVER) arm(x, at <= now ? now + 1 : at);
    }
    queue_unref(q);
}

/* ---- x-expires ---------------------------------------------------------------------- */

static void on_idle_timer(struct ev_loop *loop, ev_timer *w, int revents) {
    (void)revents;
    queue_t *q = w->data;
    expiry_t *x = q->expiry;
    double idle = (double)x->idle_ms / 1000.0;
    double left = x->last_used + idle - ev_now(loop);
    if (q->nconsumers == 0 && left <= 0) {
        log_info("queue '%s' in vhost '%s' unused for %" PRId64 " ms (x-expires): deleted", q->name,
                 q->vhost->name, x->idle_ms);
        queue_delete(q);
        return;
    }
    /* In use now: look again after a full period (a consumer leaving touches it). */
    ev_timer_set(w, q->nconsumers || left <= 0 ? idle : left, 0.);
    ev_timer_start(loop, w);
}
