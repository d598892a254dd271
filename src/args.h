/*
 * args.h - comparing declare arguments the way RabbitMQ does, and the texts
 * of its "inequivalent arg" errors.
 *
 * RabbitMQ compares only the arguments it knows for a kind of object; two
 * values are equivalent when their types are of one class (all integer types
 * are one class) and their values are equal.
 */
#ifndef WARREN_ARGS_H
#define WARREN_ARGS_H

#include "bytes.h"
#include "table.h"

#include <stdbool.h>
#include <stddef.h>

/* Format a value as RabbitMQ does in error texts: "the value '5' of type 'long'". */
void args_describe(const wn_value_t *v, char *out, size_t len);

/* durable / auto_delete / exclusive / internal flags: -1 and err on mismatch. */
int args_check_flag(const char *name, const char *what, bool received, bool current, char *err,
                    size_t errlen);

/* Compare the values of `keys` (NULL-terminated) in two argument tables. */
int args_check_equivalent(wn_bytes_t current, wn_bytes_t received, const char *const *keys,
                          const char *what, char *err, size_t errlen);

/* Validate queue.declare arguments RabbitMQ knows (x-message-ttl, x-expires,
 * x-max-length, x-overflow, ...): -1 with "invalid arg '...' for ...: reason". */
int args_check_queue(wn_bytes_t args, const char *what, char *err, size_t errlen);

#endif
