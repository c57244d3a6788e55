"""Exceptions of the I/O layer and the adapters: one family, rooted in :class:`WebSocketError`.

The asyncio adapter raises these classes themselves (under websockets' names); the trio adapter's
trio-websocket-shaped ``ConnectionClosed`` and ``HandshakeError`` derive from :class:`WebSocketError` too.
"""

from __future__ import annotations

__all__ = [
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "HandshakeError",
    "InvalidURL",
    "WebSocketError",
]


class WebSocketError(Exception):
    """Root of every exception the I/O layer and the adapters raise to their users."""


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed; ``code``/``reason`` are the peer's (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"connection closed: {self.code}" + (f" {self.reason}" if self.reason else "")


class ConnectionClosedOK(ConnectionClosed):
    """Closed with 1000 (normal), 1001 (going away) or 1005 (no code) (the asyncio adapter's ``async for``
    ends quietly on it)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or the connection was lost (1006); the I/O layer raises it for any close."""


class HandshakeError(WebSocketError):
    """The server refused the upgrade (``status`` is its HTTP status; 101 if its 101 was invalid)."""

    def __init__(
        self, status: int, reason: str = "", headers: tuple[tuple[str, str], ...] = (), body: bytes = b""
    ) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body

    def __str__(self) -> str:
        return f"handshake failed: HTTP {self.status}" + (f" ({self.reason})" if self.reason else "")


class InvalidURL(WebSocketError, ValueError):
    """The URL is not a ws:// or wss:// URL."""
