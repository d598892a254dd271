"""chaos_frames.py - a small AMQP 0-9-1 frame writer and reader for test_chaos.py.

Writes what a client sends: the protocol header, method frames built from
(class, method, packed arguments), content headers with any property set,
body and heartbeat frames; and every method's argument layout (METHODS), so
that a method can be filled with random values field by field. Reads what
the broker sends: a FrameReader cuts a byte stream into frames, and
decode_method() turns a method payload into (class, method, [values]).

Standard library only. Nothing here checks that what it writes is valid: a
caller that wants a truncated argument list or a wrong frame-end asks for it.
"""
import struct

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE

# Argument layouts, in wire order, as in the spec (RabbitMQ's extended XML).
OCTET, SHORT, LONG, LONGLONG, SHORTSTR, LONGSTR, TABLE, BIT, TIMESTAMP = (
    "octet", "short", "long", "longlong", "shortstr", "longstr", "table", "bit", "timestamp")

# name -> (class id, method id, [(field name, type)], sent by clients)
METHODS = {
    "connection.start": (10, 10, [("version-major", OCTET), ("version-minor", OCTET),
                                  ("server-properties", TABLE), ("mechanisms", LONGSTR),
                                  ("locales", LONGSTR)], False),
    "connection.start-ok": (10, 11, [("client-properties", TABLE), ("mechanism", SHORTSTR),
                                     ("response", LONGSTR), ("locale", SHORTSTR)], True),
    "connection.secure": (10, 20, [("challenge", LONGSTR)], False),
    "connection.secure-ok": (10, 21, [("response", LONGSTR)], True),
    "connection.tune": (10, 30, [("channel-max", SHORT), ("frame-max", LONG),
                                 ("heartbeat", SHORT)], False),
    "connection.tune-ok": (10, 31, [("channel-max", SHORT), ("frame-max", LONG),
                                    ("heartbeat", SHORT)], True),
    "connection.open": (10, 40, [("virtual-host", SHORTSTR), ("reserved-1", SHORTSTR),
                                 ("reserved-2", BIT)], True),
    "connection.open-ok": (10, 41, [("reserved-1", SHORTSTR)], False),
    "connection.close": (10, 50, [("reply-code", SHORT), ("reply-text", SHORTSTR),
                                  ("class-id", SHORT), ("method-id", SHORT)], True),
    "connection.close-ok": (10, 51, [], True),
    "connection.blocked": (10, 60, [("reason", SHORTSTR)], False),
    "connection.unblocked": (10, 61, [], False),
    "connection.update-secret": (10, 70, [("new-secret", LONGSTR), ("reason", SHORTSTR)], True),
    "connection.update-secret-ok": (10, 71, [], False),
    "channel.open": (20, 10, [("reserved-1", SHORTSTR)], True),
    "channel.open-ok": (20, 11, [("reserved-1", LONGSTR)], False),
    "channel.flow": (20, 20, [("active", BIT)], True),
    "channel.flow-ok": (20, 21, [("active", BIT)], True),
    "channel.close": (20, 40, [("reply-code", SHORT), ("reply-text", SHORTSTR),
                               ("class-id", SHORT), ("method-id", SHORT)], True),
    "channel.close-ok": (20, 41, [], True),
    "exchange.declare": (40, 10, [("reserved-1", SHORT), ("exchange", SHORTSTR),
                                  ("type", SHORTSTR), ("passive", BIT), ("durable", BIT),
                                  ("auto-delete", BIT), ("internal", BIT), ("no-wait", BIT),
                                  ("arguments", TABLE)], True),
    "exchange.declare-ok": (40, 11, [], False),
    "exchange.delete": (40, 20, [("reserved-1", SHORT), ("exchange", SHORTSTR),
                                 ("if-unused", BIT), ("no-wait", BIT)], True),
    "exchange.delete-ok": (40, 21, [], False),
    "exchange.bind": (40, 30, [("reserved-1", SHORT), ("destination", SHORTSTR),
                               ("source", SHORTSTR), ("routing-key", SHORTSTR),
                               ("no-wait", BIT), ("arguments", TABLE)], True),
    "exchange.bind-ok": (40, 31, [], False),
    "exchange.unbind": (40, 40, [("reserved-1", SHORT), ("destination", SHORTSTR),
                                 ("source", SHORTSTR), ("routing-key", SHORTSTR),
                                 ("no-wait", BIT), ("arguments", TABLE)], True),
    "exchange.unbind-ok": (40, 51, [], False),
    "queue.declare": (50, 10, [("reserved-1", SHORT), ("queue", SHORTSTR), ("passive", BIT),
                               ("durable", BIT), ("exclusive", BIT), ("auto-delete", BIT),
                               ("no-wait", BIT), ("arguments", TABLE)], True),
    "queue.declare-ok": (50, 11, [("queue", SHORTSTR), ("message-count", LONG),
                                  ("consumer-count", LONG)], False),
    "queue.bind": (50, 20, [("reserved-1", SHORT), ("queue", SHORTSTR), ("exchange", SHORTSTR),
                            ("routing-key", SHORTSTR), ("no-wait", BIT),
                            ("arguments", TABLE)], True),
    "queue.bind-ok": (50, 21, [], False),
    "queue.purge": (50, 30, [("reserved-1", SHORT), ("queue", SHORTSTR), ("no-wait", BIT)], True),
    "queue.purge-ok": (50, 31, [("message-count", LONG)], False),
    "queue.delete": (50, 40, [("reserved-1", SHORT), ("queue", SHORTSTR), ("if-unused", BIT),
                              ("if-empty", BIT), ("no-wait", BIT)], True),
    "queue.delete-ok": (50, 41, [("message-count", LONG)], False),
    "queue.unbind": (50, 50, [("reserved-1", SHORT), ("queue", SHORTSTR), ("exchange", SHORTSTR),
                              ("routing-key", SHORTSTR), ("arguments", TABLE)], True),
    "queue.unbind-ok": (50, 51, [], False),
    "basic.qos": (60, 10, [("prefetch-size", LONG), ("prefetch-count", SHORT),
                           ("global", BIT)], True),
    "basic.qos-ok": (60, 11, [], False),
    "basic.consume": (60, 20, [("reserved-1", SHORT), ("queue", SHORTSTR),
                               ("consumer-tag", SHORTSTR), ("no-local", BIT), ("no-ack", BIT),
                               ("exclusive", BIT), ("no-wait", BIT), ("arguments", TABLE)], True),
    "basic.consume-ok": (60, 21, [("consumer-tag", SHORTSTR)], False),
    "basic.cancel": (60, 30, [("consumer-tag", SHORTSTR), ("no-wait", BIT)], True),
    "basic.cancel-ok": (60, 31, [("consumer-tag", SHORTSTR)], False),
    "basic.publish": (60, 40, [("reserved-1", SHORT), ("exchange", SHORTSTR),
                               ("routing-key", SHORTSTR), ("mandatory", BIT),
                               ("immediate", BIT)], True),
    "basic.return": (60, 50, [("reply-code", SHORT), ("reply-text", SHORTSTR),
                              ("exchange", SHORTSTR), ("routing-key", SHORTSTR)], False),
    "basic.deliver": (60, 60, [("consumer-tag", SHORTSTR), ("delivery-tag", LONGLONG),
                               ("redelivered", BIT), ("exchange", SHORTSTR),
                               ("routing-key", SHORTSTR)], False),
    "basic.get": (60, 70, [("reserved-1", SHORT), ("queue", SHORTSTR), ("no-ack", BIT)], True),
    "basic.get-ok": (60, 71, [("delivery-tag", LONGLONG), ("redelivered", BIT),
                              ("exchange", SHORTSTR), ("routing-key", SHORTSTR),
                              ("message-count", LONG)], False),
    "basic.get-empty": (60, 72, [("reserved-1", SHORTSTR)], False),
    "basic.ack": (60, 80, [("delivery-tag", LONGLONG), ("multiple", BIT)], True),
    "basic.reject": (60, 90, [("delivery-tag", LONGLONG), ("requeue", BIT)], True),
    "basic.recover-async": (60, 100, [("requeue", BIT)], True),
    "basic.recover": (60, 110, [("requeue", BIT)], True),
    "basic.recover-ok": (60, 111, [], False),
    "basic.nack": (60, 120, [("delivery-tag", LONGLONG), ("multiple", BIT),
                             ("requeue", BIT)], True),
    "confirm.select": (85, 10, [("nowait", BIT)], True),
    "confirm.select-ok": (85, 11, [], False),
    "tx.select": (90, 10, [], True),
    "tx.select-ok": (90, 11, [], False),
    "tx.commit": (90, 20, [], True),
    "tx.commit-ok": (90, 21, [], False),
    "tx.rollback": (90, 30, [], True),
    "tx.rollback-ok": (90, 31, [], False),
}
BY_ID = {(c, m): name for name, (c, m, _, _) in METHODS.items()}
CONTENT_METHODS = {"basic.publish", "basic.return", "basic.deliver", "basic.get-ok"}

