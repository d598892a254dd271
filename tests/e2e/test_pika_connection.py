"""test_pika_connection.py - the connection as pika (Debian's python3-pika)
sees it: connect, channels, heartbeat negotiation, refused logins and vhosts,
and the broker's shutdown, each with the exception pika raises for it.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import broker  # noqa: E402
import tap  # noqa: E402

try:
    import pika
    import pika.exceptions as pe
except ImportError:
    tap.ok(False, "pika is importable by %s: install Debian's python3-pika" % sys.executable)
    sys.exit(tap.done())


def params(b, user="guest", password="guest", **kw):
    kw.setdefault("connection_attempts", 1)
    kw.setdefault("socket_timeout", 5)
    kw.setdefault("blocked_connection_timeout", 5)
    return pika.ConnectionParameters(b.host, b.port,
                                     credentials=pika.PlainCredentials(user, password), **kw)


def test_connect(b):
    conn = pika.BlockingConnection(params(b))
    props = conn._impl.server_properties
    tap.diag("server product %r version %r" % (props.get("product"), props.get("version")))
    tap.ok(conn.is_open, "pika BlockingConnection opens")
    tap.ok(conn._impl.server_capabilities.get("authentication_failure_close") is True,
           "pika sees capability authentication_failure_close")
    ch = conn.channel()
    tap.ok(ch.is_open and ch.channel_number == 1, "a channel opens (number %d)" % ch.channel_number)
    ch.close()
    tap.ok(ch.is_closed, "the channel closes")
    conn.close()
    tap.ok(conn.is_closed, "the connection closes")


def negotiated(b, **kw):
    conn = pika.BlockingConnection(params(b, **kw))
    p = conn._impl.params
    values = (p.heartbeat, p.frame_max, p.channel_max)
    conn.close()
    return values


def test_tune(b):
    got = negotiated(b)
    tap.ok(got == (60, 131072, 2047),
           "no preferences: pika takes the broker's heartbeat 60, frame_max 131072, "
           "channel_max 2047 (got %r)" % (got,))
    got = negotiated(b, heartbeat=3, frame_max=8192, channel_max=10)
    tap.ok(got == (3, 8192, 10), "asking 3, 8192, 10 negotiates 3, 8192, 10 (got %r)" % (got,))
    got = negotiated(b, heartbeat=0)
    tap.ok(got[0] == 0, "heartbeat=0 disables heartbeats (got %r)" % (got[0],))


def test_heartbeat(b):
    conn = pika.BlockingConnection(params(b, heartbeat=1))
    tap.ok(conn._impl.params.heartbeat == 1, "heartbeat 1 negotiated")
    try:
        conn.process_data_events(time_limit=3.5)
        alive = conn.is_open
    except pe.AMQPError as e:
        tap.diag("after 3.5 s: %r" % e)
        alive = False
    tap.ok(alive, "pika with heartbeat 1 stays connected for 3.5 s of idle I/O")
    if alive:
        ch = conn.channel()
        tap.ok(ch.is_open, "and opens a channel afterwards")
        conn.close()


def refused(b, **kw):
    try:
        pika.BlockingConnection(params(b, **kw)).close()
        return None
    except pe.AMQPError as e:
        tap.diag("%s: %s" % (type(e).__name__, e))
        return e


def test_refused(b):
    e = refused(b, password="wrong")
    tap.ok(isinstance(e, (pe.ProbableAuthenticationError, pe.AuthenticationError)),
           "wrong password: ProbableAuthenticationError or AuthenticationError (%s)"
           % type(e).__name__)
    tap.ok(e is not None and "(403)" in str(e), "and the broker's reason is 403")
    e = refused(b, virtual_host="no-such-vhost")
    tap.ok(isinstance(e, pe.ProbableAccessDeniedError),
           "unknown vhost: ProbableAccessDeniedError (%s)" % type(e).__name__)
    tap.ok(e is not None and "(530)" in str(e), "and the broker's reason is 530 NOT_ALLOWED")


def test_shutdown():
    names = ["SIGTERM: pika sees ConnectionClosedByBroker", "with reply_code 320",
             "the broker exits 0"]
    if broker.external():
        for n in names:
            tap.skip(n, "external broker")
        return
    b = broker.Broker()
    if not b.start():
        return
    conn = pika.BlockingConnection(params(b))
    conn.channel()
    b.signal(signal.SIGTERM)
    err = None
    try:
        conn.process_data_events(time_limit=5)
    except pe.AMQPError as e:
        err = e
    tap.diag("pika: %r" % (err,))
    tap.ok(isinstance(err, pe.ConnectionClosedByBroker), names[0])
    tap.ok(getattr(err, "reply_code", None) == 320, names[1] + " (got %r)"
           % (getattr(err, "reply_code", None),))
    tap.ok(b.stop() == 0, names[2])


def watchdog(signum, frame):
    broker._kill_all()
    tap.bail("watchdog: the test took too long")


def main():
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(60)
    b = broker.Broker()
    if not b.start():
        return tap.done()
    with b:
        for test in (test_connect, test_tune, test_heartbeat, test_refused):
            try:
                test(b)
            except Exception as e:  # a crash is one failed case, the rest still run
                tap.ok(False, "%s raised %r" % (test.__name__, e))
        tap.ok(b.stop() == 0, "broker exits 0 after SIGTERM")
    test_shutdown()
    return tap.done()


if __name__ == "__main__":
    sys.exit(main())
