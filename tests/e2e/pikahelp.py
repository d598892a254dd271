"""pikahelp.py - the few pika calls every end-to-end test makes: a blocking
connection to a test's broker, a queue's ready count and waiting for it,
and taking everything a queue holds."""
import time

import pika


def connect(b, **params):
    """A BlockingConnection to Broker b (extra ConnectionParameters: heartbeat=0...)."""
    return pika.BlockingConnection(pika.ConnectionParameters(b.host, b.port, **params))


def ready(ch, q):
    """Ready messages in queue q (a passive declare)."""
    return ch.queue_declare(q, passive=True).method.message_count


def wait_for(cond, seconds):
    """True once cond() is (polled every 20 ms for `seconds`)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def wait_count(ch, q, n, seconds=5):
    """True once q has exactly n ready messages (within `seconds`)."""
    return wait_for(lambda: ready(ch, q) == n, seconds)


def wait_at_least(ch, q, n, seconds=5):
    """True once q has n or more ready messages (within `seconds`)."""
    return wait_for(lambda: ready(ch, q) >= n, seconds)


def drain(ch, q):
    """(properties, body) of every message ready in q, taken with auto-ack."""
    got = []
    while True:
        m, props, body = ch.basic_get(q, auto_ack=True)
        if m is None:
            return got
        got.append((props, body))


def drain_bodies(ch, q):
    """The bodies of every message ready in q, taken with auto-ack."""
    return [body for _, body in drain(ch, q)]
