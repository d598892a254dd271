/*
 * test_methods.c - unit tests for the generated method codec (codec/methods.c).
 *
 * Every method in wn_method_infos is filled through its metadata with three
 * patterns of values, encoded, checked for its exact length, decoded and
 * compared field by field; every truncation and a trailing byte must be
 * refused with 502. Hand-written wire bytes from the spec pin down field
 * order and bit packing, which a round trip alone cannot (a codec that
 * swapped two fields both ways would round-trip fine).
 */
#include "methods.h"
#include "tap.h"

#include <stdlib.h>

/* Big enough for the largest filled method: connection.start with two
 * 70,000-byte longstrs and a table. */
#define BUF_CAP (256 * 1024)

/* A longstr longer than 65535 bytes, so a 16-bit length would show. */
#define LONG_LEN 70000

typedef enum {
    FILL_MAX, /* all bits set, numbers at their maximum, longest strings */
    FILL_ODD, /* alternating bits, odd numbers, short strings of varied length */
    FILL_MIN, /* the other alternation, zeros, empty strings and tables */
} fill_t;

static const char *const fill_names[] = {
    "all bits set, maximum numbers, 255-byte shortstrs",
    "alternating bits, odd numbers, short strings",
    "inverse alternating bits, zeros, empty strings",
};

static uint8_t pool[LONG_LEN + 64]; /* string contents */
static uint8_t built_table[256];    /* whole table from table.h's builder */
static wn_bytes_t big_table;        /* its body */

/* A hand-encoded table body: a = I32 7, n = {b = true}. */
static const uint8_t small_table[] = {1,   'a', 'I', 0, 0, 0, 7,   1,   'n',
                                      'F', 0,   0,   0, 4, 1, 'b', 't', 1};

static void setup_data(void) {
    for (size_t i = 0; i < sizeof pool; i++)
        pool[i] = (uint8_t)(i * 7 + 3);

    wn_writer_t w;
    wn_writer_init(&w, built_table, sizeof built_table);
    size_t mark = wn_table_begin(&w);
    wn_table_put_str(&w, "x-queue-type", "quorum");
    wn_table_put_i64(&w, "x-max-length", 1000000);
    wn_table_put_bool(&w, "x-single-active-consumer", true);
    wn_table_end(&w, mark);
    big_table = wn_bytes(built_table + 4, w.len - 4);
    ok(!w.overflow && wn_load32(built_table) == big_table.len &&
           wn_table_validate(big_table.ptr, big_table.len) == 0 &&
           wn_table_validate(small_table, sizeof small_table) == 0,
       "test tables are valid");
}

/* ---- filling and comparing methods through their metadata ----------------- */

static void *field_at(wn_method_t *m, const wn_field_info_t *f) {
    return (uint8_t *)&m->u + f->offset;
}

static const void *field_at_c(const wn_method_t *m, const wn_field_info_t *f) {
    return (const uint8_t *)&m->u + f->offset;
}

/* Values differ from field to field (i), so that two fields swapped by the
 * codec would not compare equal. */
