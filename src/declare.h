/*
 * declare.h - handlers for the exchange and queue classes.
 */
#ifndef WARREN_DECLARE_H
#define WARREN_DECLARE_H

#include "methods.h"

#include <stdbool.h>
#include <stdint.h>

struct chan;
struct queue;

void declare_exchange(struct chan *ch, const wn_exchange_declare_t *m);
void declare_exchange_delete(struct chan *ch, const wn_exchange_delete_t *m);
void declare_exchange_bind(struct chan *ch, const wn_exchange_bind_t *m);
void declare_exchange_unbind(struct chan *ch, const wn_exchange_unbind_t *m);
void declare_queue(struct chan *ch, const wn_queue_declare_t *m);
void declare_queue_bind(struct chan *ch, const wn_queue_bind_t *m);
void declare_queue_unbind(struct chan *ch, const wn_queue_unbind_t *m);
void declare_queue_purge(struct chan *ch, const wn_queue_purge_t *m);
void declare_queue_delete(struct chan *ch, const wn_queue_delete_t *m);

/* The queue a method names, "" meaning the channel's last declared queue;
 * NULL after a 404 channel error. */
struct queue *chan_find_queue(struct chan *ch, wn_bytes_t name, uint32_t method);

/* False (and a 405 channel error) if q is another connection's exclusive queue. */
bool chan_check_exclusive(struct chan *ch, struct queue *q, uint32_t method);

#endif
