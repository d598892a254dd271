/*
 * headers_match.h - the headers exchange's rule: does a message's headers
 * table satisfy a binding's arguments? RabbitMQ's semantics (x-match all,
 * any, all-with-x, any-with-x; void arguments test presence; values compare
 * as Erlang terms with ==, so integer types are interchangeable), written out
 * with RabbitMQ's own cases in docs/routing.md.
 *
 * Both tables are bodies as codec/table.h hands them out (the bytes after
 * the 32-bit length, already validated); either may be empty. Pure
 * functions: no allocation, no state.
 */
#ifndef WARREN_HEADERS_MATCH_H
#define WARREN_HEADERS_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "bytes.h"

/* True when a message with `message_headers` is routed by a binding with
 * `binding_args`. */
bool headers_match(wn_bytes_t binding_args, wn_bytes_t message_headers);

/* Check a headers binding's arguments when the binding is made: 0 if they
 * are acceptable, or -1 with RabbitMQ's text for an x-match that is not the
 * longstr "all", "any", "all-with-x" or "any-with-x" written to err (always
 * NUL-terminated, truncated to errlen). The broker answers it with 406
 * PRECONDITION_FAILED. */
int headers_check_binding_args(wn_bytes_t args, char *err, size_t errlen);

#endif /* WARREN_HEADERS_MATCH_H */
