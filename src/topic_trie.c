/*
 * topic_trie.c - INTERIM linear topic matcher with the trie's API, so the
 * broker builds until the word trie lands. Correct, but O(bindings).
 */
#include "topic_trie.h"

#include <stdlib.h>
#include <string.h>

typedef struct tt_entry {
    uint8_t *pattern;
    size_t len;
    void *value;
    struct tt_entry *next;
} tt_entry_t;

struct topic_trie {
    tt_entry_t *entries;
};

topic_trie_t *topic_trie_new(void) {
    return calloc(1, sizeof(topic_trie_t));
}

void topic_trie_free(topic_trie_t *t) {
    tt_entry_t *e = t->entries;
    while (e) {
        tt_entry_t *n = e->next;
        free(e->pattern);
        free(e);
        e = n;
    }
    free(t);
}

int topic_trie_add(topic_trie_t *t, const uint8_t *p, size_t len, void *value) {
    tt_entry_t *e = calloc(1, sizeof *e);
    if (!e) return -1;
    e->pattern = malloc(len ? len : 1);
    if (len) memcpy(e->pattern, p, len);
    e->len = len;
    e->value = value;
    e->next = t->entries;
    t->entries = e;
    return 0;
}

int topic_trie_remove(topic_trie_t *t, const uint8_t *p, size_t len, void *value) {
    for (tt_entry_t **pp = &t->entries; *pp; pp = &(*pp)->next) {
        tt_entry_t *e = *pp;
        if (e->value == value && e->len == len && memcmp(e->pattern, p, len) == 0) {
            *pp = e->next;
            free(e->pattern);
            free(e);
            return 0;
        }
    }
    return -1;
}

/* Length of the word starting at s (up to '.' or end). */
static size_t word_len(const uint8_t *s, size_t n) {
    const uint8_t *dot = memchr(s, '.', n);
    return dot ? (size_t)(dot - s) : n;
}

static int match(const uint8_t *p, size_t pn, const uint8_t *k, size_t kn, int pdone, int kdone) {
    if (pdone) return kdone;
    size_t pw = word_len(p, pn);
    int plast = pw == pn;
    if (pw == 1 && p[0] == '#') {
        if (plast) return 1;
        if (match(p + 2, pn - 2, k, kn, 0, kdone)) return 1;
        if (kdone) return 0;
        size_t kw = word_len(k, kn);
        if (kw == kn) return match(p, pn, k, 0, 0, 1);
        return match(p, pn, k + kw + 1, kn - kw - 1, 0, 0);
    }
    if (kdone) return 0;
    size_t kw = word_len(k, kn);
    int klast = kw == kn;
    if (!(pw == 1 && p[0] == '*') && (pw != kw || memcmp(p, k, kw) != 0)) return 0;
    return match(plast ? p : p + pw + 1, plast ? 0 : pn - pw - 1, klast ? k : k + kw + 1,
                 klast ? 0 : kn - kw - 1, plast, klast);
}

void topic_trie_match(topic_trie_t *t, const uint8_t *key, size_t len,
                      void (*visit)(void *value, void *ctx), void *ctx) {
    for (tt_entry_t *e = t->entries; e; e = e->next)
        if (match(e->pattern, e->len, key, len, 0, 0)) visit(e->value, ctx);
}
