"""What every connection of the I/O layer shares, server or client, blocking or on the loop.

Three things are built in one place so that the server, the loop client and the blocking client cannot
drift apart: the core (a ``ServerConnection`` or ``ClientConnection`` configured from :class:`Options`),
the transport (plain or TLS), and the outcome a connection reads off the core's events (the handshake's
answer, then the close code and reason). Everything protocol-related stays the core's decision; this
module only carries its answers to the application.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Sequence
from functools import lru_cache

from wsproto_lite import (
    Accepted,
    ClientConnection,
    CloseCode,
    Config,
    ConnectionClosed,
    Event,
    Rejected,
    ServerConnection,
)

from .errors import ConnectionClosedError, HandshakeError
from .loop import EventLoop
from .options import Options
from .tls import TLSTransport
from .transport import BaseProtocol, SocketTransport
from .urls import WSURL

__all__ = ["Endpoint", "client_core", "open_transport", "server_core"]

Headers = tuple[tuple[str, str], ...]


def _config(options: Options) -> Config:
    """The core's settings for ``options``: one frozen object shared by every connection made with the
    same limits (one per connection cost ~150 bytes each, issue 22)."""
    limits = (options.max_message_size, options.max_fragments, options.http_error_body)
    try:
        return _shared_config(*limits)
    except TypeError:  # an unhashable http_error_body hook: a Config of its own
        return Config(max_message_size=limits[0], max_fragments=limits[1], http_error_body=limits[2])


@lru_cache(maxsize=32)  # bounded: a process uses a handful of distinct option sets
def _shared_config(
    max_message_size: int | None,
    max_fragments: int | None,
    http_error_body: Callable[[int, str], tuple[str, bytes]] | None,
) -> Config:
    return Config(
        max_message_size=max_message_size, max_fragments=max_fragments, http_error_body=http_error_body
    )


def server_core(options: Options) -> ServerConnection:
    """The core of one server-side connection, with the limits and extensions of ``options``."""
    return ServerConnection(config=_config(options), extensions=options.extensions())


def client_core(
    url: WSURL, options: Options, subprotocols: Sequence[str] = (), headers: Sequence[tuple[str, str]] = ()
) -> ClientConnection:
    """The core of one client connection to ``url``; its upgrade request is queued at once."""
    return ClientConnection(
        host=url.host_header,
        target=url.target,
        subprotocols=list(subprotocols),
        extensions=options.extensions(),
        extra_headers=list(headers),
        config=_config(options),
    )


def open_transport(
    loop: EventLoop,
    sock: socket.socket,
    protocol: BaseProtocol,
    options: Options,
    ssl_context: ssl.SSLContext | None = None,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    peername: object = None,
) -> SocketTransport:
    """Drive ``sock`` from the loop for ``protocol``: TLS when ``ssl_context`` is given. ``peername``: the
    address ``accept()`` returned, if any."""
    high, low = options.write_high_water, options.write_low_water
    if ssl_context is None:
        return SocketTransport(loop, sock, protocol, high_water=high, low_water=low, peername=peername)
    return TLSTransport(
        loop,
        sock,
        protocol,
        ssl_context=ssl_context,
        server_side=server_side,
        server_hostname=server_hostname,
        high_water=high,
        low_water=low,
        peername=peername,
    )


class Endpoint:
    """The outcome of a connection as its core's events tell it; every connection class is one.

    ``record(event)`` reads the handshake's answer (``Accepted``: subprotocol and response headers;
    ``Rejected``: a :class:`HandshakeError` in ``error``) and the end (``ConnectionClosed``: ``close_code``
    and ``close_reason``): the core always ends with that event, 1006 when no close frame arrived (§7.1.5).
    """

    def __init__(self) -> None:
        self.subprotocol: str | None = None
        self.response_headers: Headers = ()
        """Client: the headers of the server's 101 response."""
        self.error: BaseException | None = None
        """Client: why connecting failed (``HandshakeError``, ``OSError``, ``ssl.SSLError``...)."""
        self.close_code: int | None = None
        """The peer's close code once closed (1006: no close frame arrived)."""
        self.close_reason = ""

    def record(self, event: Event) -> None:
        """Keep what ``event`` says about the handshake or the end of the connection."""
        if isinstance(event, Accepted):
            self.subprotocol = event.subprotocol
            self.response_headers = tuple(event.headers)
        elif isinstance(event, Rejected):
            self.error = HandshakeError(event.status, event.reason, tuple(event.headers), event.body)
        elif isinstance(event, ConnectionClosed):
            self.close_code, self.close_reason = event.code, event.reason

    def closed_error(self) -> ConnectionClosedError:
        """The exception for an operation on a closed connection."""
        if self.close_code is None:
            return ConnectionClosedError(CloseCode.ABNORMAL, "connection closing")
        return ConnectionClosedError(self.close_code, self.close_reason)
