"""The application-facing API: a Handler with callbacks, and the handshake decisions it returns.

class Chat(Handler):
    def handshake(self, conn, request):
        if request.cookies.get("token") != "s3cret":
            return Reject(401)
        return Accept(subprotocol="chat" if "chat" in request.subprotocols else None)

    def on_message(self, conn, message):
        conn.send(message)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wsproto_lite import HTTPRequest, Request

    from .websocket import WebSocket

__all__ = [
    "Accept",
    "Reject",
    "HTTPResponse",
    "DeferredResponse",
    "Handler",
    "HTTPHandler",
    "UPGRADE_REQUIRED",
]


@dataclass(frozen=True)
class Accept:
    """Accept the handshake, optionally choosing a subprotocol and adding response headers."""

    subprotocol: str | None = None
    headers: Sequence[tuple[str, str]] = ()


@dataclass(frozen=True)
class Reject:
    """Refuse the handshake with an HTTP status (401, 403, 404, ...)."""

    status: int = 403
    headers: Sequence[tuple[str, str]] = ()
    body: bytes = b""


@dataclass(frozen=True)
class HTTPResponse:
    """The answer to a plain HTTP request (e.g. a health check)."""

    status: int = 200
    headers: Sequence[tuple[str, str]] = field(default_factory=lambda: [("Content-Type", "text/plain")])
    body: bytes = b""


class DeferredResponse:
    """An :class:`HTTPResponse` that is not known yet: an ``http_handler`` returns one when the answer
    needs something the loop delivers later (a reply from a network service), and calls
    :meth:`resolve` once, in the loop thread, when it has the response.

    The connection keeps its handshake timeout meanwhile: a request not answered in time is aborted.
    """

    __slots__ = ("response", "_callback")

    def __init__(self) -> None:
        self.response: HTTPResponse | None = None
        self._callback: Callable[[HTTPResponse], None] | None = None

    def resolve(self, response: HTTPResponse) -> None:
        """Send ``response`` (later calls are ignored)."""
        if self.response is not None:
            return
        self.response = response
        callback, self._callback = self._callback, None
        if callback is not None:
            callback(response)

    def then(self, callback: Callable[[HTTPResponse], None]) -> None:
        """``callback(response)`` once resolved (at once if it already is); the I/O layer's hook."""
        if self.response is not None:
            callback(self.response)
        else:
            self._callback = callback


#: Answers plain (non-WebSocket) HTTP requests; without one the server replies 426.
HTTPHandler = Callable[["HTTPRequest"], "HTTPResponse | DeferredResponse"]

#: The answer to a plain HTTP request on a WebSocket-only endpoint (RFC 9110 §15.5.22, RFC 6455 §4.2.2).
UPGRADE_REQUIRED = HTTPResponse(
    426,
    (("Content-Type", "text/plain"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")),
    b"this is a WebSocket endpoint\n",
)


class Handler:
    """Subclass and override what you need; every callback runs in the event loop thread.

    Order per connection: ``handshake`` → ``on_open`` → ``on_message``* → ``on_close`` (exactly once
    after ``on_open``).  Don't block in a callback: it stalls every connection.
    """

    def handshake(self, conn: WebSocket, request: Request) -> Accept | Reject | None:
        """Server: decide on an upgrade request (path, query, headers, cookies, subprotocols).

        Return ``Accept(...)``, ``Reject(status)``, or None to accept without a subprotocol.
        """
        return None

    def on_open(self, conn: WebSocket) -> None:
        """The connection is open: ``conn.send()`` works from now on."""

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        """A whole message arrived: ``str`` for text, ``bytes`` for binary."""

    def on_pong(self, conn: WebSocket, payload: bytes) -> None:
        """A pong arrived (answers to keepalive pings included)."""

    def on_writable(self, conn: WebSocket) -> None:
        """The send buffer drained under the low watermark after having been over the high one."""

    def on_close(self, conn: WebSocket, code: int, reason: str) -> None:
        """The connection is closed; ``code`` is the peer's (1006: no close frame arrived)."""

    def on_connect_error(self, conn: WebSocket, error: BaseException) -> None:
        """Client: connecting, TLS or the handshake failed (``HandshakeError`` has ``.status``)."""
