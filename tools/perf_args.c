/*
 * perf_args.c - --queue-args: a flat JSON object turned into an AMQP field
 * table, e.g. {"x-max-length": 1000, "x-queue-type": "classic"}.
 *
 * Queue arguments are flat (a string, a number or a boolean per key), so a
 * small recursive-descent reader for exactly that is enough; nested objects,
 * arrays, null and fractions are refused with a message rather than guessed
 * at. Strings become longstr ('S'), integers signed 64-bit ('l'), booleans
 * 't', which is what RabbitMQ's own clients send.
 */
#include "perf_opts.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "table.h"

typedef struct json_reader {
    const char *p;
    char *err;
    size_t errlen;
} json_reader_t;

static int json_fail(json_reader_t *r, const char *what) {
    snprintf(r->err, r->errlen, "%s at '%.20s'", what, r->p);
    return -1;
}

static void json_space(json_reader_t *r) {
    while (isspace((unsigned char)*r->p))
        r->p++;
}

static int json_expect(json_reader_t *r, char c) {
    json_space(r);
    if (*r->p != c) {
        char what[32];
        snprintf(what, sizeof what, "expected '%c'", c);
        return json_fail(r, what);
    }
    r->p++;
    return 0;
}

/* \uXXXX for code points below 0x80 only: argument values are ASCII. */
static int json_escape(json_reader_t *r, char *c) {
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *e = *r->p ? strchr(from, *r->p) : NULL;
    if (e) {
        *c = to[e - from];
        r->p++;
        return 0;
    }
    unsigned v;
    if (*r->p != 'u' || sscanf(r->p + 1, "%4x", &v) != 1 || v == 0 || v >= 0x80)
        return json_fail(r, "unsupported escape (\\uXXXX only below 0x80)");
    for (int i = 1; i <= 4; i++)
        if (!isxdigit((unsigned char)r->p[i])) return json_fail(r, "bad \\u escape");
    *c = (char)v;
    r->p += 5;
    return 0;
}

static int json_string(json_reader_t *r, char *out, size_t cap) {
    if (json_expect(r, '"') < 0) return -1;
    size_t n = 0;
    while (*r->p != '"') {
        char c = *r->p;
        if (c == '\0' || (unsigned char)c < 0x20) return json_fail(r, "unterminated string");
        r->p++;
        if (c == '\\' && json_escape(r, &c) < 0) return -1;
        if (n + 1 >= cap) return json_fail(r, "string too long");
        out[n++] = c;
    }
    r->p++;
    out[n] = '\0';
    return 0;
}

static int json_integer(json_reader_t *r, int64_t *out) {
    errno = 0;
    char *end;
    long long v = strtoll(r->p, &end, 10);
    if (end == r->p || errno) return json_fail(r, "bad integer");
    if (*end == '.' || *end == 'e' || *end == 'E') return json_fail(r, "only integers");
    r->p = end;
    *out = v;
    return 0;
}

static bool json_word(json_reader_t *r, const char *word) {
    size_t n = strlen(word);
    if (strncmp(r->p, word, n) != 0) return false;
    r->p += n;
    return true;
}

/* One "key": value entry, appended to the table. */
static int json_entry(json_reader_t *r, wn_writer_t *w) {
    char key[256], str[1024];
    int64_t i;
    if (json_string(r, key, sizeof key) < 0 || json_expect(r, ':') < 0) return -1;
    json_space(r);
    if (*r->p == '"') {
        if (json_string(r, str, sizeof str) < 0) return -1;
        wn_table_put_str(w, key, str);
    } else if (json_word(r, "true")) {
        wn_table_put_bool(w, key, true);
    } else if (json_word(r, "false")) {
        wn_table_put_bool(w, key, false);
    } else if (*r->p == '-' || isdigit((unsigned char)*r->p)) {
        if (json_integer(r, &i) < 0) return -1;
        wn_table_put_i64(w, key, i);
    } else {
        return json_fail(r, "a value must be a string, an integer or a boolean");
    }
    return 0;
}

long perf_args_parse(const char *json, uint8_t *out, size_t cap, char *err, size_t errlen) {
    json_reader_t r = {json, err, errlen};
    wn_writer_t w;
    wn_writer_init(&w, out, cap);
    if (json_expect(&r, '{') < 0) return -1;
    json_space(&r);
    if (*r.p == '}') {
        r.p++;
    } else {
        for (;;) {
            if (json_entry(&r, &w) < 0) return -1;
            json_space(&r);
            if (*r.p == '}') break;
            if (json_expect(&r, ',') < 0) return -1;
        }
        r.p++;
    }
    json_space(&r);
    if (*r.p) return json_fail(&r, "junk after the object");
    if (w.overflow) return json_fail(&r, "arguments too large");
    return (long)w.len;
}
