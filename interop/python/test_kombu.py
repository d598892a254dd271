"""test_kombu.py - Warren through kombu (Debian's python3-kombu over
python3-amqp), the way Celery drives it: a Connection URL with the '//'
vhost, Exchange and Queue entities with kombu's defaults and Celery's queue
arguments, Producer.publish with the json serializer and retry off, a
Consumer with callbacks fed by drain_events, ack/reject/requeue, SimpleQueue,
and the pidbox broadcast behind `celery inspect ping`. One broker for the
suite; it can also run against RabbitMQ (WARREN_TEST_EXTERNAL=127.0.0.1:5730).
"""
import os
import socket
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import brokers  # noqa: E402
import tap  # noqa: E402

try:
    import kombu
    from kombu import Connection, Consumer, Exchange, Producer, Queue
    from kombu import pidbox
except ImportError:
    tap.ok(False, "kombu is importable by %s: install Debian's python3-kombu" % sys.executable)
    sys.exit(tap.done())

PREFIX = "interop.kombu.%d." % os.getpid()


def connection(b, **kw):
    return Connection("amqp://guest:guest@%s:%d//" % (b.host, b.port), connect_timeout=5, **kw)


def drain_until(conn, cond, seconds=5):
    deadline = time.monotonic() + seconds
    while not cond() and time.monotonic() < deadline:
        try:
            conn.drain_events(timeout=0.1)
        except socket.timeout:
            pass
    return cond()


def test_connect(b):
    with connection(b) as conn:
        conn.connect()
        tap.ok(conn.connected and conn.transport_cls in ("amqp", "pyamqp"),
               "connect: Connection('amqp://guest:guest@HOST:PORT//') connects (transport %s)"
               % conn.transport_cls)
        props = conn.connection.server_properties
        tap.ok(props.get("capabilities", {}).get("publisher_confirms") is True,
               "connect: py-amqp sees the publisher_confirms capability")
        tap.is_(conn.connection.virtual_host, "/", "connect: '//' in the URL means vhost '/'")
    tap.ok(not conn.connected, "connect: leaving the with block closes the connection")


def test_celery_task_flow(b):
    """A Celery-style task queue: direct exchange, durable queue, json tasks,
    a consumer with callbacks, ack / reject / requeue."""
    exchange = Exchange(PREFIX + "celery", type="direct")
    queue = Queue(PREFIX + "celery", exchange, routing_key=PREFIX + "celery")
    defaults = (exchange.durable, exchange.auto_delete, queue.durable, queue.auto_delete,
                queue.exclusive)
    tap.is_(defaults, (True, False, True, False, False),
            "celery flow: kombu's defaults (durable, not auto-delete, not exclusive)")
    with connection(b) as conn:
        producer = Producer(conn.channel(), exchange=exchange, serializer="json")
        for i in range(3):
            producer.publish({"task": "add", "args": [i, i], "id": "t%d" % i},
                             routing_key=PREFIX + "celery", retry=False, declare=[queue],
                             headers={"task": "add", "id": "t%d" % i},
                             correlation_id="t%d" % i, reply_to="client-1")
        got, actions = [], iter(["ack", "requeue", "reject", "ack"])

        def on_task(body, message):
            got.append((body, message.delivery_info["redelivered"],
                        message.content_type, message.content_encoding,
                        message.headers.get("id"), message.properties.get("correlation_id"),
                        message.properties.get("reply_to"),
                        message.properties.get("delivery_mode")))
            getattr(message, next(actions))()

        channel = conn.channel()
        with Consumer(channel, queues=[queue], callbacks=[on_task], accept=["json"],
                      prefetch_count=1):
            drain_until(conn, lambda: len(got) >= 4)
        task = lambda i: {"task": "add", "args": [i, i], "id": "t%d" % i}  # noqa: E731
        meta = lambda i: ("application/json", "utf-8", "t%d" % i, "t%d" % i, "client-1", 2)  # noqa
        tap.is_(got[:1], [(task(0), False) + meta(0)],
                "celery flow: the json task arrives decoded with content type, encoding, "
                "headers, correlation_id, reply_to and delivery_mode 2")
        tap.is_([(g[0]["id"], g[1]) for g in got],
                [("t0", False), ("t1", False), ("t1", True), ("t2", False)],
                "celery flow: ack, requeue (comes back redelivered first), then reject")
        name, count, consumers = queue(conn.channel()).queue_declare(passive=True)
        tap.is_((name, count, consumers), (queue.name, 0, 0),
                "celery flow: nothing left (the rejected task was dropped), no consumer")
        queue(conn.channel()).delete()
        exchange(conn.channel()).delete()


def test_queue_arguments(b):
    """The queues Celery and kombu declare with arguments, declared twice
    (every worker start redeclares them) and checked passively."""
    with connection(b) as conn:
        ch = conn.channel()
        queues = [
            Queue(PREFIX + "args.ttl", Exchange(PREFIX + "args", type="direct"), "ttl",
                  message_ttl=300, expires=10),
            Queue(PREFIX + "args.limits", Exchange(PREFIX + "args", type="direct"), "limits",
                  max_length=1000, max_length_bytes=1 << 20, max_priority=10),
            Queue(PREFIX + "args.raw", Exchange(PREFIX + "args", type="direct"), "raw",
                  queue_arguments={"x-queue-mode": "lazy", "x-dead-letter-exchange": "dlx",
                                   "x-dead-letter-routing-key": "dead"}),
            Queue(PREFIX + "args.events", Exchange(PREFIX + "ev", type="topic"), "#",
                  durable=False, auto_delete=True, exclusive=False, message_ttl=5.0,
                  expires=60.0),
        ]
        for q in queues:
            declared = []
            try:
                for _ in range(2):
                    declared.append(q(ch).declare())
                error = None
            except Exception as e:
                error = e
            tap.ok(error is None and declared == [q.name, q.name],
                   "arguments: %s declared twice with %r (%r)"
                   % (q.name[len(PREFIX):], ch.prepare_queue_arguments(
                       q.queue_arguments or {}, expires=q.expires, message_ttl=q.message_ttl,
                       max_length=q.max_length, max_length_bytes=q.max_length_bytes,
                       max_priority=q.max_priority), error))
        changed = Queue(PREFIX + "args.ttl", message_ttl=600, expires=10)
        try:
            changed(conn.channel()).queue_declare()
            error = None
        except Exception as e:
            error = e
        tap.ok(getattr(error, "code", None) == 406 and "x-message-ttl" in str(error),
               "arguments: redeclaring with another message_ttl fails with 406 (%r)" % (error,))
        ch = conn.channel()
        for q in queues:
            q(ch).delete()
        Exchange(PREFIX + "args")(ch).delete()
        Exchange(PREFIX + "ev")(ch).delete()


