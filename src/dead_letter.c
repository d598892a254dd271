/*
 * dead_letter.c - dead-lettering (see dead_letter.h): the new message with
 * its rewritten properties, cycle detection, and routing through the
 * dead-letter exchange.
 *
 * The x-death header follows RabbitMQ 3.10-3.12 byte for byte (checked
 * against the reference broker): the headers table comes out sorted by key;
 * x-death is an array of tables, most recent first, one per {queue, reason};
 * the very first entry of a message lists count, reason, queue, time,
 * exchange, routing-keys (and original-expiration) in that order, while an
 * entry added or updated later is sorted by key; a repeat increments count
 * and moves its entry to the front, keeping everything else. The
 * x-first-death-* headers are written with the first entry only.
 *
 * Owns nothing; the copy is a new message_t routed like a publish (no
 * confirm, no mandatory return).
 */
#include "dead_letter.h"
#include "broker.h"
#include "exchange.h"
#include "log.h"
#include "publish.h"
#include "store.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>

static const char *const reason_names[] = {"rejected", "expired", "maxlen", "delivery_limit"};

/* One entry of a table being rebuilt: its key and its encoded value (tag
 * and payload), pointing into the old table or a scratch buffer. */
typedef struct field {
    wn_bytes_t key, val;
} field_t;

typedef struct fields {
    field_t *f;
    size_t n, cap;
} fields_t;

/* What RabbitMQ records about this death. */
typedef struct death {
    wn_bytes_t queue, reason, exchange, routing_key;
    wn_bytes_t cc;         /* the CC header's array body, or empty */
    wn_bytes_t expiration; /* the expiration property; ptr NULL if none */
    uint64_t time;         /* seconds */
} death_t;

/* ---- tables as lists of fields ------------------------------------------------- */

static bool fields_add(fields_t *fs, wn_bytes_t key, wn_bytes_t val) {
    if (fs->n == fs->cap) {
        size_t cap = fs->cap ? fs->cap * 2 : 16;
        field_t *f = realloc(fs->f, cap * sizeof *f);
        if (!f) return false;
        fs->f = f;
        fs->cap = cap;
    }
    fs->f[fs->n++] = (field_t){key, val};
    return true;
}

/* Every entry of a table body, values kept encoded. */
static bool fields_read(fields_t *fs, wn_bytes_t table) {
    wn_table_iter_t it;
    wn_bytes_t key, raw;
    wn_value_t v;
    wn_table_iter_init(&it, table);
    while (wn_table_next_raw(&it, &key, &v, &raw))
        if (!fields_add(fs, key, raw)) return false;
    return true;
}

static field_t *fields_find(fields_t *fs, const char *key) {
    for (size_t i = 0; i < fs->n; i++)
        if (wn_bytes_eq_cstr(fs->f[i].key, key)) return &fs->f[i];
    return NULL;
}

/* Erlang's lists:keystore: replace the first entry with this key, or append. */
static bool fields_set(fields_t *fs, const char *key, wn_bytes_t val) {
    field_t *f = fields_find(fs, key);
    if (f) {
        f->val = val;
        return true;
    }
    return fields_add(fs, wn_cstr(key), val);
}

static void fields_delete(fields_t *fs, const char *key) {
    field_t *f = fields_find(fs, key);
    if (!f) return;
    memmove(f, f + 1, (size_t)(fs->f + fs->n - f - 1) * sizeof *f);
    fs->n--;
}

/* Erlang orders binaries byte by byte, a prefix first. */
static int key_cmp(wn_bytes_t a, wn_bytes_t b) {
    int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
    return c ? c : (a.len > b.len) - (a.len < b.len);
}

/* A stable sort (lists:keysort): insertion, tables are short. */
static void fields_sort(fields_t *fs) {
    for (size_t i = 1; i < fs->n; i++) {
        field_t f = fs->f[i];
        size_t j = i;
        for (; j > 0 && key_cmp(fs->f[j - 1].key, f.key) > 0; j--)
            fs->f[j] = fs->f[j - 1];
        fs->f[j] = f;
    }
}

static void fields_write(wn_writer_t *w, const fields_t *fs) {
    for (size_t i = 0; i < fs->n; i++) {
        wn_put_shortstr(w, fs->f[i].key);
        wn_put_raw(w, fs->f[i].val.ptr, fs->f[i].val.len);
    }
}

