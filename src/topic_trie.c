/*
 * topic_trie.c - the topic exchange's index: a trie over the words of the
 * binding keys, matched against a routing key as a set of live nodes.
 *
 * Every node but the root is reached from its parent by one word: a literal
 * word, '*' or '#'. All edges live in one open-addressing hash table keyed by
 * (parent, word), as in RabbitMQ's trie_edge table, so a node with 100,000
 * children costs the same one lookup per word as a node with one; '*' and '#'
 * children are also kept as direct pointers, as matching asks every node for
 * them. The (node, value) pairs live in a second table so that adding and
 * removing a binding is O(1) however many bindings share its key.
 *
 * Matching runs the trie as an NFA: the live set starts as the root, each
 * word replaces it with the children that word leads to ('#' nodes also stay
 * live: they swallow the word), and every '#' child of a live node is live
 * too, since '#' may match no words. A node joins a set at most once (a stamp
 * records the step that added it), so the work is bounded by
 * words x live nodes: "#.#.#.#.a" against "a.a.a.a.a.a.a.a" stays linear,
 * and a pair is visited at most once per match however many '#' expansions
 * reach its node. The sets are linked through the nodes themselves, so a
 * match never allocates.
 *
 * No result cache: a match costs about as much as hashing the key would, and
 * a cache would need memory bounds and invalidation on every bind.
 */
#include "topic_trie.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Both kinds of table item begin with their hash, so one table code serves
 * both (growth, deletion) and never recomputes a hash. */
typedef struct topic_hashed {
    uint64_t hash;
} topic_hashed_t;

/* Open addressing, linear probing, power-of-two capacity, load <= 3/4. */
typedef struct topic_table {
    topic_hashed_t **slots;
    size_t mask; /* capacity - 1; no slots at all while the table is empty */
    size_t count;
} topic_table_t;

enum { TOPIC_EDGE_WORD, TOPIC_EDGE_STAR, TOPIC_EDGE_HASH };

typedef struct topic_node topic_node_t;
typedef struct topic_binding topic_binding_t;

struct topic_node {
    topic_hashed_t h;           /* hash of (parent, word); unused for the root */
    topic_node_t *parent;       /* NULL for the root */
    topic_node_t *star;         /* the '*' child */
    topic_node_t *hash;         /* the '#' child */
    topic_node_t *link[2];      /* next node in the live set of an even / odd step */
    uint64_t stamp;             /* the last match step whose set this node joined */
    size_t nchildren;           /* all children, '*' and '#' included */
    topic_binding_t **bindings; /* the pairs whose pattern ends here */
    size_t nbindings, capbindings;
    uint8_t kind; /* TOPIC_EDGE_*: the edge from the parent */
    size_t wlen;
    uint8_t word[]; /* the edge's word, not NUL-terminated */
};

/* One (pattern, value) pair, found by (node, value) in the pairs table. */
struct topic_binding {
    topic_hashed_t h;
    topic_node_t *node;
    void *value;
    size_t idx; /* position in node->bindings */
};

struct topic_trie {
    topic_node_t *root;
    topic_table_t edges; /* topic_node_t, every node but the root */
    topic_table_t pairs; /* topic_binding_t */
    uint64_t step;       /* match steps so far; stamps nodes in live sets */
    uint64_t seed;       /* per-trie, so edge hashes are not known in advance */
};

/* ---- hashing ------------------------------------------------------------ */

