"""WebSocket servers and clients on asyncio, with the API Python users know from the websockets library::

    from .asyncio import serve, connect

    async def echo(ws):
        async for message in ws:  # str or bytes; ends when the peer closes normally
            await ws.send(message)

    async with serve(echo, "127.0.0.1", 8765) as server:
        await server.serve_forever()

    async with connect("ws://127.0.0.1:8765/") as ws:
        await ws.send("hello")
        print(await ws.recv())

Everything protocol-related is the core's (``wsproto_lite``);
:class:`wsproto_lite.adapters._protocol.CoreProtocol`
moves the bytes. This module adds the application-facing part: a bounded receive queue (``max_queue``
messages; past it the socket stops reading), ``send()`` that waits while the transport is above its
high-water mark, ``close()`` that waits for the closing handshake (at most ``close_timeout``), keepalive
pings, subprotocols, extra headers, TLS and permessage-deflate.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl as ssl_module
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any

from wsproto_lite import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Accepted,
    BinaryMessage,
    ClientConnection,
    CloseCode,
    Config,
    Event,
    ExtensionFactory,
    HTTPRequest,
    PerMessageDeflate,
    Pong,
    Rejected,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite import (
    ConnectionClosed as ClosedEvent,
)

from ..server.errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, HandshakeError
from ..server.keepalive import CLOSE_TIMEOUT, PING_INTERVAL, PING_TIMEOUT
from ..server.urls import parse_url
from ._protocol import CoreProtocol

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "InvalidStatus",
    "Server",
    "WebSocket",
    "connect",
    "serve",
]

logger = logging.getLogger("wsproto_lite.adapters.asyncio")

Data = str | bytes
Handler = Callable[["WebSocket"], Awaitable[None]]
#: ``process_request(request) -> None`` to go on with the handshake, or ``(status, headers, body)`` to
#: answer with that HTTP response instead (authentication, health checks).
ProcessRequest = Callable[[Request], "tuple[int, Sequence[tuple[str, str]], bytes] | None"]


class InvalidStatus(HandshakeError):
    """The server did not accept the opening handshake: its HTTP response (status 101: an invalid 101)."""

    def __init__(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, reason: str) -> None:
        super().__init__(status, reason, tuple(headers), body)

    def __str__(self) -> str:
        return f"server rejected the WebSocket handshake: {self.status} {self.reason}".rstrip()


def _closed_error(code: int, reason: str) -> ConnectionClosed:
    ok = code in (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS)
    return (ConnectionClosedOK if ok else ConnectionClosedError)(code, reason)


def _extensions(compression: str | None) -> list[ExtensionFactory]:
    if compression is None:
        return []
    if compression != "deflate":
        raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
    return [PerMessageDeflate()]


class WebSocket(CoreProtocol[ServerConnection | ClientConnection]):
    """One WebSocket connection, either role: ``recv``, ``send``, ``ping``, ``close``, ``async for``."""

    def __init__(
        self,
        conn: ServerConnection | ClientConnection,
        *,
        max_queue: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
    ) -> None:
        super().__init__(
            conn, ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=close_timeout
        )
        self.max_queue = max(1, max_queue)
        self._low_water = self.max_queue // 4  # hold at max_queue, release at a quarter of it
        self._messages: deque[Data] = deque()
        self._recv_waiter: asyncio.Future[None] | None = None
        self._pong_waiters: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._closed: asyncio.Future[None] = self.loop.create_future()
        #: Server role: the upgrade request (``path``, ``query``, ``headers``, ``header(name)``...).
        self.request: Request | None = None
        #: Client role: the server's response headers.
        self.response_headers: Sequence[tuple[str, str]] = ()
        #: Set once the connection is over: the close code and reason (1006: no close frame).
        self.close_code: int | None = None
        self.close_reason = ""

    # -- information -------------------------------------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, if any."""
        return self.conn.subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket gives it."""
        return self.transport.get_extra_info("peername")

    # -- receiving ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        cls = type(event)
        if cls is TextMessage or cls is BinaryMessage:
            if self.conn.close_sent is None:  # after our close, the application reads no more
                self._messages.append(event.data)  # type: ignore[attr-defined]
                self._wake()
                if len(self._messages) >= self.max_queue:
                    self.hold()
        elif cls is Pong:
            assert isinstance(event, Pong)
            self._pong(event.payload)
        elif cls is ClosedEvent:
            assert isinstance(event, ClosedEvent)
            self.close_code, self.close_reason = event.code, event.reason
            self.stop_keepalive()
            self._wake()
        else:
            self.on_handshake_event(event)

    def on_handshake_event(self, event: Event) -> None:
        """Request (server) or Accepted/Rejected (client): the role's part."""

    def _wake(self) -> None:
        if self._recv_waiter is not None and not self._recv_waiter.done():
            self._recv_waiter.set_result(None)

    def on_lost(self) -> None:
        self._wake()
        for waiter, _ in self._pong_waiters.values():
            waiter.cancel()
        self._pong_waiters.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    async def recv(self) -> Data:
        """The next message (str for text, bytes for binary); raises ConnectionClosed once closed."""
        messages = self._messages
        while not messages:
            if self.close_code is not None:
                raise _closed_error(self.close_code, self.close_reason)
            self._recv_waiter = self.loop.create_future()
            self.flush()  # nothing to read: whatever we sent leaves now
            await self._recv_waiter
        message = messages.popleft()
        if len(messages) <= self._low_water:
            self.release()  # no-op unless held: then take the next batch from the core, read again
        return message

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # -- sending -----------------------------------------------------------------------------------

    async def send(self, message: Data) -> None:
        """Send a text (str) or binary (bytes-like) message; waits while the transport is full."""
        conn = self.conn
        if not conn.can_send:
            raise _closed_error(*self._close_info())
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_binary(message)
        self.write_soon(len(message))
        if self._writing_paused:
            await self.drain()

    async def ping(self, data: bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; the returned future resolves to the round-trip time when its pong arrives."""
        if not self.conn.can_send:
            raise _closed_error(*self._close_info())
        payload = os.urandom(4) if data is None else bytes(data)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pong_waiters[payload] = (waiter, self.loop.time())
        self.conn.send_ping(payload)
        self.flush()
        return waiter

    def _pong(self, payload: bytes) -> None:
        found = self._pong_waiters.pop(payload, None)
        if found is not None and not found[0].done():
            found[0].set_result(self.loop.time() - found[1])

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2) and wait until the connection is closed."""
        if self.conn.can_send:
            self.conn.close(code, reason)
            self._messages.clear()  # the application is done reading
            self.release()  # read on until the peer's close reply
            self.flush()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the transport is closed (at most ``close_timeout`` after a close was sent)."""
        await asyncio.shield(self._closed)

    def _close_info(self) -> tuple[int, str]:
        if self.close_code is not None:
            return self.close_code, self.close_reason
        sent = self.conn.close_sent or self.conn.close_received
        return sent if sent is not None else (CloseCode.ABNORMAL, "connection lost")


# -- server ----------------------------------------------------------------------------------------


class ServerWebSocket(WebSocket):
    """The server role: the core's Request -> accept or reject -> the handler runs in its own task."""

    def __init__(self, server: Server) -> None:
        self.server = server
        conn = ServerConnection(Config(max_message_size=server.max_size), _extensions(server.compression))
        super().__init__(conn, **server.connection_options)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.connections.add(self)

    def on_lost(self) -> None:
        super().on_lost()
        self.server.connections.discard(self)

    def on_handshake_event(self, event: Event) -> None:
        conn = self.conn
        assert isinstance(conn, ServerConnection)
        if type(event) is HTTPRequest:
            conn.reject(426, [("Upgrade", "websocket"), ("Content-Type", "text/plain")], b"WebSocket only\n")
            return
        if type(event) is not Request:
            return
        assert isinstance(event, Request)
        self.request = event
        server = self.server
        try:
            answer = server.process_request(event) if server.process_request else None
        except Exception:
            logger.exception("error in process_request")
            answer = 500, [("Content-Type", "text/plain")], b"Internal Server Error\n"
        if answer is not None:
            conn.reject(*answer)
            return
        # §4.2.2 (5.4): at most one of the client's subprotocols; ours in our order of preference
        chosen = next((p for p in server.subprotocols if p in event.subprotocols), None)
        conn.accept(chosen, server.extra_headers)
        self.start_keepalive()
        task = self.loop.create_task(self._run_handler())
        server.tasks.add(task)
        task.add_done_callback(server.tasks.discard)

    async def _run_handler(self) -> None:
        code: int = CloseCode.NORMAL
        try:
            await self.server.handler(self)
        except ConnectionClosed:
            pass
        except Exception:
            logger.exception("error in the connection handler")
            # §7.4.1: an unexpected condition prevented us from fulfilling the request
            code = CloseCode.INTERNAL_ERROR
        await self.close(code)


class Server:
    """A listening WebSocket server: ``async with``, ``serve_forever()``, ``close()``, ``wait_closed()``."""

    def __init__(
        self,
        handler: Handler,
        host: str | None,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None,
        subprotocols: Iterable[str],
        extra_headers: Sequence[tuple[str, str]],
        process_request: ProcessRequest | None,
        compression: str | None,
        max_size: int | None,
        connection_options: dict[str, Any],
        create_server_options: dict[str, Any],
    ) -> None:
        self.handler = handler
        self.host, self.port, self.ssl = host, port, ssl
        self.subprotocols = tuple(subprotocols)
        self.extra_headers = tuple(extra_headers)
        self.process_request = process_request
        self.compression = compression
        _extensions(compression)  # fail early on a bad value
        self.max_size = max_size
        self.connection_options = connection_options
        self.create_server_options = create_server_options
        self.connections: set[ServerWebSocket] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self) -> Server:
        """Start listening."""
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: ServerWebSocket(self), self.host, self.port, ssl=self.ssl, **self.create_server_options
        )
        return self

    @property
    def sockets(self) -> tuple[Any, ...]:
        """The listening sockets (``server.sockets[0].getsockname()[1]`` is the port)."""
        return tuple(self.server.sockets) if self.server else ()

    def __await__(self) -> Generator[Any, None, Server]:
        return self.start().__await__()

    async def __aenter__(self) -> Server:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()

    async def serve_forever(self) -> None:
        """Serve until cancelled."""
        assert self.server is not None
        await self.server.serve_forever()

    def close(self, code: int = CloseCode.GOING_AWAY, reason: str = "") -> None:
        """Stop listening and close every connection (1001 going away by default)."""
        if self.server is not None:
            self.server.close()
        for ws in list(self.connections):
            if ws.conn.can_send:
                ws.conn.close(code, reason)
                ws.release()
                ws.flush()
            elif ws.close_timer is None:
                ws.transport.close()

    async def wait_closed(self) -> None:
        """Wait until the listener, every connection and every handler are done."""
        if self.server is not None:
            await self.server.wait_closed()
        while self.connections or self.tasks:
            waiting: list[Awaitable[Any]] = [ws.wait_closed() for ws in self.connections]
            await asyncio.gather(*waiting, *self.tasks, return_exceptions=True)


