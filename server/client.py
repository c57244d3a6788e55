"""A blocking WebSocket client on a plain (or TLS) socket: ``connect()``, ``send()``, ``recv()``.

    from server.client import connect, ConnectionClosed

    with connect("ws://127.0.0.1:8765/chat", subprotocols=["chat"], timeout=5) as ws:
        ws.send("hello")
        print(ws.recv(timeout=5))
        for message in ws:          # until the server closes
            ...

Use one connection from one thread at a time.  Certificates are verified by default (``ca_file=`` adds
a CA, ``ssl_context=`` replaces the whole TLS setup).
"""

from __future__ import annotations

import socket
import ssl
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    Config,
    ConnectionState,
    LocalProtocolError,
    PerMessageDeflate,
    Pong,
    Rejected,
    TextMessage,
)
from wsproto_lite import ConnectionClosed as ClosedEvent
from wsproto_lite.extensions import ExtensionFactory

from .errors import ConnectionClosed, HandshakeError, InvalidURL
from .tls import client_context
from .urls import parse_url

__all__ = ["connect", "ClientWebSocket", "ConnectionClosed", "HandshakeError", "InvalidURL"]

_READ_SIZE = 256 * 1024


def connect(
    url: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = (),
    timeout: float | None = 10.0,
    compression: bool = True,
    max_message_size: int | None = 16 * 2**20,
    ca_file: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    origin: str | None = None,
    deflate: ExtensionFactory | None = None,
) -> ClientWebSocket:
    """Open a WebSocket connection and complete the opening handshake.

    ``deflate`` replaces the default ``PerMessageDeflate()`` offer.  ``timeout`` bounds the TCP connect,
    the TLS handshake and the WebSocket handshake together.
    Raises ``HandshakeError`` (with ``.status``) when the server refuses, ``OSError`` (refused,
    unreachable), ``ssl.SSLCertVerificationError``, ``TimeoutError`` or ``InvalidURL``.
    """
    parsed = parse_url(url)
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parsed.secure:
            ctx = ssl_context or client_context(ca_file)
            sock.settimeout(_remaining(deadline))
            sock = ctx.wrap_socket(sock, server_hostname=parsed.host)
        extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if origin is not None:
            extra.append(("Origin", origin))
        core = ClientConnection(
            host=parsed.host_header,
            target=parsed.target,
            subprotocols=list(subprotocols),
            extensions=([deflate or PerMessageDeflate()] if compression else []),
            extra_headers=extra,
            config=Config(max_message_size=max_message_size),
        )
        ws = ClientWebSocket(sock, core)
        ws._handshake(deadline)
        return ws
    except BaseException:
        sock.close()
        raise


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("timed out")
    return left


