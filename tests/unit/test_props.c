/*
 * test_props.c - unit tests for the content-header codec (basic properties)
 * in the generated codec/methods.c.
 *
 * The property list is written out here by hand from the spec, not taken
 * from the codec, so that a property out of order or on the wrong flag bit
 * fails: all fourteen round trip together, none, and each alone; every
 * truncation, a trailing byte and impossible flag words are refused with
 * 502; and one header is checked against bytes written out by hand.
 */
#include "methods.h"
#include "tap.h"

#include <stdlib.h>

typedef enum { P_SHORTSTR, P_TABLE, P_OCTET, P_TIMESTAMP } prop_type_t;

typedef struct {
    const char *name;
    uint16_t flag;
    prop_type_t type;
    size_t offset; /* in wn_basic_props_t */
} prop_t;

#define PROP(name, bit, type, member)                                                              \
    { name, 1u << (bit), type, offsetof(wn_basic_props_t, member) }

/* The spec's basic class fields, in order: bit 15 first. */
static const prop_t props[] = {
    PROP("content-type", 15, P_SHORTSTR, content_type),
    PROP("content-encoding", 14, P_SHORTSTR, content_encoding),
    PROP("headers", 13, P_TABLE, headers),
    PROP("delivery-mode", 12, P_OCTET, delivery_mode),
    PROP("priority", 11, P_OCTET, priority),
    PROP("correlation-id", 10, P_SHORTSTR, correlation_id),
    PROP("reply-to", 9, P_SHORTSTR, reply_to),
    PROP("expiration", 8, P_SHORTSTR, expiration),
    PROP("message-id", 7, P_SHORTSTR, message_id),
    PROP("timestamp", 6, P_TIMESTAMP, timestamp),
    PROP("type", 5, P_SHORTSTR, type),
    PROP("user-id", 4, P_SHORTSTR, user_id),
    PROP("app-id", 3, P_SHORTSTR, app_id),
    PROP("cluster-id", 2, P_SHORTSTR, cluster_id),
};
#define NPROPS (sizeof props / sizeof props[0])

#define BUF_CAP 8192

static uint8_t text[300];

/* A headers table body: x-death-count = I32 3, x-first = "yes" (longstr). */
static const uint8_t headers_body[] = {13,  'x', '-', 'd', 'e', 'a', 't', 'h', '-', 'c', 'o', 'u',
                                       'n', 't', 'I', 0,   0,   0,   3,   7,   'x', '-', 'f', 'i',
                                       'r', 's', 't', 'S', 0,   0,   0,   3,   'y', 'e', 's'};

static void *prop_at(wn_basic_props_t *p, const prop_t *d) {
    return (uint8_t *)p + d->offset;
}

static const void *prop_at_c(const wn_basic_props_t *p, const prop_t *d) {
    return (const uint8_t *)p + d->offset;
}

/* Give property i a value of its own: strings of different lengths and
 * contents, so that two properties swapped on the wire would not compare
 * equal. */
static void set_prop(wn_basic_props_t *p, size_t i) {
    void *v = prop_at(p, &props[i]);

    switch (props[i].type) {
    case P_SHORTSTR:
        *(wn_bytes_t *)v = wn_bytes(text + i, i == 0 ? 255 : 1 + 7 * i);
        break;
    case P_TABLE:
        *(wn_bytes_t *)v = wn_bytes(headers_body, sizeof headers_body);
        break;
    case P_OCTET:
        *(uint8_t *)v = (uint8_t)(0x80 + i);
        break;
    case P_TIMESTAMP:
        *(uint64_t *)v = 0x0000000065F2A3B4ull + i;
        break;
    }
}

static void set_all(wn_basic_props_t *p) {
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < NPROPS; i++)
        set_prop(p, i);
}

static size_t prop_wire_len(const wn_basic_props_t *p, size_t i) {
    const void *v = prop_at_c(p, &props[i]);

    switch (props[i].type) {
    case P_SHORTSTR:
        return 1 + ((const wn_bytes_t *)v)->len;
    case P_TABLE:
        return 4 + ((const wn_bytes_t *)v)->len;
    case P_OCTET:
        return 1;
    case P_TIMESTAMP:
        return 8;
    }
    return 0;
}

/* class, weight, body size, one flags word, then the present properties. */
static size_t expected_len(const wn_basic_props_t *p, uint16_t flags) {
    size_t n = 2 + 2 + 8 + 2;

    for (size_t i = 0; i < NPROPS; i++)
        if (flags & props[i].flag) n += prop_wire_len(p, i);
    return n;
}

