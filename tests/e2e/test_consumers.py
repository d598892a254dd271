"""test_consumers.py - single active consumer and the acknowledgement timeout.

x-single-active-consumer: one consumer gets every message, the next in line
takes over (with the unacked messages, redelivered, in order) when it goes,
and a consumer of higher priority takes over once the active one has nothing
unacked (RabbitMQ 3.12's rule). The acknowledgement timeout (queue argument
x-consumer-timeout, broker setting consumer_timeout): a delivery left
unacked too long closes its channel with 406 and RabbitMQ's text, and the
message goes back to the queue; deliveries acked in time keep the channel
open. Raw AMQP clients (rawclient.py) so that every frame is seen.
"""
import time

import chaos_frames as F
import tap
from broker import Broker
from rawclient import Client


class C(Client):
    """A raw client on channel 1 with helpers for the cases below."""

    def call(self, name, *values, reply=None):
        self.sock.sendall(F.method(1, name, *values))
        return self.expect(reply) if reply else None

    def declare(self, queue, args=()):
        return self.call("queue.declare", 0, queue, False, False, False, False, False, list(args),
                         reply="queue.declare-ok")

    def consume(self, queue, tag, prefetch=0, args=()):
        if prefetch:
            self.call("basic.qos", 0, prefetch, False, reply="basic.qos-ok")
        self.call("basic.consume", 0, queue, tag, False, False, False, False, list(args),
                  reply="basic.consume-ok")

    def publish(self, queue, body):
        self.sock.sendall(F.method(1, "basic.publish", 0, "", queue, False, False) +
                          F.header_frame(1, len(body)) + F.body_frame(1, body))

    def deliveries(self, wait):
        """(consumer tag, delivery tag, redelivered, body) of what arrives within `wait` s."""
        got = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.pump(0.05)
            while len(self.frames) >= 3:
                name, values = F.decode_method(self.frames[0][2])
                if name != "basic.deliver":
                    return got
                size = F.decode_header(self.frames[1][2])[1]
                if size and len(self.frames) < 3:
                    break
                body = self.frames[2][2] if size else b""
                del self.frames[:3 if size else 2]
                got.append((values[0], values[1], values[2], body))
        return got

    def ack(self, tag):
        self.sock.sendall(F.method(1, "basic.ack", tag, False))


def bodies(ds):
    return [d[3] for d in ds]


def sac(b):
    args = [("x-single-active-consumer", "t", True)]
    setup = C(b.host, b.port)
    setup.declare("sac.q", args)
    first, second = C(b.host, b.port), C(b.host, b.port)
    first.consume("sac.q", "first")
    second.consume("sac.q", "second")
    for i in range(6):
        setup.publish("sac.q", b"m%d" % i)
    got1, got2 = first.deliveries(1.0), second.deliveries(0.3)
    tap.ok(bodies(got1) == [b"m%d" % i for i in range(6)] and not got2,
           "single active consumer: the first subscriber gets every message, the second none "
           "(%d / %d)" % (len(got1), len(got2)))
    for _, tag, _, _ in got1[:2]:
        first.ack(tag)
    first.deliveries(0.2)
    first.close()  # m2..m5 unacked: back to the queue
    got2 = second.deliveries(1.0)
    tap.ok(bodies(got2) == [b"m%d" % i for i in range(2, 6)] and all(d[2] for d in got2),
           "when it goes, the next subscriber takes over with its unacked messages, "
           "redelivered and in order (%r)" % bodies(got2))
    for _, tag, _, _ in got2:
        second.ack(tag)

    # A consumer of higher priority takes over once the active one has nothing unacked.
    high = C(b.host, b.port)
    high.consume("sac.q", "high", args=[("x-priority", "I", 10)])
    setup.publish("sac.q", b"p0")
    got2, goth = second.deliveries(0.5), high.deliveries(0.3)
    tap.ok(bodies(got2) == [b"p0"] and not goth,
           "a higher-priority subscriber waits while the active one has a message unacked")
    second.ack(got2[0][1])
    second.deliveries(0.2)
    setup.publish("sac.q", b"p1")
    goth, got2 = high.deliveries(0.5), second.deliveries(0.3)
    tap.ok(bodies(goth) == [b"p1"] and not got2,
           "then it takes over (%r / %r)" % (bodies(goth), bodies(got2)))
    for c in (second, high, setup):
        c.close()


def closed_by_timeout(c, wait):
    """The channel.close values if the broker closes channel 1 within `wait` s."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        c.pump(0.05)
        for ftype, ch, payload in c.frames:
            if ftype == F.FRAME_METHOD and F.decode_method(payload)[0] == "channel.close":
                return F.decode_method(payload)[1], time.monotonic()
    return None, time.monotonic()


def timeout_case(b, queue, args, limit_ms, what):
    c = C(b.host, b.port)
    c.declare(queue, args)
    c.consume(queue, "slow")
    c.publish(queue, b"late")
    t0 = time.monotonic()
    got = c.deliveries(0.5)
    values, t1 = closed_by_timeout(c, limit_ms / 1000.0 + 3)
    text = ("PRECONDITION_FAILED - delivery acknowledgement on channel 1 timed out. Timeout value "
            "used: %d ms. This timeout value can be configured, see consumers doc guide to learn "
            "more" % limit_ms)
    tap.ok(len(got) == 1 and values is not None and values[0] == 406 and values[1] == text.encode(),
           "%s: an unacked delivery closes the channel with 406 after %.1f s (%r)"
           % (what, t1 - t0, values))
    tap.ok(values is not None and limit_ms / 1000.0 - 0.1 <= t1 - t0 <= limit_ms / 1000.0 + 2.5,
           "%s: not before the timeout, and not long after it" % what)
    c.close()
    w = C(b.host, b.port)
    w.consume(queue, "again")
    again = w.deliveries(1.0)
    tap.ok(bodies(again) == [b"late"] and again[0][2],
           "%s: the message is back in the queue, redelivered" % what)
    w.close()


def acked_in_time(b):
    c = C(b.host, b.port)
    c.declare("timeout.ok", [("x-consumer-timeout", "I", 1000)])
    c.consume("timeout.ok", "prompt")
    t_end = time.monotonic() + 3
    n = 0
    while time.monotonic() < t_end:
        c.publish("timeout.ok", b"x")
        for _, tag, _, _ in c.deliveries(0.4):
            c.ack(tag)
            n += 1
    values, _ = closed_by_timeout(c, 0.5)
    tap.ok(values is None and n >= 5,
           "deliveries acked within the timeout keep the channel open (%d acked over 3 s)" % n)
    c.close()


def main():
    b = Broker("consumer_timeout = 1500\n")
    if b.external:
        tap.skip("consumers", "needs Warren's consumer_timeout setting")
        return tap.done()
    if not b.start():
        return tap.done()
    sac(b)
    timeout_case(b, "timeout.q", [("x-consumer-timeout", "I", 1000)], 1000, "x-consumer-timeout")
    timeout_case(b, "timeout.broker", [], 1500, "consumer_timeout")
    acked_in_time(b)
    b.stop()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
