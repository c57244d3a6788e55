"""The client role on asyncio: ``connect(url)``, awaited or with ``async with``; :class:`InvalidStatus`
when the server answers the handshake with anything but a valid 101."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any

from wsproto_lite import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Accepted,
    ClientConnection,
    CloseCode,
    Config,
    Event,
    Rejected,
)
from wsproto_lite import (
    ConnectionClosed as ClosedEvent,
)

from ...server.errors import ConnectionClosedError, HandshakeError
from ...server.keepalive import CLOSE_TIMEOUT, PING_INTERVAL, PING_TIMEOUT
from ...server.urls import parse_url
from .connection import WebSocket, closed_error, compression_extensions


class InvalidStatus(HandshakeError):
    """The server did not accept the opening handshake: its HTTP response (status 101: an invalid 101)."""

    def __init__(self, status: int, headers: Sequence[tuple[str, str]], body: bytes, reason: str) -> None:
        super().__init__(status, reason, tuple(headers), body)

    def __str__(self) -> str:
        return f"server rejected the WebSocket handshake: {self.status} {self.reason}".rstrip()


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
            self.opened.set_exception(closed_error(self.close_code or CloseCode.ABNORMAL, self.close_reason))

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
        self.extensions = compression_extensions(compression)
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
