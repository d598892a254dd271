/*
 * dedup.c - the deduplication cache of an exchange or a queue (see dedup.h).
 *
 * A uthash table of header values; uthash keeps its entries in insertion
 * order, so the oldest entry is the head and eviction is O(1). A value is
 * keyed by its encoding (type tag and payload), so the string "1" and the
 * integer 1 are different values; a value longer than DEDUP_MAX_KEY bytes is
 * keyed by its SHA-256, which bounds an entry's size.
 *
 * Owns dedup_t. Reads message headers; writes nothing but its own memory
 * and, for durable owners, records through dedup_log.h.
 */
#include "dedup.h"
#include "args.h"
#include "dedup_log.h"
#include "log.h"
#include "queue.h"
#include "table.h"

#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uthash.h>

#define DEDUP_DEFAULT_SIZE 128
#define DEDUP_MAX_SIZE     10000000 /* entries: a bound on what one declare can cost */
#define DEDUP_MAX_KEY      128      /* longer encoded values are keyed by their SHA-256 */
#define DEDUP_MAX_TTL      4294967295LL
#define DEDUP_HASHED       0xFF /* first byte of a hashed key: never a type tag */

typedef struct dedup_entry {
    UT_hash_handle hh;
    uint64_t expires_ms; /* 0: never */
    uint16_t len;
    uint8_t key[];
} dedup_entry_t;

struct dedup {
    dedup_entry_t *table; /* oldest first */
    uint32_t count, max;
    uint64_t ttl_ms; /* 0: none */
    char header[256];
    uint8_t kind; /* DEDUP_LOG_* of the owner, for the log */
    const void *owner;
};

static const char *const dedup_arg_keys[] = {"x-message-deduplication", "x-cache-size",
                                             "x-cache-ttl", "x-deduplication-header", NULL};

/* ---- arguments ------------------------------------------------------------------ */

static void arg_reason(const char *key, const wn_value_t *v, char *why, size_t len) {
    int64_t i;
    bool is_int = wn_value_as_int(v, &i);
    why[0] = '\0';
    if (strcmp(key, "x-message-deduplication") == 0) {
        if (v->type != WN_FIELD_BOOL)
            snprintf(why, len, "{unacceptable_type,%s}", wn_field_type_name(v->type));
    } else if (strcmp(key, "x-deduplication-header") == 0) {
        if (v->type != WN_FIELD_LONGSTR)
            snprintf(why, len, "{unacceptable_type,%s}", wn_field_type_name(v->type));
        else if (v->v.bytes.len == 0 || v->v.bytes.len > 255 ||
                 memchr(v->v.bytes.ptr, 0, v->v.bytes.len))
            snprintf(why, len, "invalid_header_name");
    } else if (!is_int) {
        snprintf(why, len, "\"expected integer, got %s\"", wn_field_type_name(v->type));
    } else if (i < 0) {
        snprintf(why, len, "{value_negative,%" PRId64 "}", i);
    } else if (strcmp(key, "x-cache-size") == 0 && i == 0) {
        snprintf(why, len, "{value_zero,0}");
    } else if (strcmp(key, "x-cache-size") == 0 && i > DEDUP_MAX_SIZE) {
        snprintf(why, len, "{value_too_large,%" PRId64 "}", i);
    } else if (strcmp(key, "x-cache-ttl") == 0 && i > DEDUP_MAX_TTL) {
        snprintf(why, len, "{value_too_large,%" PRId64 "}", i);
    }
}

int dedup_check_args(wn_bytes_t args, const char *what, char *err, size_t errlen) {
    wn_value_t on;
    /* Without x-message-deduplication the others mean nothing, as in LavinMQ. */
    if (!wn_table_get(args, "x-message-deduplication", &on)) return 0;
    for (const char *const *k = dedup_arg_keys; *k; k++) {
        wn_value_t v;
        char why[128];
        if (!wn_table_get(args, *k, &v)) continue;
        arg_reason(*k, &v, why, sizeof why);
        if (why[0] == '\0') continue;
        snprintf(err, errlen, "invalid arg '%s' for %s: %s", *k, what, why);
        return -1;
    }
    return 0;
}

int dedup_check_equivalent(wn_bytes_t current, wn_bytes_t received, const char *what, char *err,
                           size_t errlen) {
    wn_value_t v;
    if (!wn_table_get(current, "x-message-deduplication", &v) &&
        !wn_table_get(received, "x-message-deduplication", &v))
        return 0;
    return args_check_equivalent(current, received, dedup_arg_keys, what, err, errlen);
}

dedup_t *dedup_new(wn_bytes_t args) {
    wn_value_t v;
    int64_t i;
    if (!wn_table_get(args, "x-message-deduplication", &v) || v.type != WN_FIELD_BOOL || !v.v.b)
        return NULL;
    dedup_t *d = calloc(1, sizeof *d);
    if (!d) {
        log_error("out of memory for a deduplication cache; deduplication is off");
        return NULL;
    }
    d->max = DEDUP_DEFAULT_SIZE;
    if (wn_table_get(args, "x-cache-size", &v) && wn_value_as_int(&v, &i) && i > 0)
        d->max = (uint32_t)i;
    if (wn_table_get(args, "x-cache-ttl", &v) && wn_value_as_int(&v, &i) && i > 0)
        d->ttl_ms = (uint64_t)i;
    strcpy(d->header, "x-deduplication-header");
    if (wn_table_get(args, "x-deduplication-header", &v) && v.type == WN_FIELD_LONGSTR &&
        v.v.bytes.len < sizeof d->header) {
        memcpy(d->header, v.v.bytes.ptr, v.v.bytes.len);
        d->header[v.v.bytes.len] = '\0';
    }
    return d;
}

