/*
 * seed_codec.c - writes the seed corpus for fuzz_codec: one input per
 * method (every method in the spec, encoded from its metadata with every
 * argument set), content headers, a publish stream, and tables.
 *
 * Seeds are generated rather than committed so that they follow the codec:
 * a method added to the spec gets a seed without anyone touching this file.
 * Each file starts with fuzz_codec's mode byte (see fuzz_codec.c).
 *
 * Usage: seed_codec DIR
 */
#include "frame.h"
#include "methods.h"
#include "table.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

enum { SEED_STREAM = 0, SEED_METHOD = 1, SEED_HEADER = 2, SEED_TABLE = 3 };

static const char *seed_dir;
static unsigned seed_count;

static void seed_write(const char *name, uint8_t mode, const uint8_t *p, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", seed_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fputc(mode, f) == EOF || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "seed_codec: %s: %s\n", path, strerror(errno));
        exit(1);
    }
    seed_count++;
}

/* A table with every field type, nested tables and arrays: the body only. */
static size_t seed_rich_table(uint8_t *buf, size_t cap) {
    wn_writer_t w;
    wn_writer_init(&w, buf, cap);
    wn_table_put_str(&w, "product", "Warren");
    wn_table_put_bool(&w, "t", true);
    static const wn_value_t scalars[] = {
        {.type = WN_FIELD_I8, .v.i8 = -1},
        {.type = WN_FIELD_U8, .v.u8 = 200},
        {.type = WN_FIELD_I16, .v.i16 = -300},
        {.type = WN_FIELD_U16, .v.u16 = 60000},
        {.type = WN_FIELD_I32, .v.i32 = -70000},
        {.type = WN_FIELD_U32, .v.u32 = 4000000000u},
        {.type = WN_FIELD_I64, .v.i64 = INT64_MIN},
        {.type = WN_FIELD_FLOAT, .v.f32 = 1.5f},
        {.type = WN_FIELD_DOUBLE, .v.f64 = -2.25},
        {.type = WN_FIELD_DECIMAL, .v.decimal = {2, 12345}},
        {.type = WN_FIELD_TIMESTAMP, .v.u64 = 1700000000},
        {.type = WN_FIELD_U64, .v.u64 = UINT64_MAX},
        {.type = WN_FIELD_VOID},
        {.type = WN_FIELD_BYTES, .v.bytes = {(const uint8_t *)"\0\1\2", 3}},
    };
    for (size_t i = 0; i < sizeof scalars / sizeof scalars[0]; i++) {
        char key[2] = {(char)scalars[i].type, 0};
        wn_table_put(&w, key, &scalars[i]);
    }
    size_t caps = wn_table_begin_nested(&w, "capabilities", WN_FIELD_TABLE);
    wn_table_put_bool(&w, "publisher_confirms", true);
    wn_table_put_i64(&w, "x-max-length", 10);
    wn_table_end(&w, caps);
    size_t arr = wn_table_begin_nested(&w, "x-list", WN_FIELD_ARRAY);
    for (size_t i = 0; i < 4; i++)
        wn_value_put(&w, &scalars[i]);
    size_t inner = wn_table_begin_nested(&w, NULL, WN_FIELD_TABLE);
    wn_table_put_str(&w, "deep", "yes");
    wn_table_end(&w, inner);
    wn_table_end(&w, arr);
    return w.overflow ? 0 : w.len;
}

/* Fill every argument of a method from its metadata, with recognisable
 * non-zero values so that no field is left at its default. */
static void seed_fill_method(wn_method_t *m, const wn_method_info_t *info, wn_bytes_t table) {
    memset(m, 0, sizeof *m);
    m->id = info->id;
    uint8_t *base = (uint8_t *)&m->u;
    for (size_t i = 0; i < info->nfields; i++) {
        uint8_t *f = base + info->fields[i].offset;
        bool bit = i % 2 == 0;
        uint16_t s = 0x1234;
        uint32_t l = 131072;
        uint64_t ll = 0x0102030405060708ull;
        wn_bytes_t str = WN_BYTES_LIT("amq.seed");
        switch (info->fields[i].type) {
        case WN_T_BIT:
            memcpy(f, &bit, sizeof bit);
            break;
        case WN_T_OCTET:
            *f = 9;
            break;
        case WN_T_SHORT:
            memcpy(f, &s, sizeof s);
            break;
        case WN_T_LONG:
            memcpy(f, &l, sizeof l);
            break;
        case WN_T_LONGLONG:
        case WN_T_TIMESTAMP:
            memcpy(f, &ll, sizeof ll);
            break;
        case WN_T_SHORTSTR:
        case WN_T_LONGSTR:
            memcpy(f, &str, sizeof str);
            break;
        case WN_T_TABLE:
            memcpy(f, &table, sizeof table);
            break;
        }
    }
}

static void seed_methods(wn_bytes_t table) {
    static uint8_t frame[65536];
    for (size_t i = 0; i < wn_method_info_count; i++) {
        const wn_method_info_t *info = &wn_method_infos[i];
        wn_method_t m;
        char name[128];
        seed_fill_method(&m, info, table);
        size_t n = wn_frame_encode_method(frame, sizeof frame, 1, &m);
        if (n == 0) {
            fprintf(stderr, "seed_codec: %s does not encode\n", info->name);
            exit(1);
        }
        snprintf(name, sizeof name, "frame-%s", info->name);
        seed_write(name, SEED_STREAM, frame, n);
        snprintf(name, sizeof name, "method-%s", info->name);
        seed_write(name, SEED_METHOD, frame + WN_FRAME_HEADER_SIZE, n - WN_FRAME_OVERHEAD);
        /* The same with empty strings and tables, where lengths are 0. */
        seed_fill_method(&m, info, (wn_bytes_t){NULL, 0});
        n = wn_frame_encode_method(frame, sizeof frame, 1, &m);
        snprintf(name, sizeof name, "method-%s-empty-table", info->name);
        if (n) seed_write(name, SEED_METHOD, frame + 7, n - 8);
    }
}