static void fill_field(wn_method_t *m, const wn_field_info_t *f, unsigned i, unsigned bit_no,
                       fill_t fill) {
    void *p = field_at(m, f);
    wn_bytes_t s;

    switch (f->type) {
    case WN_T_BIT:
        *(bool *)p = fill == FILL_MAX ? true : (bit_no % 2 == 0) == (fill == FILL_ODD);
        break;
    case WN_T_OCTET:
        *(uint8_t *)p = fill == FILL_MAX ? 0xFF : fill == FILL_ODD ? (uint8_t)(0x81 + 2 * i) : 0;
        break;
    case WN_T_SHORT:
        *(uint16_t *)p = fill == FILL_MAX   ? 0xFFFF
                         : fill == FILL_ODD ? (uint16_t)(0x1235 + 0x202 * i)
                                            : 0;
        break;
    case WN_T_LONG:
        *(uint32_t *)p = fill == FILL_MAX   ? 0xFFFFFFFFu
                         : fill == FILL_ODD ? 0x89ABCDEFu - 0x01010101u * i
                                            : 0;
        break;
    case WN_T_LONGLONG:
    case WN_T_TIMESTAMP:
        *(uint64_t *)p = fill == FILL_MAX   ? UINT64_MAX
                         : fill == FILL_ODD ? 0x0123456789ABCDEFull + 0x1111ull * i
                                            : 0;
        break;
    case WN_T_SHORTSTR:
        s = wn_bytes(pool + i, fill == FILL_MAX ? 255 : fill == FILL_ODD ? 1 + (i * 53) % 200 : 0);
        *(wn_bytes_t *)p = s;
        break;
    case WN_T_LONGSTR:
        s = wn_bytes(pool + i, fill == FILL_MAX ? LONG_LEN : fill == FILL_ODD ? 300 + i : 0);
        *(wn_bytes_t *)p = s;
        break;
    case WN_T_TABLE:
        *(wn_bytes_t *)p = fill == FILL_MAX   ? big_table
                           : fill == FILL_ODD ? wn_bytes(small_table, sizeof small_table)
                                              : wn_bytes(NULL, 0);
        break;
    }
}

static void fill_method(const wn_method_info_t *info, wn_method_t *m, fill_t fill) {
    unsigned bit_no = 0;

    memset(m, 0, sizeof *m);
    m->id = info->id;
    for (unsigned i = 0; i < info->nfields; i++) {
        fill_field(m, &info->fields[i], i, bit_no, fill);
        if (info->fields[i].type == WN_T_BIT) bit_no++;
    }
}

/* The encoded size, worked out from the spec's rules rather than the codec:
 * consecutive bits share octets, eight to an octet. */
static size_t expected_len(const wn_method_info_t *info, const wn_method_t *m) {
    size_t n = 4;
    unsigned run = 0;

    for (unsigned i = 0; i < info->nfields; i++) {
        const wn_field_info_t *f = &info->fields[i];
        const void *p = field_at_c(m, f);
        if (f->type == WN_T_BIT) {
            if (run++ % 8 == 0) n += 1;
            continue;
        }
        run = 0;
        switch (f->type) {
        case WN_T_OCTET:
            n += 1;
            break;
        case WN_T_SHORT:
            n += 2;
            break;
        case WN_T_LONG:
            n += 4;
            break;
        case WN_T_LONGLONG:
        case WN_T_TIMESTAMP:
            n += 8;
            break;
        case WN_T_SHORTSTR:
            n += 1 + ((const wn_bytes_t *)p)->len;
            break;
        case WN_T_LONGSTR:
        case WN_T_TABLE:
            n += 4 + ((const wn_bytes_t *)p)->len;
            break;
        case WN_T_BIT:
            break;
        }
    }
    return n;
}

static bool points_into(wn_bytes_t b, const uint8_t *buf, size_t len) {
    return b.len == 0 || (b.ptr >= buf && b.ptr + b.len <= buf + len);
}

/* Field-by-field equality; strings by content, and the decoded ones must
 * point into the buffer they were decoded from (decoding is in place). */
static bool fields_equal(const wn_method_info_t *info, const wn_method_t *want,
                         const wn_method_t *got, const uint8_t *buf, size_t len) {
    bool same = want->id == got->id;

    for (unsigned i = 0; i < info->nfields; i++) {
        const wn_field_info_t *f = &info->fields[i];
        const void *a = field_at_c(want, f), *b = field_at_c(got, f);
        bool eq = false;
        switch (f->type) {
        case WN_T_BIT:
            eq = *(const bool *)a == *(const bool *)b;
            break;
        case WN_T_OCTET:
            eq = *(const uint8_t *)a == *(const uint8_t *)b;
            break;
        case WN_T_SHORT:
            eq = *(const uint16_t *)a == *(const uint16_t *)b;
            break;
        case WN_T_LONG:
            eq = *(const uint32_t *)a == *(const uint32_t *)b;
            break;
        case WN_T_LONGLONG:
        case WN_T_TIMESTAMP:
            eq = *(const uint64_t *)a == *(const uint64_t *)b;
            break;
        case WN_T_SHORTSTR:
        case WN_T_LONGSTR:
        case WN_T_TABLE:
            eq = wn_bytes_eq(*(const wn_bytes_t *)a, *(const wn_bytes_t *)b) &&
                 points_into(*(const wn_bytes_t *)b, buf, len);
            break;
        }
        if (!eq) diag("%s: field %s differs", info->name, f->name);
        same = same && eq;
    }
    return same;
}

