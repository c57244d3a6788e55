"""An open WebSocket on a trio stream, either role: :class:`WebSocketConnection`.

How the core is driven: an open connection is three tasks in one nursery (``WebSocketConnection._run``).

- The reader: ``receive_some`` -> ``core.receive_data`` -> ``core.events()``. Messages go into a bounded
  queue (``message_queue_size``); while it is full the reader neither parses nor reads (backpressure on
  the peer, and the application answers a message before a later bad frame fails the connection).
  ``ConnectionClosed`` ends it once the core says ``should_close_transport``; a close timer runs while
  ``close_expected``.
- The writer, the only task that writes to the stream: it sends what the core queued (handshake response,
  messages, pongs, close frames), then closes the stream once the reader is done.
- The keepalive (``ping_interval=None``: none), by the policy of ``wsproto_lite.server.keepalive``: a ping
  every ``ping_interval``; no pong within ``ping_timeout``: close 1011, then abort once it is written.

``send_message`` waits until at most ``write_limit`` bytes are waiting to be written (a peer that does
not read blocks its senders instead of growing a buffer), queues the message in the core, wakes the writer
and yields with a cancel-shielded checkpoint.

Cancellation:

- ``get_message()`` cancelled: no message is lost (trio memory channels promise this).
- ``send_message()``/``pong()`` cancelled: nothing was queued (the cancellation point comes before the
  queueing, the schedule point after it is shielded). What was queued goes out whole and in order: only the
  writer writes, so the stream never carries half a frame.
- ``ping()`` cancelled while waiting for its pong: the ping was sent; its pong is ignored.
- ``aclose()`` cancelled, or the nursery that runs the connection cancelled: the connection is aborted
  (transport closed at once, ``closed.code`` 1006).
"""

from __future__ import annotations

import logging
import math
import os

import trio

from wsproto_lite import BinaryMessage, CloseCode, Connection, ConnectionState, Pong, TextMessage
from wsproto_lite import ConnectionClosed as CoreClosed  # ours is the exception the application sees

from ..._writer import COPY_LIMIT, coalesce
from ...server.keepalive import KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON
from .errors import CloseReason, ConnectionClosed
from .settings import Headers, Message, Settings
from .streams import as_bytes, stream_endpoint

logger = logging.getLogger("wsproto_lite.adapters.trio")  # the package's logger: one name to configure