def test_simple_queue(b):
    with connection(b) as conn:
        q = conn.SimpleQueue(PREFIX + "simple")
        for i in range(3):
            q.put({"n": i, "text": "h\u00e9llo"})
        # RabbitMQ routes a publish asynchronously: qsize may lag behind put.
        deadline = time.monotonic() + 2
        while q.qsize() < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        tap.is_(q.qsize(), 3, "SimpleQueue: qsize counts three puts")
        msg = q.get(block=True, timeout=2)
        tap.is_(msg.payload, {"n": 0, "text": "h\u00e9llo"},
                "SimpleQueue: get returns the first put, json-decoded")
        msg.ack()
        msg = q.get(block=True, timeout=2)
        msg.requeue()
        # The consumer has no prefetch limit: n2 may be buffered before n1 returns.
        rest = [q.get(block=True, timeout=2) for _ in range(2)]
        tap.is_(sorted((m.payload["n"], m.delivery_info["redelivered"]) for m in rest),
                [(1, True), (2, False)], "SimpleQueue: a requeued message comes back redelivered")
        for m in rest:
            m.ack()
        try:
            q.get(block=True, timeout=0.3)
            empty = False
        except q.Empty:
            empty = True
        tap.ok(empty, "SimpleQueue: get on an empty queue raises Empty")
        q.close()
        q.queue(conn.default_channel).delete()
        q.queue.exchange(conn.default_channel).delete()
        q = conn.SimpleQueue(PREFIX + "simple2")
        q.put({"n": 1})
        q.put({"n": 2})
        deadline = time.monotonic() + 2
        while q.qsize() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        msg = q.get_nowait()
        tap.ok(msg.payload == {"n": 1} and msg.delivery_info["message_count"] == 1,
               "SimpleQueue: get_nowait (basic.get) says one more is waiting")
        msg.ack()
        tap.is_(q.clear(), 1, "SimpleQueue: clear purges what is left")
        q.close()
        q.queue(conn.default_channel).delete()
        q.queue.exchange(conn.default_channel).delete()


def test_pidbox(b):
    """celery inspect ping: a fanout broadcast to a node, the reply through
    a direct reply exchange to an expiring reply queue."""
    mailbox = pidbox.Mailbox(PREFIX + "pidbox", type="fanout", accept=["json"])
    with connection(b) as conn:
        bound = mailbox(conn)
        node = bound.Node("worker1@host", handlers={"ping": lambda state: "pong"},
                          channel=conn.channel())
        node.listen()
        replies = bound._broadcast("ping", arguments={}, reply=True, timeout=1, limit=1)
        tap.is_(replies, [{"worker1@host": "pong"}],
                "pidbox: broadcast ping is answered by the node (celery inspect ping)")
        ch = conn.channel()
        bound.reply_queue(ch).delete()
        bound.exchange(ch).delete()
        bound.reply_exchange(ch).delete()


def test_errors(b):
    with connection(b) as conn:
        ch = conn.channel()
        try:
            Queue(PREFIX + "missing", no_declare=True)(ch).queue_declare(passive=True)
            error = None
        except Exception as e:
            error = e
        tap.ok(isinstance(error, kombu.exceptions.ChannelError) and getattr(error, "code", 0) == 404,
               "errors: passive declare of a missing queue raises a 404 ChannelError (%r)" % error)
        ch = conn.channel()
        producer = Producer(ch, exchange=Exchange(PREFIX + "missing-exchange", passive=True),
                            serializer="json")
        try:
            producer.publish({"x": 1}, routing_key="k", retry=False)
            ch.basic_qos(0, 1, False)  # a round trip to see the channel close
            error = None
        except Exception as e:
            error = e
        tap.ok(getattr(error, "code", 0) == 404,
               "errors: publishing to a missing exchange surfaces 404 (%r)" % (error,))


def main():
    b = brokers.Warren()
    if not b.start():
        tap.ok(False, "Warren starts: %s" % b.error)
        for line in b.log_tail():
            tap.diag("| " + line)
        return tap.done()
    tap.diag("kombu %s, broker at %s:%d" % (kombu.__version__, b.host, b.port))
    for test in (test_connect, test_celery_task_flow, test_queue_arguments, test_simple_queue,
                 test_pidbox, test_errors):
        try:
            test(b)
        except Exception as e:
            tap.ok(False, "%s runs to the end (raised %r)" % (test.__name__, e))
            tap.diag(traceback.format_exc())
    log = b.log_tail()
    status = b.stop()
    if not tap.ok(status == 0, "Warren exits 0 on SIGTERM (status %r)" % (status,)):
        for line in log:
            tap.diag("| " + line)
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