/* ---- every method ------------------------------------------------------------ */

static void test_round_trip(const wn_method_info_t *info, fill_t fill, uint8_t *buf) {
    wn_method_t m, d;

    fill_method(info, &m, fill);
    size_t want = expected_len(info, &m);
    size_t n = wn_method_encode(&m, buf, BUF_CAP);
    memset(&d, 0xA5, sizeof d);
    int rc = n ? wn_method_decode(buf, n, &d) : -1;
    if (n != want) diag("%s: encoded %zu bytes, expected %zu", info->name, n, want);
    if (rc != 0) diag("%s: decode returned %d", info->name, rc);
    ok(n == want && rc == 0 && fields_equal(info, &m, &d, buf, n), "%s round trips (%s)",
       info->name, fill_names[fill]);
}

/* Decode from a heap copy of exactly `len` bytes, so that any read past the
 * end is caught by the sanitizer build. */
static int decode_copy(const uint8_t *src, size_t len, uint8_t extra, size_t extra_len) {
    uint8_t *copy = malloc(len + extra_len + 1);
    wn_method_t d;

    if (!copy) abort();
    memcpy(copy, src, len);
    if (extra_len) copy[len] = extra;
    int rc = wn_method_decode(copy, len + extra_len, &d);
    free(copy);
    return rc;
}

static void test_truncations(const wn_method_info_t *info, uint8_t *buf) {
    wn_method_t m;
    size_t bad = 0;

    fill_method(info, &m, FILL_ODD);
    size_t n = wn_method_encode(&m, buf, BUF_CAP);
    for (size_t len = 0; len < n; len++) {
        int rc = decode_copy(buf, len, 0, 0);
        if (rc != WN_SYNTAX_ERROR) {
            if (bad++ == 0) diag("%s: %zu of %zu bytes decoded to %d", info->name, len, n, rc);
        }
    }
    int trailing = decode_copy(buf, n, 0x00, 1);
    if (trailing != WN_SYNTAX_ERROR)
        diag("%s: a trailing byte decoded to %d", info->name, trailing);
    ok(n > 0 && bad == 0 && trailing == WN_SYNTAX_ERROR,
       "%s: all %zu truncations and a trailing byte are refused with 502", info->name, n);
}

static void test_capacity(const wn_method_info_t *info, uint8_t *buf) {
    wn_method_t m;

    fill_method(info, &m, FILL_MAX);
    size_t want = expected_len(info, &m);
    ok(wn_method_encode(&m, buf, want - 1) == 0 && wn_method_encode(&m, buf, want) == want,
       "%s: encodes into exactly %zu bytes and not one fewer", info->name, want);
}

static void test_every_method(void) {
    uint8_t *buf = malloc(BUF_CAP);

    if (!buf) abort();
    for (size_t i = 0; i < wn_method_info_count; i++) {
        const wn_method_info_t *info = &wn_method_infos[i];
        test_round_trip(info, FILL_MAX, buf);
        test_round_trip(info, FILL_ODD, buf);
        test_round_trip(info, FILL_MIN, buf);
        test_truncations(info, buf);
        test_capacity(info, buf);
    }
    free(buf);
}

/* ---- metadata ---------------------------------------------------------------- */

