/*
 * frame.h - the AMQP 0-9-1 frame layer: the protocol header, and an
 * incremental decoder for method, content-header, body and heartbeat frames.
 *
 * A frame on the wire: type (octet), channel (short), size (long), `size`
 * bytes of payload, frame-end octet 0xCE. The decoder is handed whatever
 * bytes have arrived and never copies: a decoded frame's payload points into
 * the caller's buffer.
 */
#ifndef WN_FRAME_H
#define WN_FRAME_H

#include "bytes.h"
#include "methods.h"

#define WN_FRAME_HEADER_SIZE 7 /* type, channel, size */
#define WN_FRAME_OVERHEAD    8 /* header + frame-end */

/* "AMQP" 0 0 9 1 */
extern const uint8_t wn_protocol_header[8];

/* Check a client's opening bytes. 1: the AMQP 0-9-1 header (8 bytes);
 * 0: fewer than 8 bytes and they match so far; -1: anything else. */
int wn_protocol_header_check(const uint8_t *buf, size_t len);

typedef struct wn_frame {
    uint8_t type; /* WN_FRAME_METHOD, WN_FRAME_HEADER, WN_FRAME_BODY, WN_FRAME_HEARTBEAT */
    uint16_t channel;
    uint32_t size;          /* payload size */
    const uint8_t *payload; /* into the caller's buffer */
} wn_frame_t;

/*
 * Decode one frame from the start of buf.
 *   > 0  a whole frame of that many bytes (payload + 8) is at buf; *f is set.
 *   0    not enough bytes yet (only once the 7-byte header has been checked).
 *   < 0  minus the AMQP reply code to close the connection with:
 *        -WN_FRAME_ERROR (501) for an unknown frame type, a frame larger than
 *        frame_max (payload + 8 > frame_max; frame_max 0 means no limit), or
 *        a wrong frame-end octet.
 * The error is reported as soon as the offending bytes are in the buffer,
 * so an oversized frame is refused before its payload arrives.
 */
long wn_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_max, wn_frame_t *f);

/* Write a frame header (7 bytes) for a payload of `size` bytes. The caller
 * writes the payload after it and then WN_FRAME_END. */
void wn_frame_header_write(uint8_t *out, uint8_t type, uint16_t channel, uint32_t size);

/*
 * Encode a whole method frame (header, method payload, frame-end) into out.
 * Returns the number of bytes, or 0 if it does not fit in cap.
 */
size_t wn_frame_encode_method(uint8_t *out, size_t cap, uint16_t channel, const wn_method_t *m);

/* A whole content-header frame for a basic content. 0 if it does not fit. */
size_t wn_frame_encode_header(uint8_t *out, size_t cap, uint16_t channel,
                              const wn_content_header_t *h);

/* The 8-byte heartbeat frame. */
extern const uint8_t wn_heartbeat_frame[8];

#endif /* WN_FRAME_H */
