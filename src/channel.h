/*
 * channel.h - AMQP channels: open/close, and the dispatch of every method
 * that arrives on a channel to the module that handles it.
 */
#ifndef WARREN_CHANNEL_H
#define WARREN_CHANNEL_H

#include "connection.h"

typedef enum chan_state {
    CHAN_OPEN,
    CHAN_CLOSING, /* we sent channel.close; waiting for close-ok */
} chan_state_t;

typedef struct chan {
    conn_t *conn;
    uint16_t id;
    chan_state_t state;
} chan_t;

/* A frame for a channel other than 0 on an open connection. */
void chan_handle_frame(conn_t *c, const wn_frame_t *f);

/*
 * A soft error: send channel.close with `code` and "<REPLY_NAME> - <fmt...>",
 * naming the method that caused it, and ignore the channel's frames until
 * close-ok arrives.
 */
void chan_error(chan_t *ch, uint16_t code, uint32_t method_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Free every channel of a connection that is going away. */
void chan_close_all(conn_t *c);

#endif