static void test_metadata(void) {
    bool sorted = true, found = true, sane = true;

    /* 60 in the XML + connection.blocked, unblocked, update-secret(-ok). */
    ok(wn_method_info_count == 64, "64 methods (%zu)", wn_method_info_count);
    for (size_t i = 0; i < wn_method_info_count; i++) {
        const wn_method_info_t *info = &wn_method_infos[i];
        if (i > 0 && wn_method_infos[i - 1].id >= info->id) sorted = false;
        if (wn_method_info(info->id) != info) found = false;
        if (info->struct_size > sizeof(((wn_method_t *)0)->u) || (info->nfields && !info->fields))
            sane = false;
        for (unsigned j = 0; j < info->nfields; j++)
            if (info->fields[j].offset >= info->struct_size) sane = false;
    }
    ok(sorted, "wn_method_infos is in ascending id order");
    ok(found, "wn_method_info finds every method");
    ok(sane, "struct sizes and field offsets lie within the union");
    ok(wn_method_info(0) == NULL && wn_method_info(WN_METHOD_ID(10, 12)) == NULL &&
           wn_method_info(0xFFFFFFFFu) == NULL,
       "wn_method_info is NULL for unknown ids");

    const wn_method_info_t *pub = wn_method_info(WN_BASIC_PUBLISH);
    ok(pub && pub->nfields == 5 && strcmp(pub->fields[2].name, "routing-key") == 0 &&
           pub->fields[2].type == WN_T_SHORTSTR &&
           pub->fields[2].offset == offsetof(wn_basic_publish_t, routing_key) &&
           pub->struct_size == sizeof(wn_basic_publish_t),
       "basic.publish metadata: routing-key is its third field, a shortstr");
}

static void test_names(void) {
    ok(WN_METHOD_ID(60, 40) == WN_BASIC_PUBLISH && WN_METHOD_CLASS(WN_BASIC_PUBLISH) == 60 &&
           WN_METHOD_INDEX(WN_BASIC_PUBLISH) == 40,
       "WN_METHOD_ID, WN_METHOD_CLASS and WN_METHOD_INDEX agree");
    ok(WN_CLASS_CONNECTION == 10 && WN_CLASS_CHANNEL == 20 && WN_CLASS_EXCHANGE == 40 &&
           WN_CLASS_QUEUE == 50 && WN_CLASS_BASIC == 60 && WN_CLASS_CONFIRM == 85 &&
           WN_CLASS_TX == 90,
       "class ids");
    ok(WN_CONNECTION_START == 0x000A000Au && WN_BASIC_GET_OK == 0x003C0047u &&
           WN_EXCHANGE_UNBIND_OK == 0x00280033u && WN_CONFIRM_SELECT == 0x0055000Au,
       "method ids (exchange.unbind-ok is 51, as RabbitMQ has it)");

    const char *pub = wn_method_name(WN_BASIC_PUBLISH);
    ok(pub && strcmp(pub, "basic.publish") == 0, "wn_method_name(basic.publish)");
    const char *us = wn_method_name(WN_CONNECTION_UPDATE_SECRET_OK);
    ok(us && strcmp(us, "connection.update-secret-ok") == 0,
       "wn_method_name keeps the spec's spelling: connection.update-secret-ok");
    ok(wn_method_name(WN_METHOD_ID(60, 41)) == NULL && wn_method_name(WN_METHOD_ID(99, 10)) == NULL,
       "wn_method_name is NULL for unknown ids");

    ok(wn_method_has_content(WN_BASIC_PUBLISH) && !wn_method_is_synchronous(WN_BASIC_PUBLISH),
       "basic.publish carries content and is asynchronous");
    ok(wn_method_has_content(WN_BASIC_DELIVER) && wn_method_has_content(WN_BASIC_RETURN) &&
           wn_method_has_content(WN_BASIC_GET_OK) && wn_method_is_synchronous(WN_BASIC_GET_OK),
       "basic.deliver, return and get-ok carry content; get-ok is synchronous");
    ok(!wn_method_has_content(WN_QUEUE_DECLARE) && wn_method_is_synchronous(WN_QUEUE_DECLARE),
       "queue.declare: no content, synchronous");
    const char *blocked = wn_method_name(0x000A003Cu);
    ok(WN_CONNECTION_BLOCKED == 0x000A003Cu && blocked &&
           strcmp(blocked, "connection.blocked") == 0 &&
           !wn_method_is_synchronous(WN_CONNECTION_BLOCKED) &&
           !wn_method_is_synchronous(WN_CONNECTION_UNBLOCKED),
       "connection.blocked is 0x000A003C; blocked and unblocked are asynchronous");
    ok(wn_method_is_synchronous(WN_CONNECTION_UPDATE_SECRET) &&
           wn_method_info(WN_CONNECTION_UPDATE_SECRET)->nfields == 2,
       "connection.update-secret is synchronous with two fields");
    ok(wn_method_is_synchronous(WN_CONFIRM_SELECT), "confirm.select is synchronous");
    ok(!wn_method_is_synchronous(WN_BASIC_ACK) && !wn_method_is_synchronous(WN_BASIC_NACK),
       "basic.ack and basic.nack are asynchronous");
    ok(!wn_method_has_content(0) && !wn_method_is_synchronous(0),
       "an unknown id has no content and is not synchronous");
}

