/*
 * perf_report.c - what warren-perf prints: a line describing the run, a
 * line per second, and the result, as text or as one JSON object.
 *
 * With --json, stdout carries only the result object, so a script can parse
 * it whole; the description and the per-second lines go to stderr.
 */
#include <stdio.h>

#include "perf_run.h"

static FILE *report_progress(const perf_opts_t *o) {
    return o->json ? stderr : stdout;
}

static const char *plural(unsigned n) {
    return n == 1 ? "" : "s";
}

void perf_report_start(const perf_opts_t *o) {
    FILE *out = report_progress(o);
    fprintf(out, "warren-perf: %u producer%s, %u consumer%s, %u queue%s on %s exchange %s, ",
            o->producers, plural(o->producers), o->consumers, plural(o->consumers), o->queues,
            plural(o->queues), o->exchange_type, o->exchange);
    fprintf(out, "%u-byte %s messages", o->size, o->persistent ? "persistent" : "transient");
    if (o->confirm) fprintf(out, ", confirms (%u outstanding)", o->confirm);
    if (o->ack_every)
        fprintf(out, ", ack every %u", o->ack_every);
    else
        fprintf(out, ", no-ack");
    if (o->prefetch) fprintf(out, ", prefetch %u", o->prefetch);
    if (o->rate > 0) fprintf(out, ", %.0f msg/s per producer", o->rate);
    if (o->count) fprintf(out, ", %llu messages per producer", (unsigned long long)o->count);
    if (o->seconds > 0) fprintf(out, ", %g s", o->seconds);
    fprintf(out, "\n");
    fflush(out);
}

static unsigned long long us(uint64_t ns) {
    return (unsigned long long)((ns + 500) / 1000);
}

void perf_report_tick(const perf_opts_t *o, double at_s, const uint64_t delta[3],
                      const perf_hist_t *latency, bool blocked) {
    FILE *out = report_progress(o);
    fprintf(out, "%6.1f s  sent %llu msg/s, confirmed %llu msg/s, received %llu msg/s", at_s,
            (unsigned long long)delta[0], (unsigned long long)delta[1],
            (unsigned long long)delta[2]);
    if (latency->count)
        fprintf(out, ", latency p50/p95/p99/max %llu/%llu/%llu/%llu us",
                us(perf_hist_quantile(latency, 0.50)), us(perf_hist_quantile(latency, 0.95)),
                us(perf_hist_quantile(latency, 0.99)), us(latency->max));
    fprintf(out, "%s\n", blocked ? " (blocked)" : "");
    fflush(out);
}

static double rate(uint64_t n, double seconds) {
    return seconds > 0 ? (double)n / seconds : 0;
}

static void report_text(const perf_result_t *r) {
    double total_s = r->seconds + r->drain_seconds;
    printf("sent:      %llu messages in %.2f s, %.0f msg/s\n", (unsigned long long)r->sent,
           r->seconds, rate(r->sent, r->seconds));
    printf("confirmed: %llu (nacked %llu)\n", (unsigned long long)r->confirmed,
           (unsigned long long)r->nacked);
    printf("received:  %llu messages in %.2f s, %.0f msg/s", (unsigned long long)r->received,
           total_s, rate(r->received, total_s));
    if (r->checked) printf(" (expected %llu)", (unsigned long long)r->expected);
    printf("\n");
    const perf_hist_t *h = &r->latency;
    if (h->count)
        printf("latency:   p50 %llu us, p75 %llu us, p95 %llu us, p99 %llu us, p99.9 %llu us, "
               "max %llu us (%llu samples)\n",
               us(perf_hist_quantile(h, 0.5)), us(perf_hist_quantile(h, 0.75)),
               us(perf_hist_quantile(h, 0.95)), us(perf_hist_quantile(h, 0.99)),
               us(perf_hist_quantile(h, 0.999)), us(h->max), (unsigned long long)h->count);
    if (r->ok)
        printf("OK\n");
    else
        printf("FAILED: %s\n", r->error);
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void report_json_latency(const perf_hist_t *h) {
    printf("\"latency_us\":{\"samples\":%llu,\"p50\":%llu,\"p75\":%llu,\"p95\":%llu,"
           "\"p99\":%llu,\"p999\":%llu,\"max\":%llu}",
           (unsigned long long)h->count, us(perf_hist_quantile(h, 0.5)),
           us(perf_hist_quantile(h, 0.75)), us(perf_hist_quantile(h, 0.95)),
           us(perf_hist_quantile(h, 0.99)), us(perf_hist_quantile(h, 0.999)), us(h->max));
}

static void report_json(const perf_opts_t *o, const perf_result_t *r) {
    double total_s = r->seconds + r->drain_seconds;
    printf("{\"ok\":%s,\"error\":", r->ok ? "true" : "false");
    if (r->ok)
        printf("null");
    else
        json_string(r->error);
    printf(",\"producers\":%u,\"consumers\":%u,\"queues\":%u,\"exchange_type\":\"%s\","
           "\"size\":%u,\"persistent\":%s,\"confirm\":%u,\"ack_every\":%u,\"prefetch\":%u,"
           "\"rate\":%.0f,",
           o->producers, o->consumers, o->queues, o->exchange_type, o->size,
           o->persistent ? "true" : "false", o->confirm, o->ack_every, o->prefetch, o->rate);
    printf("\"seconds\":%.3f,\"drain_seconds\":%.3f,\"sent\":%llu,\"confirmed\":%llu,"
           "\"nacked\":%llu,\"received\":%llu,\"expected\":%llu,\"reordered\":%llu,",
           r->seconds, r->drain_seconds, (unsigned long long)r->sent,
           (unsigned long long)r->confirmed, (unsigned long long)r->nacked,
           (unsigned long long)r->received, (unsigned long long)r->expected,
           (unsigned long long)r->reordered);
    printf("\"send_rate\":%.0f,\"receive_rate\":%.0f,", rate(r->sent, r->seconds),
           rate(r->received, total_s));
    report_json_latency(&r->latency);
    printf("}\n");
}

void perf_report_result(const perf_opts_t *o, const perf_result_t *r) {
    if (o->json)
        report_json(o, r);
    else
        report_text(r);
    fflush(stdout);
}
