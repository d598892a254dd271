/*
 * delay.h - the x-delayed-message exchange type: what RabbitMQ users get
 * from the rabbitmq_delayed_message_exchange plugin, built in.
 *
 * Declared with x-delayed-type = direct, fanout, topic or headers, the
 * exchange routes by that type's rules (its bindings live in that type's
 * index). A message published to it with an x-delay header of N > 0 ms is
 * held and routed N ms later, with the bindings the exchange has then; the
 * x-delay header it is delivered with is negated, as the plugin does, so it
 * is not delayed again by another delayed exchange. Absent, zero, negative
 * or unreadable: routed at once.
 *
 * Held messages are entries of a binary min-heap per exchange, ordered by
 * due time and then by arrival; one libev timer per exchange is armed for
 * the earliest. A persistent message held by a durable delayed exchange is
 * written to the journal (store.h) under the exchange's store id, like a
 * message in a durable queue, and comes back after a restart; past
 * DELAY_HOT_MAX held messages its body is left on disk and read back when
 * it is due.
 */
#ifndef WARREN_DELAY_H
#define WARREN_DELAY_H

#include "exchange.h"
#include "message.h"
#include "queue.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct delay;

extern const exchange_ops_t exchange_delayed_ops;

/* Validate a new delayed exchange's arguments: 0, or the reply code to close
 * with (406 for a missing x-delayed-type, 503 for an unknown one, as the
 * plugin) and its text in err. */
int delay_check_declare(wn_bytes_t args, char *err, size_t errlen);

/* The delay a message asks for in ms; 0 to route it now. */
uint64_t delay_of(const message_t *m);

/* Hold m in the delayed exchange x for delay_ms. Sets *journaled when a
 * confirm must wait for the journal; false if it could not be kept. */
bool delay_hold(exchange_t *x, message_t *m, uint64_t delay_ms, bool *journaled);

/* Messages x holds (for tests and logs). */
uint32_t delay_count(const exchange_t *x);

/* ---- the journal's view (store_recover.c, store_compact.c, definitions.c) ---- */

/* The store id of a durable delayed exchange (0: none). Assigned at creation
 * from the queue id space; the definitions log keeps it. */
uint32_t delay_store_id(const exchange_t *x);
void delay_set_store_id(exchange_t *x, uint32_t id);
/* Fill by_id[id - 1] with the delayed exchange of each store id below n. */
void delay_index(exchange_t **by_id, uint32_t n);
/* A journaled message found at recovery: held again until it is due. */
void delay_recover(exchange_t *x, const qentry_t *at);
/* Visit every journaled entry held by every delayed exchange (compaction). */
typedef void (*delay_visit_fn)(uint32_t store_id, qentry_t *e, void *ctx);
void delay_each_stored(delay_visit_fn fn, void *ctx);

#endif
