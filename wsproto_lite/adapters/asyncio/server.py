"""The server role on asyncio: :class:`ServerWebSocket` answers the opening handshake and runs the
handler; :class:`Server` listens; ``serve()`` builds one with the websockets library's options."""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any

from wsproto_lite import (
    DEFAULT_MAX_MESSAGE_SIZE,
    CloseCode,
    Config,
    Event,
    HTTPRequest,
    Request,
    ServerConnection,
)

from ...server.errors import ConnectionClosed
from ...server.keepalive import CLOSE_TIMEOUT, PING_INTERVAL, PING_TIMEOUT
from .connection import WebSocket, compression_extensions

logger = logging.getLogger("wsproto_lite.adapters.asyncio")

Handler = Callable[["WebSocket"], Awaitable[None]]
#: ``process_request(request) -> None`` to go on with the handshake, or ``(status, headers, body)`` to
#: answer with that HTTP response instead (authentication, health checks).
ProcessRequest = Callable[[Request], "tuple[int, Sequence[tuple[str, str]], bytes] | None"]


class ServerWebSocket(WebSocket):
    """The server role: the core's Request -> accept or reject -> the handler runs in its own task."""

    def __init__(self, server: Server) -> None:
        self.server = server
        conn = ServerConnection(
            Config(max_message_size=server.max_size), compression_extensions(server.compression)
        )
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
        compression_extensions(compression)  # fail early on a bad value
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
                ws.close_transport()

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
