"""WebSockets on trio streams, driven by the sans-IO core; shaped like trio-websocket.

Server and client::

    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        async for message in ws:  # ends when the connection closes; ws.closed tells how
            await ws.send_message(message)

    trio.run(serve_websocket, echo, "127.0.0.1", 8000, None)

    async with open_websocket_url("ws://127.0.0.1:8000/") as ws:
        await ws.send_message("hello")
        print(await ws.get_message())

How the core is driven: an open connection is three tasks in one nursery (``WebSocketConnection._run``).

- The reader: ``receive_some`` -> ``core.receive_data`` -> ``core.events()``. Messages go into a bounded
  queue (``message_queue_size``); while it is full the reader neither parses nor reads (backpressure on
  the peer, and the application answers a message before a later bad frame fails the connection).
  ``ConnectionClosed`` ends it once the core says ``should_close_transport``; a close timer runs while
  ``close_expected``.
- The writer, the only task that writes to the stream: it sends what the core queued (handshake response,
  messages, pongs, close frames), then closes the stream once the reader is done.
- The keepalive (``ping_interval=None``: none), by the policy of ``wsproto_lite.server.keepalive``: a ping
  every ``ping_interval``; no pong within ``ping_timeout``: close 1011, then abort once it is written.

``send_message`` waits until at most ``write_limit`` bytes are waiting to be written (a peer that does
not read blocks its senders instead of growing a buffer), queues the message in the core, wakes the writer
and yields with a cancel-shielded checkpoint.

Cancellation:

- ``get_message()`` cancelled: no message is lost (trio memory channels promise this).
- ``send_message()``/``pong()`` cancelled: nothing was queued (the cancellation point comes before the
  queueing, the schedule point after it is shielded). What was queued goes out whole and in order: only the
  writer writes, so the stream never carries half a frame.
- ``ping()`` cancelled while waiting for its pong: the ping was sent; its pong is ignored.
- ``aclose()`` cancelled, or the nursery that runs the connection cancelled: the connection is aborted
  (transport closed at once, ``closed.code`` 1006).

Where it differs from trio-websocket: headers are ``(str, str)`` pairs; ``send_message`` returns once the
message is queued within ``write_limit``, not once it is written; ``CloseReason.name`` uses the core's names
(``NORMAL``, ``MESSAGE_TOO_BIG``...); a handler that raises gets its connection closed with 1011.
"""

from __future__ import annotations

import logging
import math
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypedDict, Unpack

try:
    import trio
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("wsproto_lite.adapters.trio needs trio: pip install 'wsproto-lite[trio]'") from exc

from wsproto_lite import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Accepted,
    BinaryMessage,
    ClientConnection,
    CloseCode,
    Config,
    Connection,
    ConnectionState,
    Event,
    HTTPRequest,
    PerMessageDeflate,
    Pong,
    Rejected,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite import ConnectionClosed as CoreClosed  # ours is the exception the application sees

from .._writer import coalesce
from ..server.errors import InvalidURL, WebSocketError
from ..server.keepalive import (
    CLOSE_TIMEOUT,
    KEEPALIVE_CLOSE_CODE,
    KEEPALIVE_CLOSE_REASON,
    PING_INTERVAL,
    PING_TIMEOUT,
)
from ..server.urls import host_header, parse_url

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "Endpoint",
    "HandshakeError",
    "Options",
    "Settings",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
]

logger = logging.getLogger(__name__)

Message = str | bytes
Headers = Sequence[tuple[str, str]]
Handler = Callable[["WebSocketRequest"], Awaitable[None]]


