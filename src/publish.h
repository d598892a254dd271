/*
 * publish.h - basic.publish: assembling content frames into a message,
 * routing it, mandatory returns, publisher confirms and transactions.
 */
#ifndef WARREN_PUBLISH_H
#define WARREN_PUBLISH_H

#include "frame.h"
#include "methods.h"

#include <stdbool.h>
#include <stdint.h>

struct chan;
struct conn;
struct exchange;
struct message;
struct queue;

void publish_on_method(struct chan *ch, const wn_basic_publish_t *m);
/* A content header or body frame on a channel. */
void publish_on_content(struct chan *ch, const wn_frame_t *f);

void publish_on_confirm_select(struct chan *ch, const wn_confirm_select_t *m);
void publish_on_tx_select(struct chan *ch);
void publish_on_tx_commit(struct chan *ch);
void publish_on_tx_rollback(struct chan *ch);

/* Push a routed message onto its queues, written once to the journal for
 * the durable ones if it is persistent. False if a queue could not keep it;
 * *journaled is set if it went to the journal. */
bool publish_enqueue(struct message *msg, struct queue *const *qs, uint32_t n, bool *journaled);

/* Send the batched basic.ack for every channel of the connection. */
void publish_flush_confirms(struct conn *c);
/* The journal's flushes up to `flush` are on stable storage: send the
 * confirms and commit-oks that waited for them. */
void publish_durable(uint64_t flush);
/* Route msg from x and push it onto every queue it reaches (journaled first
 * for durable queues when persistent), as a publish by connection c does (c
 * NULL: no publisher to hold back, as when a delayed message is due); a
 * deduplicating queue that has seen it routes it but does not enqueue it.
 * Returns how many queues it was routed to; clears *stored if a queue could
 * not take it and sets *journaled if a confirm must wait for the journal. */
uint32_t publish_route(struct exchange *x, struct message *msg, struct conn *c, bool *stored,
                       bool *journaled);
/* The channel is going away: drop a half-assembled message and tx state. */
void publish_channel_closed(struct chan *ch);

#endif
