"""test_limits.py - queue length limits and delivery limits.

x-max-length and x-max-length-bytes count ready messages only; x-overflow
drop-head dead-letters the oldest as `maxlen`, reject-publish refuses the new
message for that queue (basic.nack to a confirming publisher, other queues
still get it), reject-publish-dlx also dead-letters it. A drop survives a
restart (nothing dropped comes back after kill -9). x-delivery-limit: each
return adds to x-delivery-count; past the limit the message is dead-lettered
as `delivery_limit`, or dropped without a dead-letter exchange. Run with
Debian's python3 (pika).
"""
import signal

import pika

import tap
from broker import Broker
from pikahelp import connect as _connect, drain as take_all


def connect(b):
    return _connect(b, heartbeat=0)


def drain(ch, queue):
    """Bodies and header tables of everything ready in `queue`, acked."""
    return [(body, p.headers or {}) for p, body in take_all(ch, queue)]


def bodies(got):
    return [b for b, _ in got]


def declare(ch, name, dlq=None, durable=False, **limits):
    args = {k.replace("_", "-"): v for k, v in limits.items()}
    if dlq:
        ch.queue_declare(dlq, durable=durable)
        args["x-dead-letter-exchange"] = ""
        args["x-dead-letter-routing-key"] = dlq
    ch.queue_declare(name, durable=durable, arguments=args)


def publish(ch, queue, n, prefix=b"m", persistent=False, exchange=""):
    """Publish n messages; returns how many were nacked (the channel confirms)."""
    nacked = 0
    props = pika.BasicProperties(delivery_mode=2 if persistent else 1)
    for i in range(n):
        try:
            ch.basic_publish(exchange, queue, prefix + b"%d" % i, props)
        except pika.exceptions.NackError:
            nacked += 1
    return nacked


def reasons(got):
    return [h.get("x-death", [{}])[0].get("reason") for _, h in got]


def drop_head(b, ch):
    declare(ch, "lim.len", dlq="lim.len.dlq", x_max_length=3)
    publish(ch, "lim.len", 5)
    kept, dead = drain(ch, "lim.len"), drain(ch, "lim.len.dlq")
    tap.ok(bodies(kept) == [b"m2", b"m3", b"m4"], "x-max-length 3: the newest 3 stay (%r)"
           % bodies(kept))
    tap.ok(bodies(dead) == [b"m0", b"m1"] and reasons(dead) == ["maxlen", "maxlen"],
           "the oldest are dead-lettered with reason maxlen (%r %r)" % (bodies(dead), reasons(dead)))

    declare(ch, "lim.bytes", x_max_length_bytes=10)
    for i in range(4):
        ch.basic_publish("", "lim.bytes", b"abc%d" % i)
    tap.ok(bodies(drain(ch, "lim.bytes")) == [b"abc2", b"abc3"],
           "x-max-length-bytes 10 keeps the newest 8 bytes of 4-byte bodies")


def unacked_not_counted(b, ch):
    declare(ch, "lim.unacked", x_max_length=1)
    c2 = connect(b)
    cch = c2.channel()
    cch.basic_qos(prefetch_count=1)
    ch.basic_publish("", "lim.unacked", b"held")
    m, _, body = cch.basic_get("lim.unacked")
    ch.basic_publish("", "lim.unacked", b"ready1")
    ch.basic_publish("", "lim.unacked", b"ready2")
    ready = ch.queue_declare("lim.unacked", passive=True).method.message_count
    cch.basic_reject(m.delivery_tag, requeue=True)
    c2.close()
    tap.ok(body == b"held" and ready == 1,
           "an unacked message does not count: one ready beside it (%d)" % ready)


