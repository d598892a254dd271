/*
 * perf_opts.c - warren-perf's command line and the amqp:// URI.
 *
 * Every number is checked in full (no trailing garbage, no silent
 * wrap-around): a load generator that quietly ran a different test than the
 * one asked for would be worse than one that refuses to start.
 */
#include "perf_opts.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: warren-perf [options]\n"
    "  -u, --uri URI           amqp://user:pass@host:port/vhost\n"
    "                          (default amqp://guest:guest@127.0.0.1:5672/%2F)\n"
    "  -x, --producers N       producers, one connection each (default 1)\n"
    "  -y, --consumers N       consumers, one connection each (default 1)\n"
    "  -s, --size BYTES        message body size (default 16; below 16 no latency)\n"
    "  -z, --time SECONDS      run time (default 10 when -C is not given either)\n"
    "  -C, --count N           messages per producer\n"
    "  -a, --ack-every N       ack every N messages, multiple=true (0 = no-ack, default)\n"
    "  -q, --prefetch N        basic.qos prefetch per consumer (0 = unlimited, default)\n"
    "  -c, --confirm N         publisher confirms, at most N outstanding (0 = off, default)\n"
    "  -p, --persistent        persistent messages (delivery-mode 2), durable queues\n"
    "  -r, --rate RATE         msg/s per producer (0 = unlimited, default)\n"
    "  -e, --exchange-type T   direct, fanout, topic or headers (default direct);\n"
    "                          the exchange is \"warren-perf.T\"\n"
    "  -k, --routing-key KEY   routing and binding key (default \"perf\")\n"
    "      --queues N          queues \"warren-perf.q.1\"..N, each bound to the exchange\n"
    "      --prefix NAME       name the queues \"NAME.q.1\"..N (default warren-perf), so\n"
    "                          runs side by side (each with its own -k) have their own\n"
    "      --keep              leave the queues and their messages at the end (with -y 0:\n"
    "                          how a broker's memory per queued message is measured)\n"
    "      --queue-args JSON   queue arguments, a flat JSON object: {\"x-max-length\":1000}\n"
    "      --drain SECONDS     after the producers stop, wait at most this long for the\n"
    "                          consumers to receive everything (default 10)\n"
    "      --json              print the result as one JSON object on stdout\n"
    "  -h, --help              this text\n";

static const struct option long_opts[] = {
    {"uri", required_argument, NULL, 'u'},
    {"producers", required_argument, NULL, 'x'},
    {"consumers", required_argument, NULL, 'y'},
    {"size", required_argument, NULL, 's'},
    {"time", required_argument, NULL, 'z'},
    {"count", required_argument, NULL, 'C'},
    {"ack-every", required_argument, NULL, 'a'},
    {"prefetch", required_argument, NULL, 'q'},
    {"confirm", required_argument, NULL, 'c'},
    {"persistent", no_argument, NULL, 'p'},
    {"rate", required_argument, NULL, 'r'},
    {"exchange-type", required_argument, NULL, 'e'},
    {"routing-key", required_argument, NULL, 'k'},
    {"queues", required_argument, NULL, 'Q'},
    {"queue-args", required_argument, NULL, 'A'},
    {"drain", required_argument, NULL, 'D'},
    {"json", no_argument, NULL, 'J'},
    {"prefix", required_argument, NULL, 'P'},
    {"keep", no_argument, NULL, 'K'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static int parse_u64(const char *s, uint64_t max, uint64_t *out) {
    if (!isdigit((unsigned char)s[0])) return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double *out) {
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0) || v > 1e12) return -1;
    *out = v;
    return 0;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    c = tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Copy [s, s+n) to out percent-decoded. -1 on a bad escape or overflow. */
static int uri_decode(char *out, size_t cap, const char *s, size_t n) {
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)s[i];
        if (c == '%') {
            if (n - i < 3) return -1;
            int hi = hexval((unsigned char)s[i + 1]), lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            c = hi << 4 | lo;
            i += 2;
        }
        if (c == 0 || j + 1 >= cap) return -1;
        out[j++] = (char)c;
    }
    out[j] = '\0';
    return 0;
}

static int uri_fail(char *err, size_t errlen, const char *what) {
    snprintf(err, errlen, "bad URI: %s", what);
    return -1;
}

