/*
 * test_frame.c - unit tests for codec/frame.c: the protocol header check and
 * the incremental frame decoder (whole frames, byte-at-a-time streams,
 * truncation, 501 on a bad type, size or frame-end), and the encoders.
 */
#include "frame.h"
#include "tap.h"

#include <stdlib.h>

/* Write a whole frame with `size` payload bytes of `fill` into out. */
static size_t make_frame(uint8_t *out, uint8_t type, uint16_t channel, uint32_t size,
                         uint8_t fill) {
    wn_frame_header_write(out, type, channel, size);
    memset(out + WN_FRAME_HEADER_SIZE, fill, size);
    out[WN_FRAME_HEADER_SIZE + size] = WN_FRAME_END;
    return size + WN_FRAME_OVERHEAD;
}

/* ---- protocol header ------------------------------------------------------ */

static void test_protocol_header(void) {
    static const uint8_t exact[] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};
    ok(wn_protocol_header_check(exact, 8) == 1, "AMQP 0-9-1 header is accepted");
    ok(memcmp(wn_protocol_header, exact, 8) == 0, "wn_protocol_header is AMQP 0 0 9 1");
    bool prefixes = true;
    for (size_t n = 0; n < 8; n++)
        prefixes &= wn_protocol_header_check(exact, n) == 0;
    ok(prefixes, "every proper prefix (0..7 bytes) needs more");
    ok(wn_protocol_header_check((const uint8_t *)"AMQP\0\0\x09\x01\x01\0", 10) == 1,
       "bytes after the header do not matter");
    ok(wn_protocol_header_check((const uint8_t *)"AMQP\x01\x01\0\x0a", 8) == -1,
       "AMQP 1.0 header is refused");
    ok(wn_protocol_header_check((const uint8_t *)"AMQP\0\0\x09\x00", 8) == -1,
       "AMQP 0-9-0 header is refused");
    ok(wn_protocol_header_check((const uint8_t *)"AMQP\x01\x01\x08\x00", 8) == -1,
       "AMQP 0-8 header is refused");
    ok(wn_protocol_header_check((const uint8_t *)"AMQP\x03", 5) == -1,
       "a wrong version byte is refused before 8 bytes arrive");
    ok(wn_protocol_header_check((const uint8_t *)"GET / HTTP/1.1\r\n", 16) == -1,
       "HTTP is refused");
    ok(wn_protocol_header_check((const uint8_t *)"G", 1) == -1, "one byte of HTTP is refused");
    ok(wn_protocol_header_check((const uint8_t *)"amqp\0\0\x09\x01", 8) == -1,
       "lower-case amqp is refused");
}

/* ---- single frames -------------------------------------------------------- */

static void test_frame_types(void) {
    uint8_t buf[64];
    wn_frame_t f;
    static const uint8_t types[] = {WN_FRAME_METHOD, WN_FRAME_HEADER, WN_FRAME_BODY};
    for (size_t i = 0; i < sizeof types; i++) {
        size_t n = make_frame(buf, types[i], (uint16_t)(i * 1000 + 1), 13, (uint8_t)(0x40 + i));
        memset(&f, 0, sizeof f);
        long rc = wn_frame_parse(buf, n, 131072, &f);
        ok(rc == (long)n && f.type == types[i] && f.channel == i * 1000 + 1 && f.size == 13 &&
               f.payload == buf + 7 && f.payload[12] == 0x40 + i,
           "frame type %u parses", types[i]);
    }
    memcpy(buf, wn_heartbeat_frame, 8);
    ok(wn_frame_parse(buf, 8, 0, &f) == 8 && f.type == WN_FRAME_HEARTBEAT && f.channel == 0 &&
           f.size == 0,
       "heartbeat frame parses");
    ok(memcmp(wn_heartbeat_frame, "\x08\0\0\0\0\0\0\xce", 8) == 0,
       "heartbeat frame is 08 0000 00000000 CE");

    size_t n = make_frame(buf, WN_FRAME_BODY, 0xFFFF, 0, 0);
    ok(wn_frame_parse(buf, n, 0, &f) == 8 && f.size == 0 && f.channel == 0xFFFF,
       "empty body frame on channel 65535");

    n = make_frame(buf, WN_FRAME_BODY, 1, 4, 'z');
    buf[n] = 0x99; /* the start of whatever comes next */
    ok(wn_frame_parse(buf, n + 1, 0, &f) == (long)n, "trailing bytes are left for the next call");

    uint8_t hdr[7];
    wn_frame_header_write(hdr, 2, 0x0102, 0x03040506);
    ok(memcmp(hdr, "\x02\x01\x02\x03\x04\x05\x06", 7) == 0, "header is written big-endian");
}