# Basic content properties, in flag order (bit 15 first).
PROPERTIES = [
    ("content-type", SHORTSTR), ("content-encoding", SHORTSTR), ("headers", TABLE),
    ("delivery-mode", OCTET), ("priority", OCTET), ("correlation-id", SHORTSTR),
    ("reply-to", SHORTSTR), ("expiration", SHORTSTR), ("message-id", SHORTSTR),
    ("timestamp", TIMESTAMP), ("type", SHORTSTR), ("user-id", SHORTSTR), ("app-id", SHORTSTR),
    ("cluster-id", SHORTSTR),
]


# ---- values -------------------------------------------------------------------------

def shortstr(s):
    if isinstance(s, str):
        s = s.encode()
    return bytes([len(s) & 0xFF]) + s


def longstr(s):
    if isinstance(s, str):
        s = s.encode()
    return struct.pack(">I", len(s)) + s


def field_value(kind, v):
    """One typed field value (type octet + payload). kind is the AMQP type letter;
    'A' takes a list of (kind, v), 'F' a list of (key, kind, v) or encoded bytes."""
    k = kind.encode() if isinstance(kind, str) else bytes([kind])
    if kind == "t":
        return k + bytes([1 if v else 0])
    if kind == "b":
        return k + struct.pack(">b", v)
    if kind == "B":
        return k + struct.pack(">B", v)
    if kind == "s":
        return k + struct.pack(">h", v)
    if kind == "u":
        return k + struct.pack(">H", v)
    if kind == "I":
        return k + struct.pack(">i", v)
    if kind == "i":
        return k + struct.pack(">I", v)
    if kind == "l":
        return k + struct.pack(">q", v)
    if kind in ("L", "T"):
        return k + struct.pack(">Q", v)
    if kind == "f":
        return k + struct.pack(">f", v)
    if kind == "d":
        return k + struct.pack(">d", v)
    if kind == "D":
        return k + struct.pack(">BI", v[0], v[1])
    if kind in ("S", "x"):
        return k + longstr(v)
    if kind == "A":
        body = v if isinstance(v, bytes) else b"".join(field_value(kk, vv) for kk, vv in v)
        return k + longstr(body)
    if kind == "F":
        return k + longstr(v if isinstance(v, bytes) else table_body(v))
    if kind == "V":
        return k
    raise ValueError("unknown field type %r" % kind)