/* host, [v6], host:port, [v6]:port */
static int uri_hostport(perf_uri_t *u, const char *s, size_t n, char *err, size_t errlen) {
    const char *colon = NULL;
    const char *host = s;
    size_t hostlen = n;
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close) return uri_fail(err, errlen, "no ']' after an IPv6 address");
        host = s + 1;
        hostlen = (size_t)(close - host);
        if (close + 1 < s + n) {
            if (close[1] != ':') return uri_fail(err, errlen, "junk after ']'");
            colon = close + 1;
        }
    } else if ((colon = memchr(s, ':', n)) != NULL) {
        hostlen = (size_t)(colon - s);
    }
    if (hostlen == 0) {
        host = "127.0.0.1";
        hostlen = strlen(host);
    }
    if (uri_decode(u->host, sizeof u->host, host, hostlen) < 0)
        return uri_fail(err, errlen, "host");
    if (!colon) return 0;
    size_t portlen = (size_t)(s + n - colon - 1);
    uint64_t port;
    char buf[8];
    if (portlen == 0 || portlen >= sizeof buf) return uri_fail(err, errlen, "port");
    memcpy(buf, colon + 1, portlen);
    buf[portlen] = '\0';
    if (parse_u64(buf, 65535, &port) < 0 || port == 0) return uri_fail(err, errlen, "port");
    snprintf(u->port, sizeof u->port, "%u", (unsigned)port);
    return 0;
}

static int uri_userinfo(perf_uri_t *u, const char *s, size_t n, char *err, size_t errlen) {
    const char *colon = memchr(s, ':', n);
    size_t userlen = colon ? (size_t)(colon - s) : n;
    if (uri_decode(u->user, sizeof u->user, s, userlen) < 0) return uri_fail(err, errlen, "user");
    if (!colon) return 0;
    if (uri_decode(u->pass, sizeof u->pass, colon + 1, (size_t)(s + n - colon - 1)) < 0)
        return uri_fail(err, errlen, "password");
    return 0;
}

int perf_uri_parse(perf_uri_t *u, const char *uri, char *err, size_t errlen) {
    static const char scheme[] = "amqp://";
    snprintf(u->host, sizeof u->host, "127.0.0.1");
    snprintf(u->port, sizeof u->port, "5672");
    snprintf(u->user, sizeof u->user, "guest");
    snprintf(u->pass, sizeof u->pass, "guest");
    snprintf(u->vhost, sizeof u->vhost, "/");
    if (strncmp(uri, scheme, sizeof scheme - 1) != 0)
        return uri_fail(err, errlen, "it must start with amqp:// (amqps is not supported)");
    const char *auth = uri + sizeof scheme - 1;
    const char *slash = strchr(auth, '/');
    const char *end = slash ? slash : auth + strlen(auth);
    const char *at = memchr(auth, '@', (size_t)(end - auth));
    const char *hp = auth;
    if (at) {
        if (uri_userinfo(u, auth, (size_t)(at - auth), err, errlen) < 0) return -1;
        hp = at + 1;
    }
    if (uri_hostport(u, hp, (size_t)(end - hp), err, errlen) < 0) return -1;
    /* As RabbitMQ's clients: no path is "/", an empty path is the vhost "". */
    if (slash && uri_decode(u->vhost, sizeof u->vhost, slash + 1, strlen(slash + 1)) < 0)
        return uri_fail(err, errlen, "vhost");
    return 0;
}

static void opts_defaults(perf_opts_t *o) {
    memset(o, 0, sizeof *o);
    char err[64];
    perf_uri_parse(&o->uri, "amqp://guest:guest@127.0.0.1:5672/%2F", err, sizeof err);
    o->producers = 1;
    o->consumers = 1;
    o->size = 16;
    o->queues = 1;
    o->drain = 10;
    snprintf(o->exchange_type, sizeof o->exchange_type, "direct");
    snprintf(o->prefix, sizeof o->prefix, "warren-perf");
    snprintf(o->routing_key, sizeof o->routing_key, "perf");
}

static int bad_value(const char *name, const char *value) {
    fprintf(stderr, "warren-perf: bad value for %s: '%s'\n", name, value);
    return -1;
}

/* The largest value an integer option takes. */
static uint64_t number_max(int opt) {
    switch (opt) {
    case 's':
        return 1u << 30;
    case 'C':
        return 1ull << 47; /* the sequence number in a body has 48 bits */
    case 'a':
        return UINT32_MAX;
    case 'q':
        return UINT16_MAX;
    case 'c':
        return 1u << 24;
    }
    return 10000; /* -x, -y, --queues */
}

