"""The client side on trio: connect to a host and port or a ws:// URL, with or without ``async with``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Unpack

import trio

from wsproto_lite import Accepted, ClientConnection, Rejected
from wsproto_lite import ConnectionClosed as CoreClosed  # ours is the exception the application sees

from ...server.errors import InvalidURL
from ...server.urls import host_header, parse_url
from .connection import WebSocketConnection
from .errors import ConnectionRejected, ConnectionTimeout, HandshakeError
from .settings import Headers, Options, Settings
from .streams import opening_handshake


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
                event = await opening_handshake(stream, core, settings.receive_buffer_size)
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