/* Properties whose flag is set equal `want`'s; the others are zero. */
static bool props_match(const wn_basic_props_t *want, const wn_basic_props_t *got, uint16_t flags) {
    bool same = got->flags == flags;
    wn_basic_props_t zero;

    memset(&zero, 0, sizeof zero);
    for (size_t i = 0; i < NPROPS; i++) {
        const wn_basic_props_t *ref = (flags & props[i].flag) ? want : &zero;
        const void *a = prop_at_c(ref, &props[i]), *b = prop_at_c(got, &props[i]);
        bool eq = false;
        switch (props[i].type) {
        case P_SHORTSTR:
        case P_TABLE:
            eq = wn_bytes_eq(*(const wn_bytes_t *)a, *(const wn_bytes_t *)b);
            break;
        case P_OCTET:
            eq = *(const uint8_t *)a == *(const uint8_t *)b;
            break;
        case P_TIMESTAMP:
            eq = *(const uint64_t *)a == *(const uint64_t *)b;
            break;
        }
        if (!eq) diag("property %s differs", props[i].name);
        same = same && eq;
    }
    return same;
}

static bool round_trip(uint16_t flags, const char *what) {
    static uint8_t buf[BUF_CAP];
    wn_content_header_t h, d;

    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.body_size = 0x0102030405060708ull;
    set_all(&h.props);
    h.props.flags = flags;
    size_t want = expected_len(&h.props, flags);
    size_t n = wn_content_header_encode(&h, buf, sizeof buf);
    memset(&d, 0xA5, sizeof d);
    int rc = n ? wn_content_header_decode(buf, n, &d) : -1;
    if (n != want) diag("%s: encoded %zu bytes, expected %zu", what, n, want);
    if (rc != 0) diag("%s: decode returned %d", what, rc);
    return n == want && rc == 0 && d.class_id == WN_CLASS_BASIC && d.weight == 0 &&
           d.body_size == h.body_size && wn_load16(buf + 12) == flags &&
           props_match(&h.props, &d.props, flags);
}

static void test_round_trips(void) {
    uint16_t all = 0;

    for (size_t i = 0; i < NPROPS; i++)
        all |= props[i].flag;
    ok(all == WN_BASIC_ALL_FLAGS, "the fourteen flags are bits 15 to 2");
    ok(WN_BASIC_CONTENT_TYPE_FLAG == 0x8000u && WN_BASIC_DELIVERY_MODE_FLAG == 0x1000u &&
           WN_BASIC_TIMESTAMP_FLAG == 0x0040u && WN_BASIC_CLUSTER_ID_FLAG == 0x0004u,
       "flag macros");
    ok(round_trip(all, "all"), "all 14 properties round trip");
    ok(round_trip(0, "none"), "a header without properties round trips");
    for (size_t i = 0; i < NPROPS; i++)
        ok(round_trip(props[i].flag, props[i].name), "%s alone round trips", props[i].name);
    ok(round_trip(WN_BASIC_HEADERS_FLAG | WN_BASIC_PRIORITY_FLAG | WN_BASIC_REPLY_TO_FLAG |
                      WN_BASIC_TIMESTAMP_FLAG | WN_BASIC_CLUSTER_ID_FLAG,
                  "every third"),
       "every third property round trips");
}

/* Decode from a heap copy of exactly len bytes, so the sanitizer build
 * catches any read past the end. */
static int decode_copy(const uint8_t *src, size_t len) {
    uint8_t *copy = malloc(len ? len : 1);
    wn_content_header_t d;

    if (!copy) abort();
    memcpy(copy, src, len);
    int rc = wn_content_header_decode(copy, len, &d);
    free(copy);
    return rc;
}

static void test_truncations(void) {
    static uint8_t buf[BUF_CAP];
    wn_content_header_t h;
    size_t bad = 0;

    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.body_size = 5;
    set_all(&h.props);
    h.props.flags = WN_BASIC_ALL_FLAGS;
    size_t n = wn_content_header_encode(&h, buf, sizeof buf);
    for (size_t len = 0; len < n; len++) {
        int rc = decode_copy(buf, len);
        if (rc != WN_SYNTAX_ERROR && bad++ == 0) diag("%zu of %zu bytes decoded to %d", len, n, rc);
    }
    ok(n > 0 && bad == 0, "all %zu truncations of a full header are refused with 502", n);
    buf[n] = 0;
    ok(decode_copy(buf, n + 1) == WN_SYNTAX_ERROR, "a trailing byte is refused with 502");
    ok(wn_content_header_encode(&h, buf, n - 1) == 0 && wn_content_header_encode(&h, buf, n) == n,
       "the encoder needs exactly %zu bytes", n);
}

