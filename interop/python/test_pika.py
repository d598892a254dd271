"""test_pika.py - Warren through pika (Debian's python3-pika), the way the
RabbitMQ tutorials and most Python services use it: a work queue with
competing consumers, fan-out, topic routing, RPC, publisher confirms,
basic.get, nack/requeue, consumer cancellation by the broker, channel errors
as pika exceptions, and closing. One broker for the suite; every case uses
its own names, so the suite can also run against RabbitMQ
(WARREN_TEST_EXTERNAL=127.0.0.1:5730).
"""
import os
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import brokers  # noqa: E402
import tap  # noqa: E402

try:
    import pika
    import pika.exceptions as pe
except ImportError:
    tap.ok(False, "pika is importable by %s: install Debian's python3-pika" % sys.executable)
    sys.exit(tap.done())

PREFIX = "interop.pika.%d." % os.getpid()


def connect(b):
    params = pika.ConnectionParameters(b.host, b.port, credentials=pika.PlainCredentials(
        "guest", "guest"), connection_attempts=1, socket_timeout=5, blocked_connection_timeout=5)
    return pika.BlockingConnection(params)


def drain(ch, queue, want, seconds=5):
    """Up to want messages from queue with basic.get, waiting up to seconds."""
    got = []
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        method, props, body = ch.basic_get(queue, auto_ack=True)
        if method is None:
            ch.connection.process_data_events(time_limit=0.02)
            continue
        got.append(body.decode())
    return got


def test_work_queue(b):
    """Durable queue, persistent messages, prefetch 1, manual acks, two
    competing consumers on their own connections: every task is done once."""
    queue, n = PREFIX + "tasks", 40
    conn = connect(b)
    ch = conn.channel()
    ok = ch.queue_declare(queue, durable=True)
    tap.ok(ok.method.queue == queue and ok.method.message_count == 0,
           "work queue: durable queue declared empty")
    done, lock, seen, modes = [], threading.Lock(), {}, set()
    ready = threading.Barrier(3)

    def worker(name):
        wconn = connect(b)
        wch = wconn.channel()
        wch.basic_qos(prefetch_count=1)
        mine = seen.setdefault(name, [])
        started = False
        for method, props, body in wch.consume(queue, inactivity_timeout=0.1):
            if not started:
                started = True
                ready.wait(5)
            if method is None:
                with lock:
                    if len(done) >= n:
                        break
                continue
            time.sleep(0.005)  # the work; the other worker takes the next task meanwhile
            with lock:
                done.append(body.decode())
                modes.add(props.delivery_mode)
            mine.append(body.decode())
            wch.basic_ack(method.delivery_tag)
        wch.cancel()
        wconn.close()

    threads = [threading.Thread(target=worker, args=(w,)) for w in ("a", "b")]
    for t in threads:
        t.start()
    ready.wait(5)
    for i in range(n):
        ch.basic_publish("", queue, b"task %d" % i, pika.BasicProperties(delivery_mode=2))
    for t in threads:
        t.join(30)
    want = ["task %d" % i for i in range(n)]
    tap.ok(sorted(done) == sorted(want) and len(done) == n,
           "work queue: all %d persistent tasks processed exactly once (%d done)" % (n, len(done)))
    tap.ok(len(seen.get("a", [])) > 0 and len(seen.get("b", [])) > 0,
           "work queue: both competing consumers got work (%d and %d)"
           % (len(seen.get("a", [])), len(seen.get("b", []))))
    tap.ok(all(seen[w] == sorted(seen[w], key=lambda s: int(s.split()[1])) for w in seen),
           "work queue: each consumer saw its tasks in publish order")
    tap.is_(modes, {2}, "work queue: delivery_mode 2 (persistent) arrives as published")
    left = ch.queue_declare(queue, passive=True).method
    tap.ok(left.message_count == 0 and left.consumer_count == 0,
           "work queue: nothing left and no consumer after both cancel (%d, %d)"
           % (left.message_count, left.consumer_count))
    ch.queue_delete(queue)
    conn.close()


