"""test_feature_chaos.py - the failure-handling features together, under churn.

Eight queues mixing TTLs (0 to 200 ms, and per-message expirations),
priorities, length limits with every overflow mode, delivery limits, a
single active consumer and deduplication, dead-lettering into one another
and a durable delayed exchange in front of them; a consumer that acks,
requeues, rejects and leaves deliveries unacked (so the acknowledgement
timeout fires); random kill -9 restarts. The broker must stay up, answer,
exit 0 on SIGTERM and leave no sanitizer report. Seeded
(WARREN_FEATURE_CHAOS_SEED) and timed (WARREN_FEATURE_CHAOS_SECONDS, 20 by
default). Run with Debian's python3 (pika).
"""
import os
import random
import signal
import time

import pika

import tap
from broker import Broker
from pikahelp import connect as _connect


def connect(b):
    return _connect(b, heartbeat=0)

SECONDS = float(os.environ.get("WARREN_FEATURE_CHAOS_SECONDS", "20"))
SEED = int(os.environ.get("WARREN_FEATURE_CHAOS_SEED", str(int(time.time()))))


def queue_args(i):
    args = {"x-dead-letter-exchange": "fc.dlx",
            "x-dead-letter-routing-key": random.choice(["fc.dead", "fc.q%d" % ((i + 1) % 8)])}
    if i % 2:
        args["x-message-ttl"] = random.choice([0, 5, 50, 200])
    if i % 3 == 0:
        args["x-max-priority"] = 5
    if i % 4 == 1:
        args["x-max-length"] = random.choice([1, 3, 10])
        args["x-overflow"] = random.choice(["drop-head", "reject-publish", "reject-publish-dlx"])
    if i % 4 == 2:
        args["x-delivery-limit"] = 2
    if i == 5:
        args["x-single-active-consumer"] = True
    if i == 6:
        args.update({"x-message-deduplication": True, "x-cache-size": 5})
    return args


def setup(ch, args):
    ch.exchange_declare("fc.dlx", "direct", durable=True)
    ch.exchange_declare("fc.delayed", "x-delayed-message", durable=True,
                        arguments={"x-delayed-type": "direct"})
    ch.queue_declare("fc.dead", durable=True)
    ch.queue_bind("fc.dead", "fc.dlx", "fc.dead")
    names = []
    for i in range(8):
        name = "fc.q%d" % i
        ch.queue_declare(name, durable=i % 2 == 0, arguments=args[i])
        ch.queue_bind(name, "fc.dlx", name)
        ch.queue_bind(name, "fc.delayed", name)
        names.append(name)
    return names


def on_message(ch, m, p, body):
    r = random.random()
    if r < 0.4:
        ch.basic_ack(m.delivery_tag)
    elif r < 0.6:
        ch.basic_nack(m.delivery_tag, requeue=True)
    elif r < 0.8:
        ch.basic_reject(m.delivery_tag, requeue=False)
    # otherwise left unacked: the acknowledgement timeout closes the channel


def consumer(b, names):
    try:
        c = connect(b)
        ch = c.channel()
        ch.basic_qos(prefetch_count=5)
        for q in names[:5]:
            ch.basic_consume(q, on_message)
        return c
    except Exception:  # the queue may be gone after a restart; next round
        return None


def publish(ch, names):
    props = pika.BasicProperties(
        priority=random.randint(0, 9), delivery_mode=random.choice([1, 2]),
        expiration=random.choice([None, "0", "10", "300"]),
        headers={"x-delay": random.choice([0, 5, 50]),
                 "x-deduplication-header": random.randint(0, 20)})
    ch.basic_publish(random.choice(["", "fc.delayed"]), random.choice(names),
                     b"x" * random.randint(0, 2000), props)


def main():
    random.seed(SEED)
    tap.diag("seed %d (WARREN_FEATURE_CHAOS_SEED), %.0f s" % (SEED, SECONDS))
    b = Broker("consumer_timeout = 2000\nqueue_flow_threshold = 500\n")
    if b.external:
        tap.skip("feature chaos", "kills the broker")
        return tap.done()
    if not b.start():
        return tap.done()
    pub = connect(b)
    args = [queue_args(i) for i in range(8)]
    names = setup(pub.channel(), args)
    ch = pub.channel()
    cons = consumer(b, names)
    published = restarts = 0
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        try:
            publish(ch, names)
            published += 1
            if published % 50 == 0 and cons:
                cons.process_data_events(0)
        except Exception:  # a channel closed for cause: start again
            for c in (pub, cons):
                try:
                    c and c.close()
                except Exception:
                    pass
            pub = connect(b)
            ch = pub.channel()
            cons = consumer(b, names)
        if published % 500 == 0 and random.random() < 0.2:
            if b.restart(signal.SIGKILL) is None:
                break
            restarts += 1
            pub = connect(b)
            ch = pub.channel()
            setup(ch, args)  # transient queues are gone; durable ones are checked for equivalence
            cons = consumer(b, names)
    alive = b.proc.poll() is None
    answered = False
    if alive:
        try:
            c = connect(b)
            c.channel().queue_declare("fc.dead", durable=True, passive=True)
            c.close()
            answered = True
        except Exception as e:
            tap.diag("no answer: %r" % e)
    tap.ok(alive and answered, "the broker is up and answers after %d publishes and %d kill -9 "
           "restarts" % (published, restarts))
    b.proc.send_signal(signal.SIGTERM)
    status = b.proc.wait(30)
    with open(b.log, errors="replace") as f:
        reports = [line for line in f if "Sanitizer" in line or "runtime error" in line]
    tap.ok(status == 0 and not reports, "exit 0 on SIGTERM and no sanitizer report (status %d, "
           "%d report lines)" % (status, len(reports)))
    if reports:
        for line in reports[:20]:
            tap.diag(line.rstrip())
    b.stop()
    return tap.done()


if __name__ == "__main__":
    raise SystemExit(main())