static void test_known_bytes(void) {
    /* class 60, weight 0, body size 5, flags 0x1000, delivery-mode 2 */
    static const uint8_t want[] = {0x00, 0x3C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                   0x00, 0x00, 0x00, 0x05, 0x10, 0x00, 0x02};
    uint8_t buf[64];
    wn_content_header_t h, d;

    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.body_size = 5;
    h.props.flags = WN_BASIC_DELIVERY_MODE_FLAG;
    h.props.delivery_mode = 2;
    size_t n = wn_content_header_encode(&h, buf, sizeof buf);
    ok(n == sizeof want && memcmp(buf, want, n) == 0,
       "a persistent message's header encodes to the spec's bytes");
    ok(wn_content_header_decode(want, sizeof want, &d) == 0 && d.class_id == 60 && d.weight == 0 &&
           d.body_size == 5 && d.props.flags == WN_BASIC_DELIVERY_MODE_FLAG &&
           d.props.delivery_mode == 2 && d.props.content_type.len == 0 && d.props.priority == 0,
       "and decodes from them");

    /* content-type "text/plain" (bit 15) and timestamp (bit 6) */
    static const uint8_t two[] = {0x00, 0x3C, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                  0x00, 0x80, 0x40, 0x0A, 't',  'e',  'x',  't',  '/',  'p',  'l',
                                  'a',  'i',  'n',  0x00, 0x00, 0x00, 0x00, 0x65, 0xF2, 0xA3, 0xB4};
    ok(wn_content_header_decode(two, sizeof two, &d) == 0 &&
           wn_bytes_eq_cstr(d.props.content_type, "text/plain") &&
           d.props.timestamp == 0x65F2A3B4u && d.props.flags == 0x8040,
       "content-type and timestamp decode from hand-written bytes");
}

static void test_flag_words(void) {
    wn_content_header_t d;

    /* Bit 1 names no property. */
    static const uint8_t unused_bit[] = {0x00, 0x3C, 0x00, 0x00, 0, 0,    0,
                                         0,    0,    0,    0,    0, 0x00, 0x02};
    ok(wn_content_header_decode(unused_bit, sizeof unused_bit, &d) == WN_SYNTAX_ERROR,
       "the unused flag bit 1 is refused with 502");
    /* A continuation word that is empty is harmless. */
    static const uint8_t cont_empty[] = {0x00, 0x3C, 0x00, 0x00, 0, 0,    0,    0,   0,
                                         0,    0,    0,    0x10, 1, 0x00, 0x00, 0x02};
    ok(wn_content_header_decode(cont_empty, sizeof cont_empty, &d) == 0 &&
           d.props.flags == WN_BASIC_DELIVERY_MODE_FLAG && d.props.delivery_mode == 2,
       "a continuation flag word of zero is accepted");
    /* One that names a fifteenth property is not. */
    static const uint8_t cont_prop[] = {0x00, 0x3C, 0x00, 0x00, 0, 0,    0,    0,   0,
                                        0,    0,    0,    0x10, 1, 0x80, 0x00, 0x02};
    ok(wn_content_header_decode(cont_prop, sizeof cont_prop, &d) == WN_SYNTAX_ERROR,
       "a continuation flag word naming more properties is refused with 502");
    /* A continuation announced but missing. */
    static const uint8_t cont_missing[] = {0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    ok(decode_copy(cont_missing, sizeof cont_missing) == WN_SYNTAX_ERROR,
       "a missing continuation flag word is refused with 502");
    /* headers whose table has an entry of unknown type '?' */
    static const uint8_t bad_headers[] = {0x00, 0x3C, 0x00, 0x00, 0, 0, 0, 0, 0,   0,  0,
                                          0,    0x20, 0x00, 0,    0, 0, 3, 1, 'k', '?'};
    ok(wn_content_header_decode(bad_headers, sizeof bad_headers, &d) == WN_SYNTAX_ERROR,
       "a malformed headers table is refused with 502");
}

static void test_encode_limits(void) {
    static uint8_t name[256], buf[1024];
    wn_content_header_t h, d;

    memset(name, 'x', sizeof name);
    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.props.flags = WN_BASIC_MESSAGE_ID_FLAG;
    h.props.message_id = wn_bytes(name, 256);
    ok(wn_content_header_encode(&h, buf, sizeof buf) == 0, "a 256-byte message-id does not encode");

    /* Flag bits that name no property are not written. */
    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.props.flags = WN_BASIC_PRIORITY_FLAG | 0x0003u;
    h.props.priority = 9;
    size_t n = wn_content_header_encode(&h, buf, sizeof buf);
    ok(n == 15 && wn_load16(buf + 12) == WN_BASIC_PRIORITY_FLAG &&
           wn_content_header_decode(buf, n, &d) == 0 && d.props.priority == 9,
       "flag bits 0 and 1 are not written");
}

int main(void) {
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = (uint8_t)('a' + i % 26);
    test_round_trips();
    test_truncations();
    test_known_bytes();
    test_flag_words();
    test_encode_limits();
    return tap_done();
}