def test_fanout(b):
    """Pub/sub: exclusive server-named queues bound to a fanout exchange."""
    exchange = PREFIX + "logs"
    conn = connect(b)
    ch = conn.channel()
    ch.exchange_declare(exchange, "fanout")
    queues = []
    for _ in range(3):
        name = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(name, exchange)
        queues.append(name)
    tap.ok(all(q.startswith("amq.gen-") for q in queues) and len(set(queues)) == 3,
           "fan-out: three distinct server-named queues (%s)" % ", ".join(queues))
    for i in range(5):
        ch.basic_publish(exchange, "ignored", b"log %d" % i)
    want = ["log %d" % i for i in range(5)]
    tap.ok(all(drain(ch, q, 5) == want for q in queues),
           "fan-out: every subscriber gets all five messages in order")
    conn.close()
    conn = connect(b)
    ch = conn.channel()
    try:
        ch.queue_declare(queues[0], passive=True)
        gone = False
    except pe.ChannelClosedByBroker as e:
        gone = e.reply_code == 404
    tap.ok(gone, "fan-out: the exclusive queues go with their connection (404 on passive declare)")
    ch = conn.channel()
    ch.exchange_delete(exchange)
    conn.close()


def test_topic(b):
    exchange = PREFIX + "topic"
    conn = connect(b)
    ch = conn.channel()
    ch.exchange_declare(exchange, "topic")
    binds = {"critical": "*.critical", "kern": "kern.#", "all": "#", "exact": "app.debug.x"}
    q = {}
    for name, key in binds.items():
        q[name] = ch.queue_declare(PREFIX + "topic." + name, auto_delete=True).method.queue
        ch.queue_bind(q[name], exchange, key)
    keys = ["kern.critical", "kern.info", "app.critical", "app.debug.x", "kern", "a.b.critical"]
    for k in keys:
        ch.basic_publish(exchange, k, k.encode())
    want = {"critical": ["kern.critical", "app.critical"],
            "kern": ["kern.critical", "kern.info", "kern"],
            "all": keys,
            "exact": ["app.debug.x"]}
    for name, key in binds.items():
        tap.is_(drain(ch, q[name], len(want[name]), 2) + drain(ch, q[name], 1, 0.1), want[name],
                "topic: binding %r gets exactly its keys" % key)
    for name in q.values():
        ch.queue_delete(name)
    ch.exchange_delete(exchange)
    conn.close()


def test_rpc(b):
    """RPC: requests with reply_to + correlation_id, answers matched by id."""
    queue = PREFIX + "rpc"
    server = connect(b)
    sch = server.channel()
    sch.queue_declare(queue, auto_delete=True)
    sch.basic_qos(prefetch_count=1)

    def on_request(ch, method, props, body):
        n = int(body)
        ch.basic_publish("", props.reply_to, str(n * n).encode(),
                         pika.BasicProperties(correlation_id=props.correlation_id))
        ch.basic_ack(method.delivery_tag)

    sch.basic_consume(queue, on_request)
    client = connect(b)
    cch = client.channel()
    callback = cch.queue_declare("", exclusive=True).method.queue
    answers = {}

    def on_response(ch, method, props, body):
        answers[props.correlation_id] = body.decode()

    cch.basic_consume(callback, on_response, auto_ack=True)
    for n in range(1, 6):
        cch.basic_publish("", queue, str(n).encode(),
                          pika.BasicProperties(reply_to=callback, correlation_id="req-%d" % n))
    deadline = time.monotonic() + 5
    while len(answers) < 5 and time.monotonic() < deadline:
        server.process_data_events(time_limit=0.01)
        client.process_data_events(time_limit=0.01)
    tap.is_(answers, {"req-%d" % n: str(n * n) for n in range(1, 6)},
            "RPC: five answers, each with its request's correlation_id")
    client.close()
    server.close()


def test_confirms(b):
    queue = PREFIX + "confirm"
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare(queue, auto_delete=True)
    ch.confirm_delivery()
    try:
        for i in range(10):
            ch.basic_publish("", queue, b"c%d" % i, mandatory=True)
        acked = True
    except pe.AMQPError as e:
        tap.diag(repr(e))
        acked = False
    tap.ok(acked, "confirms: ten routed publishes are confirmed")
    try:
        ch.basic_publish("", PREFIX + "nowhere", b"lost", mandatory=True)
        unroutable = None
    except pe.UnroutableError as e:
        unroutable = e
    tap.ok(unroutable is not None and len(unroutable.messages) == 1
           and unroutable.messages[0].body == b"lost",
           "confirms: a mandatory unroutable publish raises UnroutableError with the message")
    if unroutable is not None:
        m = unroutable.messages[0].method
        tap.is_((m.reply_code, m.reply_text, m.routing_key), (312, "NO_ROUTE", PREFIX + "nowhere"),
                "confirms: the return says 312 NO_ROUTE and the routing key")
    try:
        ch.basic_publish("", PREFIX + "nowhere", b"dropped")
        quiet = True
    except pe.AMQPError as e:
        tap.diag(repr(e))
        quiet = False
    tap.ok(quiet, "confirms: a non-mandatory unroutable publish is confirmed silently")
    tap.is_(ch.queue_declare(queue, passive=True).method.message_count, 10,
            "confirms: the queue holds the ten confirmed messages")
    try:
        ch.basic_publish(PREFIX + "no-such-exchange", "k", b"x")
        err = None
    except pe.ChannelClosedByBroker as e:
        err = e
    tap.ok(err is not None and err.reply_code == 404,
           "confirms: publishing to a missing exchange closes the channel with 404 (%r)" % (err,))
    conn.channel().queue_delete(queue)
    conn.close()