# -- settings, results, errors ---------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Per-connection limits and timers; every entry point takes them as keyword arguments."""

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE  # bytes of one message, decompressed; over: 1009
    message_queue_size: int = 1  # received messages waiting for get_message(); full: stop reading
    receive_buffer_size: int = 2**16  # bytes asked of one receive_some()
    write_limit: int = 2**16  # bytes waiting for the stream before senders wait
    compression: bool = True  # offer / accept permessage-deflate
    ping_interval: float | None = PING_INTERVAL  # keepalive: ping this often (seconds; None: off) ...
    ping_timeout: float | None = PING_TIMEOUT  # ... and close 1011 when its pong takes longer than this
    connect_timeout: float = 60  # TCP, TLS and the opening handshake
    disconnect_timeout: float = CLOSE_TIMEOUT  # the closing handshake, then flushing and closing the stream

    def __post_init__(self) -> None:
        if self.message_queue_size < 1:
            raise ValueError("message_queue_size must be at least 1")

    def core_config(self) -> Config:
        return Config(max_message_size=self.max_message_size)

    def extensions(self) -> list[PerMessageDeflate]:
        return [PerMessageDeflate()] if self.compression else []


class Options(TypedDict, total=False):
    """The keyword arguments that build :class:`Settings` (for type checkers)."""

    max_message_size: int | None
    message_queue_size: int
    receive_buffer_size: int
    write_limit: int
    compression: bool
    ping_interval: float | None
    ping_timeout: float | None
    connect_timeout: float
    disconnect_timeout: float


_CLOSE_NAMES = {value: name for name, value in vars(CloseCode).items() if isinstance(value, int)}


@dataclass(frozen=True)
class CloseReason:
    """How a connection ended: the close code (1006 when no close frame crossed) and reason."""

    code: int
    reason: str | None

    @property
    def name(self) -> str:
        if self.code in _CLOSE_NAMES:
            return _CLOSE_NAMES[self.code]
        if self.code in CloseCode.REGISTERED:
            return "REGISTERED"
        return "PRIVATE" if self.code in CloseCode.PRIVATE else "UNKNOWN"


class ConnectionClosed(WebSocketError):
    """Raised by get_message(), send_message(), ping() and pong() once the connection is closed."""

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(reason)
        self.reason = reason


class HandshakeError(WebSocketError):
    """The client's opening handshake failed."""


class ConnectionTimeout(HandshakeError):
    """The client's connection and opening handshake took longer than ``connect_timeout``."""


class ConnectionRejected(HandshakeError):
    """The server answered the opening handshake with an HTTP status other than 101."""

    def __init__(self, status_code: int, headers: Headers, body: bytes) -> None:
        super().__init__(f"server rejected the WebSocket handshake: HTTP {status_code}")
        self.status_code = status_code
        self.headers = tuple(headers)
        self.body = body


@dataclass(frozen=True)
class Endpoint:
    """One end of a connection, or a listening address."""

    address: str
    port: int
    is_ssl: bool

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        default = 443 if self.is_ssl else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{'wss' if self.is_ssl else 'ws'}://{host}{port}"


def _endpoint(stream: trio.abc.Stream, local: bool) -> Endpoint | None:
    is_ssl = isinstance(stream, trio.SSLStream)
    inner = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream
    if not isinstance(inner, trio.SocketStream):
        return None
    address = inner.socket.getsockname() if local else inner.socket.getpeername()
    return Endpoint(address[0], address[1], is_ssl)


def _as_bytes(data: bytes | bytearray) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)  # TLS streams may return a bytearray


# -- the connection --------------------------------------------------------------------------------