static size_t seed_header(uint8_t *frame, size_t cap, wn_bytes_t table, uint16_t flags) {
    wn_content_header_t h;
    memset(&h, 0, sizeof h);
    h.class_id = WN_CLASS_BASIC;
    h.body_size = 5;
    wn_basic_props_t *p = &h.props;
    p->flags = flags;
    p->content_type = WN_BYTES_LIT("application/json");
    p->content_encoding = WN_BYTES_LIT("gzip");
    p->headers = table;
    p->delivery_mode = 2;
    p->priority = 7;
    p->correlation_id = WN_BYTES_LIT("corr");
    p->reply_to = WN_BYTES_LIT("amq.rabbitmq.reply-to");
    p->expiration = WN_BYTES_LIT("60000");
    p->message_id = WN_BYTES_LIT("id-1");
    p->timestamp = 1700000000;
    p->type = WN_BYTES_LIT("t");
    p->user_id = WN_BYTES_LIT("guest");
    p->app_id = WN_BYTES_LIT("seed");
    p->cluster_id = WN_BYTES_LIT("");
    return wn_frame_encode_header(frame, cap, 1, &h);
}

/* basic.publish + header + two body frames + heartbeat: a real stream. */
static void seed_stream(wn_bytes_t table) {
    static uint8_t buf[65536];
    size_t len = 0;
    wn_method_t m;
    memset(&m, 0, sizeof m);
    m.id = WN_BASIC_PUBLISH;
    m.u.basic_publish.exchange = WN_BYTES_LIT("amq.topic");
    m.u.basic_publish.routing_key = WN_BYTES_LIT("a.b.c");
    len += wn_frame_encode_method(buf + len, sizeof buf - len, 1, &m);
    len += seed_header(buf + len, sizeof buf - len, table, WN_BASIC_ALL_FLAGS);
    for (size_t i = 0; i < 2; i++) {
        wn_frame_header_write(buf + len, WN_FRAME_BODY, 1, i == 0 ? 3 : 2);
        memcpy(buf + len + 7, i == 0 ? "hel" : "lo", i == 0 ? 3 : 2);
        len += 7 + (i == 0 ? 3 : 2);
        buf[len++] = WN_FRAME_END;
    }
    memcpy(buf + len, wn_heartbeat_frame, 8);
    len += 8;
    seed_write("stream-publish", SEED_STREAM, buf, len);

    /* The client's first bytes: protocol header, then frames. */
    static uint8_t hello[65536 + 8];
    memcpy(hello, wn_protocol_header, 8);
    memcpy(hello + 8, buf, len);
    seed_write("stream-protocol-header", SEED_STREAM, hello, len + 8);
}

static void seed_headers(wn_bytes_t table) {
    static uint8_t frame[65536];
    static const uint16_t flag_sets[] = {0, WN_BASIC_ALL_FLAGS, WN_BASIC_HEADERS_FLAG,
                                         WN_BASIC_DELIVERY_MODE_FLAG | WN_BASIC_TIMESTAMP_FLAG};
    for (size_t i = 0; i < sizeof flag_sets / sizeof flag_sets[0]; i++) {
        char name[64];
        size_t n = seed_header(frame, sizeof frame, table, flag_sets[i]);
        snprintf(name, sizeof name, "header-%04x", flag_sets[i]);
        seed_write(name, SEED_HEADER, frame + 7, n - 8);
        snprintf(name, sizeof name, "frame-header-%04x", flag_sets[i]);
        seed_write(name, SEED_STREAM, frame, n);
    }
}

static void seed_tables(wn_bytes_t table) {
    seed_write("table-rich", SEED_TABLE, table.ptr, table.len);
    seed_write("table-empty", SEED_TABLE, (const uint8_t *)"", 0);

    /* 50 nested tables and 50 nested arrays. */
    static uint8_t deep[1024];
    wn_writer_t w;
    size_t marks[50];
    wn_writer_init(&w, deep, sizeof deep);
    for (size_t i = 0; i < 50; i++)
        marks[i] = wn_table_begin_nested(&w, "k", WN_FIELD_TABLE);
    for (size_t i = 50; i-- > 0;)
        wn_table_end(&w, marks[i]);
    seed_write("table-deep", SEED_TABLE, deep, w.len);
    wn_writer_init(&w, deep, sizeof deep);
    for (size_t i = 0; i < 50; i++)
        marks[i] = wn_table_begin_nested(&w, NULL, WN_FIELD_ARRAY);
    for (size_t i = 50; i-- > 0;)
        wn_table_end(&w, marks[i]);
    seed_write("array-deep", SEED_TABLE, deep, w.len);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: seed_codec DIR\n");
        return 2;
    }
    seed_dir = argv[1];
    static uint8_t rich[4096];
    size_t n = seed_rich_table(rich, sizeof rich);
    if (n == 0 || wn_table_validate(rich, n) != 0) {
        fprintf(stderr, "seed_codec: the sample table does not build\n");
        return 1;
    }
    wn_bytes_t table = wn_bytes(rich, n);
    seed_methods(table);
    seed_headers(table);
    seed_stream(table);
    seed_tables(table);
    printf("seed_codec: %u seeds in %s\n", seed_count, seed_dir);
    return 0;
}