def test_basic_get(b):
    queue = PREFIX + "get"
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare(queue, auto_delete=False)
    for i in range(3):
        ch.basic_publish("", queue, b"g%d" % i, pika.BasicProperties(
            content_type="text/plain", headers={"n": i}, message_id="id%d" % i))
    got = []
    for _ in range(3):
        method, props, body = ch.basic_get(queue)
        got.append((body, method.message_count, method.redelivered, props.content_type,
                    props.headers, props.message_id))
        ch.basic_ack(method.delivery_tag)
    tap.is_(got, [(b"g%d" % i, 2 - i, False, "text/plain", {"n": i}, "id%d" % i) for i in range(3)],
            "basic_get: bodies, message_count 2/1/0 and properties as published")
    tap.is_(ch.basic_get(queue), (None, None, None), "basic_get: an empty queue answers get-empty")
    ch.basic_publish("", queue, b"again")
    method, _, _ = ch.basic_get(queue)
    ch.basic_reject(method.delivery_tag, requeue=True)
    method, _, body = ch.basic_get(queue, auto_ack=True)
    tap.ok(method is not None and body == b"again" and method.redelivered,
           "basic_get: a rejected-and-requeued message comes back redelivered")
    ch.queue_delete(queue)
    conn.close()


def test_nack_requeue(b):
    queue = PREFIX + "nack"
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare(queue)
    ch.basic_qos(prefetch_count=10)
    for i in range(4):
        ch.basic_publish("", queue, b"n%d" % i)
    seen = []
    for method, props, body in ch.consume(queue, inactivity_timeout=1):
        if method is None:
            break
        seen.append((body.decode(), method.redelivered))
        if len(seen) == 4:
            # n0 dropped, n1 requeued alone, n2+n3 requeued together
            ch.basic_nack(1, requeue=False)
            ch.basic_nack(2, requeue=True)
            ch.basic_nack(4, multiple=True, requeue=True)
        elif len(seen) == 7:
            ch.basic_ack(method.delivery_tag, multiple=True)
            break
    ch.cancel()
    tap.is_(seen, [("n0", False), ("n1", False), ("n2", False), ("n3", False),
                   ("n1", True), ("n2", True), ("n3", True)],
            "nack: dropped, single and multiple requeues come back redelivered in order")
    tap.is_(ch.queue_declare(queue, passive=True).method.message_count, 0,
            "nack: nothing left after the final multiple ack")
    ch.queue_delete(queue)
    conn.close()


def test_broker_cancel(b):
    """Deleting a queue cancels its consumer; pika calls on_cancel."""
    queue = PREFIX + "doomed"
    conn = connect(b)
    ch = conn.channel()
    tap.ok(conn._impl.server_capabilities.get("consumer_cancel_notify") is True,
           "cancel: the broker advertises consumer_cancel_notify")
    ch.queue_declare(queue)
    cancels = []
    ch.add_on_cancel_callback(lambda frame: cancels.append(frame.method.consumer_tag))
    tag = ch.basic_consume(queue, lambda *a: None, consumer_tag="doomed-consumer")
    other = conn.channel()
    other.queue_delete(queue)
    deadline = time.monotonic() + 5
    while not cancels and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.05)
    tap.is_(cancels, [tag], "cancel: deleting the queue calls pika's on_cancel with the tag")
    tap.ok(ch.is_open and tag not in ch.consumer_tags,
           "cancel: the channel stays open and pika forgets the consumer")
    conn.close()


