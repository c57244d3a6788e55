"""Events the core hands to the application: immutable records, one class per kind of thing that happened."""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

__all__ = [
    "Event",
    "Headers",
    "Request",
    "HTTPRequest",
    "Accepted",
    "Rejected",
    "TextMessage",
    "BinaryMessage",
    "TextChunk",
    "BinaryChunk",
    "Ping",
    "Pong",
    "CloseReceived",
    "ConnectionClosed",
]

#: Header lines as received, in order: ``((name, value), ...)``, decoded as latin-1.
Headers = tuple[tuple[str, str], ...]


def _header(headers: Headers, name: str) -> str | None:
    """Value of the first header called ``name`` (case-insensitive), or None."""
    name = name.lower()
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class Event:
    """Base class of every event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class HTTPRequest(Event):
    """A plain HTTP request (no WebSocket upgrade); answer it with ``conn.reject(status, ...)``."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""
    """The request body (``Content-Length`` framing, at most ``Config.max_http_body`` bytes)."""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        """The first header called ``name``, case-insensitively, or None."""
        return _header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Request(HTTPRequest):
    """A valid WebSocket opening handshake (RFC 6455 §4.2.1): ``conn.accept()`` or ``conn.reject()``."""

    subprotocols: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def host(self) -> str:
        return self.header("Host") or ""

    @property
    def origin(self) -> str | None:
        return self.header("Origin")

    @property
    def cookies(self) -> dict[str, str]:
        """Cookies sent with the request (``Cookie`` headers), name → value."""
        jar: SimpleCookie = SimpleCookie()
        for key, value in self.headers:
            if key.lower() == "cookie":
                try:
                    jar.load(value)
                except Exception:  # a malformed cookie header is ignored, not fatal
                    continue
        return {name: morsel.value for name, morsel in jar.items()}


@dataclass(frozen=True, slots=True)
class Accepted(Event):
    """Client: the server accepted the opening handshake (§4.2.2); the connection is OPEN."""

    subprotocol: str | None
    extensions: tuple[str, ...]
    headers: Headers


@dataclass(frozen=True, slots=True)
class Rejected(Event):
    """Client: the handshake failed: a non-101 response, or a 101 that breaks §4.1 (then status is 101)."""

    status: int
    headers: Headers
    body: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class TextMessage(Event):
    """A whole text message, validated UTF-8."""

    data: str


@dataclass(frozen=True, slots=True)
class BinaryMessage(Event):
    """A whole binary message."""

    data: bytes


@dataclass(frozen=True, slots=True)
class TextChunk(Event):
    """Part of a text message (``Config(stream_messages=True)``); ``final`` marks its last part."""

    data: str
    final: bool


@dataclass(frozen=True, slots=True)
class BinaryChunk(Event):
    """Part of a binary message (``Config(stream_messages=True)``); ``final`` marks its last part."""

    data: bytes
    final: bool


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """A ping arrived (§5.5.2); with ``auto_pong`` the pong is already queued."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """A pong arrived (§5.5.3), solicited or not."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class CloseReceived(Event):
    """The peer sent a close frame (§5.5.1); our reply is already queued. 1005: it had no code."""

    code: int
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ConnectionClosed(Event):
    """The connection is over; always the last event, exactly once.

    ``code`` is the peer's close code when it sent one, ours when we failed the connection, and 1006 when
    the transport ended without a close frame (§7.1.5). ``clean`` is true when both close frames crossed.
    """

    code: int
    reason: str = ""
    clean: bool = field(default=False)
