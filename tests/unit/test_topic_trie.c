/*
 * test_topic_trie.c - the topic trie (src/topic_trie.c) against RabbitMQ's
 * topic rules: the documented examples, the return values of add and
 * remove, one visit per (pattern, value) pair, keys that would make a naive
 * matcher exponential, and randomized cross-checks against a plain
 * recursive matcher written here, over add/remove churn and 100,000
 * bindings. Run under ASan, it also shows that removal frees what it prunes.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tap.h"
#include "topic_trie.h"

/* ---- the reference matcher: words, then recursion ------------------------ */

#define MAX_WORDS 600

typedef struct words {
    const char *w[MAX_WORDS];
    size_t len[MAX_WORDS];
    size_t n;
} words_t;

/* "a..b" is three words and "" none at all (as RabbitMQ splits keys);
 * otherwise n dots make n + 1 words. */
static void split(const char *s, size_t len, words_t *out) {
    size_t start = 0;
    out->n = 0;
    if (len == 0) return;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') continue;
        out->w[out->n] = s + start;
        out->len[out->n] = i - start;
        out->n++;
        start = i + 1;
    }
}

static bool word_is(const words_t *ws, size_t i, const char *lit) {
    return ws->len[i] == strlen(lit) && memcmp(ws->w[i], lit, ws->len[i]) == 0;
}

static bool ref_match_at(const words_t *p, size_t pi, const words_t *k, size_t ki) {
    if (pi == p->n) return ki == k->n;
    if (word_is(p, pi, "#"))
        return ref_match_at(p, pi + 1, k, ki) || (ki < k->n && ref_match_at(p, pi, k, ki + 1));
    if (ki == k->n) return false;
    bool same = p->len[pi] == k->len[ki] && memcmp(p->w[pi], k->w[ki], p->len[pi]) == 0;
    return (word_is(p, pi, "*") || same) && ref_match_at(p, pi + 1, k, ki + 1);
}

static bool ref_match(const char *pattern, const char *key) {
    static words_t p, k;
    split(pattern, strlen(pattern), &p);
    split(key, strlen(key), &k);
    return ref_match_at(&p, 0, &k, 0);
}

/* ---- helpers -------------------------------------------------------------- */

/* Values are small integers; visits are counted per value. */
#define MAX_VALUES 200000
static unsigned visits[MAX_VALUES];
static size_t total_visits;

static void *val(size_t i) {
    return (void *)(uintptr_t)(i + 1);
}

static void count_visit(void *value, void *ctx) {
    (void)ctx;
    size_t i = (size_t)(uintptr_t)value - 1;
    if (i < MAX_VALUES) visits[i]++;
    total_visits++;
}

static void clear_visits(size_t n) {
    memset(visits, 0, n * sizeof visits[0]);
    total_visits = 0;
}

static void match(topic_trie_t *t, const char *key, size_t nvalues) {
    clear_visits(nvalues);
    topic_trie_match(t, (const uint8_t *)key, strlen(key), count_visit, NULL);
}

static int add(topic_trie_t *t, const char *pattern, size_t v) {
    return topic_trie_add(t, (const uint8_t *)pattern, strlen(pattern), val(v));
}

static int del(topic_trie_t *t, const char *pattern, size_t v) {
    return topic_trie_remove(t, (const uint8_t *)pattern, strlen(pattern), val(v));
}

/* Does `pattern` alone in a trie match `key`? Visited exactly once if so. */
static bool trie_matches(const char *pattern, const char *key) {
    topic_trie_t *t = topic_trie_new();
    add(t, pattern, 0);
    match(t, key, 1);
    topic_trie_free(t);
    return visits[0] == 1 && total_visits == 1;
}

static bool trie_rejects(const char *pattern, const char *key) {
    topic_trie_t *t = topic_trie_new();
    add(t, pattern, 0);
    match(t, key, 1);
    topic_trie_free(t);
    return total_visits == 0;
}

/* ---- the documented examples ---------------------------------------------- */

typedef struct example {
    const char *pattern, *key;
    bool matches;
} example_t;

