"""Helpers shared by the tests/server modules."""

from __future__ import annotations

from wsproto_lite.server.transport import BaseProtocol, SocketTransport


class Recorder(BaseProtocol):
    def __init__(self) -> None:
        self.transport: SocketTransport | None = None
        self.data = bytearray()
        self.eof = False
        self.lost: list[BaseException | None] = []
        self.events: list[str] = []

    def connection_made(self, transport: SocketTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")


# -- a WebSocket server running in a background loop thread ---------------------------------------

import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from wsproto_lite import CloseReceived, Config, Ping, Pong  # noqa: E402
from wsproto_lite._reader import MessageReader  # noqa: E402
from wsproto_lite.server.handler import Handler  # noqa: E402
from wsproto_lite.server.loop import EventLoop  # noqa: E402
from wsproto_lite.server.websocket import WebSocket  # noqa: E402
from wsproto_lite.server.ws_server import WebSocketServer  # noqa: E402


class Echo(Handler):
    """Echoes messages; records closes."""

    def __init__(self) -> None:
        self.closes: list[tuple[int, str]] = []
        self.closed = threading.Event()

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        conn.send(message)

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        self.closed.set()


class SteppedLoop(EventLoop):
    """An EventLoop whose clock a test can move forward: ``time()`` is ``time.monotonic()`` plus the
    seconds given to :meth:`advance` so far.

    A test that must act before a timer fires (or a rate limit refills) does not race a short delay: it
    configures a delay the test cannot reach by itself (minutes), does what it must, then jumps over
    the delay with ``advance``. Every timer of the loop (and everything reading ``loop.time()``, like
    the hub's rate limits) sees the jump.
    """

    def __init__(self) -> None:
        super().__init__()
        self.skew = 0.0

    def time(self) -> float:
        return time.monotonic() + self.skew

    def advance(self, seconds: float) -> None:
        """From any thread: move the clock ``seconds`` ahead; returns once the loop has done so (the timers
        now due run on its next iteration)."""

        def jump() -> None:
            self.skew += seconds

        call_in_loop(self, jump)


def call_in_loop(loop: EventLoop, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
    """Run ``fn(*args)`` in ``loop``'s thread, wait for it, and return its result (or raise its error)."""
    done = threading.Event()
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            box["error"] = exc
        done.set()

    loop.call_soon_threadsafe(run)
    assert done.wait(timeout), "the loop did not run the call in time"
    if "error" in box:
        raise box["error"]
    return box.get("value")


class ServerThread:
    """A WebSocketServer on 127.0.0.1:<free port> in its own loop thread (a :class:`SteppedLoop`)."""

    def __init__(self, handler: Handler | None = None, **kwargs: Any) -> None:
        self.loop = SteppedLoop()
        self.handler = handler or Echo()
        self.server = WebSocketServer(
            self.handler, host=kwargs.pop("host", "127.0.0.1"), port=0, loop=self.loop, **kwargs
        )
        self.changed = threading.Condition()
        original = self.server._finished

        def finished(conn: WebSocket) -> None:
            original(conn)
            with self.changed:
                self.changed.notify_all()

        self.server._finished = finished  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.loop.run_forever, name="ws-server", daemon=True)
        self.thread.start()

    def wait_connections(self, at_most: int, timeout: float = 10.0) -> bool:
        """Wait until the server holds at most ``at_most`` connections (woken by each finished one)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.server.connections) <= at_most, timeout)

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def url(self) -> str:
        scheme = "wss" if self.server.ssl_context else "ws"
        return f"{scheme}://127.0.0.1:{self.port}/"

    def call(self, fn: Any, *args: Any, timeout: float = 10.0) -> Any:
        """Run ``fn(*args)`` in the loop thread and return its result."""
        return call_in_loop(self.loop, fn, *args, timeout=timeout)

    def connection_count(self) -> int:
        return int(self.call(lambda: len(self.server.connections)))

    def stop(self) -> None:
        if self.thread.is_alive():
            self.call(self.server.close)
            self.loop.stop()
            self.thread.join(10)
        assert not self.thread.is_alive()
        self.loop.close()
        del self.server._finished  # the wrapper above refers back to us

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def raw_connect(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> socket.socket:
    """A plain blocking TCP socket to the server."""
    return socket.create_connection((host, port), timeout=timeout)


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def raw_handshake(sock: socket.socket) -> bytes:
    """Send an upgrade request on ``sock``, assert a 101; return the bytes that followed the head."""
    sock.sendall(UPGRADE)
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "server closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return head.split(b"\r\n\r\n", 1)[1]


def read_until_closed(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    """Everything the server sends until it closes the socket."""
    out = b""
    while len(out) < limit:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def close_frame_of(data: bytes) -> tuple[int, str]:
    """The code and reason of the close frame that ends what a server sent, read by the core's own reader
    (client side: unmasked frames); every frame before it must be a control frame that is not a close."""
    reader = MessageReader(Config(), expect_masked=False)
    reader.feed(data)
    events = []
    while (event := reader.next_event()) is not None:
        events.append(event)
    assert events and isinstance(events[-1], CloseReceived), events
    assert all(isinstance(e, (Ping, Pong)) for e in events[:-1]), events
    return events[-1].code, events[-1].reason


def assert_echo_works(url: str) -> None:
    """A fresh client gets an echo: the server survived whatever the test did."""
    from websockets.sync.client import connect

    with connect(url, open_timeout=10, close_timeout=5) as ws:
        ws.send("still alive?")
        assert ws.recv(timeout=10) == "still alive?"


class Digest(BaseProtocol):
    """Keeps only the count and a hash of what arrives: big transfers without holding them in memory."""

    def __init__(self) -> None:
        import hashlib

        self.transport: SocketTransport | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.lost: list[BaseException | None] = []

    def connection_made(self, transport: SocketTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.size += len(data)
        self.hash.update(data)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)