static void test_reply_codes(void) {
    const char *nf = wn_reply_name(404), *nr = wn_reply_name(WN_NO_ROUTE);
    const char *pf = wn_reply_name(WN_PRECONDITION_FAILED);

    ok(nf && strcmp(nf, "NOT_FOUND") == 0, "wn_reply_name(404) is NOT_FOUND");
    ok(WN_NO_ROUTE == 312 && nr && strcmp(nr, "NO_ROUTE") == 0, "no-route is 312, NO_ROUTE");
    ok(pf && strcmp(pf, "PRECONDITION_FAILED") == 0, "wn_reply_name(406) is PRECONDITION_FAILED");
    ok(wn_reply_name(999) == NULL && wn_reply_name(WN_FRAME_METHOD) == NULL &&
           wn_reply_name(WN_FRAME_END) == NULL,
       "wn_reply_name is NULL for unknown codes and frame constants");
    ok(wn_reply_is_hard_error(WN_CONNECTION_FORCED) && wn_reply_is_hard_error(WN_FRAME_ERROR) &&
           wn_reply_is_hard_error(WN_SYNTAX_ERROR) && wn_reply_is_hard_error(WN_CHANNEL_ERROR) &&
           wn_reply_is_hard_error(WN_NOT_ALLOWED) && wn_reply_is_hard_error(WN_INTERNAL_ERROR),
       "hard errors close the connection");
    ok(!wn_reply_is_hard_error(WN_NOT_FOUND) && !wn_reply_is_hard_error(WN_ACCESS_REFUSED) &&
           !wn_reply_is_hard_error(WN_PRECONDITION_FAILED) &&
           !wn_reply_is_hard_error(WN_NO_ROUTE) && !wn_reply_is_hard_error(WN_RESOURCE_LOCKED) &&
           !wn_reply_is_hard_error(WN_REPLY_SUCCESS),
       "soft errors and reply-success do not");
    ok(WN_FRAME_METHOD == 1 && WN_FRAME_HEADER == 2 && WN_FRAME_BODY == 3 &&
           WN_FRAME_HEARTBEAT == 8 && WN_FRAME_MIN_SIZE == 4096 && WN_FRAME_END == 206,
       "frame constants");
}

/* ---- wire bytes written out by hand from the spec ----------------------------- */

static bool encodes_to(const wn_method_t *m, const uint8_t *want, size_t len) {
    uint8_t buf[256];
    size_t n = wn_method_encode(m, buf, sizeof buf);
    return n == len && memcmp(buf, want, len) == 0;
}