class ClientWebSocket:
    """An open client connection (made by :func:`connect`)."""

    def __init__(self, sock: socket.socket, core: ClientConnection) -> None:
        self.sock = sock
        self.core = core
        self.subprotocol: str | None = None
        self.response_headers: tuple[tuple[str, str], ...] = ()
        self.close_code: int | None = None
        """The peer's close code once closed (1006: no close frame arrived)."""
        self.close_reason = ""
        self._messages: deque[str | bytes] = deque()
        self._pongs: deque[bytes] = deque()
        self._rejected: Rejected | None = None
        self._accepted = False
        self._eof = False

    # -- handshake -----------------------------------------------------------------------------

    def _handshake(self, deadline: float | None) -> None:
        self._flush()
        while not self._accepted:
            if self._rejected is not None:
                r = self._rejected
                raise HandshakeError(r.status, r.reason, tuple(r.headers), r.body)
            if self.close_code is not None:
                raise ConnectionResetError("the server closed the connection during the handshake")
            self._step(deadline, "opening handshake")

    # -- messages ------------------------------------------------------------------------------

    def send(self, message: str | bytes, *, fin: bool = True) -> None:
        """Send a text (``str``) or binary message (``fin=False``: a fragment; finish with ``fin=True``).

        Raises ``ConnectionClosed`` if the connection is closing or closed.
        """
        try:
            if isinstance(message, str):
                self.core.send_text(message, fin=fin)
            else:
                self.core.send_binary(message, fin=fin)
        except LocalProtocolError:
            raise self._closed_error() from None
        if not self._flush():
            raise self._closed_error()

    def recv(self, timeout: float | None = None) -> str | bytes:
        """The next message (``str`` or ``bytes``); ``TimeoutError`` after ``timeout`` s.

        Raises ``ConnectionClosed`` once the connection is closed and every message was read.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._messages:
            if self.close_code is not None:
                raise self._closed_error()
            self._step(deadline, "recv")
        return self._messages.popleft()

    def __iter__(self) -> Iterator[str | bytes]:
        """Messages until the connection closes."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def ping(self, payload: bytes = b"", timeout: float | None = None) -> None:
        """Send a ping; with ``timeout``, wait that long for its pong (messages meanwhile are kept)."""
        try:
            self.core.send_ping(payload)
        except LocalProtocolError:
            raise self._closed_error() from None
        if not self._flush():
            raise self._closed_error()
        if timeout is None:
            return
        deadline = time.monotonic() + timeout
        while payload not in self._pongs:
            if self.close_code is not None:
                raise self._closed_error()
            self._step(deadline, "pong")
        self._pongs.remove(payload)

    def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> None:
        """Closing handshake (idempotent): send a close, wait up to ``timeout`` for the server's close
        and TCP close, then close the socket.  Unread messages are discarded."""
        deadline = time.monotonic() + timeout
        try:
            if self.core.state is ConnectionState.OPEN:
                self.core.close(code, reason)
                self._flush()
            while not self._eof and self.sock.fileno() != -1:
                self._step(deadline, "close")
        except (TimeoutError, OSError):
            pass
        finally:
            if self.core.state is not ConnectionState.CLOSED:
                self.core.abort()
            self._drain()
            self.sock.close()

    def __enter__(self) -> ClientWebSocket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosed:
        if self.close_code is not None:
            return ConnectionClosed(self.close_code, self.close_reason)
        received = self.core.close_received
        if received is not None:
            return ConnectionClosed(*received)
        return ConnectionClosed(1006, "connection closing")

    def _step(self, deadline: float | None, what: str) -> None:
        """Make progress: handle the next parsed event, or read more bytes when there is none.

        Events are pulled one at a time on purpose: a message is handed to the caller (who may answer
        it) before the core parses a broken frame that follows it in the same read.
        """
        event = self.core.next_event()
        if event is not None:
            self._handle(event)
            self._flush()
            return
        if self._eof or self.sock.fileno() == -1:
            self._eof = True
            if self.core.state is not ConnectionState.CLOSED:
                self.core.abort()
            self._drain()
            if self.close_code is None:
                self.close_code, self.close_reason = 1006, "connection lost"
            return
        try:
            self.sock.settimeout(_remaining(deadline))
            data = self.sock.recv(_READ_SIZE)
        except TimeoutError:
            raise TimeoutError(f"{what} timed out") from None
        except OSError:
            data = b""  # reset: like EOF, the core reports 1006
        if not data:
            self._eof = True
        self.core.receive_data(data)

    def _drain(self) -> None:
        """Handle every event available now."""
        for event in self.core.events():
            self._handle(event)
        self._flush()

    def _handle(self, event: object) -> None:
        if isinstance(event, TextMessage) or isinstance(event, BinaryMessage):
            self._messages.append(event.data)
        elif isinstance(event, Pong):
            self._pongs.append(event.payload)
            if len(self._pongs) > 64:
                self._pongs.popleft()
        elif isinstance(event, Accepted):
            self._accepted = True
            self.subprotocol = event.subprotocol
            self.response_headers = tuple(event.headers)
        elif isinstance(event, Rejected):
            self._rejected = event
        elif isinstance(event, ClosedEvent):
            self.close_code, self.close_reason = event.code, event.reason

    def _flush(self) -> bool:
        """Write what the core queued; False if the socket failed (the connection is then closed)."""
        data = self.core.data_to_send()
        if data and self.sock.fileno() != -1:
            try:
                self.sock.settimeout(None)
                self.sock.sendall(data)
            except OSError:
                self._eof = True
                self.core.abort()
                self._drain()
                return False
        if self.core.should_close_transport:
            self._eof = True
            self.sock.close()
        return True
