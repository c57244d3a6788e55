"""How a trio connection ended (:class:`CloseReason`), and the errors the application catches."""

from __future__ import annotations

from dataclasses import dataclass

from wsproto_lite import CloseCode

from ...server.errors import WebSocketError
from .settings import Headers

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