static uint64_t topic_mix(uint64_t x) {
    /* The 64-bit finaliser of MurmurHash3: every input bit flips about half
     * the output bits, which linear probing needs from the low bits. */
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

static uint64_t topic_hash_word(uint64_t seed, const uint8_t *p, size_t len) {
    uint64_t h = seed ^ (len * 0x9e3779b97f4a7c15ULL);
    for (; len >= 8; p += 8, len -= 8) {
        uint64_t chunk;
        memcpy(&chunk, p, 8);
        h = topic_mix(h ^ chunk);
    }
    uint64_t tail = 0;
    if (len) memcpy(&tail, p, len); /* p may be NULL for an empty key */
    return topic_mix(h ^ tail);
}

/* The edge hash: the word's hash, computed once per word of a key, combined
 * with each parent the word is looked up under. */
static uint64_t topic_hash_edge(const topic_node_t *parent, uint64_t word_hash) {
    return topic_mix(word_hash ^ (uint64_t)(uintptr_t)parent);
}

static uint64_t topic_hash_pair(const topic_trie_t *t, const topic_node_t *n, const void *v) {
    return topic_mix(t->seed ^ (uint64_t)(uintptr_t)n ^ topic_mix((uint64_t)(uintptr_t)v));
}

/* ---- the hash table ------------------------------------------------------- */

/* Slot index of an item known to be in the table. */
static size_t topic_table_slot_of(const topic_table_t *tab, const topic_hashed_t *item) {
    size_t i = item->hash & tab->mask;
    while (tab->slots[i] != item)
        i = (i + 1) & tab->mask;
    return i;
}

static void topic_table_place(topic_table_t *tab, topic_hashed_t *item) {
    size_t i = item->hash & tab->mask;
    while (tab->slots[i])
        i = (i + 1) & tab->mask;
    tab->slots[i] = item;
}

/* Make room for one more item; -1 when out of memory (table unchanged). */
static int topic_table_reserve(topic_table_t *tab) {
    size_t cap = tab->slots ? tab->mask + 1 : 0;
    if ((tab->count + 1) * 4 <= cap * 3) return 0;
    size_t ncap = cap ? cap * 2 : 16;
    topic_hashed_t **old = tab->slots;
    tab->slots = calloc(ncap, sizeof *tab->slots);
    if (!tab->slots) {
        tab->slots = old;
        return -1;
    }
    tab->mask = ncap - 1;
    for (size_t i = 0; i < cap; i++)
        if (old[i]) topic_table_place(tab, old[i]);
    free(old);
    return 0;
}

/* Call only after topic_table_reserve succeeded. */
static void topic_table_insert(topic_table_t *tab, topic_hashed_t *item) {
    topic_table_place(tab, item);
    tab->count++;
}

/* Backward-shift deletion: later items of the same probe run move up into
 * the hole, so lookups need no tombstones and stay short after churn. */
static void topic_table_delete(topic_table_t *tab, topic_hashed_t *item) {
    size_t hole = topic_table_slot_of(tab, item);
    for (size_t j = (hole + 1) & tab->mask; tab->slots[j]; j = (j + 1) & tab->mask) {
        size_t home = tab->slots[j]->hash & tab->mask;
        /* The item at j may move to the hole unless its home lies
         * cyclically in (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (stays) continue;
        tab->slots[hole] = tab->slots[j];
        hole = j;
    }
    tab->slots[hole] = NULL;
    tab->count--;
}

/* ---- nodes ---------------------------------------------------------------- */

/* The kind of edge a pattern word makes: '*' and '#' are wildcards only as
 * whole words ("a*" is a literal word). */
static uint8_t topic_word_kind(const uint8_t *w, size_t len) {
    if (len == 1 && w[0] == '*') return TOPIC_EDGE_STAR;
    if (len == 1 && w[0] == '#') return TOPIC_EDGE_HASH;
    return TOPIC_EDGE_WORD;
}

static topic_node_t *topic_find_edge(const topic_trie_t *t, const topic_node_t *parent,
                                     const uint8_t *w, size_t len, uint64_t word_hash) {
    if (!t->edges.count) return NULL;
    uint64_t h = topic_hash_edge(parent, word_hash);
    for (size_t i = h & t->edges.mask; t->edges.slots[i]; i = (i + 1) & t->edges.mask) {
        topic_node_t *n = (topic_node_t *)t->edges.slots[i];
        if (n->h.hash == h && n->parent == parent && n->wlen == len &&
            (len == 0 || memcmp(n->word, w, len) == 0))
            return n;
    }
    return NULL;
}

/* The child of `parent` along word w, or NULL. */
static topic_node_t *topic_child(const topic_trie_t *t, const topic_node_t *parent,
                                 const uint8_t *w, size_t len) {
    switch (topic_word_kind(w, len)) {
    case TOPIC_EDGE_STAR:
        return parent->star;
    case TOPIC_EDGE_HASH:
        return parent->hash;
    default:
        return topic_find_edge(t, parent, w, len, topic_hash_word(t->seed, w, len));
    }
}

static topic_node_t *topic_node_new(const uint8_t *w, size_t len) {
    topic_node_t *n = calloc(1, sizeof *n + len);
    if (!n) return NULL;
    n->kind = topic_word_kind(w, len);
    n->wlen = len;
    if (len) memcpy(n->word, w, len);
    return n;
}

/* The child of `parent` along w, created if missing; NULL when out of memory. */
static topic_node_t *topic_child_make(topic_trie_t *t, topic_node_t *parent, const uint8_t *w,
                                      size_t len) {
    topic_node_t *n = topic_child(t, parent, w, len);
    if (n) return n;
    if (topic_table_reserve(&t->edges) < 0 || !(n = topic_node_new(w, len))) return NULL;
    n->parent = parent;
    n->h.hash = topic_hash_edge(parent, topic_hash_word(t->seed, w, len));
    topic_table_insert(&t->edges, &n->h);
    if (n->kind == TOPIC_EDGE_STAR) parent->star = n;
    if (n->kind == TOPIC_EDGE_HASH) parent->hash = n;
    parent->nchildren++;
    return n;
}

/* Free n and its ancestors while they hold neither bindings nor children:
 * a removed (or never completed) pattern leaves nothing behind. */
static void topic_prune(topic_trie_t *t, topic_node_t *n) {
    while (n != t->root && n->nbindings == 0 && n->nchildren == 0) {
        topic_node_t *parent = n->parent;
        topic_table_delete(&t->edges, &n->h);
        if (parent->star == n) parent->star = NULL;
        if (parent->hash == n) parent->hash = NULL;
        parent->nchildren--;
        free(n->bindings);
        free(n);
        n = parent;
    }
}

/* ---- words ---------------------------------------------------------------- */

/* Splits a key into words as RabbitMQ does: "" has no words at all, and
 * otherwise n dots make n + 1 words ("a." is "a" and "", "." is two empty
 * words). So "*" does not match "", while "#" does. */
typedef struct topic_words {
    const uint8_t *p, *end;
    bool done;
} topic_words_t;

static void topic_words_init(topic_words_t *it, const uint8_t *key, size_t len) {
    it->p = key;
    it->end = key + len;
    it->done = len == 0;
}

static bool topic_words_next(topic_words_t *it, const uint8_t **w, size_t *len) {
    if (it->done) return false;
    size_t left = (size_t)(it->end - it->p);
    const uint8_t *dot = left ? memchr(it->p, '.', left) : NULL;
    *w = it->p;
    if (dot) {
        *len = (size_t)(dot - it->p);
        it->p = dot + 1;
    } else {
        *len = left;
        it->done = true;
    }
    return true;
}

/* The node a pattern ends at, or NULL if the trie has no such path. */
static topic_node_t *topic_find_pattern(const topic_trie_t *t, const uint8_t *pattern, size_t len) {
    topic_words_t it;
    const uint8_t *w;
    size_t wlen;
    topic_node_t *n = t->root;
    topic_words_init(&it, pattern, len);
    while (n && topic_words_next(&it, &w, &wlen))
        n = topic_child(t, n, w, wlen);
    return n;
}

/* ---- the trie --------------------------------------------------------------- */

topic_trie_t *topic_trie_new(void) {
    topic_trie_t *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->root = topic_node_new(NULL, 0);
    if (!t->root) {
        free(t);
        return NULL;
    }
    /* Addresses differ from run to run (ASLR), which is enough to keep a
     * client from choosing binding keys that all land in one probe run. */
    t->seed = topic_mix((uint64_t)(uintptr_t)t ^ (uint64_t)(uintptr_t)&topic_trie_new);
    return t;
}

static void topic_node_free(topic_node_t *n) {
    for (size_t i = 0; i < n->nbindings; i++)
        free(n->bindings[i]);
    free(n->bindings);
    free(n);
}

void topic_trie_free(topic_trie_t *t) {
    if (!t) return;
    /* Every node but the root is in the edge table exactly once. */
    for (size_t i = 0; t->edges.slots && i <= t->edges.mask; i++)
        if (t->edges.slots[i]) topic_node_free((topic_node_t *)t->edges.slots[i]);
    topic_node_free(t->root);
    free(t->edges.slots);
    free(t->pairs.slots);
    free(t);
}

static topic_binding_t *topic_find_binding(const topic_trie_t *t, const topic_node_t *n,
                                           const void *value) {
    if (!t->pairs.count) return NULL;
    uint64_t h = topic_hash_pair(t, n, value);
    for (size_t i = h & t->pairs.mask; t->pairs.slots[i]; i = (i + 1) & t->pairs.mask) {
        topic_binding_t *b = (topic_binding_t *)t->pairs.slots[i];
        if (b->h.hash == h && b->node == n && b->value == value) return b;
    }
    return NULL;
}

static int topic_node_reserve(topic_node_t *n) {
    if (n->nbindings < n->capbindings) return 0;
    size_t ncap = n->capbindings ? n->capbindings * 2 : 1;
    topic_binding_t **nb = realloc(n->bindings, ncap * sizeof *nb);
    if (!nb) return -1;
    n->bindings = nb;
    n->capbindings = ncap;
    return 0;
}

/* Attach a new pair to node n; -1 when out of memory (nothing attached). */
static int topic_bind(topic_trie_t *t, topic_node_t *n, void *value) {
    topic_binding_t *b = malloc(sizeof *b);
    if (!b || topic_node_reserve(n) < 0 || topic_table_reserve(&t->pairs) < 0) {
        free(b);
        return -1;
    }
    b->h.hash = topic_hash_pair(t, n, value);
    b->node = n;
    b->value = value;
    b->idx = n->nbindings;
    n->bindings[n->nbindings++] = b;
    topic_table_insert(&t->pairs, &b->h);
    return 0;
}

int topic_trie_add(topic_trie_t *t, const uint8_t *pattern, size_t len, void *value) {
    topic_words_t it;
    const uint8_t *w;
    size_t wlen;
    topic_node_t *n = t->root;
    topic_words_init(&it, pattern, len);
    while (topic_words_next(&it, &w, &wlen)) {
        topic_node_t *child = topic_child_make(t, n, w, wlen);
        if (!child) goto err;
        n = child;
    }
    if (topic_find_binding(t, n, value)) return 1;
    if (topic_bind(t, n, value) < 0) goto err;
    return 0;
err:
    topic_prune(t, n); /* drop the nodes this call made */
    return -1;
}

int topic_trie_remove(topic_trie_t *t, const uint8_t *pattern, size_t len, void *value) {
    topic_node_t *n = topic_find_pattern(t, pattern, len);
    topic_binding_t *b = n ? topic_find_binding(t, n, value) : NULL;
    if (!b) return -1;
    /* Swap-remove keeps node->bindings dense for matching. */
    topic_binding_t *last = n->bindings[--n->nbindings];
    n->bindings[b->idx] = last;
    last->idx = b->idx;
    topic_table_delete(&t->pairs, &b->h);
    free(b);
    topic_prune(t, n);
    return 0;
}

size_t topic_trie_count(const topic_trie_t *t) {
    return t->pairs.count;
}

/* ---- matching --------------------------------------------------------------- */

/* Add n to the live set of the current step, with the '#' nodes below it:
 * '#' matches zero words, so its node is live wherever its parent is. A node
 * already in the set brought its '#' chain with it, so the walk stops. */
static void topic_live_add(topic_trie_t *t, topic_node_t **head, topic_node_t *n) {
    int parity = (int)(t->step & 1);
    for (; n && n->stamp != t->step; n = n->hash) {
        n->stamp = t->step;
        n->link[parity] = *head;
        *head = n;
    }
}

/* One word: the live set after it, from the live set before it. */
static topic_node_t *topic_live_step(topic_trie_t *t, topic_node_t *live, const uint8_t *w,
                                     size_t len) {
    int parity = (int)(t->step & 1); /* the links of `live`, built in this step */
    uint64_t word_hash = topic_hash_word(t->seed, w, len);
    topic_node_t *next = NULL;
    t->step++;
    for (topic_node_t *n = live; n; n = n->link[parity]) {
        if (n->nchildren) {
            topic_live_add(t, &next, topic_find_edge(t, n, w, len, word_hash));
            topic_live_add(t, &next, n->star);
        }
        if (n->kind == TOPIC_EDGE_HASH) topic_live_add(t, &next, n); /* '#' takes one more */
    }
    return next;
}

void topic_trie_match(topic_trie_t *t, const uint8_t *key, size_t len,
                      void (*visit)(void *value, void *ctx), void *ctx) {
    topic_words_t it;
    const uint8_t *w;
    size_t wlen;
    topic_node_t *live = NULL;
    t->step++;
    topic_live_add(t, &live, t->root);
    topic_words_init(&it, key, len);
    while (live && topic_words_next(&it, &w, &wlen))
        live = topic_live_step(t, live, w, wlen);
    int parity = (int)(t->step & 1);
    for (topic_node_t *n = live; n; n = n->link[parity])
        for (size_t i = 0; i < n->nbindings; i++)
            visit(n->bindings[i]->value, ctx);
}