static const example_t examples[] = {
    {"#", "", true},
    {"#", "a", true},
    {"#", "a.b.c", true},
    {"#", ".", true},
    {"a.#.b", "a.b", true},
    {"a.#.b", "a.x.b", true},
    {"a.#.b", "a.x.y.b", true},
    {"a.#.b", "a.x.y", false},
    {"a.#.b", "b", false},
    {"#.#", "", true},
    {"#.#", "a.b.c", true},
    {"*", "x", true},
    {"*", "", false}, /* "" has no words (RabbitMQ) */
    {"*", "a.b", false},
    {"*", ".", false},
    {"a.*", "a.", true},
    {"a.*", "a", false},
    {"a.*", "a.b", true},
    {"a.*", "a.b.c", false},
    {"#.a", "a", true},
    {"#.a", "x.a", true},
    {"#.a", "x.y.a", true},
    {"#.a", "a.x", false},
    {"*.#", "", false},
    {"*.#", "a", true},
    {"*.#", "a.b.c", true},
    {"a.#", "a", true},
    {"a.#", "a.b.c", true},
    {"a.#", "b.a", false},
    {"", "", true},
    {"", "a", false},
    {"", ".", false},
    {".", ".", true},
    {".", "", false},
    {"a..b", "a..b", true},
    {"a..b", "a.b", false},
    {"a.*.b", "a..b", true},
    {"*.*", ".", true},
    {"*.*", "a", false},
    {"a*", "ab", false},
    {"a*", "a*", true},
    {"#a", "a", false},
    {"#a", "#a", true},
    {"a.b.c", "a.b.c", true},
    {"a.b.c", "a.b", false},
    {"a.b", "a.b.c", false},
    {"#.*.#", "a", true},
    {"#.*.#", "", false},
    {"*.*.#", "a", false},
    {"a.#.#.b", "a.b", true},
    {"#.b.#", "a.b.c", true},
    {"#.b.#", "a.c", false},
    {"*", "*", true},
    {"a", "*", false},
    {"#", "#", true},
    {"a.#", "a.#", true},
};

static void test_examples(void) {
    for (size_t i = 0; i < sizeof examples / sizeof examples[0]; i++) {
        const example_t *e = &examples[i];
        bool ok = e->matches ? trie_matches(e->pattern, e->key) : trie_rejects(e->pattern, e->key);
        ok(ok && ref_match(e->pattern, e->key) == e->matches, "\"%s\" %s \"%s\"", e->pattern,
           e->matches ? "matches" : "does not match", e->key);
    }
}

/* A routing key is a shortstr: 255 dots make 256 empty words. */
static void test_long_keys(void) {
    char dots[256], stars[600];
    memset(dots, '.', 255);
    dots[255] = '\0';
    size_t n = 0;
    for (int i = 0; i < 256; i++) {
        if (i) stars[n++] = '.';
        stars[n++] = '*';
    }
    stars[n] = '\0';
    ok(trie_matches("#", dots), "# matches 255 dots");
    ok(trie_matches("#.*", dots) && trie_matches("*.#", dots), "#.* and *.# match 255 dots");
    ok(trie_rejects("*", dots), "* does not match 255 dots");
    ok(trie_rejects("", dots), "the empty pattern does not match 255 dots");
    ok(trie_matches(stars, dots), "256 '*' words match 255 dots");
    ok(trie_rejects(stars + 2, dots), "255 '*' words do not match 255 dots");
    ok(trie_matches(dots, dots), "255 dots match themselves");
    dots[253] = 'a'; /* 253 dots, "a", one more dot */
    ok(trie_matches("#.a.", dots) && trie_rejects("#.a", dots),
       "253 dots, a, a dot: #.a. matches, #.a does not");
}

/* ---- add, remove, count ----------------------------------------------------- */

static void test_add_remove(void) {
    topic_trie_t *t = topic_trie_new();
    ok(t && topic_trie_count(t) == 0, "a new trie is empty");
    ok(add(t, "a.b", 1) == 0, "add returns 0 for a new pair");
    ok(add(t, "a.b", 1) == 1, "add returns 1 for the same pair again");
    ok(add(t, "a.b", 2) == 0, "another value on the same pattern is a new pair");
    ok(add(t, "a.*", 1) == 0, "the same value on another pattern is a new pair");
    ok(topic_trie_count(t) == 3, "count is 3 after 4 adds of 3 distinct pairs");
    match(t, "a.b", 3);
    ok(visits[1] == 2 && visits[2] == 1 && total_visits == 3,
       "a value under two matching patterns is visited once for each");
    ok(del(t, "a.b", 3) == -1, "removing an absent value fails");
    ok(del(t, "a.c", 1) == -1, "removing from an absent pattern fails");
    ok(del(t, "a", 1) == -1, "removing at an inner node that holds nothing fails");
    ok(del(t, "a.b", 1) == 0, "remove returns 0 for a present pair");
    ok(del(t, "a.b", 1) == -1, "removing it again fails");
    ok(topic_trie_count(t) == 2, "count is 2");
    match(t, "a.b", 3);
    ok(visits[1] == 1 && visits[2] == 1 && total_visits == 2, "the removed pair is not visited");
    ok(del(t, "a.b", 2) == 0 && del(t, "a.*", 1) == 0 && topic_trie_count(t) == 0,
       "removing the rest empties the trie");
    match(t, "a.b", 3);
    ok(total_visits == 0, "an empty trie visits nothing");
    ok(add(t, "a.b", 1) == 0 && topic_trie_count(t) == 1, "a pruned path can be added again");
    match(t, "a.b", 3);
    ok(visits[1] == 1 && total_visits == 1, "and matches again");
    topic_trie_free(t);
    topic_trie_free(NULL);
    ok(1, "topic_trie_free(NULL) is a no-op");
}