def serve(
    handler: Handler,
    host: str | None = None,
    port: int = 0,
    *,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Iterable[str] = (),
    extra_headers: Sequence[tuple[str, str]] = (),
    process_request: ProcessRequest | None = None,
    compression: str | None = "deflate",
    max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
    max_queue: int = 16,
    ping_interval: float | None = PING_INTERVAL,
    ping_timeout: float | None = PING_TIMEOUT,
    close_timeout: float = CLOSE_TIMEOUT,
    **create_server_options: Any,
) -> Server:
    """A WebSocket server calling ``await handler(ws)`` for each connection; use ``async with`` or ``await``.

    ``max_size``: bytes in one message (close 1009 above it; websockets' name for the core's
    ``max_message_size``, with its default, 16 MiB); ``max_queue``: messages received but not
    yet read before the socket stops reading; ``ping_interval``/``ping_timeout``: keepalive (None: off);
    ``close_timeout``: how long to wait for the peer's close reply. Other keyword arguments go to
    ``loop.create_server`` (``backlog``, ``reuse_port``...).
    """
    return Server(
        handler,
        host,
        port,
        ssl=ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        process_request=process_request,
        compression=compression,
        max_size=max_size,
        connection_options={
            "max_queue": max_queue,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        },
        create_server_options=create_server_options,
    )