def reject_publish(b, ch):
    declare(ch, "lim.rej", x_max_length=2, x_overflow="reject-publish")
    ch.queue_declare("lim.rej.other")
    ch.exchange_declare("lim.fan", "fanout")
    ch.queue_bind("lim.rej", "lim.fan")
    ch.queue_bind("lim.rej.other", "lim.fan")
    nacked = publish(ch, "", 3, exchange="lim.fan")
    tap.ok(nacked == 1, "reject-publish: the publish past the limit is nacked (%d nacked)" % nacked)
    tap.ok(bodies(drain(ch, "lim.rej")) == [b"m0", b"m1"], "the queue keeps the first two")
    tap.ok(bodies(drain(ch, "lim.rej.other")) == [b"m0", b"m1", b"m2"],
           "another queue the message was routed to still gets it")

    declare(ch, "lim.rejdlx", dlq="lim.rejdlx.dlq", x_max_length=1, x_overflow="reject-publish-dlx")
    nacked = publish(ch, "lim.rejdlx", 3)
    dead = drain(ch, "lim.rejdlx.dlq")
    tap.ok(nacked == 2 and bodies(drain(ch, "lim.rejdlx")) == [b"m0"] and
           bodies(dead) == [b"m1", b"m2"] and reasons(dead) == ["maxlen", "maxlen"],
           "reject-publish-dlx: refused messages are nacked and dead-lettered as maxlen (%r)"
           % bodies(dead))


def delivery_limit(b, ch):
    declare(ch, "lim.poison", dlq="lim.poison.dlq", x_delivery_limit=2)
    ch.basic_publish("", "lim.poison", b"poison")
    counts = []
    for _ in range(4):
        m, p, _ = ch.basic_get("lim.poison")
        if m is None:
            break
        counts.append((p.headers or {}).get("x-delivery-count"))
        ch.basic_nack(m.delivery_tag, requeue=True)
    dead = drain(ch, "lim.poison.dlq")
    tap.ok(counts == [None, 1, 2], "each return adds to x-delivery-count (%r)" % counts)
    tap.ok(bodies(dead) == [b"poison"] and reasons(dead) == ["delivery_limit"],
           "past x-delivery-limit 2 the message is dead-lettered as delivery_limit (%r)"
           % reasons(dead))

    declare(ch, "lim.poison0", x_delivery_limit=0)
    ch.basic_publish("", "lim.poison0", b"once")
    m, _, _ = ch.basic_get("lim.poison0")
    ch.basic_nack(m.delivery_tag, requeue=True)
    left = ch.queue_declare("lim.poison0", passive=True).method.message_count
    tap.ok(m is not None and left == 0,
           "x-delivery-limit 0 without a dead-letter exchange: the first return drops it")

    # A consumer that goes away counts as a return too.
    declare(ch, "lim.gone", x_delivery_limit=0)
    ch.basic_publish("", "lim.gone", b"x")
    c2 = connect(b)
    c2.channel().basic_get("lim.gone")
    c2.close()
    left = ch.queue_declare("lim.gone", passive=True).method.message_count
    tap.ok(left == 0, "a channel closed with the message unacked counts as a return")


def survives_restart(b):
    c = connect(b)
    ch = c.channel()
    ch.confirm_delivery()
    declare(ch, "lim.durable", durable=True, x_max_length=2)
    publish(ch, "lim.durable", 5, persistent=True)
    c.close()
    status = b.restart(signal.SIGKILL)
    c = connect(b)
    ch = c.channel()
    got = bodies(drain(ch, "lim.durable"))
    tap.ok(status is not None and got == [b"m3", b"m4"],
           "messages dropped from a durable queue stay dropped after kill -9 (%r)" % got)
    c.close()


def main():
    b = Broker()
    if b.external:
        tap.skip("limits", "x-delivery-limit on classic queues is Warren's")
        return tap.done()
    if not b.start():
        return tap.done()
    c = connect(b)
    ch = c.channel()
    ch.confirm_delivery()
    drop_head(b, ch)
    unacked_not_counted(b, ch)
    reject_publish(b, ch)
    delivery_limit(b, ch)
    c.close()
    survives_restart(b)
    b.stop()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