/* Many '#' paths reach the same node; its pairs are still visited once. */
static void test_one_visit_per_pair(void) {
    topic_trie_t *t = topic_trie_new();
    add(t, "#.#.#", 0);
    add(t, "#.a.#", 1);
    add(t, "#.*.#.*.#", 2);
    add(t, "a.#", 3);
    add(t, "#.a", 4);
    match(t, "a.a.a.a", 5);
    bool once = true;
    for (int i = 0; i < 5; i++)
        once = once && visits[i] == 1;
    ok(once && total_visits == 5, "each pair visited once though '#' reaches it many ways");
    match(t, "b", 5);
    ok(visits[0] == 1 && total_visits == 1, "only #.#.# matches \"b\"");
    topic_trie_free(t);
}

/* "#.#.#...#.a" against "a.a.a...": a backtracking matcher tries every way to
 * split the words among the '#'s; the trie visits each (node, word) once. */
static void test_no_blowup(void) {
    char pattern[256] = "", key[256] = "";
    for (int i = 0; i < 40; i++)
        strcat(pattern, "#.");
    strcat(pattern, "a");
    for (int i = 0; i < 100; i++)
        strcat(key, i ? ".a" : "a");
    topic_trie_t *t = topic_trie_new();
    add(t, pattern, 0);
    add(t, "#.#.#.#.a", 1);
    add(t, "#.#.#.#.b", 2);
    clock_t start = clock();
    for (int i = 0; i < 100; i++)
        match(t, key, 3);
    double secs = (double)(clock() - start) / CLOCKS_PER_SEC;
    ok(visits[0] == 1 && visits[1] == 1 && total_visits == 2, "40 '#'s then a: matched once");
    ok(secs < 2.0, "100 matches of a 100-word key against 40 '#'s take %.3f s", secs);
    key[strlen(key) - 1] = 'b';
    match(t, key, 3);
    ok(visits[2] == 1 && total_visits == 1, "a key ending in b matches only #.#.#.#.b");
    topic_trie_free(t);
}

/* ---- randomized cross-checks ------------------------------------------------ */

static const char *const pattern_words[] = {"", "a", "b", "ab", "*", "#"};
static const char *const key_words[] = {"", "a", "b", "ab", "*", "#"};

static void random_string(char *out, const char *const *alphabet, size_t nalpha, int maxwords) {
    int n = 1 + rand() % maxwords;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (i) strcat(out, ".");
        strcat(out, alphabet[(size_t)rand() % nalpha]);
    }
}

#define NPAT 400
typedef struct pair {
    char pattern[64];
    size_t value;
    bool present;
} pair_t;

/* Check one key against every present pair: each visited once iff it matches.
 * Values are shared between patterns, so visits per value are counted. */
static bool cross_check_key(topic_trie_t *t, const pair_t *pairs, size_t npairs, size_t nvalues,
                            const char *key) {
    static unsigned expect[NPAT];
    memset(expect, 0, sizeof expect);
    size_t want_total = 0;
    for (size_t i = 0; i < npairs; i++)
        if (pairs[i].present && ref_match(pairs[i].pattern, key)) {
            expect[pairs[i].value]++;
            want_total++;
        }
    match(t, key, nvalues);
    if (total_visits != want_total) return false;
    for (size_t v = 0; v < nvalues; v++)
        if (visits[v] != expect[v]) return false;
    return true;
}

static void test_random_cross_check(void) {
    static pair_t pairs[NPAT];
    size_t nvalues = 50, bad = 0, keys = 0;
    topic_trie_t *t = topic_trie_new();
    for (size_t i = 0; i < NPAT; i++) {
        random_string(pairs[i].pattern, pattern_words, 6, 5);
        pairs[i].value = (size_t)rand() % nvalues;
        /* A repeated (pattern, value) pair is stored once: mark only the first. */
        pairs[i].present = add(t, pairs[i].pattern, pairs[i].value) == 0;
    }
    for (int k = 0; k < 5000; k++, keys++) {
        char key[64];
        random_string(key, key_words, 6, 6);
        if (!cross_check_key(t, pairs, NPAT, nvalues, key)) {
            if (bad++ < 5) diag("mismatch on key \"%s\"", key);
        }
    }
    ok(bad == 0, "%zu random keys agree with the reference over %d random patterns", keys, NPAT);
    topic_trie_free(t);
}