static void test_known_bytes(void) {
    wn_method_t m, d;

    /* connection.tune-ok channel-max=2047 frame-max=131072 heartbeat=60 */
    static const uint8_t tune_ok[] = {0x00, 0x0A, 0x00, 0x1F, 0x07, 0xFF,
                                      0x00, 0x02, 0x00, 0x00, 0x00, 0x3C};
    memset(&m, 0, sizeof m);
    m.id = WN_CONNECTION_TUNE_OK;
    m.u.connection_tune_ok = (wn_connection_tune_ok_t){2047, 131072, 60};
    ok(encodes_to(&m, tune_ok, sizeof tune_ok), "connection.tune-ok encodes to the spec's bytes");
    ok(wn_method_decode(tune_ok, sizeof tune_ok, &d) == 0 && d.id == WN_CONNECTION_TUNE_OK &&
           d.u.connection_tune_ok.channel_max == 2047 &&
           d.u.connection_tune_ok.frame_max == 131072 && d.u.connection_tune_ok.heartbeat == 60,
       "connection.tune-ok decodes from the spec's bytes");

    /* queue.declare reserved-1=0 queue="q" passive=0 durable=1 exclusive=0
     * auto-delete=1 no-wait=0 arguments={} : the bits octet is 0b01010 */
    static const uint8_t declare[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x01,
                                      'q',  0x0A, 0x00, 0x00, 0x00, 0x00};
    memset(&m, 0, sizeof m);
    m.id = WN_QUEUE_DECLARE;
    m.u.queue_declare.queue = WN_BYTES_LIT("q");
    m.u.queue_declare.durable = true;
    m.u.queue_declare.auto_delete = true;
    ok(encodes_to(&m, declare, sizeof declare), "queue.declare packs its bits into 0x0A");
    const wn_queue_declare_t *qd = &d.u.queue_declare;
    ok(wn_method_decode(declare, sizeof declare, &d) == 0 && d.id == WN_QUEUE_DECLARE &&
           wn_bytes_eq_cstr(qd->queue, "q") && !qd->passive && qd->durable && !qd->exclusive &&
           qd->auto_delete && !qd->no_wait && qd->arguments.len == 0,
       "queue.declare unpacks 0x0A into durable and auto-delete");

    /* The same with every bit, including three the method does not define:
     * RabbitMQ ignores those, and so does Warren. */
    uint8_t all_bits[sizeof declare];
    memcpy(all_bits, declare, sizeof declare);
    all_bits[8] = 0xFF;
    ok(wn_method_decode(all_bits, sizeof all_bits, &d) == 0 && qd->passive && qd->durable &&
           qd->exclusive && qd->auto_delete && qd->no_wait,
       "queue.declare: bits beyond no-wait are ignored");

    /* basic.publish reserved-1=0 exchange="ex" routing-key="rk" mandatory=1 immediate=0 */
    static const uint8_t publish[] = {0x00, 0x3C, 0x00, 0x28, 0x00, 0x00, 0x02,
                                      'e',  'x',  0x02, 'r',  'k',  0x01};
    memset(&m, 0, sizeof m);
    m.id = WN_BASIC_PUBLISH;
    m.u.basic_publish.exchange = WN_BYTES_LIT("ex");
    m.u.basic_publish.routing_key = WN_BYTES_LIT("rk");
    m.u.basic_publish.mandatory = true;
    ok(encodes_to(&m, publish, sizeof publish), "basic.publish encodes to the spec's bytes");

    /* basic.nack delivery-tag=0x0102030405060708 multiple=0 requeue=1 */
    static const uint8_t nack[] = {0x00, 0x3C, 0x00, 0x78, 0x01, 0x02, 0x03,
                                   0x04, 0x05, 0x06, 0x07, 0x08, 0x02};
    ok(wn_method_decode(nack, sizeof nack, &d) == 0 && d.id == WN_BASIC_NACK &&
           d.u.basic_nack.delivery_tag == 0x0102030405060708ull && !d.u.basic_nack.multiple &&
           d.u.basic_nack.requeue,
       "basic.nack decodes a big-endian delivery tag and requeue in bit 1");

    /* connection.close-ok: no arguments, just the ids */
    static const uint8_t close_ok[] = {0x00, 0x0A, 0x00, 0x33};
    memset(&m, 0, sizeof m);
    m.id = WN_CONNECTION_CLOSE_OK;
    ok(encodes_to(&m, close_ok, sizeof close_ok) &&
           wn_method_decode(close_ok, sizeof close_ok, &d) == 0 && d.id == WN_CONNECTION_CLOSE_OK,
       "connection.close-ok is four bytes");
}