def table_body(entries):
    """A table's body (without its length): entries are (key, kind, value)."""
    return b"".join(shortstr(key) + field_value(kind, v) for key, kind, v in entries)


def table(entries):
    body = entries if isinstance(entries, bytes) else table_body(entries)
    return longstr(body)


def pack_args(fields, values):
    """Pack argument values by type; consecutive bits share octets, as the spec says."""
    out = bytearray()
    bits, nbits = 0, 0
    for (_, kind), v in zip(fields, values):
        if kind == BIT:
            bits |= (1 if v else 0) << nbits
            nbits += 1
            if nbits == 8:
                out.append(bits)
                bits, nbits = 0, 0
            continue
        if nbits:
            out.append(bits)
            bits, nbits = 0, 0
        if kind == OCTET:
            out += struct.pack(">B", v & 0xFF)
        elif kind == SHORT:
            out += struct.pack(">H", v & 0xFFFF)
        elif kind == LONG:
            out += struct.pack(">I", v & 0xFFFFFFFF)
        elif kind in (LONGLONG, TIMESTAMP):
            out += struct.pack(">Q", v & 0xFFFFFFFFFFFFFFFF)
        elif kind == SHORTSTR:
            out += shortstr(v)
        elif kind == LONGSTR:
            out += longstr(v)
        elif kind == TABLE:
            out += v if isinstance(v, (bytes, bytearray)) else table(v)
        else:
            raise ValueError(kind)
    if nbits:
        out.append(bits)
    return bytes(out)


# ---- frames ----------------------------------------------------------------------------

def frame(ftype, channel, payload, end=FRAME_END, size=None):
    """A frame; size and end can lie."""
    n = len(payload) if size is None else size
    return struct.pack(">BHI", ftype, channel, n & 0xFFFFFFFF) + payload + bytes([end])


def method_payload(class_id, method_id, args=b""):
    return struct.pack(">HH", class_id, method_id) + args


def method_frame(channel, class_id, method_id, args=b""):
    return frame(FRAME_METHOD, channel, method_payload(class_id, method_id, args))


def method(channel, name, *values):
    """A method frame by name, with every argument given in order."""
    cls, mid, fields, _ = METHODS[name]
    if len(values) != len(fields):
        raise ValueError("%s takes %d arguments" % (name, len(fields)))
    return method_frame(channel, cls, mid, pack_args(fields, values))


