"""test_restart.py - durable definitions survive restarts and crashes.

Durable exchanges, queues and bindings (with their arguments) come back after
SIGTERM and after SIGKILL; transient ones and deleted ones do not; a torn
tail or a corrupt record in definitions.log is dropped with a log line and
never stops the broker from starting; a data directory of another format
version is refused. Run with Debian's python3 (pika).
"""
import os
import signal

import pika

import tap
from broker import Broker
from pikahelp import connect as conn

QARGS = {"x-message-ttl": 60000, "x-max-length": 5, "x-dead-letter-exchange": "dlx"}


def exists(c, kind, name):
    ch = c.channel()
    try:
        if kind == "exchange":
            ch.exchange_declare(name, passive=True)
        else:
            ch.queue_declare(name, passive=True)
        ch.close()
        return True
    except pika.exceptions.ChannelClosedByBroker as e:
        if e.reply_code != 404:
            raise
        return False


def routed(c, exchange, key, queue):
    """Publish to exchange with key; True if it lands in queue."""
    ch = c.channel()
    ch.queue_purge(queue)
    ch.basic_publish(exchange, key, b"probe")
    n = ch.queue_declare(queue, passive=True).method.message_count
    ch.queue_purge(queue)
    ch.close()
    return n == 1


def declare_all(b):
    c = conn(b)
    ch = c.channel()
    ch.exchange_declare("d.topic", "topic", durable=True, arguments={"alternate-exchange": "d.ae"})
    ch.exchange_declare("d.ae", "fanout", durable=True)
    ch.exchange_declare("d.e2e", "direct", durable=True)
    ch.exchange_declare("t.fanout", "fanout", durable=False)
    ch.queue_declare("d.q", durable=True, arguments=QARGS)
    ch.queue_declare("d.ae.q", durable=True)
    ch.queue_declare("t.q", durable=False)
    ch.queue_bind("d.q", "d.topic", "a.#")
    ch.queue_bind("d.ae.q", "d.ae")
    ch.queue_bind("t.q", "d.topic", "b.#")          # to a transient queue: not kept
    ch.queue_bind("d.q", "amq.direct", "direct-key")
    ch.exchange_bind("d.topic", "d.e2e", "via")      # exchange to exchange
    ch.exchange_declare("d.gone", "direct", durable=True)
    ch.exchange_delete("d.gone")
    ch.queue_declare("d.gone.q", durable=True)
    ch.queue_delete("d.gone.q")
    ch.queue_bind("d.q", "d.topic", "unbound.#")
    ch.queue_unbind("d.q", "d.topic", "unbound.#")
    c.close()


def check_all(b, how):
    c = conn(b)
    tap.ok(all(exists(c, "exchange", x) for x in ("d.topic", "d.ae", "d.e2e")),
           "%s: durable exchanges are back" % how)
    tap.ok(exists(c, "queue", "d.q") and exists(c, "queue", "d.ae.q"),
           "%s: durable queues are back" % how)
    tap.ok(not exists(c, "exchange", "t.fanout") and not exists(c, "queue", "t.q"),
           "%s: transient exchange and queue are gone" % how)
    tap.ok(not exists(c, "exchange", "d.gone") and not exists(c, "queue", "d.gone.q"),
           "%s: deleted durable objects stay deleted" % how)
    ch = c.channel()
    ch.queue_declare("d.q", durable=True, arguments=QARGS)
    tap.ok(True, "%s: redeclaring d.q with the same arguments is equivalent" % how)
    try:
        ch.queue_declare("d.q", durable=True, arguments=dict(QARGS, **{"x-max-length": 6}))
        tap.ok(False, "%s: the arguments came back (a different x-max-length is refused)" % how)
    except pika.exceptions.ChannelClosedByBroker as e:
        tap.ok(e.reply_code == 406, "%s: the arguments came back (different x-max-length: %d)"
               % (how, e.reply_code))
    tap.ok(routed(c, "d.topic", "a.x", "d.q"), "%s: topic binding routes" % how)
    tap.ok(routed(c, "amq.direct", "direct-key", "d.q"), "%s: binding from amq.direct routes" % how)
    tap.ok(routed(c, "d.e2e", "via", "d.ae.q"),
           "%s: exchange-to-exchange binding and alternate exchange route" % how)
    tap.ok(not routed(c, "d.topic", "unbound.x", "d.q"), "%s: the unbound key stays unbound" % how)
    c.close()


def defs_path(b):
    return os.path.join(b.dir, "data", "definitions.log")


def log_has(b, text):
    with open(b.log, errors="replace") as f:
        return text in f.read()


def main():
    b = Broker()
    if b.external:
        tap.skip("restart", "needs to restart the broker")
        return tap.done()
    if not b.start():
        return tap.done()
    declare_all(b)
    tap.ok(b.restart(signal.SIGTERM) == 0, "broker stops cleanly and starts again")
    check_all(b, "after SIGTERM")
    tap.ok(b.restart(signal.SIGKILL) == -signal.SIGKILL, "broker killed with SIGKILL starts again")
    check_all(b, "after SIGKILL")

    # A torn tail: half a record appended, as a crash mid-write leaves it.
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    with open(defs_path(b), "ab") as f:
        f.write(b"\x00\x00\x00\x40\x42garbage")
    b._spawn()
    tap.ok(b._wait_listening(10), "starts with a torn tail on definitions.log")
    tap.ok(log_has(b, "torn tail"), "and says how many bytes it dropped")
    check_all(b, "after a torn tail")

    # A corrupt record in the middle: one object may be lost, the rest stay.
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    with open(defs_path(b), "r+b") as f:
        data = f.read()
        f.seek(len(data) // 2)
        f.write(bytes([data[len(data) // 2] ^ 0xFF]))
    b._spawn()
    tap.ok(b._wait_listening(10), "starts with a corrupt record in the middle of definitions.log")
    tap.ok(log_has(b, "corrupt record"), "and says how many bytes it skipped")
    c = conn(b)
    present = sum(exists(c, "queue", q) for q in ("d.q", "d.ae.q")) + \
        sum(exists(c, "exchange", x) for x in ("d.topic", "d.ae", "d.e2e"))
    tap.ok(present >= 4, "all but at most the damaged object survive (%d of 5)" % present)
    c.close()

    # Many objects: 2,000 durable queues, each bound, come back.
    c = conn(b)
    ch = c.channel()
    for i in range(2000):
        ch.queue_declare("many.%d" % i, durable=True)
        ch.queue_bind("many.%d" % i, "amq.topic", "many.%d" % i)
    c.close()
    tap.ok(b.restart(signal.SIGKILL) == -signal.SIGKILL, "restart with 2,000 more durable queues")
    c = conn(b)
    tap.ok(exists(c, "queue", "many.0") and exists(c, "queue", "many.1999"),
           "the 2,000 queues are back")
    tap.ok(routed(c, "amq.topic", "many.1234", "many.1234"), "and their bindings route")
    c.close()

    # Another format version is refused, not rewritten.
    b.proc.send_signal(signal.SIGKILL)
    b.proc.wait()
    with open(os.path.join(b.dir, "data", "VERSION"), "w") as f:
        f.write("warren-journal 99\n")
    b._spawn()
    status = b.proc.wait(10)
    tap.ok(status != 0 and log_has(b, "refusing to start"),
           "a data directory of another version is refused (exit %d)" % status)
    b.kill()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
