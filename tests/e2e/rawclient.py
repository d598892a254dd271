"""rawclient.py - a minimal AMQP client over a plain socket, for tests that
need to see every frame (confirms, connection.blocked) and to keep going
when the broker dies under them. Frames come from chaos_frames.py.
"""
import select
import socket
import time

import chaos_frames as F


class Client:
    """One AMQP connection over a plain socket, read without blocking."""

    def __init__(self, host, port, capabilities=None):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.reader = F.FrameReader()
        self.frames = []
        self.sock.sendall(F.PROTOCOL_HEADER)
        self.expect("connection.start")
        props = None
        if capabilities:
            props = [("product", "S", "warren-test"),
                     ("capabilities", "F", [(c, "t", True) for c in capabilities])]
        self.sock.sendall(F.start_ok(props=props))
        tune = self.expect("connection.tune")
        self.frame_max = tune[1] or 131072
        self.sock.sendall(F.method(0, "connection.tune-ok", tune[0], self.frame_max, 0) +
                          F.method(0, "connection.open", "/", "", False))
        self.expect("connection.open-ok")
        self.sock.sendall(F.method(1, "channel.open", ""))
        self.expect("channel.open-ok")

    def pump(self, timeout):
        """Read what has arrived (waiting up to timeout); False once the socket is gone."""
        r, _, _ = select.select([self.sock], [], [], timeout)
        if not r:
            return True
        try:
            data = self.sock.recv(1 << 20)
        except OSError:
            return False
        if not data:
            return False
        self.frames += self.reader.feed(data)
        return True

    def next_frame(self, timeout=10):
        deadline = time.monotonic() + timeout
        while not self.frames:
            if time.monotonic() > deadline or not self.pump(0.5):
                raise AssertionError("no frame from the broker")
        return self.frames.pop(0)

    def expect(self, name):
        ftype, _, payload = self.next_frame()
        got, values = F.decode_method(payload) if ftype == F.FRAME_METHOD else (ftype, None)
        if got != name:
            raise AssertionError("expected %s, got %r %r" % (name, got, values))
        return values

    def message(self, payload):
        """The rest of a content method: (properties payload, body)."""
        _, _, header = self.next_frame()
        size = F.decode_header(header)[1]
        body = b""
        while len(body) < size:
            body += self.next_frame()[2]
        return header, body

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
