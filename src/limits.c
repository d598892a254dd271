/*
 * limits.c - queue length limits and delivery limits (see limits.h).
 *
 * Owns the limit fields of queue_t and the entry flags' return count.
 * Removals go through dead_letter(), which records them in the journal.
 */
#include "limits.h"
#include "dead_letter.h"
#include "log.h"
#include "table.h"

#include <stdlib.h>
#include <string.h>

static uint64_t arg_u64(wn_bytes_t args, const char *key) {
    wn_value_t v;
    int64_t n;
    if (wn_table_get(args, key, &v) && wn_value_as_int(&v, &n) && n >= 0) return (uint64_t)n;
    return LIMIT_NONE;
}

void limits_read_args(queue_t *q) {
    wn_value_t v;
    q->max_len = arg_u64(q->args, "x-max-length");
    q->max_bytes = arg_u64(q->args, "x-max-length-bytes");
    q->delivery_limit = arg_u64(q->args, "x-delivery-limit");
    q->overflow = OVERFLOW_DROP_HEAD;
    if (wn_table_get(q->args, "x-overflow", &v) && v.type == WN_FIELD_LONGSTR) {
        if (wn_bytes_eq_cstr(v.v.bytes, "reject-publish"))
            q->overflow = OVERFLOW_REJECT_PUBLISH;
        else if (wn_bytes_eq_cstr(v.v.bytes, "reject-publish-dlx"))
            q->overflow = OVERFLOW_REJECT_PUBLISH_DLX;
    }
}

/* ---- length ---------------------------------------------------------------- */

static bool over(const queue_t *q) {
    return queue_ready(q) > q->max_len || q->ready_bytes > q->max_bytes;
}

/* Would m take the queue over a limit? (reject-publish refuses it then; as
 * RabbitMQ, a smaller message may still fit where a bigger one did not.) */
static bool would_overflow(const queue_t *q, const message_t *m) {
    return queue_ready(q) >= q->max_len || m->body_len > q->max_bytes - q->ready_bytes ||
           q->ready_bytes > q->max_bytes;
}

bool limits_admit(queue_t *q, message_t *m) {
    if (q->overflow == OVERFLOW_DROP_HEAD || !would_overflow(q, m)) return true;
    if (q->overflow == OVERFLOW_REJECT_PUBLISH_DLX) {
        qentry_t e = {.msg = m};
        message_ref(m); /* dead_letter takes the entry's reference */
        dead_letter(q, &e, DL_MAXLEN);
    }
    return false;
}

void limits_enforce(queue_t *q) {
    qentry_t e;
    uint64_t expires;
    if (q->overflow != OVERFLOW_DROP_HEAD) return;
    while (over(q) && queue_ready(q) > 0) {
        if (!queue_pop(q, &e, &expires, true)) return;
        dead_letter(q, &e, DL_MAXLEN);
    }
}

/* ---- deliveries ------------------------------------------------------------- */

bool limits_returned(queue_t *q, qentry_t *e) {
    if (q->delivery_limit == LIMIT_NONE) return true;
    uint32_t returns = qentry_returns(e);
    if (returns < UINT16_MAX) returns++;
    e->flags = (e->flags & ((1u << QENTRY_RETURNS_SHIFT) - 1)) | returns << QENTRY_RETURNS_SHIFT;
    if (returns <= q->delivery_limit) return true;
    dead_letter(q, e, DL_DELIVERY_LIMIT);
    return false;
}

/* The message's headers with x-delivery-count set to n (replacing any). */
static bool put_headers(wn_writer_t *w, wn_bytes_t old, uint32_t n) {
    wn_table_iter_t it;
    wn_bytes_t key, raw;
    wn_value_t v;
    wn_table_iter_init(&it, old);
    while (wn_table_next_raw(&it, &key, &v, &raw)) {
        if (wn_bytes_eq_cstr(key, "x-delivery-count")) continue;
        wn_put_shortstr(w, key);
        wn_put_raw(w, raw.ptr, raw.len);
    }
    wn_table_put_i64(w, "x-delivery-count", n);
    return !w->overflow;
}

static message_t *with_delivery_count(const message_t *m, uint32_t n) {
    size_t cap = (size_t)m->props_len + 64;
    uint8_t *buf = malloc(12 + (size_t)m->props_len + 2 * cap);
    wn_content_header_t h;
    message_t *out = NULL;
    if (!buf) return NULL;
    memset(buf, 0, 12);
    buf[1] = WN_CLASS_BASIC;
    memcpy(buf + 12, message_props(m), m->props_len);
    if (wn_content_header_decode(buf, 12 + (size_t)m->props_len, &h) != 0) goto out;
    wn_bytes_t old = (h.props.flags & WN_BASIC_HEADERS_FLAG) ? h.props.headers : (wn_bytes_t){0};
    uint8_t *hbuf = buf + 12 + m->props_len, *ebuf = hbuf + cap;
    wn_writer_t hw;
    wn_writer_init(&hw, hbuf, cap);
    if (!put_headers(&hw, old, n)) goto out;
    h.props.flags |= WN_BASIC_HEADERS_FLAG;
    h.props.headers = wn_bytes(hbuf, hw.len);
    h.body_size = m->body_len;
    size_t len = wn_content_header_encode(&h, ebuf, cap);
    if (len < 12) goto out;
    out = message_new(message_exchange(m), message_routing_key(m), ebuf + 12, (uint32_t)(len - 12),
                      message_bcc(m), m->body_len, &h.props);
    if (out) message_put_body(out, 0, message_body(m), m->body_len);
out:
    free(buf);
    return out;
}

void limits_mark_delivery(queue_t *q, qentry_t *e) {
    uint32_t n = qentry_returns(e);
    if (q->delivery_limit == LIMIT_NONE || n == 0 || !e->msg) return;
    message_t *m = with_delivery_count(e->msg, n);
    if (!m) {
        log_warning("queue '%s': cannot add x-delivery-count to a redelivery", q->name);
        return;
    }
    message_unref(e->msg);
    e->msg = m;
}
