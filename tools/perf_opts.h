/*
 * perf_opts.h - warren-perf's command line: what to run (producers,
 * consumers, sizes, modes), where (the broker URI) and how to report.
 *
 * Parsed once in main() and read-only afterwards, so every thread may look
 * at it without locking.
 */
#ifndef PERF_OPTS_H
#define PERF_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* amqp://user:pass@host:port/vhost, percent-decoded. */
typedef struct perf_uri {
    char host[256];
    char port[8];
    char user[256];
    char pass[256];
    char vhost[256];
} perf_uri_t;

#define PERF_QUEUE_ARGS_MAX 4096

typedef struct perf_opts {
    perf_uri_t uri;
    unsigned producers;     /* -x */
    unsigned consumers;     /* -y */
    uint32_t size;          /* -s: body bytes */
    double seconds;         /* -z: 0 = not given */
    uint64_t count;         /* -C: messages per producer, 0 = not given */
    uint32_t ack_every;     /* -a: 0 = no-ack consume */
    uint16_t prefetch;      /* -q: 0 = unlimited */
    uint32_t confirm;       /* -c: outstanding confirms, 0 = no confirms */
    bool persistent;        /* -p */
    double rate;            /* -r: msg/s per producer, 0 = unlimited */
    char exchange_type[16]; /* -e */
    char exchange[64];      /* "warren-perf.<type>" */
    char routing_key[256];  /* -k */
    unsigned queues;        /* --queues */
    /* --queue-args, encoded as a field table body (entries, no length). */
    uint8_t queue_args[PERF_QUEUE_ARGS_MAX];
    size_t queue_args_len;
    double drain;    /* --drain: seconds to wait for consumers and confirms */
    bool json;       /* --json */
    char prefix[64]; /* --prefix: the queues are \"<prefix>.q.N\" */
    bool keep;       /* --keep: leave the queues, and what is in them, at the end */
} perf_opts_t;

/* Fill *o from argv. Returns 0 to run, 1 when --help was printed, -1 after
 * printing a usage error to stderr. */
int perf_opts_parse(perf_opts_t *o, int argc, char **argv);

/* Parse an amqp:// URI into *u. Returns 0, or -1 with a message in err. */
int perf_uri_parse(perf_uri_t *u, const char *uri, char *err, size_t errlen);

/* Encode a flat JSON object of strings, integers and booleans as a field
 * table body. Returns its length, or -1 with a message in err. */
long perf_args_parse(const char *json, uint8_t *out, size_t cap, char *err, size_t errlen);

#endif /* PERF_OPTS_H */