class WebSocketConnection:
    """An open WebSocket (after the opening handshake), on either side; made by accept() or connect."""

    def __init__(
        self, stream: trio.abc.Stream, core: Connection, settings: Settings, path: str, headers: Headers
    ) -> None:
        self._stream = stream
        self._core = core
        self._settings = settings
        #: The request target (path and query) of the opening handshake.
        self.path = path
        #: The other side's headers of the opening handshake (the request, or the response).
        self.handshake_headers = tuple(headers)
        self.local = stream_endpoint(stream, local=True)
        self.remote = stream_endpoint(stream, local=False)
        self._send_channel, self._receive_channel = trio.open_memory_channel[Message](
            settings.message_queue_size
        )
        self._outbox: list[bytes] = []  # taken from the core, not yet written
        self._outbox_size = 0
        self._reply_backlog = 0  # bytes of pongs and close replies queued since the outbox was last empty
        self._output_ready = trio.lowlevel.ParkingLot()  # the writer waits here for bytes
        self._drained = trio.lowlevel.ParkingLot()  # senders wait here for the outbox to shrink
        self._unread = 0  # messages in the queue
        self._taken = trio.lowlevel.ParkingLot()  # the reader waits here while the queue is full
        self._pings: dict[bytes, trio.Event] = {}  # in flight, oldest first
        self._close_reason: CloseReason | None = None
        self._reading_done = False
        self._scope = trio.CancelScope()  # all of the connection's tasks: cancelled = aborted
        self._writer_scope = trio.CancelScope()  # given a deadline when the reader is done
        self._close_deadline = math.inf  # when the peer must have finished the closing handshake
        self._reader_wait: trio.CancelScope | None = None  # the reader's wait for bytes, while it waits
        self._finished = trio.Event()  # the transport is closed and the final event handled
        self._queue_output()  # the server's handshake response

    # -- what the application sees ---------------------------------------------------------------

    @property
    def closed(self) -> CloseReason | None:
        """None while open; then how the connection ended."""
        return self._close_reason

    @property
    def is_client(self) -> bool:
        return not self._core.is_server

    @property
    def is_server(self) -> bool:
        return self._core.is_server

    @property
    def subprotocol(self) -> str | None:
        return self._core.subprotocol

    async def get_message(self) -> Message:
        """The next message (str or bytes). Raises ConnectionClosed once closed and the queue is empty
        (a local close discards what was not read)."""
        try:
            message = await self._receive_channel.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(self._reason()) from None
        self._unread -= 1
        self._taken.unpark_all()
        return message

    def __aiter__(self) -> WebSocketConnection:
        return self

    async def __anext__(self) -> Message:
        try:
            return await self.get_message()
        except ConnectionClosed:
            raise StopAsyncIteration from None

    async def send_message(self, message: Message) -> None:
        """Queue a message (str: text, bytes: binary); waits while ``write_limit`` bytes are unwritten."""
        if not isinstance(message, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"a message is str or bytes, not {type(message).__name__}")
        await self._wait_for_room()
        if isinstance(message, str):
            self._core.send_text(message)
        else:
            self._core.send_binary(message)
        self._queue_output()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong (or a pong to a later ping, RFC 6455 §5.5.3)."""
        payload = os.urandom(4) if payload is None else bytes(payload)
        await self._wait_for_room()
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already in flight")
        self._core.send_ping(payload)
        pong = self._pings[payload] = trio.Event()
        self._queue_output()
        try:
            await pong.wait()
            if payload in self._pings:  # woken by the close, not by a pong
                raise ConnectionClosed(self._reason())
        finally:
            self._pings.pop(payload, None)

    async def pong(self, payload: bytes = b"") -> None:
        """Send an unsolicited pong (a one-way heartbeat, §5.5.3)."""
        await self._wait_for_room()
        self._core.send_pong(payload)
        self._queue_output()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def aclose(self, code: int = CloseCode.NORMAL, reason: str | None = None) -> None:
        """Start the closing handshake (if not started) and wait until the transport is closed.

        Idempotent. Unread messages are discarded. Cancelled, it aborts the connection.
        """
        self._receive_channel.close()  # what was not read is dropped
        self._unread = 0
        self._taken.unpark_all()
        if self._core.state is ConnectionState.OPEN:
            self._core.close(code, reason or "")
            self._queue_output()
            self._start_close_timer()  # the reader may be waiting for bytes that never come
            self._drained.unpark_all()  # senders waiting for room raise now; a parked reader reads on
        try:
            await self._finished.wait()
        except BaseException:
            self._scope.cancel()
            raise

    def __repr__(self) -> str:
        role = "client" if self.is_client else "server"
        return f"<WebSocketConnection {role} {self.path!r} {self._core.state.name}>"

    # -- helpers of the application's side ---------------------------------------------------------

    def _reason(self) -> CloseReason:
        """Why sending or receiving is over: the final reason, or the close frame that started it."""
        if self._close_reason is not None:
            return self._close_reason
        code, reason = self._core.close_received or self._core.close_sent or (CloseCode.ABNORMAL, "")
        return CloseReason(code, reason or None)

    async def _wait_for_room(self) -> None:
        """Wait while the outbox is over the write limit; raise if sending is over. A cancellation point:
        the caller queues its frame right after, then yields with a cancel-shielded checkpoint."""
        await trio.lowlevel.checkpoint_if_cancelled()
        while self._core.can_send and self._outbox_size > self._settings.write_limit:
            await self._drained.park()
        if not self._core.can_send:
            raise ConnectionClosed(self._reason())

    def _queue_output(self) -> int:
        """Move what the core queued for the wire into the outbox, wake the writer; return the size."""
        chunks = self._core.buffers_to_send()
        if not chunks:
            return 0
        size = sum(map(len, chunks))
        self._outbox += chunks
        self._outbox_size += size
        self._output_ready.unpark_all()
        return size

    # -- the tasks ----------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Run the connection until its transport is closed (started by accept() or a connect)."""
        settings = self._settings
        try:
            with self._scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._read)
                    if settings.ping_interval is not None:
                        nursery.start_soon(self._keepalive, settings.ping_interval, settings.ping_timeout)
                    await self._write()
                    nursery.cancel_scope.cancel()  # the keepalive; the reader too if the stream broke
        finally:
            self._core.abort()  # no effect when the connection ended by the book
            for event in self._core.events():  # at most the final event; unread messages are lost
                if isinstance(event, CoreClosed):
                    self._closed(event)
            await trio.aclose_forcefully(self._stream)
            self._finished.set()

    def _start_close_timer(self) -> None:
        """Our close is out (or the core failed the connection): the peer has ``disconnect_timeout``
        seconds to finish the closing handshake (§7.1.1), whatever the reader is waiting for now."""
        if self._core.close_expected and self._close_deadline == math.inf:
            self._close_deadline = trio.current_time() + self._settings.disconnect_timeout
            if self._reader_wait is not None:
                self._reader_wait.deadline = self._close_deadline

    async def _read(self) -> None:
        core, stream, settings = self._core, self._stream, self._settings
        gave_up = False
        try:
            while True:
                await self._handle_events()
                if core.should_close_transport:
                    break
                self._start_close_timer()
                data = None
                with trio.move_on_at(self._close_deadline) as close_timer:
                    self._reader_wait = close_timer  # aclose() may bring the deadline in
                    if self._reply_backlog > settings.write_limit:  # a peer that pings and does not read:
                        await self._drained.park()  # read no more until it does (woken by aclose too)
                    else:
                        data = await stream.receive_some(settings.receive_buffer_size)
                self._reader_wait = None
                if close_timer.cancelled_caught:  # the peer did not finish the closing handshake
                    gave_up = True
                    core.abort()
                elif data is not None:
                    core.receive_data(as_bytes(data))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            gave_up = True
            core.abort()
            await self._handle_events()
        finally:
            self._reading_done = True  # the writer flushes (the close frame) and closes the stream
            flush_time = 0 if gave_up else settings.disconnect_timeout
            self._writer_scope.deadline = trio.current_time() + flush_time
            self._output_ready.unpark_all()

    async def _handle_events(self) -> None:
        for event in self._core.events():
            if isinstance(event, (TextMessage, BinaryMessage)):
                try:
                    self._send_channel.send_nowait(event.data)
                except trio.BrokenResourceError:  # the application closed its end: discard
                    continue
                # Parse no further while the queue is full: the application answers the messages before
                # it first, so an echo goes out before the close that fails on a later bad frame.
                self._unread += 1
                while self._unread >= self._settings.message_queue_size:
                    await self._taken.park()
                continue
            self._reply_backlog += self._queue_output()  # a pong or a close reply, queued by the core
            if isinstance(event, Pong):
                self._pong_received(event.payload)
            elif isinstance(event, CoreClosed):
                self._closed(event)
        self._queue_output()

    def _pong_received(self, payload: bytes) -> None:
        if payload in self._pings:  # it answers its ping and every earlier one
            for key in list(self._pings):
                self._pings.pop(key).set()
                if key == payload:
                    break

    def _closed(self, event: CoreClosed) -> None:
        self._close_reason = CloseReason(event.code, event.reason or None)
        self._send_channel.close()  # get_message() raises once the queue is empty
        for pong in self._pings.values():
            pong.set()
        self._drained.unpark_all()

    async def _write(self) -> None:
        """Write the outbox until the reader is done and all is written, then close the stream."""
        outbox = self._outbox
        with self._writer_scope:
            try:
                while outbox or not self._reading_done:
                    if not outbox:
                        await self._output_ready.park()
                        continue
                    pieces = coalesce(outbox, COPY_LIMIT)  # small pieces joined; large payloads as they are
                    outbox.clear()
                    for data in pieces:
                        await self._stream.send_all(data)
                        self._outbox_size -= len(data)
                    if not outbox:
                        self._reply_backlog = 0
                    self._drained.unpark_all()
                await self._stream.aclose()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    async def _keepalive(self, interval: float, timeout: float | None) -> None:
        while True:
            await trio.sleep(interval)
            with trio.move_on_after(math.inf if timeout is None else timeout) as waiting:
                try:
                    await self.ping()
                except ConnectionClosed:
                    return
            if waiting.cancelled_caught:
                logger.info("%r: no pong within %s s, closing", self, timeout)
                await self._fail_unresponsive(timeout or 0.0)
                return

    async def _fail_unresponsive(self, timeout: float) -> None:
        """The keepalive policy for a missing pong: close 1011, and abort once that is written (at most
        ``timeout`` later) instead of waiting for the reply of a peer that answers nothing."""
        if self._core.can_send:
            self._core.close(KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON)
            self._queue_output()
            with trio.move_on_after(timeout):
                while self._outbox_size > 0:
                    await self._drained.park()
        self._scope.cancel()
