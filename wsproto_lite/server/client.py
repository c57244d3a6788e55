"""A blocking WebSocket client on a plain (or TLS) socket: ``connect()``, ``send()``, ``recv()``.

    from wsproto_lite.server.client import connect, ConnectionClosedError

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
    BinaryMessage,
    ClientConnection,
    CloseCode,
    ConnectionState,
    Event,
    LocalProtocolError,
    Pong,
    TextMessage,
)
from wsproto_lite.extensions import ExtensionFactory

from .endpoint import Endpoint, client_core
from .errors import ConnectionClosed, ConnectionClosedError, HandshakeError, InvalidURL
from .options import Options
from .tls import client_context
from .transport import send_pieces
from .urls import parse_url

__all__ = [
    "connect",
    "ClientWebSocket",
    "ConnectionClosed",
    "ConnectionClosedError",
    "HandshakeError",
    "InvalidURL",
]

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
    options: Options | None = None,
) -> ClientWebSocket:
    """Open a WebSocket connection and complete the opening handshake.

    ``deflate`` replaces the default ``PerMessageDeflate()`` offer; ``options`` (the same
    :class:`~wsproto_lite.server.options.Options` as the loop client's) replaces ``compression``,
    ``max_message_size``
    and ``deflate`` at once.  ``timeout`` bounds the TCP connect, the TLS handshake and the WebSocket
    handshake together.  Raises ``HandshakeError`` (with ``.status``) when the server refuses, ``OSError``
    (refused, unreachable), ``ssl.SSLCertVerificationError``, ``TimeoutError`` or ``InvalidURL``.
    """
    parsed = parse_url(url)
    if options is None:
        options = Options(max_message_size=max_message_size, compression=compression, deflate=deflate)
    extra = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    if origin is not None:
        extra.append(("Origin", origin))
    deadline = None if timeout is None else time.monotonic() + timeout
    sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if parsed.secure:
            ctx = ssl_context or client_context(ca_file)
            sock.settimeout(_remaining(deadline))
            sock = ctx.wrap_socket(sock, server_hostname=parsed.host)
        ws = ClientWebSocket(sock, client_core(parsed, options, subprotocols, extra))
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


class ClientWebSocket(Endpoint):
    """An open client connection (made by :func:`connect`)."""

    def __init__(self, sock: socket.socket, core: ClientConnection) -> None:
        super().__init__()
        self.sock = sock
        self.core = core
        self._messages: deque[str | bytes] = deque()
        self._pongs: deque[bytes] = deque()

    # -- handshake -----------------------------------------------------------------------------

    def _handshake(self, deadline: float | None) -> None:
        self._flush()
        while self.core.state is ConnectionState.CONNECTING:
            self._step(deadline, "opening handshake")
        if self.core.state is ConnectionState.CLOSED:
            self._lose_socket()  # the core's Rejected (-> self.error) and ConnectionClosed
            raise self._handshake_failure()
        # OPEN: the core's next event is Accepted; messages after it wait in the core for recv()
        accepted = self.core.next_event()
        assert accepted is not None
        self._handle(accepted)

    def _handshake_failure(self) -> BaseException:
        """Why the handshake failed, no longer kept here: once raised, its traceback holds our frames."""
        error, self.error = self.error, None
        return error or ConnectionResetError("the server closed the connection during the handshake")

    # -- messages ------------------------------------------------------------------------------

    def send(self, message: str | bytes, *, fin: bool = True) -> None:
        """Send a text (``str``) or binary message (``fin=False``: a fragment; finish with ``fin=True``).

        Raises ``ConnectionClosedError`` if the connection is closing or closed.
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

        Raises ``ConnectionClosedError`` once the connection is closed and every message was read.
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
            except ConnectionClosedError:
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

    def close(self, code: int = CloseCode.NORMAL, reason: str = "", timeout: float = 5.0) -> None:
        """Closing handshake (idempotent): send a close, wait up to ``timeout`` for the server's close
        and TCP close, then close the socket.  Unread messages are discarded."""
        deadline = time.monotonic() + timeout
        try:
            if self.core.state is ConnectionState.OPEN:
                self.core.close(code, reason)
                self._flush()
            while self.sock.fileno() != -1:
                self._step(deadline, "close")
        except (TimeoutError, OSError):
            pass
        finally:
            self._lose_socket()

    def __enter__(self) -> ClientWebSocket:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------------

    def _closed_error(self) -> ConnectionClosedError:
        received = self.core.close_received
        if self.close_code is None and received is not None:
            return ConnectionClosedError(*received)
        return self.closed_error()

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
        if self.sock.fileno() == -1:
            self._lose_socket()
            return
        try:
            self.sock.settimeout(_remaining(deadline))
            data = self.sock.recv(_READ_SIZE)
        except TimeoutError:
            raise TimeoutError(f"{what} timed out") from None
        except OSError:
            data = b""  # reset: like EOF, the core reports 1006
        self.core.receive_data(data)  # after EOF the core's events end with ConnectionClosed
        if not data:
            self._flush()  # the core may want the socket closed now (§7.1.1)

    def _lose_socket(self) -> None:
        """The socket is gone or given up on: close it; the core reports the end (1006 if unclean)."""
        if self.core.state is not ConnectionState.CLOSED:
            self.core.abort()
        self._drain()
        self.sock.close()

    def _drain(self) -> None:
        """Handle every event available now."""
        for event in self.core.events():
            self._handle(event)
        self._flush()

    def _handle(self, event: Event) -> None:
        if isinstance(event, (TextMessage, BinaryMessage)):
            self._messages.append(event.data)
        elif isinstance(event, Pong):
            self._pongs.append(event.payload)
            if len(self._pongs) > 64:
                self._pongs.popleft()
        else:
            self.record(event)

    def _flush(self) -> bool:
        """Write what the core queued; False if the socket failed (the connection is then closed)."""
        chunks = self.core.buffers_to_send()  # no payload copied to join it to its header
        if chunks and self.sock.fileno() != -1:
            try:
                self.sock.settimeout(None)
                _send_all(self.sock, chunks)
            except OSError:
                self._lose_socket()
                return False
        if self.core.should_close_transport:
            self.sock.close()
        return True


def _send_all(sock: socket.socket, chunks: list[bytes]) -> None:
    """Write ``chunks`` in order without joining them: with ``sendmsg`` (resuming a partial write inside a
    piece), or piece by piece where there is none (TLS sockets; the core already joined small pieces)."""
    if len(chunks) == 1 or isinstance(sock, ssl.SSLSocket) or not hasattr(sock, "sendmsg"):
        for chunk in chunks:
            sock.sendall(chunk)
        return
    send_pieces(sock, deque(memoryview(chunk) for chunk in chunks))