/* ---- errors --------------------------------------------------------------- */

static void test_frame_errors(void) {
    uint8_t buf[64];
    wn_frame_t f;

    static const uint8_t bad_types[] = {0, 4, 5, 7, 9, 'A', 206, 255};
    bool refused = true;
    for (size_t i = 0; i < sizeof bad_types; i++) {
        size_t n = make_frame(buf, bad_types[i], 1, 4, 0);
        refused &= wn_frame_parse(buf, n, 0, &f) == -WN_FRAME_ERROR;
        refused &= wn_frame_parse(buf, 1, 0, &f) == -WN_FRAME_ERROR;
    }
    ok(refused, "unknown frame types are 501, from the first byte alone");

    size_t n = make_frame(buf, WN_FRAME_METHOD, 1, 4, 0);
    buf[n - 1] = 0xCD;
    ok(wn_frame_parse(buf, n, 0, &f) == -WN_FRAME_ERROR, "wrong frame-end is 501");
    ok(wn_frame_parse(buf, n - 1, 0, &f) == 0, "frame-end not yet arrived: need more");
    buf[n - 1] = 0;
    ok(wn_frame_parse(buf, n, 0, &f) == -WN_FRAME_ERROR, "frame-end 0 is 501");

    /* Oversized: payload + 8 > frame_max, known from the 7-byte header. */
    wn_frame_header_write(buf, WN_FRAME_BODY, 1, 131072 - 8 + 1);
    ok(wn_frame_parse(buf, 7, 131072, &f) == -WN_FRAME_ERROR,
       "size one over frame_max is 501 from the header alone");
    ok(wn_frame_parse(buf, 6, 131072, &f) == 0, "six header bytes: need more");
    wn_frame_header_write(buf, WN_FRAME_BODY, 1, 131072 - 8);
    ok(wn_frame_parse(buf, 7, 131072, &f) == 0, "size exactly frame_max - 8: need more");
    wn_frame_header_write(buf, WN_FRAME_BODY, 1, 0xFFFFFFFFu);
    ok(wn_frame_parse(buf, 7, 131072, &f) == -WN_FRAME_ERROR, "size 2^32-1 is 501");
    ok(wn_frame_parse(buf, 7, 0xFFFFFFFFu, &f) == -WN_FRAME_ERROR,
       "size 2^32-1 exceeds even frame_max 2^32-1 (no 32-bit wrap)");
    ok(wn_frame_parse(buf, 7, 0, &f) == 0, "frame_max 0: size 2^32-1 is allowed, need more");
    wn_frame_header_write(buf, WN_FRAME_BODY, 1, 16);
    ok(wn_frame_parse(buf, 7, 4096, &f) == 0, "a small frame under frame_max: need more");
    n = make_frame(buf, WN_FRAME_BODY, 1, 8, 1);
    ok(wn_frame_parse(buf, n, 16, &f) == 16, "a frame of exactly frame_max is accepted");
    ok(wn_frame_parse(buf, n, 15, &f) == -WN_FRAME_ERROR, "one byte over frame_max is 501");
}

/* ---- truncation and streams ----------------------------------------------- */

static void test_truncation(void) {
    uint8_t buf[64];
    wn_frame_t f;
    size_t n = make_frame(buf, WN_FRAME_HEADER, 7, 20, 0xCE);
    bool need_more = true;
    for (size_t cut = 0; cut < n; cut++)
        need_more &= wn_frame_parse(buf, cut, 131072, &f) == 0;
    ok(need_more, "every truncation (0..%zu bytes) needs more", n - 1);
    ok(wn_frame_parse(buf, n, 131072, &f) == (long)n && f.size == 20 && f.channel == 7,
       "the complete frame then parses");
}

