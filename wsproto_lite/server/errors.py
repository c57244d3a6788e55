"""Exceptions of the I/O layer."""

from __future__ import annotations

__all__ = ["ConnectionClosedError", "ConnectionClosed", "HandshakeError", "InvalidURL"]


class ConnectionClosedError(Exception):
    """The WebSocket connection is closed; ``code``/``reason`` are the peer's (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"connection closed: {self.code}" + (f" {self.reason}" if self.reason else "")


#: The former name of :class:`ConnectionClosedError` (the core's ``ConnectionClosed`` is an event).
ConnectionClosed = ConnectionClosedError


class HandshakeError(Exception):
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


class InvalidURL(ValueError):
    """The URL is not a ws:// or wss:// URL."""
