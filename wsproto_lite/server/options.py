"""Tunables of a WebSocket connection (both roles) and of the server, in one dataclass."""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsproto_lite import DEFAULT_MAX_MESSAGE_SIZE, CloseCode, Config

from .keepalive import CLOSE_TIMEOUT, PING_INTERVAL, PING_TIMEOUT

if TYPE_CHECKING:
    from wsproto_lite.extensions import ExtensionFactory

__all__ = ["Options", "SLOW_CONSUMER_CLOSE_CODE"]

#: Close code sent to a peer whose unread data stayed over ``write_hard_limit`` too long.
#: 1008 (policy violation) rather than 1013 (try again later): the fault is the peer's (it does not read),
#: not a temporary server overload, and 1013 would invite a client that never reads to reconnect and repeat.
SLOW_CONSUMER_CLOSE_CODE = CloseCode.POLICY_VIOLATION


@dataclass
class Options:
    """Everything is optional; the defaults suit a public-facing server.

    Timeouts are in seconds (``None`` disables); sizes in bytes.
    """

    max_message_size: int | None = DEFAULT_MAX_MESSAGE_SIZE
    """Largest incoming message; over it the core closes with 1009 (``Config.max_message_size``)."""
    max_fragments: int | None = Config.max_fragments
    """Most frames in one incoming message (a bound on per-fragment overhead); over it: close 1009."""
    compression: bool = True
    """Negotiate permessage-deflate (RFC 7692)."""
    deflate: ExtensionFactory | None = None
    """A tuned ``wsproto_lite.PerMessageDeflate(...)`` (window bits, level...); None: the core's defaults."""
    handshake_timeout: float | None = 10.0
    """Time allowed for the opening handshake (TLS included) before the socket is dropped."""
    close_timeout: float | None = CLOSE_TIMEOUT
    """Time allowed for the peer to answer our close (or close TCP) before the socket is aborted."""
    ping_interval: float | None = PING_INTERVAL
    """Send a keepalive ping this often (``None``: no keepalive)."""
    ping_timeout: float | None = PING_TIMEOUT
    """Close with 1011 and drop the socket when the pong takes longer than this (``server.keepalive``)."""
    write_high_water: int = 1 << 20
    """Over this many unsent bytes: stop reading from the peer, ``conn.writable`` becomes False."""
    write_low_water: int | None = None
    """Under this (default ``write_high_water // 4``): resume reading and call ``on_writable``."""
    write_hard_limit: int = 16 << 20
    """Over this many unsent bytes ``send()`` drops messages (returns False); the slow-consumer timer runs."""
    slow_consumer_timeout: float = 10.0
    """Still over ``write_hard_limit`` after this long: close 1008 and drop the connection."""
    max_connections: int | None = None
    """Server: connections beyond this get an HTTP 503."""
    allowed_origins: Collection[str] | None = None
    """Server: if set, handshakes whose ``Origin`` is not listed get 403 (a missing Origin is allowed)."""
    same_origin: bool = False
    """Server: handshakes whose ``Origin`` is not the server's own (scheme, host and port of the ``Host``
    header and the connection) nor in ``allowed_origins`` get 403; see ``server/origins.py``."""
    http_error_body: Callable[[int, str], tuple[str, bytes]] | None = None
    """Server: ``(status, reason) -> (content type, body)`` for the HTTP errors the core answers itself
    (a malformed handshake, a head or a body over its limit); None: the reason as plain text."""

    def extensions(self) -> list[ExtensionFactory]:
        """The extension factories to offer (client) or accept (server)."""
        if not self.compression:
            return []
        if self.deflate is not None:
            return [self.deflate]
        from wsproto_lite import PerMessageDeflate

        return [PerMessageDeflate()]
