/*
 * frame.c - the AMQP 0-9-1 frame layer: the protocol header check, the
 * incremental frame decoder, and the helpers that wrap an encoded method or
 * content header in a whole frame.
 *
 * The decoder owns nothing: it looks at whatever bytes the connection has
 * buffered and says "a frame of N bytes", "need more" or "close with 501".
 * It checks each field as soon as it has arrived, so a peer cannot make the
 * broker buffer a frame it is going to refuse anyway.
 */
#include "frame.h"

#include <limits.h>

const uint8_t wn_protocol_header[8] = {'A', 'M', 'Q', 'P', 0, 0, 9, 1};

const uint8_t wn_heartbeat_frame[8] = {WN_FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, WN_FRAME_END};

int wn_protocol_header_check(const uint8_t *buf, size_t len) {
    size_t n = len < sizeof wn_protocol_header ? len : sizeof wn_protocol_header;
    if (n > 0 && memcmp(buf, wn_protocol_header, n) != 0) return -1;
    return len >= sizeof wn_protocol_header ? 1 : 0;
}

static bool frame_type_known(uint8_t type) {
    return type == WN_FRAME_METHOD || type == WN_FRAME_HEADER || type == WN_FRAME_BODY ||
           type == WN_FRAME_HEARTBEAT;
}

long wn_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_max, wn_frame_t *f) {
    if (len >= 1 && !frame_type_known(buf[0])) return -WN_FRAME_ERROR;
    if (len < WN_FRAME_HEADER_SIZE) return 0;

    uint32_t size = wn_load32(buf + 3);
    /* 64-bit arithmetic: size + 8 must not wrap for a 4 GiB size field. */
    uint64_t total = (uint64_t)size + WN_FRAME_OVERHEAD;
    if (frame_max != 0 && total > frame_max) return -WN_FRAME_ERROR;
    if (total > LONG_MAX) return -WN_FRAME_ERROR; /* only where long is 32 bits */
    if (len < total) return 0;
    if (buf[total - 1] != WN_FRAME_END) return -WN_FRAME_ERROR;

    f->type = buf[0];
    f->channel = wn_load16(buf + 1);
    f->size = size;
    f->payload = buf + WN_FRAME_HEADER_SIZE;
    return (long)total;
}

void wn_frame_header_write(uint8_t *out, uint8_t type, uint16_t channel, uint32_t size) {
    out[0] = type;
    wn_store16(out + 1, channel);
    wn_store32(out + 3, size);
}

/* Close a frame whose payload of `size` bytes is already at out + 7. */
static size_t frame_finish(uint8_t *out, uint8_t type, uint16_t channel, size_t size) {
    if (size == 0 || size > UINT32_MAX) return 0;
    wn_frame_header_write(out, type, channel, (uint32_t)size);
    out[WN_FRAME_HEADER_SIZE + size] = WN_FRAME_END;
    return size + WN_FRAME_OVERHEAD;
}

size_t wn_frame_encode_method(uint8_t *out, size_t cap, uint16_t channel, const wn_method_t *m) {
    if (cap < WN_FRAME_OVERHEAD) return 0;
    size_t n = wn_method_encode(m, out + WN_FRAME_HEADER_SIZE, cap - WN_FRAME_OVERHEAD);
    return frame_finish(out, WN_FRAME_METHOD, channel, n);
}

size_t wn_frame_encode_header(uint8_t *out, size_t cap, uint16_t channel,
                              const wn_content_header_t *h) {
    if (cap < WN_FRAME_OVERHEAD) return 0;
    size_t n = wn_content_header_encode(h, out + WN_FRAME_HEADER_SIZE, cap - WN_FRAME_OVERHEAD);
    return frame_finish(out, WN_FRAME_HEADER, channel, n);
}
