/*
 * bench_topic.c - how routing cost through the topic trie (src/topic_trie.c)
 * changes with the number of bindings: for N = 0, 1,000 and 100,000 random
 * bindings, the time to match one routing key that few of them match.
 * If the trie does its job the three figures are close.
 *
 * Not a test (it asserts nothing); `make check` builds it, and it runs by hand:
 *   make -C BUILD/tests unit/bench_topic && BUILD/tests/unit/bench_topic [MATCHES]
 * MATCHES defaults to 1,000,000. Figures are in docs/routing.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "topic_trie.h"

/* A fixed xorshift generator: every run builds the same tries. */
static uint64_t bench_rng = 0x9e3779b97f4a7c15ULL;

static uint32_t bench_rand(uint32_t n) {
    bench_rng ^= bench_rng << 13;
    bench_rng ^= bench_rng >> 7;
    bench_rng ^= bench_rng << 17;
    return (uint32_t)(bench_rng % n);
}

/* 3-5 words from a 1,000-word vocabulary; in one pattern in ten one word is
 * '*', in one in twenty one word is '#'. */
static size_t bench_pattern(char *out, size_t cap) {
    int nwords = 3 + (int)bench_rand(3);
    int star = bench_rand(10) == 0 ? (int)bench_rand((uint32_t)nwords) : -1;
    int hash = bench_rand(20) == 0 ? (int)bench_rand((uint32_t)nwords) : -1;
    size_t len = 0;
    for (int i = 0; i < nwords; i++) {
        const char *sep = i ? "." : "";
        int n;
        if (i == hash)
            n = snprintf(out + len, cap - len, "%s#", sep);
        else if (i == star)
            n = snprintf(out + len, cap - len, "%s*", sep);
        else
            n = snprintf(out + len, cap - len, "%sw%u", sep, bench_rand(1000));
        len += (size_t)n;
    }
    return len;
}

static void bench_count(void *value, void *ctx) {
    (void)value;
    (*(size_t *)ctx)++;
}

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The key, and patterns that match it, so that it matches a few bindings
 * whenever there are some; random patterns rarely do. */
static const char key[] = "w17.w401.w923.w5";
static const char *const bench_planted[] = {"w17.#", "*.w401.w923.*", "w17.w401.w923.w5"};
#define BENCH_NPLANTED (sizeof bench_planted / sizeof bench_planted[0])

static int bench_run(size_t nbindings, long matches) {
    topic_trie_t *t = topic_trie_new();
    if (!t) return -1;
    for (size_t i = 0; i < nbindings; i++) {
        char pattern[64];
        size_t len = i < BENCH_NPLANTED ? strlen(strcpy(pattern, bench_planted[i]))
                                        : bench_pattern(pattern, sizeof pattern);
        if (topic_trie_add(t, (const uint8_t *)pattern, len, (void *)(uintptr_t)(i + 1)) < 0) {
            topic_trie_free(t);
            return -1;
        }
    }
    size_t matched = 0;
    topic_trie_match(t, (const uint8_t *)key, sizeof key - 1, bench_count, &matched);
    size_t visits = 0;
    double start = bench_now();
    for (long i = 0; i < matches; i++)
        topic_trie_match(t, (const uint8_t *)key, sizeof key - 1, bench_count, &visits);
    double secs = bench_now() - start;
    printf("%7zu bindings: %8.1f ns/match  (key \"%s\" matches %zu of them)\n", topic_trie_count(t),
           secs * 1e9 / (double)matches, key, matched);
    topic_trie_free(t);
    return visits == matched * (size_t)matches ? 0 : -1;
}

int main(int argc, char **argv) {
    long matches = argc > 1 ? atol(argv[1]) : 1000000;
    if (matches <= 0) {
        fprintf(stderr, "usage: %s [MATCHES]\n", argv[0]);
        return 2;
    }
    printf("topic trie: %ld matches of one key per size\n", matches);
    const size_t sizes[] = {0, 1000, 100000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (bench_run(sizes[i], matches) < 0) {
            fprintf(stderr, "bench_topic: out of memory or inconsistent matches\n");
            return 1;
        }
    return 0;
}
