"""One WebSocket connection on asyncio, either role: :class:`WebSocket` (``recv``, ``send``, ``ping``,
``close``, ``async for``), and what both roles' options share."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from wsproto_lite import (
    BinaryMessage,
    ClientConnection,
    CloseCode,
    Event,
    ExtensionFactory,
    PerMessageDeflate,
    Pong,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite import (
    ConnectionClosed as ClosedEvent,
)

from ...server.errors import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from .._protocol import CoreProtocol

Data = str | bytes


def closed_error(code: int, reason: str) -> ConnectionClosed:
    ok = code in (CloseCode.NORMAL, CloseCode.GOING_AWAY, CloseCode.NO_STATUS)
    return (ConnectionClosedOK if ok else ConnectionClosedError)(code, reason)


def compression_extensions(compression: str | None) -> list[ExtensionFactory]:
    if compression is None:
        return []
    if compression != "deflate":
        raise ValueError(f"compression must be 'deflate' or None, not {compression!r}")
    return [PerMessageDeflate()]


class WebSocket(CoreProtocol[ServerConnection | ClientConnection]):
    """One WebSocket connection, either role: ``recv``, ``send``, ``ping``, ``close``, ``async for``."""

    def __init__(
        self,
        conn: ServerConnection | ClientConnection,
        *,
        max_queue: int,
        ping_interval: float | None,
        ping_timeout: float | None,
        close_timeout: float,
    ) -> None:
        super().__init__(
            conn, ping_interval=ping_interval, ping_timeout=ping_timeout, close_timeout=close_timeout
        )
        self.max_queue = max(1, max_queue)
        self._low_water = self.max_queue // 4  # hold at max_queue, release at a quarter of it
        self._messages: deque[Data] = deque()
        self._recv_waiter: asyncio.Future[None] | None = None
        self._pong_waiters: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._closed: asyncio.Future[None] = self.loop.create_future()
        #: Server role: the upgrade request (``path``, ``query``, ``headers``, ``header(name)``...).
        self.request: Request | None = None
        #: Client role: the server's response headers.
        self.response_headers: Sequence[tuple[str, str]] = ()
        #: Set once the connection is over: the close code and reason (1006: no close frame).
        self.close_code: int | None = None
        self.close_reason = ""

    # -- information -------------------------------------------------------------------------------

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, if any."""
        return self.conn.subprotocol

    @property
    def remote_address(self) -> Any:
        """The peer's address, as the socket gives it."""
        return self.transport.get_extra_info("peername")

    # -- receiving ---------------------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        cls = type(event)
        if cls is TextMessage or cls is BinaryMessage:
            if self.conn.close_sent is None:  # after our close, the application reads no more
                self._messages.append(event.data)  # type: ignore[attr-defined]
                self._wake()
                if len(self._messages) >= self.max_queue:
                    self.hold()
        elif cls is Pong:
            assert isinstance(event, Pong)
            self._pong(event.payload)
        elif cls is ClosedEvent:
            assert isinstance(event, ClosedEvent)
            self.close_code, self.close_reason = event.code, event.reason
            self.stop_keepalive()
            self._wake()
        else:
            self.on_handshake_event(event)

    def on_handshake_event(self, event: Event) -> None:
        """Request (server) or Accepted/Rejected (client): the role's part."""

    def _wake(self) -> None:
        if self._recv_waiter is not None and not self._recv_waiter.done():
            self._recv_waiter.set_result(None)

    def on_lost(self) -> None:
        self._wake()
        for waiter, _ in self._pong_waiters.values():
            waiter.cancel()
        self._pong_waiters.clear()
        if not self._closed.done():
            self._closed.set_result(None)

    async def recv(self) -> Data:
        """The next message (str for text, bytes for binary); raises ConnectionClosed once closed."""
        messages = self._messages
        while not messages:
            if self.close_code is not None:
                raise closed_error(self.close_code, self.close_reason)
            self._recv_waiter = self.loop.create_future()
            self.flush()  # nothing to read: whatever we sent leaves now
            await self._recv_waiter
        message = messages.popleft()
        if len(messages) <= self._low_water:
            self.release()  # no-op unless held: then take the next batch from the core, read again
        return message

    def __aiter__(self) -> AsyncIterator[Data]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Data]:
        try:
            while True:
                yield await self.recv()
        except ConnectionClosedOK:
            return

    # -- sending -----------------------------------------------------------------------------------

    async def send(self, message: Data) -> None:
        """Send a text (str) or binary (bytes-like) message; waits while the transport is full."""
        conn = self.conn
        if not conn.can_send:
            raise closed_error(*self._close_info())
        if isinstance(message, str):
            conn.send_text(message)
        else:
            conn.send_binary(message)
        self.write_soon(len(message))
        if self._writing_paused:
            await self.drain()

    async def ping(self, data: bytes | None = None) -> asyncio.Future[float]:
        """Send a ping; the returned future resolves to the round-trip time when its pong arrives."""
        if not self.conn.can_send:
            raise closed_error(*self._close_info())
        payload = os.urandom(4) if data is None else bytes(data)
        waiter: asyncio.Future[float] = self.loop.create_future()
        self._pong_waiters[payload] = (waiter, self.loop.time())
        self.conn.send_ping(payload)
        self.flush()
        return waiter

    def _pong(self, payload: bytes) -> None:
        found = self._pong_waiters.pop(payload, None)
        if found is not None and not found[0].done():
            found[0].set_result(self.loop.time() - found[1])

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2) and wait until the connection is closed."""
        if self.conn.can_send:
            self.conn.close(code, reason)
            self._messages.clear()  # the application is done reading
            self.release()  # read on until the peer's close reply
            self.flush()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the transport is closed (at most ``close_timeout`` after a close was sent)."""
        await asyncio.shield(self._closed)

    def _close_info(self) -> tuple[int, str]:
        if self.close_code is not None:
            return self.close_code, self.close_reason
        sent = self.conn.close_sent or self.conn.close_received
        return sent if sent is not None else (CloseCode.ABNORMAL, "connection lost")