def expect_channel_error(conn, action, code, text):
    ch = conn.channel()
    try:
        action(ch)
        return "no error"
    except pe.ChannelClosedByBroker as e:
        if e.reply_code == code and e.reply_text.startswith(text):
            return None
        return "%d %s" % (e.reply_code, e.reply_text)


def test_channel_errors(b):
    q = PREFIX + "errors"
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare(q, durable=False, auto_delete=True)
    # (name, action, code, text[, todo]): todo says how Warren still differs.
    cases = [
        ("passive declare of a missing exchange: 404",
         lambda c: c.exchange_declare(PREFIX + "missing", passive=True), 404,
         "NOT_FOUND - no exchange '%smissing' in vhost '/'" % PREFIX),
        ("passive declare of a missing queue: 404",
         lambda c: c.queue_declare(PREFIX + "missing", passive=True), 404,
         "NOT_FOUND - no queue '%smissing' in vhost '/'" % PREFIX),
        ("binding to a missing exchange: 404",
         lambda c: c.queue_bind(q, PREFIX + "missing"), 404, "NOT_FOUND - no exchange"),
        ("redeclaring a queue durable: 406",
         lambda c: c.queue_declare(q, durable=True, auto_delete=True), 406,
         "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '%s' in vhost '/'" % q),
        ("redeclaring amq.direct as fanout: 406",
         lambda c: c.exchange_declare("amq.direct", "fanout", durable=True), 406,
         "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'amq.direct'"),
    ]
    for name, action, code, text, *todo in cases:
        got = expect_channel_error(conn, action, code, text)
        tap.ok(got is None, "errors: %s, as ChannelClosedByBroker (%s)"
               % (name, got or "%d %s..." % (code, text)), todo=todo[0] if todo else None)
    tap.ok(ch.is_open and conn.is_open, "errors: other channels and the connection stay open")
    owner = connect(b)
    owner.channel().queue_declare(PREFIX + "mine", exclusive=True)
    got = expect_channel_error(conn, lambda c: c.queue_declare(PREFIX + "mine"), 405,
                               "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue")
    tap.ok(got is None, "errors: another connection's exclusive queue: 405 RESOURCE_LOCKED (%s)"
           % (got or "ok"))
    owner.close()
    c = conn.channel()
    try:
        c.basic_publish("", q, b"x")
        c.basic_ack(42)
        c.queue_declare(q, passive=True)
        got = "no error"
    except pe.ChannelClosedByBroker as e:
        got = (e.reply_code, e.reply_text)
    tap.is_(got, (406, "PRECONDITION_FAILED - unknown delivery tag 42"),
            "errors: acking an unknown delivery tag: 406")
    try:
        conn.channel().exchange_declare(PREFIX + "odd", "no-such-type")
        got = "no error"
    except pe.ConnectionClosedByBroker as e:
        got = (e.reply_code, e.reply_text)
    tap.is_(got, (503, "COMMAND_INVALID - unknown exchange type 'no-such-type'"),
            "errors: an unknown exchange type closes the connection: ConnectionClosedByBroker 503")
    tap.ok(conn.is_closed, "errors: pika marks the connection closed")
    conn = connect(b)
    conn.channel().queue_delete(q)
    conn.close()


def test_close(b):
    conn = connect(b)
    ch = conn.channel()
    ch.queue_declare(PREFIX + "close", exclusive=True)
    ch.close()
    tap.ok(ch.is_closed and conn.is_open, "close: a channel closes, the connection stays open")
    conn.close()
    tap.ok(conn.is_closed, "close: the connection closes cleanly")
    try:
        conn.channel()
        raised = None
    except pe.AMQPError as e:
        raised = e
    tap.ok(isinstance(raised, pe.ConnectionWrongStateError),
           "close: a closed connection refuses new channels (%r)" % (raised,))
    conn = connect(b)
    try:
        conn.channel().queue_declare(PREFIX + "close", passive=True)
        gone = False
    except pe.ChannelClosedByBroker as e:
        gone = e.reply_code == 404
    tap.ok(gone, "close: the exclusive queue went with the closed connection")
    conn.close()


def main():
    b = brokers.Warren()
    if not b.start():
        tap.ok(False, "Warren starts: %s" % b.error)
        for line in b.log_tail():
            tap.diag("| " + line)
        return tap.done()
    tap.diag("broker at %s:%d" % (b.host, b.port))
    for test in (test_work_queue, test_fanout, test_topic, test_rpc, test_confirms,
                 test_basic_get, test_nack_requeue, test_broker_cancel, test_channel_errors,
                 test_close):
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