/* A stream of mixed frames: the offsets where each frame starts. */
static size_t build_stream(uint8_t *buf, size_t *starts, size_t *count) {
    size_t len = 0, k = 0;
    static const struct {
        uint8_t type;
        uint16_t channel;
        uint32_t size;
    } plan[] = {{WN_FRAME_METHOD, 0, 12}, {WN_FRAME_HEARTBEAT, 0, 0}, {WN_FRAME_METHOD, 1, 30},
                {WN_FRAME_HEADER, 1, 14}, {WN_FRAME_BODY, 1, 200},    {WN_FRAME_BODY, 1, 0},
                {WN_FRAME_BODY, 2, 1},    {WN_FRAME_HEARTBEAT, 0, 0}};
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        starts[k++] = len;
        len += make_frame(buf + len, plan[i].type, plan[i].channel, plan[i].size, (uint8_t)(i + 1));
    }
    *count = k;
    return len;
}

static void test_stream_byte_at_a_time(void) {
    static uint8_t stream[1024], arrived[1024];
    size_t starts[16], count;
    size_t len = build_stream(stream, starts, &count);

    /* Whole buffer at once: the reference sequence. */
    wn_frame_t whole[16];
    size_t nwhole = 0, off = 0;
    long rc;
    while (off < len &&
           (rc = wn_frame_parse(stream + off, len - off, 131072, &whole[nwhole])) > 0) {
        off += (size_t)rc;
        nwhole++;
    }
    ok(nwhole == count && off == len, "whole stream parses into %zu frames", count);

    /* One byte at a time into a receive buffer, as a slow socket would. */
    size_t have = 0, consumed = 0, got = 0;
    bool same = true, error = false;
    for (size_t i = 0; i < len; i++) {
        arrived[have++] = stream[i];
        for (;;) {
            wn_frame_t f;
            rc = wn_frame_parse(arrived + consumed, have - consumed, 131072, &f);
            if (rc < 0) error = true;
            if (rc <= 0) break;
            same &= got < count && consumed == starts[got] && f.type == whole[got].type &&
                    f.channel == whole[got].channel && f.size == whole[got].size &&
                    memcmp(f.payload, whole[got].payload, f.size) == 0;
            consumed += (size_t)rc;
            got++;
        }
    }
    ok(!error && got == count && consumed == len && same,
       "byte-at-a-time gives the same %zu frames", got);
}

/* ---- encoders ------------------------------------------------------------- */

/* Encode m as a frame on channel 5, parse it back and decode the payload. */
static bool method_frame_round_trip(const wn_method_t *m, wn_method_t *out, size_t *framelen) {
    static uint8_t buf[4096];
    wn_frame_t f;
    size_t n = wn_frame_encode_method(buf, sizeof buf, 5, m);
    *framelen = n;
    return n > 0 && wn_frame_parse(buf, n, 131072, &f) == (long)n && f.type == WN_FRAME_METHOD &&
           f.channel == 5 && f.size == n - 8 && wn_method_decode(f.payload, f.size, out) == 0 &&
           out->id == m->id;
}