/* ---- x-death ----------------------------------------------------------------------- */

static void put_str(wn_writer_t *w, const char *key, wn_bytes_t s) {
    wn_put_shortstr(w, wn_cstr(key));
    wn_put8(w, WN_FIELD_LONGSTR);
    wn_put_longstr(w, s);
}

static void put_u64(wn_writer_t *w, const char *key, uint8_t type, uint64_t v) {
    wn_put_shortstr(w, wn_cstr(key));
    wn_put8(w, type);
    wn_put64(w, v);
}

/* routing-keys: the routing key of the publish, then the CC keys. */
static void put_routing_keys(wn_writer_t *w, const death_t *d) {
    wn_table_iter_t it;
    wn_value_t v;
    size_t mark = wn_table_begin_nested(w, "routing-keys", WN_FIELD_ARRAY);
    wn_put8(w, WN_FIELD_LONGSTR);
    wn_put_longstr(w, d->routing_key);
    wn_array_iter_init(&it, d->cc);
    while (wn_array_next(&it, &v))
        if (v.type == WN_FIELD_LONGSTR) wn_value_put(w, &v);
    wn_table_end(w, mark);
}

/* A new entry (count 1), as an array element: in RabbitMQ's order of its
 * fields for a message's first death, sorted by key for any later one. */
static void put_new_death(wn_writer_t *w, const death_t *d, bool sorted) {
    size_t mark = wn_table_begin_nested(w, NULL, WN_FIELD_TABLE);
    put_u64(w, "count", WN_FIELD_I64, 1);
    if (sorted) {
        put_str(w, "exchange", d->exchange);
        if (d->expiration.ptr) put_str(w, "original-expiration", d->expiration);
        put_str(w, "queue", d->queue);
        put_str(w, "reason", d->reason);
        put_routing_keys(w, d);
        put_u64(w, "time", WN_FIELD_TIMESTAMP, d->time);
    } else {
        put_str(w, "reason", d->reason);
        put_str(w, "queue", d->queue);
        put_u64(w, "time", WN_FIELD_TIMESTAMP, d->time);
        put_str(w, "exchange", d->exchange);
        put_routing_keys(w, d);
        if (d->expiration.ptr) put_str(w, "original-expiration", d->expiration);
    }
    wn_table_end(w, mark);
}

/* An earlier entry of the x-death array. */
typedef struct death_ref {
    wn_bytes_t raw;   /* the element as it was: tag and payload */
    wn_bytes_t table; /* its table body (empty for an element that is not a table) */
    int64_t count;    /* RabbitMQ's grouping adds count = duplicates if it had none; else 0 */
} death_ref_t;

static void put_count(wn_writer_t *w, int64_t n) {
    put_u64(w, "count", WN_FIELD_I64, (uint64_t)n);
}

/* The entry for the same {queue, reason} as this death: count + 1 (after
 * grouping's count, if it added one), fields sorted. */
static bool put_repeated_death(wn_writer_t *w, const death_ref_t *r) {
    fields_t fs = {0};
    uint8_t count[9] = {WN_FIELD_I64};
    wn_value_t v;
    int64_t n = r->count;
    if (wn_table_get(r->table, "count", &v) && !wn_value_as_int(&v, &n)) n = 0;
    wn_store64(count + 1, (uint64_t)(n + 1));
    bool ok = fields_read(&fs, r->table);
    if (ok && !fields_find(&fs, "count"))
        ok = fields_add(&fs, WN_BYTES_LIT("count"), wn_bytes(count, 9));
    if (ok) {
        fields_find(&fs, "count")->val = wn_bytes(count, 9);
        fields_sort(&fs);
        size_t mark = wn_table_begin_nested(w, NULL, WN_FIELD_TABLE);
        fields_write(w, &fs);
        wn_table_end(w, mark);
    }
    free(fs.f);
    return ok;
}

/* Another entry: as it was, or with the count grouping gave it. */
static void put_other_death(wn_writer_t *w, const death_ref_t *r) {
    if (!r->count) {
        wn_put_raw(w, r->raw.ptr, r->raw.len);
        return;
    }
    size_t mark = wn_table_begin_nested(w, NULL, WN_FIELD_TABLE);
    put_count(w, r->count);
    wn_put_raw(w, r->table.ptr, r->table.len);
    wn_table_end(w, mark);
}