/* Random adds and removes, checked against a list of what should be present. */
static void test_random_churn(void) {
    static pair_t pairs[NPAT];
    size_t nvalues = 20, present = 0, bad_ret = 0, bad_match = 0, bad_count = 0;
    topic_trie_t *t = topic_trie_new();
    for (size_t i = 0; i < NPAT; i++) {
        random_string(pairs[i].pattern, pattern_words, 6, 4);
        pairs[i].value = (size_t)rand() % nvalues;
        pairs[i].present = false;
    }
    for (int step = 0; step < 20000; step++) {
        pair_t *p = &pairs[(size_t)rand() % NPAT];
        /* Duplicates of p in the table share its fate: find the first. */
        for (size_t j = 0; j < NPAT; j++)
            if (pairs[j].value == p->value && strcmp(pairs[j].pattern, p->pattern) == 0) {
                p = &pairs[j];
                break;
            }
        if (rand() % 2) {
            int want = p->present ? 1 : 0;
            if (add(t, p->pattern, p->value) != want) bad_ret++;
            if (!p->present) present++;
            p->present = true;
        } else {
            int want = p->present ? 0 : -1;
            if (del(t, p->pattern, p->value) != want) bad_ret++;
            if (p->present) present--;
            p->present = false;
        }
        if (topic_trie_count(t) != present) bad_count++;
        if (step % 20 == 0) {
            char key[64];
            random_string(key, key_words, 6, 5);
            if (!cross_check_key(t, pairs, NPAT, nvalues, key)) bad_match++;
        }
    }
    ok(bad_ret == 0, "20000 random adds and removes return what the model says");
    ok(bad_count == 0, "the count follows every add and remove");
    ok(bad_match == 0, "matches during churn agree with the reference (removed never visited)");
    for (size_t i = 0; i < NPAT; i++)
        if (pairs[i].present) del(t, pairs[i].pattern, pairs[i].value);
    ok(topic_trie_count(t) == 0, "removing every present pair empties the trie");
    match(t, "a", nvalues);
    ok(total_visits == 0, "and nothing matches");
    topic_trie_free(t);
}

/* ---- 100,000 bindings ------------------------------------------------------- */

#define NBIG 100000

static void big_pattern(char *out, size_t i) {
    /* Mostly literal words from a vocabulary of 50, some '*' and '#'. */
    int n = 3 + rand() % 3;
    out[0] = '\0';
    for (int w = 0; w < n; w++) {
        char word[16];
        int r = rand() % 100;
        if (r < 8)
            strcpy(word, "*");
        else if (r < 12)
            strcpy(word, "#");
        else
            snprintf(word, sizeof word, "w%d", rand() % 50);
        if (w) strcat(out, ".");
        strcat(out, word);
    }
    (void)i;
}

static void test_many_bindings(void) {
    static char patterns[NBIG][48];
    topic_trie_t *t = topic_trie_new();
    size_t added = 0;
    for (size_t i = 0; i < NBIG; i++) {
        big_pattern(patterns[i], i);
        if (add(t, patterns[i], i) == 0) added++;
    }
    ok(added == NBIG && topic_trie_count(t) == NBIG, "100,000 distinct pairs added and counted");
    size_t bad = 0;
    for (int k = 0; k < 20; k++) {
        char key[64];
        snprintf(key, sizeof key, "w%d.w%d.w%d.w%d", rand() % 50, rand() % 50, rand() % 50,
                 rand() % 50);
        match(t, key, NBIG);
        size_t want = 0;
        for (size_t i = 0; i < NBIG; i++) {
            bool m = ref_match(patterns[i], key);
            want += m;
            if (visits[i] != (m ? 1u : 0u)) bad++;
        }
        if (total_visits != want) bad++;
    }
    ok(bad == 0, "20 keys against 100,000 bindings agree with the reference");
    size_t removed = 0;
    for (size_t i = 0; i < NBIG; i += 2)
        removed += del(t, patterns[i], i) == 0;
    match(t, "w1.w2.w3.w4", NBIG);
    bool odd_only = true;
    for (size_t i = 0; i < NBIG; i += 2)
        odd_only = odd_only && visits[i] == 0;
    ok(removed == NBIG / 2 && topic_trie_count(t) == NBIG / 2 && odd_only,
       "half removed: count halves and removed values are never visited");
    topic_trie_free(t); /* with half the bindings still in: ASan checks the teardown */
}

int main(void) {
    srand(20240611);
    test_examples();
    test_long_keys();
    test_add_remove();
    test_one_visit_per_pair();
    test_no_blowup();
    test_random_cross_check();
    test_random_churn();
    test_many_bindings();
    return tap_done();
}
