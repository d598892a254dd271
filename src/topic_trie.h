/*
 * topic_trie.h - the index behind the topic exchange: binding keys stored as
 * a trie over their '.'-separated words, matched against routing keys with
 * RabbitMQ's rules ('*' is exactly one word, '#' is zero or more words).
 *
 * The trie maps (pattern, value) pairs; the value is opaque (the exchange
 * stores its binding). Routing cost depends on the routing key and on the
 * patterns that share its words, not on how many bindings the trie holds:
 * each word is one hash lookup per live trie node, and no (node, word
 * position) state is visited twice, so no pattern of '#'s can make it blow
 * up. docs/routing.md describes the structure and its costs.
 *
 * Not thread-safe: a trie belongs to the loop that owns its exchange.
 */
#ifndef WARREN_TOPIC_TRIE_H
#define WARREN_TOPIC_TRIE_H

#include <stddef.h>
#include <stdint.h>

typedef struct topic_trie topic_trie_t;

/* An empty trie, or NULL when out of memory. */
topic_trie_t *topic_trie_new(void);
/* Frees the trie and its nodes; the values are the caller's. NULL is a no-op. */
void topic_trie_free(topic_trie_t *t);

/* Store `value` under the binding key `pattern`. Returns 0 when added, 1 when
 * that (pattern, value) pair was already present (it is stored once), -1 when
 * out of memory (the trie is unchanged). */
int topic_trie_add(topic_trie_t *t, const uint8_t *pattern, size_t len, void *value);

/* Remove the (pattern, value) pair and any trie nodes it leaves empty.
 * Returns 0 when removed, -1 when the pair was not present. */
int topic_trie_remove(topic_trie_t *t, const uint8_t *pattern, size_t len, void *value);

/* Call visit(value, ctx) for every stored pair whose pattern matches `key`.
 * Each pair is visited at most once per call, but a value stored under two
 * matching patterns is visited once for each: the caller deduplicates.
 * `visit` must not add to or remove from the trie. */
void topic_trie_match(topic_trie_t *t, const uint8_t *key, size_t len,
                      void (*visit)(void *value, void *ctx), void *ctx);

/* How many (pattern, value) pairs the trie holds. */
size_t topic_trie_count(const topic_trie_t *t);

#endif /* WARREN_TOPIC_TRIE_H */
