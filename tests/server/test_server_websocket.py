"""WebSocket (the per-connection layer): backpressure, on_writable, timers, slow consumers, bad handlers."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Any

from srvtest_util import Echo, ServerThread, assert_echo_works, raw_connect, raw_handshake, read_until_closed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from wsproto_lite.server.handler import Accept, Handler
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (payload < 126 bytes)."""
    key = b"\x0a\x0b\x0c\x0d"
    return (
        bytes([0x80 | opcode, 0x80 | len(payload)])
        + key
        + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    )


class Producer(Handler):
    """On "go": sends while writable, then again on each on_writable, ``total`` messages in all."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.sent = 0
        self.writable_calls = 0
        self.paused_reading = threading.Event()
        self.closes: list[tuple[int, str]] = []
        self.closed = threading.Event()

    def _pump(self, conn: WebSocket) -> None:
        while self.sent < self.total and conn.writable:
            conn.send(b"p" * 65536)
            self.sent += 1
        if not conn.writable and conn.transport is not None and not conn.transport.is_reading:
            self.paused_reading.set()

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if message == "go":
            self._pump(conn)
        else:
            conn.send(message)

    def on_writable(self, conn: WebSocket) -> None:
        self.writable_calls += 1
        self._pump(conn)

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.closed.set()


def test_backpressure_pauses_reading_and_on_writable_resumes() -> None:
    handler = Producer(total=200)  # 12.5 MiB
    with ServerThread(handler, options=Options(write_high_water=512 * 1024, compression=False)) as st:
        sock = raw_connect(st.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            raw_handshake(sock)
            sock.sendall(_frame(b"go"))
            assert handler.paused_reading.wait(10)  # over the high mark: not reading from us any more
            received = 0
            expected = 200 * (65536 + 10)  # 65536 > 65535: 10-byte headers (64-bit length)
            while received < expected:
                chunk = sock.recv(1 << 20)
                assert chunk
                received += len(chunk)
            assert received == expected
            assert handler.writable_calls >= 1
            sock.sendall(_frame(struct.pack("!H", 1000), opcode=8))
            assert handler.closed.wait(10)
        finally:
            sock.close()
        assert handler.closes == [(1000, "")]


class BigReplies(Handler):
    """Answers every message with 64 KiB; counts the messages it was given."""

    def __init__(self) -> None:
        self.messages = 0
        self.conn: WebSocket | None = None

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        self.messages += 1
        self.conn = conn
        conn.send(b"r" * 65536)


def test_messages_already_read_wait_while_over_the_high_watermark() -> None:
    """Backpressure covers what was read before reading paused: a peer that pipelines commands and
    does not read the answers is not given more answers than the high watermark (plus what the kernel
    took); the rest run once it reads."""
    handler = BigReplies()
    total = 1000  # 64 MiB of answers if they all ran at once
    options = Options(write_high_water=256 * 1024, compression=False)
    with ServerThread(handler, options=options) as st:
        sock = raw_connect(st.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            raw_handshake(sock)
            sock.sendall(b"".join(_frame(b"m") for _ in range(total)))  # one write: one read on the server

            def paused() -> bool:
                conn = handler.conn
                return conn is not None and conn.transport is not None and conn.transport.writing_paused

            deadline = time.monotonic() + 10
            while not st.call(paused):
                assert time.monotonic() < deadline, "the server never went over its high watermark"
            held = st.call(lambda: handler.messages)
            print("messages run before the peer read anything:", held)
            assert held < total // 5
            received = 0
            expected = total * (65536 + 10)
            while received < expected:
                chunk = sock.recv(1 << 20)
                assert chunk
                received += len(chunk)
            assert received == expected and st.call(lambda: handler.messages) == total
        finally:
            sock.close()


def test_close_timeout_aborts_a_peer_that_never_answers() -> None:
    class CloseAtOnce(Echo):
        def on_open(self, conn: WebSocket) -> None:
            conn.close(1000, "go away")

    handler = CloseAtOnce()
    with ServerThread(handler, options=Options(close_timeout=0.2)) as st:
        sock = raw_connect(st.port)
        try:
            data = raw_handshake(sock)
            data += read_until_closed(sock)  # we never send our close: the server must give up
        finally:
            sock.close()
        assert data.startswith(b"\x88")  # its close frame arrived
        assert handler.closed.wait(10)
        assert handler.closes == [(1006, "connection aborted")]


def test_slow_consumer_in_process() -> None:
    class Careless(Producer):
        def _pump(self, conn: WebSocket) -> None:
            self.results = [conn.send(b"c" * 65536) for _ in range(self.total)]  # ignores writable

    handler = Careless(total=256)  # 16 MiB (more than the kernel buffers take) against a 1 MiB hard limit
    options = Options(
        write_high_water=256 * 1024, write_hard_limit=1 << 20, slow_consumer_timeout=0.2, compression=False
    )
    with ServerThread(handler, options=options) as st:
        sock = raw_connect(st.port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        try:
            raw_handshake(sock)
            sock.sendall(_frame(b"go"))
            assert handler.closed.wait(10)
        finally:
            sock.close()
        assert handler.results[0] is True and handler.results[-1] is False  # later ones were dropped
        assert handler.closes[0][0] == 1006
        assert_echo_works(st.url)


def test_handler_errors_are_contained() -> None:
    class Buggy(Echo):
        def handshake(self, conn: WebSocket, request: Any) -> Accept | None:
            if request.path == "/boom":
                raise RuntimeError("expected in test: handshake hook bug")
            if request.path == "/bad-proto":
                return Accept(subprotocol="never-offered")
            return None

        def on_message(self, conn: WebSocket, message: str | bytes) -> None:
            if message == "crash":
                raise RuntimeError("expected in test: on_message bug")
            conn.send(message)

    with ServerThread(Buggy()) as st:
        for path in ("boom", "bad-proto"):
            try:
                ws_connect(st.url + path, proxy=None, open_timeout=10)
            except InvalidStatus as exc:
                assert exc.response.status_code == 500
            else:
                raise AssertionError("expected a 500")
        with ws_connect(st.url, proxy=None, open_timeout=10) as ws:
            ws.send("crash")
            ws.send("after the crash")
            assert ws.recv(timeout=10) == "after the crash"


class Replies(Handler):
    """Answers "go" with several replies of every kind, a broadcast and a fragmented message among them."""

    server: Any = None

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        if message == "go":
            conn.send("first")  # written at once (a message read alone)
            conn.send("")  # an empty message: written at once too, never left behind
            if message == "go":
                self.server.broadcast("to everyone")  # straight to the sockets that may take it
            conn.send(b"\x00binary")
            conn.send("frag", fin=False)
            conn.send("ment")
            conn.send("last")
        elif message == "empty":
            conn.send(b"")  # the only reply, and empty
        elif message == "then empty":
            conn.send("then")
            conn.send(b"")  # queued behind the first reply: written at the end, though it adds no bytes


def test_every_reply_to_one_message_arrives_in_order() -> None:
    """The first reply to a message read alone goes to the socket at once; the others are written after
    it, in the order they were sent: none is lost, reordered or held until the next read."""
    handler = Replies()
    with ServerThread(handler, options=Options(compression=False)) as st:
        handler.server = st.server
        with ws_connect(st.url, proxy=None, open_timeout=10, compression=None) as ws:
            for _ in range(3):
                ws.send("go")
                got = [ws.recv(timeout=10) for _ in range(6)]
                assert got == ["first", "", "to everyone", b"\x00binary", "fragment", "last"]
                ws.send("empty")
                assert ws.recv(timeout=10) == b""
                ws.send("then empty")
                assert [ws.recv(timeout=10), ws.recv(timeout=10)] == ["then", b""]


def test_an_empty_reply_in_a_batch_is_written_with_it() -> None:
    """Several messages in one read (the batch path): an empty reply is not left in the queue."""
    handler = Replies()
    with ServerThread(handler, options=Options(compression=False)) as st:
        handler.server = st.server
        sock = raw_connect(st.port)
        try:
            raw_handshake(sock)
            sock.sendall(_frame(b"empty") + _frame(b"empty"))
            expected = b"\x82\x00" * 2
            got = b""
            while len(got) < len(expected):
                chunk = sock.recv(100)
                assert chunk, got
                got += chunk
            assert got == expected
        finally:
            sock.close()


def test_send_outside_open_returns_false() -> None:
    seen: list[bool] = []

    class Late(Echo):
        def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
            seen.append(conn.send("too late"))
            seen.append(conn.ping())
            super().on_close(conn, code, reason)

    handler = Late()
    with ServerThread(handler) as st:
        with ws_connect(st.url, proxy=None, open_timeout=10):
            pass
        assert handler.closed.wait(10)
    assert seen == [False, False]


class Pausing(Handler):
    """Pauses its connection's messages at the first one (as the hub does while commands wait)."""

    def __init__(self) -> None:
        self.conn: WebSocket | None = None
        self.messages: list[str | bytes] = []
        self.changed = threading.Condition()

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        self.conn = conn
        if not self.messages:
            conn.pause_messages()
        with self.changed:
            self.messages.append(message)
            self.changed.notify_all()


def test_paused_messages_wait_in_order_until_resumed() -> None:
    """``pause_messages``: what was read stays in the core and the socket is not read until
    ``resume_messages``, which hands the held messages out in order."""
    handler = Pausing()
    with ServerThread(handler, options=Options(compression=False)) as st:
        sock = raw_connect(st.port)
        try:
            raw_handshake(sock)
            sock.sendall(b"".join(_frame(m) for m in (b"a", b"b", b"c")))  # one write: one read
            with handler.changed:
                assert handler.changed.wait_for(lambda: handler.messages, 10)
            conn = handler.conn
            assert conn is not None and conn.transport is not None
            assert st.call(lambda: (list(handler.messages), conn.transport.is_reading)) == (["a"], False)
            sock.sendall(_frame(b"d"))  # arrives while paused: not read
            st.call(conn.resume_messages)
            with handler.changed:
                assert handler.changed.wait_for(lambda: len(handler.messages) == 4, 10)
            assert handler.messages == ["a", "b", "c", "d"]
            assert st.call(lambda: conn.transport.is_reading)
        finally:
            sock.close()