static bool str_field_is(wn_bytes_t table, const char *key, wn_bytes_t want) {
    wn_value_t v;
    return wn_table_get(table, key, &v) &&
           (v.type == WN_FIELD_LONGSTR || v.type == WN_FIELD_BYTES) && wn_bytes_eq(v.v.bytes, want);
}

/* Do two entries have the same queue and reason (both absent counts too)? */
static bool same_key(wn_bytes_t a, wn_bytes_t b) {
    static const char *const keys[] = {"queue", "reason"};
    for (int i = 0; i < 2; i++) {
        wn_value_t va, vb;
        bool ha = wn_table_get(a, keys[i], &va), hb = wn_table_get(b, keys[i], &vb);
        if (ha != hb || (ha && !wn_value_equal(&va, &vb))) return false;
    }
    return true;
}

/* The elements of an x-death array. */
static size_t read_deaths(wn_bytes_t array, death_ref_t **out) {
    wn_table_iter_t it;
    wn_value_t v;
    size_t n = 0, cap = 0;
    *out = NULL;
    wn_array_iter_init(&it, array);
    for (const uint8_t *at = it.r.p; wn_array_next(&it, &v); at = it.r.p) {
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            death_ref_t *p = realloc(*out, cap * sizeof *p);
            if (!p) return SIZE_MAX;
            *out = p;
        }
        (*out)[n++] =
            (death_ref_t){wn_bytes(at, (size_t)(it.r.p - at)),
                          v.type == WN_FIELD_TABLE ? v.v.bytes : (wn_bytes_t){NULL, 0}, 0};
    }
    return n;
}

/* RabbitMQ's group_by_queue_and_reason, for two entries or more: one per
 * {queue, reason} (the first), given count = how many there were if it had
 * no count, in reverse order of first appearance. Elements that are not
 * tables are left out (RabbitMQ's queue would crash on them). */
static size_t group_deaths(death_ref_t *d, size_t n) {
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i].raw.ptr[0] != WN_FIELD_TABLE) continue;
        bool seen = false;
        int64_t dups = 0;
        for (size_t j = 0; j < n; j++) {
            if (d[j].raw.ptr[0] != WN_FIELD_TABLE || !same_key(d[i].table, d[j].table)) continue;
            seen |= j < i;
            dups++;
        }
        if (seen) continue;
        wn_value_t c;
        d[i].count = wn_table_get(d[i].table, "count", &c) ? 0 : dups;
        d[kept++] = d[i];
    }
    for (size_t i = 0; i < kept / 2; i++) { /* a fold that prepends */
        death_ref_t t = d[i];
        d[i] = d[kept - 1 - i];
        d[kept - 1 - i] = t;
    }
    return kept;
}

/* The new x-death array (tag, length, elements): this death first, then the
 * others, after RabbitMQ's update_x_death_header. */
static bool put_xdeath(wn_writer_t *w, const death_t *d, const wn_value_t *old) {
    wn_put8(w, WN_FIELD_ARRAY);
    size_t mark = wn_table_begin(w);
    if (!old || old->type != WN_FIELD_ARRAY) { /* none, or not an array: start over */
        put_new_death(w, d, false);
        wn_table_end(w, mark);
        return true;
    }
    death_ref_t *refs;
    size_t n = read_deaths(old->v.bytes, &refs), match = SIZE_MAX;
    if (n == SIZE_MAX) {
        free(refs);
        return false;
    }
    if (n > 1) n = group_deaths(refs, n);
    for (size_t i = 0; i < n && match == SIZE_MAX; i++)
        if (refs[i].raw.ptr[0] == WN_FIELD_TABLE &&
            str_field_is(refs[i].table, "queue", d->queue) &&
            str_field_is(refs[i].table, "reason", d->reason))
            match = i;
    bool ok =
        match == SIZE_MAX ? (put_new_death(w, d, true), true) : put_repeated_death(w, &refs[match]);
    for (size_t i = 0; i < n && ok; i++)
        if (i != match) put_other_death(w, &refs[i]);
    free(refs);
    wn_table_end(w, mark);
    return ok;
}

