#!/usr/bin/python3
"""retry_chain.py - retries with growing delays, then a parking queue, built
from dead-letter exchanges and TTL only (runs against Warren or RabbitMQ).

    jobs.in (direct) --round.N--> jobs --(worker nacks)--> jobs.retry (direct)
        round.0 -> jobs.wait.1 (TTL 100 ms) --expired--> jobs.in, key round.1
        round.1 -> jobs.wait.2 (TTL 200 ms) --expired--> jobs.in, key round.2
        round.2 -> jobs.wait.3 (TTL 400 ms) --expired--> jobs.in, key round.3
        round.3 -> jobs.parking

A job is published to jobs.in with routing key round.0. The worker takes it
from jobs; on failure it nacks it (requeue=false). The queue jobs has
x-dead-letter-exchange jobs.retry and no dead-letter routing key, so the
nacked message keeps its routing key, which picks the wait queue of its
round; each wait queue's x-dead-letter-routing-key names the next round.
After the last round the message lands in jobs.parking. The worker reads
which attempt it is on from x-death: the count of the {queue: jobs,
reason: rejected} entry.

    /usr/bin/python3 examples/retry_chain.py [--host H] [--port P] [--jobs N]

Job i fails on its first i % 5 attempts: jobs 0-3 succeed sooner or later,
job 4 (and 9, ...) is parked after 4 attempts. Prints each job's attempts
with the delay before each, and exits 0 if everything ended where it should.
"""
import argparse
import sys
import time

import pika

DELAYS_MS = [100, 200, 400]  # before attempts 2, 3 and 4
ATTEMPTS = len(DELAYS_MS) + 1


def declare(ch):
    ch.exchange_declare("jobs.in", "direct")
    ch.exchange_declare("jobs.retry", "direct")
    ch.queue_declare("jobs", arguments={"x-dead-letter-exchange": "jobs.retry"})
    for r in range(ATTEMPTS):
        ch.queue_bind("jobs", "jobs.in", "round.%d" % r)
    for r, delay in enumerate(DELAYS_MS):
        wait = "jobs.wait.%d" % (r + 1)
        ch.queue_declare(wait, arguments={"x-message-ttl": delay,
                                          "x-dead-letter-exchange": "jobs.in",
                                          "x-dead-letter-routing-key": "round.%d" % (r + 1)})
        ch.queue_bind(wait, "jobs.retry", "round.%d" % r)
    ch.queue_declare("jobs.parking")
    ch.queue_bind("jobs.parking", "jobs.retry", "round.%d" % (ATTEMPTS - 1))
    for q in ["jobs", "jobs.parking"] + ["jobs.wait.%d" % (r + 1) for r in range(len(DELAYS_MS))]:
        ch.queue_purge(q)


def attempt_of(props):
    """1 for a fresh job; 1 + the times it was rejected from jobs, from x-death."""
    for death in (props.headers or {}).get("x-death", []):
        if death.get("queue") == "jobs" and death.get("reason") == "rejected":
            return death["count"] + 1
    return 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=5672)
    ap.add_argument("--jobs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    conn = pika.BlockingConnection(pika.ConnectionParameters(args.host, args.port))
    ch = conn.channel()
    declare(ch)
    history = {i: [] for i in range(args.jobs)}  # job -> [(attempt, time)]
    done = set()
    for i in range(args.jobs):
        ch.basic_publish("jobs.in", "round.0", str(i).encode())

    def work(ch_, method, props, body):
        job = int(body)
        attempt = attempt_of(props)
        history[job].append((attempt, time.monotonic()))
        if attempt > job % 5:
            done.add(job)
            ch_.basic_ack(method.delivery_tag)
        else:
            ch_.basic_nack(method.delivery_tag, requeue=False)

    ch.basic_consume("jobs", work)
    should_park = {i for i in range(args.jobs) if i % 5 >= ATTEMPTS}
    deadline = time.monotonic() + args.timeout
    parked = set()
    while time.monotonic() < deadline:
        conn.process_data_events(0.05)
        while True:
            m, _, body = ch.basic_get("jobs.parking", auto_ack=True)
            if m is None:
                break
            parked.add(int(body))
        if len(done) + len(parked) == args.jobs:
            break

    ok = done == set(range(args.jobs)) - should_park and parked == should_park
    for job, tries in history.items():
        gaps = ["%d ms" % ((t - tries[k - 1][1]) * 1000) for k, (_, t) in enumerate(tries) if k]
        where = "parked" if job in parked else "done" if job in done else "LOST"
        print("job %d: attempts %s, waited %s, %s" % (
            job, [a for a, _ in tries], ", ".join(gaps) or "-", where))
        expected = list(range(1, min(job % 5, ATTEMPTS - 1) + 2))
        if [a for a, _ in tries] != expected:
            ok = False
        for k, (_, t) in enumerate(tries[1:], 1):
            if (t - tries[k - 1][1]) * 1000 < DELAYS_MS[k - 1] * 0.9:
                ok = False  # a retry came before its delay
    conn.close()
    print("ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