static void entry_remove(dedup_t *d, dedup_entry_t *e) {
    HASH_DELETE(hh, d->table, e);
    d->count--;
    free(e);
}

void dedup_clear(dedup_t *d) {
    while (d->table)
        entry_remove(d, d->table);
}

void dedup_free(dedup_t *d) {
    if (!d) return;
    dedup_clear(d);
    free(d);
}

void dedup_queue_attach(queue_t *q) {
    q->dedup = dedup_new(q->args);
    if (q->dedup) dedup_set_owner(q->dedup, DEDUP_LOG_QUEUE, q);
}

void dedup_queue_detach(queue_t *q) {
    if (!q->dedup) return;
    dedup_log_forget(DEDUP_LOG_QUEUE, q);
    dedup_free(q->dedup);
    q->dedup = NULL;
}

void dedup_set_owner(dedup_t *d, uint8_t kind, const void *owner) {
    d->kind = kind;
    d->owner = owner;
}

uint32_t dedup_count(const dedup_t *d) {
    return d->count;
}

/* ---- the cache ---------------------------------------------------------------------- */

/* The key of a header value: its encoding, or a marker and the SHA-256 of it. */
static size_t value_key(const wn_value_t *v, uint8_t out[DEDUP_MAX_KEY]) {
    wn_writer_t w;
    wn_writer_init(&w, out, DEDUP_MAX_KEY);
    wn_value_put(&w, v);
    if (!w.overflow) return w.len;
    /* Only the variable-length types get here: hash the tag and the bytes. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int n = 0;
    if (!md) return 0;
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    EVP_DigestUpdate(md, &v->type, 1);
    EVP_DigestUpdate(md, v->v.bytes.ptr, v->v.bytes.len);
    EVP_DigestFinal_ex(md, out + 1, &n);
    EVP_MD_CTX_free(md);
    out[0] = DEDUP_HASHED;
    return 1 + n;
}

static bool expired(const dedup_entry_t *e, uint64_t now_ms) {
    return e->expires_ms != 0 && e->expires_ms <= now_ms;
}

static void entry_add(dedup_t *d, wn_bytes_t key, uint64_t expires_ms) {
    dedup_entry_t *e = malloc(sizeof *e + key.len);
    if (!e) return; /* a value not remembered: at worst a duplicate goes through */
    e->expires_ms = expires_ms;
    e->len = (uint16_t)key.len;
    memcpy(e->key, key.ptr, key.len);
    HASH_ADD(hh, d->table, key, e->len, e);
    d->count++;
}

/* Make room: expired entries at the head first, then the oldest. */
static void make_room(dedup_t *d, uint64_t now_ms) {
    while (d->table && expired(d->table, now_ms))
        entry_remove(d, d->table);
    while (d->count >= d->max && d->table)
        entry_remove(d, d->table);
}

static uint64_t message_ttl(const dedup_t *d, wn_bytes_t headers) {
    wn_value_t v;
    int64_t i;
    if (wn_table_get(headers, "x-cache-ttl", &v) && wn_value_as_int(&v, &i) && i > 0 &&
        i <= DEDUP_MAX_TTL)
        return (uint64_t)i;
    return d->ttl_ms;
}

bool dedup_seen(dedup_t *d, const message_t *m, uint64_t now_ms, bool persist) {
    wn_bytes_t headers = message_headers(m);
    wn_value_t v;
    uint8_t kb[DEDUP_MAX_KEY];
    dedup_entry_t *e = NULL;
    if (!headers.len || !wn_table_get(headers, d->header, &v)) return false;
    size_t klen = value_key(&v, kb);
    if (klen == 0) return false;
    HASH_FIND(hh, d->table, kb, klen, e);
    if (e && !expired(e, now_ms)) return true;
    if (e) entry_remove(d, e);
    make_room(d, now_ms);
    uint64_t ttl = message_ttl(d, headers);
    uint64_t expires = ttl ? now_ms + ttl : 0;
    entry_add(d, wn_bytes(kb, klen), expires);
    if (persist && d->owner) dedup_log_add(d->kind, d->owner, wn_bytes(kb, klen), expires);
    return false;
}

void dedup_each(dedup_t *d, uint64_t now_ms, dedup_visit_fn fn, void *ctx) {
    for (dedup_entry_t *e = d->table; e; e = e->hh.next)
        if (!expired(e, now_ms)) fn(wn_bytes(e->key, e->len), e->expires_ms, ctx);
}

void dedup_restore(dedup_t *d, wn_bytes_t key, uint64_t expires_ms, uint64_t now_ms) {
    dedup_entry_t *e = NULL;
    if (key.len == 0 || key.len > 1 + DEDUP_MAX_KEY) return;
    if (expires_ms != 0 && expires_ms <= now_ms) return;
    HASH_FIND(hh, d->table, key.ptr, key.len, e);
    if (e) entry_remove(d, e);
    make_room(d, now_ms);
    entry_add(d, key, expires_ms);
}