/* ---- the new properties ----------------------------------------------------------- */

/* The new headers table body, into w; the values it adds live in scratch. */
static bool build_headers(wn_writer_t *w, wn_writer_t *scratch, wn_bytes_t old, const death_t *d,
                          bool drop_cc) {
    fields_t fs = {0};
    wn_value_t xd;
    bool had = wn_table_get(old, "x-death", &xd);
    bool ok = fields_read(&fs, old);
    size_t x0 = scratch->len;
    ok = ok && put_xdeath(scratch, d, had ? &xd : NULL);
    size_t x1 = scratch->len;
    if (ok && !had) { /* the first death also gets headers of its own */
        wn_bytes_t vals[3] = {d->reason, d->queue, d->exchange};
        const char *keys[3] = {"x-first-death-reason", "x-first-death-queue",
                               "x-first-death-exchange"};
        for (int i = 0; i < 3 && ok; i++) {
            size_t s0 = scratch->len;
            wn_put8(scratch, WN_FIELD_LONGSTR);
            wn_put_longstr(scratch, vals[i]);
            ok = !scratch->overflow &&
                 fields_set(&fs, keys[i], wn_bytes(scratch->buf + s0, scratch->len - s0));
        }
    }
    ok = ok && !scratch->overflow &&
         fields_set(&fs, "x-death", wn_bytes(scratch->buf + x0, x1 - x0));
    if (ok) {
        fields_sort(&fs);
        if (drop_cc) fields_delete(&fs, "CC");
        fields_write(w, &fs);
    }
    free(fs.f);
    return ok && !w->overflow;
}

/* The dead-lettered copy of m: new headers, no expiration, routed by rk
 * through the exchange dlx. NULL (logged) if it cannot be made. */
static message_t *dl_message(const message_t *m, wn_bytes_t dlx, wn_bytes_t rk, bool has_dlrk,
                             const death_t *d_in) {
    size_t cap = 2 * (size_t)m->props_len + 8192;
    uint8_t *buf = malloc(12 + (size_t)m->props_len + 3 * cap);
    wn_content_header_t h;
    message_t *out = NULL;
    death_t d = *d_in;
    if (!buf) return NULL;
    memset(buf, 0, 12);
    buf[1] = WN_CLASS_BASIC;
    memcpy(buf + 12, message_props(m), m->props_len);
    if (wn_content_header_decode(buf, 12 + (size_t)m->props_len, &h) != 0) goto out;
    wn_bytes_t old_headers =
        (h.props.flags & WN_BASIC_HEADERS_FLAG) ? h.props.headers : (wn_bytes_t){NULL, 0};
    wn_value_t cc;
    if (wn_table_get(old_headers, "CC", &cc) && cc.type == WN_FIELD_ARRAY) d.cc = cc.v.bytes;
    if (h.props.flags & WN_BASIC_EXPIRATION_FLAG) d.expiration = h.props.expiration;

    uint8_t *hbuf = buf + 12 + m->props_len, *sbuf = hbuf + cap, *ebuf = sbuf + cap;
    wn_writer_t hw, sw;
    wn_writer_init(&hw, hbuf, cap);
    wn_writer_init(&sw, sbuf, cap);
    if (!build_headers(&hw, &sw, old_headers, &d, has_dlrk)) goto out;
    h.props.flags = (uint16_t)((h.props.flags | WN_BASIC_HEADERS_FLAG) & ~WN_BASIC_EXPIRATION_FLAG);
    h.props.headers = wn_bytes(hbuf, hw.len);
    h.body_size = m->body_len;
    size_t n = wn_content_header_encode(&h, ebuf, cap);
    if (n < 12) goto out;
    wn_bytes_t bcc = has_dlrk ? (wn_bytes_t){NULL, 0} : message_bcc(m);
    out = message_new(dlx, rk, ebuf + 12, (uint32_t)(n - 12), bcc, m->body_len, &h.props);
    if (out) message_put_body(out, 0, message_body(m), m->body_len);
out:
    free(buf);
    return out;
}

/* ---- cycles ---------------------------------------------------------------------------- */