# -- client ----------------------------------------------------------------------------------------


class ClientWebSocket(WebSocket):
    """The client role: the upgrade request goes out on connect; Accepted or Rejected settles ``opened``."""

    def __init__(self, conn: ClientConnection, **options: Any) -> None:
        super().__init__(conn, **options)
        self.opened: asyncio.Future[None] = self.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.flush()  # the upgrade request, queued by the core at construction

    def on_handshake_event(self, event: Event) -> None:
        if type(event) is Accepted:
            assert isinstance(event, Accepted)
            self.response_headers = event.headers
            self.start_keepalive()
            self.opened.set_result(None)
        elif type(event) is Rejected:
            assert isinstance(event, Rejected)
            self.opened.set_exception(InvalidStatus(event.status, event.headers, event.body, event.reason))

    def on_event(self, event: Event) -> None:
        super().on_event(event)
        if type(event) is ClosedEvent and not self.opened.done():
            self.opened.set_exception(_closed_error(self.close_code or CloseCode.ABNORMAL, self.close_reason))

    def on_lost(self) -> None:
        super().on_lost()
        if not self.opened.done():
            self.opened.set_exception(
                ConnectionClosedError(CloseCode.ABNORMAL, "connection lost during the handshake")
            )


class connect:  # noqa: N801 - used like a function: `ws = await connect(url)` or `async with connect(url)`
    """Open a WebSocket connection to ``url`` (ws:// or wss://); ``await`` it or use ``async with``.

    Options as for :func:`serve`, plus ``open_timeout`` (seconds for TCP, TLS and the handshake) and
    ``extra_headers`` sent with the upgrade request (e.g. ``[("Authorization", "Bearer ...")]``).
    """

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        subprotocols: Sequence[str] = (),
        extra_headers: Sequence[tuple[str, str]] = (),
        compression: str | None = "deflate",
        max_size: int | None = DEFAULT_MAX_MESSAGE_SIZE,
        max_queue: int = 16,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
        close_timeout: float = CLOSE_TIMEOUT,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = parse_url(url)
        if self.url.secure and ssl is None:
            ssl = ssl_module.create_default_context()
        self.ssl = ssl if self.url.secure else None
        self.subprotocols, self.extra_headers = subprotocols, extra_headers
        self.extensions = _extensions(compression)
        self.config = Config(max_message_size=max_size)
        self.options = {
            "max_queue": max_queue,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        }
        self.open_timeout = open_timeout
        self.ws: ClientWebSocket | None = None

    def _protocol(self) -> ClientWebSocket:
        url = self.url
        conn = ClientConnection(
            url.host_header, url.target, self.subprotocols, self.extensions, self.extra_headers, self.config
        )
        return ClientWebSocket(conn, **self.options)

    async def _open(self) -> ClientWebSocket:
        loop = asyncio.get_running_loop()
        url = self.url
        _, ws = await loop.create_connection(
            self._protocol, url.host, url.port, ssl=self.ssl, server_hostname=url.host if self.ssl else None
        )
        try:
            await ws.opened
        except BaseException:
            ws.opened.cancel()
            ws.transport.abort()
            raise
        return ws

    def __await__(self) -> Generator[Any, None, ClientWebSocket]:
        return asyncio.wait_for(self._open(), self.open_timeout).__await__()

    async def __aenter__(self) -> ClientWebSocket:
        self.ws = await self
        return self.ws

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self.ws is not None
        await self.ws.close()