static int set_number(int opt, const char *arg, perf_opts_t *o) {
    uint64_t v = 0;
    double d = 0;
    bool real = opt == 'z' || opt == 'r' || opt == 'D';
    if (real ? parse_double(arg, &d) < 0 : parse_u64(arg, number_max(opt), &v) < 0) return -1;
    if ((opt == 'z' && d == 0) || ((opt == 'C' || opt == 'Q') && v == 0)) return -1;
    switch (opt) {
    case 'x':
        o->producers = (unsigned)v;
        break;
    case 'y':
        o->consumers = (unsigned)v;
        break;
    case 's':
        o->size = (uint32_t)v;
        break;
    case 'z':
        o->seconds = d;
        break;
    case 'C':
        o->count = v;
        break;
    case 'a':
        o->ack_every = (uint32_t)v;
        break;
    case 'q':
        o->prefetch = (uint16_t)v;
        break;
    case 'c':
        o->confirm = (uint32_t)v;
        break;
    case 'r':
        o->rate = d;
        break;
    case 'Q':
        o->queues = (unsigned)v;
        break;
    case 'D':
        o->drain = d;
        break;
    default:
        return -1;
    }
    return 0;
}

static int set_string(int opt, const char *arg, perf_opts_t *o) {
    char err[256];
    switch (opt) {
    case 'u':
        if (perf_uri_parse(&o->uri, arg, err, sizeof err) == 0) return 0;
        fprintf(stderr, "warren-perf: %s\n", err);
        return -1;
    case 'e':
        if (strcmp(arg, "direct") && strcmp(arg, "fanout") && strcmp(arg, "topic") &&
            strcmp(arg, "headers"))
            return bad_value("-e (direct, fanout, topic or headers)", arg);
        snprintf(o->exchange_type, sizeof o->exchange_type, "%s", arg);
        return 0;
    case 'k':
        if (strlen(arg) > 255) return bad_value("-k (at most 255 bytes)", arg);
        snprintf(o->routing_key, sizeof o->routing_key, "%s", arg);
        return 0;
    case 'P':
        if (strlen(arg) == 0 || strlen(arg) > 40) return bad_value("--prefix (1-40 bytes)", arg);
        snprintf(o->prefix, sizeof o->prefix, "%s", arg);
        return 0;
    case 'A': {
        long n = perf_args_parse(arg, o->queue_args, sizeof o->queue_args, err, sizeof err);
        if (n < 0) {
            fprintf(stderr, "warren-perf: --queue-args: %s\n", err);
            return -1;
        }
        o->queue_args_len = (size_t)n;
        return 0;
    }
    }
    return -1;
}

static int set_option(int opt, const char *arg, perf_opts_t *o) {
    switch (opt) {
    case 'p':
        o->persistent = true;
        return 0;
    case 'J':
        o->json = true;
        return 0;
    case 'K':
        o->keep = true;
        return 0;
    case 'u':
    case 'e':
    case 'k':
    case 'P':
    case 'A':
        return set_string(opt, arg, o);
    }
    if (set_number(opt, arg, o) == 0) return 0;
    for (const struct option *lo = long_opts; lo->name; lo++)
        if (lo->val == opt) {
            char name[64];
            snprintf(name, sizeof name, "--%s", lo->name);
            return bad_value(name, arg);
        }
    return -1;
}

int perf_opts_parse(perf_opts_t *o, int argc, char **argv) {
    opts_defaults(o);
    int opt;
    while ((opt = getopt_long(argc, argv, "u:x:y:s:z:C:a:q:c:pr:e:k:h", long_opts, NULL)) != -1) {
        if (opt == 'h') {
            fputs(usage_text, stdout);
            return 1;
        }
        if (opt == '?' || set_option(opt, optarg, o) < 0) {
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "warren-perf: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->seconds == 0 && o->count == 0) o->seconds = 10;
    /* A consumer waiting for more than the prefetch before acking would
     * wait forever: ack at the prefetch instead, and say so. */
    if (o->prefetch && o->ack_every > o->prefetch) {
        fprintf(stderr, "warren-perf: acking every %u messages (the prefetch), not every %u\n",
                o->prefetch, o->ack_every);
        o->ack_every = o->prefetch;
    }
    snprintf(o->exchange, sizeof o->exchange, "warren-perf.%s", o->exchange_type);
    return 0;
}