/* RabbitMQ drops the copy for a queue it already died in when every death
 * since (that one included) was automatic: no rejection in the cycle. */
static bool is_cycle(wn_bytes_t xdeath, wn_bytes_t qname) {
    wn_table_iter_t it;
    wn_value_t v;
    bool automatic = true;
    wn_array_iter_init(&it, xdeath);
    while (wn_array_next(&it, &v)) {
        if (v.type != WN_FIELD_TABLE) {
            automatic = false; /* a client put it there */
            continue;
        }
        if (str_field_is(v.v.bytes, "reason", WN_BYTES_LIT("rejected"))) automatic = false;
        if (str_field_is(v.v.bytes, "queue", qname)) return automatic;
    }
    return false;
}

/* Keep the queues the copy may go to. */
static uint32_t drop_cycles(const message_t *dm, queue_t **qs, uint32_t n) {
    wn_value_t xd;
    uint32_t kept = 0;
    if (!wn_table_get(message_headers(dm), "x-death", &xd) || xd.type != WN_FIELD_ARRAY) return n;
    for (uint32_t i = 0; i < n; i++) {
        if (is_cycle(xd.v.bytes, wn_bytes(qs[i]->name, qs[i]->name_len))) {
            log_debug("dead-letter cycle through queue '%s' in vhost '%s': message dropped",
                      qs[i]->name, qs[i]->vhost->name);
            continue;
        }
        qs[kept++] = qs[i];
    }
    return kept;
}

/* ---- dead-lettering ----------------------------------------------------------------------- */

static void dl_publish(queue_t *q, const message_t *m, wn_bytes_t dlx, dl_reason_t reason) {
    exchange_t *x = exchange_find(q->vhost, dlx);
    wn_value_t v;
    bool has_dlrk = wn_table_get(q->args, "x-dead-letter-routing-key", &v) &&
                    v.type == WN_FIELD_LONGSTR && v.v.bytes.len <= 255;
    wn_bytes_t rk = has_dlrk ? v.v.bytes : message_routing_key(m);
    death_t d = {.queue = wn_bytes(q->name, q->name_len),
                 .reason = wn_cstr(reason_names[reason]),
                 .exchange = message_exchange(m),
                 .routing_key = message_routing_key(m),
                 .time = (uint64_t)ev_now(broker.loop)};
    if (!x) {
        log_debug("queue '%s': dead-letter exchange '%.*s' does not exist; message dropped",
                  q->name, (int)dlx.len, (const char *)dlx.ptr);
        return;
    }
    message_t *dm = dl_message(m, dlx, rk, has_dlrk, &d);
    if (!dm) {
        log_error("queue '%s' in vhost '%s': cannot build a dead-lettered message; dropped",
                  q->name, q->vhost->name);
        return;
    }
    /* A push may dead-letter in turn (a length limit): the inner one routes
     * into a result of its own. */
    route_result_t local = {0};
    bool outer = !broker.dl_routing;
    route_result_t *r = outer ? &broker.dl_route_result : &local;
    route_msg_t rm = {rk, message_headers(dm), message_bcc(dm)};
    broker.dl_routing = true;
    exchange_route(x, &rm, r);
    uint32_t n = drop_cycles(dm, r->queues, r->n);
    bool journaled = false;
    if (!publish_enqueue(dm, r->queues, n, &journaled))
        log_error("queue '%s' in vhost '%s': a dead-lettered message could not be kept by every "
                  "queue it was routed to",
                  q->name, q->vhost->name);
    if (outer) broker.dl_routing = false;
    route_result_free(&local);
    message_unref(dm);
}

void dead_letter(queue_t *q, qentry_t *e, dl_reason_t reason) {
    wn_value_t dlx;
    if (!q->deleted && wn_table_get(q->args, "x-dead-letter-exchange", &dlx) &&
        dlx.type == WN_FIELD_LONGSTR && dlx.v.bytes.len <= 255) {
        message_t *m = e->msg ? e->msg : store_load(e);
        if (m) dl_publish(q, m, dlx.v.bytes, reason);
        if (m && m != e->msg) message_unref(m);
    }
    /* Only now, after the copy's MSG record, the original's ACK. */
    store_ack(q, e);
    if (e->msg) message_unref(e->msg);
}