def props_payload(props, flags=None):
    """The property list of a content header: props maps property name to value.
    flags, if given, is written instead of the computed word (it may lie)."""
    word, body = 0, bytearray()
    for i, (name, kind) in enumerate(PROPERTIES):
        if name in props:
            word |= 1 << (15 - i)
            body += pack_args([(name, kind)], [props[name]])
    return struct.pack(">H", word if flags is None else flags) + bytes(body)


def header_frame(channel, body_size, props=None, class_id=60, weight=0, flags=None, raw=None):
    """A content-header frame; raw replaces the property list with given bytes."""
    plist = raw if raw is not None else props_payload(props or {}, flags)
    payload = struct.pack(">HHQ", class_id, weight, body_size & 0xFFFFFFFFFFFFFFFF) + plist
    return frame(FRAME_HEADER, channel, payload)


def body_frame(channel, data):
    return frame(FRAME_BODY, channel, data)


HEARTBEAT = frame(FRAME_HEARTBEAT, 0, b"")


def start_ok(user="guest", password="guest", mechanism="PLAIN", props=None, response=None):
    if props is None:
        props = [("product", "S", "warren-chaos"),
                 ("capabilities", "F", [("authentication_failure_close", "t", True),
                                        ("consumer_cancel_notify", "t", True),
                                        ("publisher_confirms", "t", True),
                                        ("basic.nack", "t", True)])]
    if response is None:
        response = b"\0" + user.encode() + b"\0" + password.encode()
    return method(0, "connection.start-ok", props, mechanism, response, "en_US")


# ---- reading ---------------------------------------------------------------------------

class FrameReader:
    """Cuts a byte stream into (type, channel, payload) frames. A frame with a
    bad frame-end or an impossible size is reported once as ("error", ...)."""

    def __init__(self, limit=1 << 24):
        self.buf = bytearray()
        self.limit = limit
        self.broken = None

    def feed(self, data):
        self.buf += data
        out = []
        while self.broken is None and len(self.buf) >= 7:
            ftype, channel, size = struct.unpack_from(">BHI", self.buf)
            if size > self.limit:
                self.broken = "frame of %d bytes" % size
                out.append(("error", channel, self.broken))
                break
            if len(self.buf) < 8 + size:
                break
            if self.buf[7 + size] != FRAME_END:
                self.broken = "frame-end 0x%02x" % self.buf[7 + size]
                out.append(("error", channel, self.broken))
                break
            out.append((ftype, channel, bytes(self.buf[7:7 + size])))
            del self.buf[:8 + size]
        return out


def _unpack(fields, payload, off):
    values = []
    bit_octet, bit_index = 0, 8
    for _, kind in fields:
        if kind == BIT:
            if bit_index == 8:
                bit_octet, bit_index = payload[off], 0
                off += 1
            values.append(bool(bit_octet >> bit_index & 1))
            bit_index += 1
            continue
        bit_index = 8
        if kind == OCTET:
            values.append(payload[off])
            off += 1
        elif kind == SHORT:
            values.append(struct.unpack_from(">H", payload, off)[0])
            off += 2
        elif kind == LONG:
            values.append(struct.unpack_from(">I", payload, off)[0])
            off += 4
        elif kind in (LONGLONG, TIMESTAMP):
            values.append(struct.unpack_from(">Q", payload, off)[0])
            off += 8
        elif kind == SHORTSTR:
            n = payload[off]
            values.append(bytes(payload[off + 1:off + 1 + n]))
            off += 1 + n
        else:  # longstr, table: kept as raw bytes
            n = struct.unpack_from(">I", payload, off)[0]
            values.append(bytes(payload[off + 4:off + 4 + n]))
            off += 4 + n
    return values, off


def decode_method(payload):
    """(name, [values]) of a method payload; name is None for an unknown id.
    Raises ValueError if the arguments are truncated or too long."""
    if len(payload) < 4:
        raise ValueError("method payload of %d bytes" % len(payload))
    cls, mid = struct.unpack_from(">HH", payload)
    name = BY_ID.get((cls, mid))
    if name is None:
        return None, [cls, mid]
    try:
        values, off = _unpack(METHODS[name][2], payload, 4)
    except (IndexError, struct.error):
        raise ValueError("%s: truncated arguments" % name)
    if off != len(payload):
        raise ValueError("%s: %d bytes after the arguments" % (name, len(payload) - off))
    return name, values


def decode_header(payload):
    """(class id, body size) of a content-header payload."""
    cls, _, size = struct.unpack_from(">HHQ", payload)
    return cls, size