/* ---- errors -------------------------------------------------------------------- */

static void test_decode_errors(void) {
    wn_method_t d;

    static const uint8_t unknown_class[] = {0x00, 0x63, 0x00, 0x0A};
    ok(wn_method_decode(unknown_class, sizeof unknown_class, &d) == WN_COMMAND_INVALID &&
           d.id == 0x0063000Au,
       "an unknown class is 503, with the id kept for the log");
    static const uint8_t unknown_method[] = {0x00, 0x3C, 0x00, 0x29, 0x00};
    ok(wn_method_decode(unknown_method, sizeof unknown_method, &d) == WN_COMMAND_INVALID &&
           d.id == 0x003C0029u,
       "an unknown method of a known class is 503");
    static const uint8_t zero[] = {0x00, 0x00, 0x00, 0x00};
    ok(wn_method_decode(zero, sizeof zero, &d) == WN_COMMAND_INVALID, "class 0 method 0 is 503");

    /* queue.declare whose arguments table holds an entry of unknown type '?' */
    static const uint8_t bad_table[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x01, 'q', 0x00,
                                        0x00, 0x00, 0x00, 0x04, 0x01, 'k',  '?',  0x00};
    ok(wn_method_decode(bad_table, sizeof bad_table, &d) == WN_SYNTAX_ERROR,
       "a malformed arguments table is 502");
    /* ... whose table length runs past the payload */
    static const uint8_t long_table[] = {0x00, 0x32, 0x00, 0x0A, 0x00, 0x00, 0x01,
                                         'q',  0x00, 0x00, 0x00, 0x01, 0x00};
    ok(wn_method_decode(long_table, sizeof long_table, &d) == WN_SYNTAX_ERROR,
       "a table length past the end is 502");
    /* basic.consume-ok whose consumer-tag length runs past the payload */
    static const uint8_t long_str[] = {0x00, 0x3C, 0x00, 0x15, 0x05, 'a', 'b'};
    ok(wn_method_decode(long_str, sizeof long_str, &d) == WN_SYNTAX_ERROR,
       "a shortstr length past the end is 502");
}

static void test_encode_errors(void) {
    static uint8_t name[256], buf[1024];
    wn_method_t m;

    memset(name, 'n', sizeof name);
    memset(&m, 0, sizeof m);
    m.id = WN_QUEUE_DECLARE;
    m.u.queue_declare.queue = wn_bytes(name, 256);
    ok(wn_method_encode(&m, buf, sizeof buf) == 0, "a 256-byte shortstr does not encode");
    m.u.queue_declare.queue = wn_bytes(name, 255);
    ok(wn_method_encode(&m, buf, sizeof buf) == 4 + 2 + 256 + 1 + 4, "a 255-byte shortstr does");

    memset(&m, 0, sizeof m);
    m.id = WN_METHOD_ID(60, 41);
    ok(wn_method_encode(&m, buf, sizeof buf) == 0, "an unknown id does not encode");
    m.id = WN_BASIC_QOS_OK;
    ok(wn_method_encode(&m, buf, 3) == 0 && wn_method_encode(&m, buf, 4) == 4,
       "a method without arguments needs exactly four bytes");
}

int main(void) {
    setup_data();
    test_names();
    test_reply_codes();
    test_metadata();
    test_known_bytes();
    test_decode_errors();
    test_encode_errors();
    test_every_method();
    return tap_done();
}