class WebSocketConnection:
    """An open WebSocket (after the opening handshake), on either side; made by accept() or connect."""

    def __init__(
        self, stream: trio.abc.Stream, core: Connection, settings: Settings, path: str, headers: Headers
    ) -> None:
        self._stream = stream
        self._core = core
        self._settings = settings
        #: The request target (path and query) of the opening handshake.
        self.path = path
        #: The other side's headers of the opening handshake (the request, or the response).
        self.handshake_headers = tuple(headers)
        self.local = _endpoint(stream, local=True)
        self.remote = _endpoint(stream, local=False)
        self._send_channel, self._receive_channel = trio.open_memory_channel[Message](
            settings.message_queue_size
        )
        self._outbox: list[bytes] = []  # taken from the core, not yet written
        self._outbox_size = 0
        self._reply_backlog = 0  # bytes of pongs and close replies queued since the outbox was last empty
        self._output_ready = trio.lowlevel.ParkingLot()  # the writer waits here for bytes
        self._drained = trio.lowlevel.ParkingLot()  # senders wait here for the outbox to shrink
        self._unread = 0  # messages in the queue
        self._taken = trio.lowlevel.ParkingLot()  # the reader waits here while the queue is full
        self._pings: dict[bytes, trio.Event] = {}  # in flight, oldest first
        self._close_reason: CloseReason | None = None
        self._reading_done = False
        self._scope = trio.CancelScope()  # all of the connection's tasks: cancelled = aborted
        self._writer_scope = trio.CancelScope()  # given a deadline when the reader is done
        self._finished = trio.Event()  # the transport is closed and the final event handled
        self._queue_output()  # the server's handshake response

    # -- what the application sees ---------------------------------------------------------------

    @property
    def closed(self) -> CloseReason | None:
        """None while open; then how the connection ended."""
        return self._close_reason

    @property
    def is_client(self) -> bool:
        return not self._core.is_server

    @property
    def is_server(self) -> bool:
        return self._core.is_server

    @property
    def subprotocol(self) -> str | None:
        return self._core.subprotocol

    async def get_message(self) -> Message:
        """The next message (str or bytes). Raises ConnectionClosed once closed and the queue is empty
        (a local close discards what was not read)."""
        try:
            message = await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._reason()) from None
        self._unread -= 1
        self._taken.unpark_all()
        return message

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get_message()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send_message(self, message: Message) -> None:
        """Queue a message (str: text, bytes: binary); waits while ``write_limit`` bytes are unwritten."""
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        await self._wait_for_room()
        if isinstance(message, str):
            self._core.send_text(message)
        else:
            self._core.send_binary(message)
        self._queue_output()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (or a pong to a later ping, RFC 6455 §5.5.3)."""
        payload = os.urandom(4) if payload is None else bytes(payload)
        await self._wait_for_room()
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already in flight")
        self._core.send_ping(payload)
        pong = self._pings[payload] = trio.Event()
        self._queue_output()
        try:
            await pong.wait()
            if payload in self._pings:  # woken by the close, not by a pong
                raise ConnectionClosed(self._reason())
        finally:
            self._pings.pop(payload, None)

    async def pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        await self._wait_for_room()
        self._core.send_pong(payload)
        self._queue_output()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str | None = None) -> None:
        """Start the closing handshake (if not started) and wait until the transport is closed.

        Idempotent. Unread messages are discarded. Cancelled, it aborts the connection.
        """
        self._receive_channel.close()  # what was not read is dropped
        self._unread = 0
        self._taken.unpark_all()
        if self._core.state is ConnectionState.OPEN:
            self._core.close(code, reason or "")
            self._queue_output()
            self._drained.unpark_all()  # a reader waiting for room starts its close timer
        try:
            await self._finished.wait()
        except BaseException:
            self._scope.cancel()
            raise

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<WebSocketConnection {role} {self.path!r} {self._core.state.name}>"

    # -- helpers of the application's side ---------------------------------------------------------

    def _reason(self) -> CloseReason:
        """Why sending or receiving is over: the final reason, or the close frame that started it."""
        if self._close_reason is not None:
            return self._close_reason
        code, reason = self._core.close_received or self._core.close_sent or (CloseCode.ABNORMAL, "")
        return CloseReason(code, reason or None)

    async def _wait_for_room(self) -> None:
        """Wait while the outbox is over the write limit; raise if sending is over. A cancellation point:
        the caller queues its frame right after, then yields with a cancel-shielded checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._core.can_send and self._outbox_size > self._settings.write_limit:
            await self._drained.park()
        if not self._core.can_send:
            raise ConnectionClosed(self._reason())

    def _queue_output(self) -> int:
        """Move what the core queued for the wire into the outbox, wake the writer; return the size."""
        chunks = self._core.buffers_to_send()
        if not chunks:
            return 0
        size = sum(map(len, chunks))
        self._outbox += chunks
        self._outbox_size += size
        self._output_ready.unpark_all()
        return size

    # -- the tasks ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Run the connection until its transport is closed (started by accept() or a connect)."""
        settings = self._settings
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    if settings.ping_interval is not None:
                        nursery.start_soon(self._keepalive, settings.ping_interval, settings.ping_timeout)
                    await self._write()
                    nursery.cancel_scope.cancel()  # the keepalive; the reader too if the stream broke
        finally:
            self._core.abort()  # no effect when the connection ended by the book
            for event in self._core.events():  # at most the final event; unread messages are lost
                if isinstance(event, CoreClosed):
                    self._closed(event)
            await trio.aclose_forcefully(self._stream)
            self._finished.set()

    async def _read(self) -> None:
        core, stream, settings = self._core, self._stream, self._settings
        close_deadline = math.inf
        gave_up = False
        try:
            while True:
                await self._handle_events()
                if core.should_close_transport:
                    break
                if core.close_expected and close_deadline == math.inf:
                    close_deadline = trio.current_time() + settings.disconnect_timeout
                data = None
                with trio.move_on_at(close_deadline) as close_timer:
                    if self._reply_backlog > settings.write_limit:  # a peer that pings and does not read:
                        await self._drained.park()  # read no more until it does (woken by aclose too)
                    else:
                        data = await stream.receive_some(settings.receive_buffer_size)
                if close_timer.cancelled_caught:  # the peer did not finish the closing handshake
                    gave_up = True
                    core.abort()
                elif data is not None:
                    core.receive_data(_as_bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            gave_up = True
            core.abort()
            await self._handle_events()
        finally:
            self._reading_done = True  # the writer flushes (the close frame) and closes the stream
            flush_time = 0 if gave_up else settings.disconnect_timeout
            self._writer_scope.deadline = trio.current_time() + flush_time
            self._output_ready.unpark_all()

    async def _handle_events(self) -> None:
        for event in self._core.events():
            if isinstance(event, (TextMessage, BinaryMessage)):
                try:
                    self._send_channel.send_nowait(event.data)
                except trio.BrokenResourceError:  # the application closed its end: discard
                    continue
                # Parse no further while the queue is full: the application answers the messages before
                # it first, so an echo goes out before the close that fails on a later bad frame.
                self._unread += 1
                while self._unread >= self._settings.message_queue_size:
                    await self._taken.park()
                continue
            self._reply_backlog += self._queue_output()  # a pong or a close reply, queued by the core
            if isinstance(event, Pong):
                self._pong_received(event.payload)
            elif isinstance(event, CoreClosed):
                self._closed(event)
        self._queue_output()

    def _pong_received(self, payload: bytes) -> None:
        if payload in self._pings:  # it answers its ping and every earlier one
            for key in list(self._pings):
                self._pings.pop(key).set()
                if key == payload:
                    break

    def _closed(self, event: CoreClosed) -> None:
        self._close_reason = CloseReason(event.code, event.reason or None)
        self._send_channel.close()  # get_message() raises once the queue is empty
        for pong in self._pings.values():
            pong.set()
        self._drained.unpark_all()

    async def _write(self) -> None:
        """Write the outbox until the reader is done and all is written, then close the stream."""
        outbox = self._outbox
        with self._writer_scope:
            try:
                while outbox or not self._reading_done:
                    if not outbox:
                        await self._output_ready.park()
                        continue
                    pieces = coalesce(outbox)  # small pieces joined; a large payload is sent as it is
                    outbox.clear()
                    for data in pieces:
                        await self._stream.send_all(data)
                        self._outbox_size -= len(data)
                    if not outbox:
                        self._reply_backlog = 0
                    self._drained.unpark_all()
                await self._stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _keepalive(self, interval: float, timeout: float | None) -> None:
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(math.inf if timeout is None else timeout) as waiting:
                try:
                    await self.ping()
                except ConnectionClosed:
                    return
            if waiting.cancelled_caught:
                logger.info("%r: no pong within %s s, closing", self, timeout)
                await self._fail_unresponsive(timeout or 0.0)
                return

    async def _fail_unresponsive(self, timeout: float) -> None:
        """The keepalive policy for a missing pong: close 1011, and abort once that is written (at most
        ``timeout`` later) instead of waiting for the reply of a peer that answers nothing."""
        if self._core.can_send:
            self._core.close(KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON)
            self._queue_output()
            with trio.move_on_after(timeout):
                while self._outbox_size > 0:
                    await self._drained.park()
        self._scope.cancel()


# -- the opening handshake, both roles --------------------------------------------------------------


async def _opening_handshake(stream: trio.abc.Stream, core: Connection, receive_size: int) -> Event:
    """Write the core's output and feed it input until the handshake has an outcome; return that event."""
    while True:
        output = core.data_to_send()
        if output:
            await stream.send_all(output)
        for event in core.events():
            if isinstance(event, (HTTPRequest, Accepted, Rejected, CoreClosed)):  # Request is an HTTPRequest
                return event
        core.receive_data(_as_bytes(await stream.receive_some(receive_size)))


async def _answer_and_close(stream: trio.abc.Stream, core: Connection, timeout: float) -> None:
    """Write the core's HTTP answer (an error or a rejection) and close the stream."""
    with trio.move_on_after(timeout):
        try:
            await stream.send_all(core.data_to_send())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
    await trio.aclose_forcefully(stream)


# -- server ----------------------------------------------------------------------------------------


class WebSocketRequest:
    """An opening handshake waiting for the handler's answer: ``await accept()`` or ``await reject()``."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        core: ServerConnection,
        request: Request,
        settings: Settings,
        nursery: trio.Nursery,  # where the accepted connection's tasks run
    ) -> None:
        self._stream = stream
        self._core = core
        self._request = request
        self._settings = settings
        self._nursery = nursery
        self.connection: WebSocketConnection | None = None
        self.answered = False
        self.local = _endpoint(stream, local=True)
        self.remote = _endpoint(stream, local=False)

    @property
    def path(self) -> str:
        """The request target: path and query."""
        return self._request.target

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return self._request.headers

    @property
    def subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered, in its order of preference."""
        return self._request.subprotocols

    async def accept(
        self, *, subprotocol: str | None = None, extra_headers: Headers | None = None
    ) -> WebSocketConnection:
        """Accept the handshake; the core checks ``subprotocol`` was offered (LocalProtocolError if not)."""
        self._check_unanswered()
        self._core.accept(subprotocol, extra_headers or ())  # may refuse: then the request is still open
        self.answered = True
        self.connection = WebSocketConnection(
            self._stream, self._core, self._settings, self.path, self.headers
        )
        self._nursery.start_soon(self.connection._run)
        await trio.lowlevel.checkpoint()
        return self.connection

    async def reject(
        self, status_code: int, *, extra_headers: Headers | None = None, body: bytes | None = None
    ) -> None:
        """Answer with an HTTP error and close the stream."""
        self._check_unanswered()
        self._core.reject(status_code, extra_headers or (), body or b"")
        self.answered = True
        await _answer_and_close(self._stream, self._core, self._settings.disconnect_timeout)

    def _check_unanswered(self) -> None:
        if self.answered:
            raise RuntimeError("this request was already accepted or rejected")


class WebSocketServer:
    """Serves WebSockets on trio listeners: each connection's request goes to ``handler``."""

    def __init__(
        self,
        handler: Handler,
        listeners: Sequence[trio.abc.Listener[Any]],
        *,
        handler_nursery: trio.Nursery | None = None,
        **options: Unpack[Options],
    ) -> None:
        self._handler = handler
        self._listeners = list(listeners)
        self._handler_nursery = handler_nursery
        self._settings = Settings(**options)

    @property
    def listeners(self) -> list[Endpoint | str]:
        """Where the server listens (a str for a listener that is not TCP)."""
        endpoints: list[Endpoint | str] = []
        for listener in self._listeners:
            is_ssl = isinstance(listener, trio.SSLListener)
            inner = listener.transport_listener if isinstance(listener, trio.SSLListener) else listener
            if isinstance(inner, trio.SocketListener):
                address = inner.socket.getsockname()
                endpoints.append(Endpoint(address[0], address[1], is_ssl))
            else:
                endpoints.append(repr(listener))
        return endpoints

    @property
    def port(self) -> int:
        """The port, when the server has exactly one TCP listener (handy with port 0 in tests)."""
        endpoints = self.listeners
        if len(endpoints) != 1 or not isinstance(endpoints[0], Endpoint):
            raise RuntimeError(f"port is defined for one TCP listener, not {endpoints}")
        return endpoints[0].port

    async def run(self, *, task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(self)`` once listening."""
        async with trio.open_nursery() as nursery:
            serve = partial(
                trio.serve_listeners,
                self._handle_connection,
                self._listeners,
                handler_nursery=self._handler_nursery,
            )
            await nursery.start(serve)
            task_status.started(self)

    async def _handle_connection(self, stream: trio.abc.Stream) -> None:
        settings = self._settings
        core = ServerConnection(settings.core_config(), settings.extensions())
        try:
            try:
                with trio.fail_after(settings.connect_timeout):
                    event = await _opening_handshake(stream, core, settings.receive_buffer_size)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not isinstance(event, Request):
                if isinstance(event, HTTPRequest):  # plain HTTP: this server speaks WebSocket only
                    core.reject(426, [("Upgrade", "websocket")], b"This service requires WebSocket.\n")
                await _answer_and_close(stream, core, settings.disconnect_timeout)
                return
            async with trio.open_nursery() as nursery:
                await self._run_handler(WebSocketRequest(stream, core, event, settings, nursery))
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_handler(self, request: WebSocketRequest) -> None:
        """Run the handler; then close its connection (1011 if it raised), or reject if it never answered."""
        code, reason = CloseCode.NORMAL, None
        try:
            await self._handler(request)
        except ConnectionClosed:  # the handler let the end of its connection propagate: a normal end
            pass
        except Exception:
            logger.exception("WebSocket handler failed on %s", request.path)
            code, reason = CloseCode.INTERNAL_ERROR, "internal error"
        if request.connection is not None:
            await request.connection.aclose(code, reason)
        elif not request.answered:
            await request.reject(500 if code == CloseCode.INTERNAL_ERROR else 403)


async def serve_websocket(
    handler: Handler,
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None = None,
    *,
    handler_nursery: trio.Nursery | None = None,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[Options],
) -> None:
    """Listen on ``host:port`` (TLS with ``ssl_context``) and serve until cancelled."""
    listeners: Sequence[trio.abc.Listener[Any]]
    if ssl_context is None:
        listeners = await trio.open_tcp_listeners(port, host=host)
    else:
        listeners = await trio.open_ssl_over_tcp_listeners(
            port, ssl_context, host=host, https_compatible=True
        )
    server = WebSocketServer(handler, listeners, handler_nursery=handler_nursery, **options)
    await server.run(task_status=task_status)


# -- client ----------------------------------------------------------------------------------------


async def connect_websocket(
    nursery: trio.Nursery,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None = None,
    extra_headers: Headers | None = None,
    **options: Unpack[Options],
) -> WebSocketConnection:
    """Connect and run the opening handshake; the connection's tasks run in ``nursery``."""
    settings = Settings(**options)
    stream: trio.abc.Stream
    try:
        with trio.fail_after(settings.connect_timeout):
            if use_ssl:
                context = ssl.create_default_context() if use_ssl is True else use_ssl
                stream = await trio.open_ssl_over_tcp_stream(
                    host, port, ssl_context=context, https_compatible=True
                )
            else:
                stream = await trio.open_tcp_stream(host, port)
            try:
                core = ClientConnection(
                    host_header(host, port, bool(use_ssl)),
                    resource,
                    subprotocols=subprotocols or (),
                    extensions=settings.extensions(),
                    extra_headers=extra_headers or (),
                    config=settings.core_config(),
                )
                event = await _opening_handshake(stream, core, settings.receive_buffer_size)
            except BaseException:
                await trio.aclose_forcefully(stream)
                raise
    except trio.TooSlowError:
        raise ConnectionTimeout(
            f"no WebSocket to {host}:{port} within {settings.connect_timeout} s"
        ) from None
    except trio.BrokenResourceError as exc:
        raise HandshakeError(f"connection lost during the handshake: {exc}") from exc
    if not isinstance(event, Accepted):
        await trio.aclose_forcefully(stream)
        if isinstance(event, Rejected) and event.status >= 200:
            raise ConnectionRejected(event.status, event.headers, event.body)
        raise HandshakeError(event.reason if isinstance(event, (Rejected, CoreClosed)) else repr(event))
    connection = WebSocketConnection(stream, core, settings, resource, event.headers)
    nursery.start_soon(connection._run)
    return connection


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Sequence[str] | None = None,
    extra_headers: Headers | None = None,
    **options: Unpack[Options],
) -> AsyncIterator[WebSocketConnection]:
    """``async with open_websocket(...) as ws``: connect, and close (``aclose()``) on the way out."""
    error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                connection = await connect_websocket(
                    nursery,
                    host,
                    port,
                    resource,
                    use_ssl=use_ssl,
                    subprotocols=subprotocols,
                    extra_headers=extra_headers,
                    **options,
                )
                try:
                    yield connection
                finally:
                    await connection.aclose()
            except BaseException as exc:
                # Raised again outside the nursery: the caller sees its own exception, not an ExceptionGroup.
                error = exc
        if error is not None:
            raise error
    finally:
        error = None  # no cycle frame -> error -> traceback -> frame (the cyclic gc may be off)


def _parse_url(url: str, ssl_context: ssl.SSLContext | None) -> tuple[str, int, str, bool | ssl.SSLContext]:
    parsed = parse_url(url)  # InvalidURL (a ValueError) when it is not a ws:// or wss:// URL
    if not parsed.secure and ssl_context is not None:
        raise InvalidURL(f"an ssl_context needs a wss:// URL, not {url!r}")
    use_ssl: bool | ssl.SSLContext = (ssl_context or True) if parsed.secure else False
    return parsed.host, parsed.port, parsed.target, use_ssl


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: Headers | None = None,
    **options: Unpack[Options],
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """``async with open_websocket_url("ws://host:port/path") as ws``."""
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    return open_websocket(
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        **options,
    )


async def connect_websocket_url(
    nursery: trio.Nursery,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Sequence[str] | None = None,
    extra_headers: Headers | None = None,
    **options: Unpack[Options],
) -> WebSocketConnection:
    """Like :func:`connect_websocket`, from a URL."""
    host, port, resource, use_ssl = _parse_url(url, ssl_context)
    return await connect_websocket(
        nursery,
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        **options,
    )


# -- python -m wsproto_lite.adapters.trio: an echo server
# -------------------------------------------------------


async def _echo(request: WebSocketRequest) -> None:
    ws = await request.accept(subprotocol=request.subprotocols[0] if request.subprotocols else None)
    async for message in ws:
        await ws.send_message(message)


async def _serve_echo(host: str, port: int, max_message_size: int) -> None:
    async with trio.open_nursery() as nursery:
        serve = partial(serve_websocket, _echo, host, port, None, max_message_size=max_message_size)
        await nursery.start(serve)
        print(f"echo server on ws://{host}:{port}/ (trio)", flush=True)  # once listening


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m wsproto_lite.adapters.trio [--host H] [--port P]``: an echo server, until Ctrl-C."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m wsproto_lite.adapters.trio", description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9002)
    parser.add_argument("--max-message-size", type=int, default=DEFAULT_MAX_MESSAGE_SIZE)
    args = parser.parse_args(argv)
    try:
        trio.run(_serve_echo, args.host, args.port, args.max_message_size)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