static void test_encode_methods(void) {
    wn_method_t m, out;
    size_t n;

    memset(&m, 0, sizeof m);
    m.id = WN_BASIC_PUBLISH;
    m.u.basic_publish.exchange = WN_BYTES_LIT("amq.direct");
    m.u.basic_publish.routing_key = WN_BYTES_LIT("rk");
    m.u.basic_publish.mandatory = true;
    ok(method_frame_round_trip(&m, &out, &n) &&
           wn_bytes_eq_cstr(out.u.basic_publish.exchange, "amq.direct") &&
           wn_bytes_eq_cstr(out.u.basic_publish.routing_key, "rk") &&
           out.u.basic_publish.mandatory && !out.u.basic_publish.immediate,
       "basic.publish frame round trips");
    /* 4 ids + 2 reserved + 11 exchange + 3 key + 1 bits */
    ok(n == 8 + 4 + 2 + 11 + 3 + 1, "basic.publish frame is %zu bytes", n);

    static uint8_t props[128];
    wn_writer_t w;
    wn_writer_init(&w, props, sizeof props);
    size_t mark = wn_table_begin(&w);
    wn_table_put_str(&w, "product", "Warren");
    size_t caps = wn_table_begin_nested(&w, "capabilities", WN_FIELD_TABLE);
    wn_table_put_bool(&w, "publisher_confirms", true);
    wn_table_end(&w, caps);
    wn_table_end(&w, mark);
    memset(&m, 0, sizeof m);
    m.id = WN_CONNECTION_START;
    m.u.connection_start.version_minor = 9;
    m.u.connection_start.server_properties = wn_bytes(props + 4, w.len - 4);
    m.u.connection_start.mechanisms = WN_BYTES_LIT("PLAIN AMQPLAIN");
    m.u.connection_start.locales = WN_BYTES_LIT("en_US");
    wn_value_t caps_v, pc;
    ok(method_frame_round_trip(&m, &out, &n) && out.u.connection_start.version_minor == 9 &&
           wn_table_equal(out.u.connection_start.server_properties,
                          m.u.connection_start.server_properties) &&
           wn_table_get(out.u.connection_start.server_properties, "capabilities", &caps_v) &&
           wn_table_get(caps_v.v.bytes, "publisher_confirms", &pc) && pc.v.b &&
           wn_bytes_eq_cstr(out.u.connection_start.mechanisms, "PLAIN AMQPLAIN"),
       "connection.start with a nested table round trips");

    memset(&m, 0, sizeof m);
    m.id = WN_QUEUE_DECLARE;
    m.u.queue_declare.queue = WN_BYTES_LIT("q");
    m.u.queue_declare.durable = true;
    m.u.queue_declare.no_wait = true;
    ok(method_frame_round_trip(&m, &out, &n) && out.u.queue_declare.durable &&
           out.u.queue_declare.no_wait && !out.u.queue_declare.passive &&
           !out.u.queue_declare.exclusive && !out.u.queue_declare.auto_delete &&
           out.u.queue_declare.arguments.len == 0,
       "queue.declare bits round trip");

    /* Every cap too small for the frame gives 0 and never writes past cap. */
    static uint8_t buf[256];
    bool all_zero = true;
    memset(&m, 0, sizeof m);
    m.id = WN_BASIC_PUBLISH;
    m.u.basic_publish.exchange = WN_BYTES_LIT("amq.direct");
    for (size_t cap = 0; cap < 8 + 4 + 2 + 11 + 1 + 1; cap++) {
        memset(buf, 0xEE, sizeof buf);
        all_zero &= wn_frame_encode_method(buf, cap, 1, &m) == 0 && buf[cap] == 0xEE;
    }
    ok(all_zero, "method frame into any cap below its size: 0, nothing written past cap");
    ok(wn_frame_encode_method(buf, 8 + 4 + 2 + 11 + 1 + 1, 1, &m) == 27 && buf[26] == 0xCE,
       "method frame into exactly its size fits");

    memset(&m, 0, sizeof m);
    m.id = 0x12345678;
    ok(wn_frame_encode_method(buf, sizeof buf, 1, &m) == 0, "an unknown method id encodes to 0");
}

static void test_encode_header(void) {
    static uint8_t buf[256];
    wn_content_header_t h, out;
    wn_frame_t f;
    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.body_size = 1ull << 40;
    h.props.flags = WN_BASIC_CONTENT_TYPE_FLAG | WN_BASIC_DELIVERY_MODE_FLAG;
    h.props.content_type = WN_BYTES_LIT("text/plain");
    h.props.delivery_mode = 2;
    size_t n = wn_frame_encode_header(buf, sizeof buf, 9, &h);
    ok(n > 8 && wn_frame_parse(buf, n, 131072, &f) == (long)n && f.type == WN_FRAME_HEADER &&
           f.channel == 9 && wn_content_header_decode(f.payload, f.size, &out) == 0 &&
           out.class_id == WN_CLASS_BASIC && out.body_size == 1ull << 40 &&
           out.props.flags == h.props.flags &&
           wn_bytes_eq_cstr(out.props.content_type, "text/plain") && out.props.delivery_mode == 2,
       "content header frame round trips");
    bool all_zero = true;
    for (size_t cap = 0; cap < n; cap++)
        all_zero &= wn_frame_encode_header(buf, cap, 9, &h) == 0;
    ok(all_zero, "content header frame into any cap below its size: 0");
}

int main(void) {
    test_protocol_header();
    test_frame_types();
    test_frame_errors();
    test_truncation();
    test_stream_byte_at_a_time();
    test_encode_methods();
    test_encode_header();
    return tap_done();
}
