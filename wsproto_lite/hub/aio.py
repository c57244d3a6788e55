"""The hub on asyncio: one connection as a :class:`~wsproto_lite.hub.transport.HubConnection` over coroutines.

An asyncio stack (an ASGI server, see ``asgi.py``) hands us whole messages and takes ours with
coroutines: ``send_text(text)``, ``send_close(code, reason)``, and a ``next_message()`` that returns the
next message or :class:`PeerClosed`.  The hub's calls are synchronous; here they queue:

- ``send``/``send_prepared`` append to the connection's queue; one writer task per connection awaits the
  stack's send for each item in order, then the close, if one was asked for.
- ``buffered_amount`` is everything queued and not yet taken by the stack (the item being awaited
  included): the same bound as on the selectors layer (``wsproto_lite.server.options.Options``).  Over
  ``write_high_water`` the reading stops (no new commands while their answers wait) until the queue is
  under ``write_low_water``, then ``on_writable``; over ``write_hard_limit`` ``send`` drops.
- ``close`` goes out behind what is queued; if it has not gone out ``close_timeout`` seconds later (the
  peer does not read), the connection is aborted.  ``abort`` drops the queue, stops the writer and ends
  :meth:`AsyncConnection.run`, which returns: the stack then drops the connection.

Keepalive pings, the closing handshake's own timer and frame limits stay with the stack (uvicorn's
``ws_ping_interval``, ``ws_max_size``...): this module keeps none of its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from wsproto_lite import CloseCode

if TYPE_CHECKING:
    from wsproto_lite import PreparedMessage, Request

    from ..server.handler import Handler
    from ..server.options import Options

__all__ = ["AsyncConnection", "PeerClosed", "PreparedTexts", "NextMessage"]

logger = logging.getLogger("wsproto_lite.hub.aio")


class PeerClosed(NamedTuple):
    """The end of the connection as the stack reports it: the peer's close code and reason (1006: none)."""

    code: int
    reason: str = ""


#: The next message from the peer (``str`` text, ``bytes`` binary), or :class:`PeerClosed` at the end.
NextMessage = Callable[[], Awaitable["str | bytes | PeerClosed"]]


class PreparedTexts:
    """The message inside a prepared fan-out frame, decoded once for all its subscribers.

    A fan-out sends one ``PreparedMessage`` to every subscriber in turn: the last one seen is kept (one
    frame), so only the first subscriber pays for the decoding.
    """

    __slots__ = ("_prepared", "_message")

    def __init__(self) -> None:
        self._prepared: PreparedMessage | None = None
        self._message: str | bytes = b""

    def message_of(self, prepared: PreparedMessage) -> str | bytes:
        if prepared is not self._prepared:
            self._message = _payload(prepared.frame)
            self._prepared = prepared
        return self._message


def _payload(frame: bytes) -> str | bytes:
    """The message of an unmasked, unfragmented server frame (RFC 6455 §5.2) built by ``prepare_message``."""
    length = frame[1] & 0x7F
    start = 2 if length < 126 else 4 if length == 126 else 10
    payload = frame[start:]
    return payload.decode("utf-8") if frame[0] & 0x0F == 0x1 else payload


class AsyncConnection:
    """One hub connection on an asyncio stack; the stack's task runs :meth:`run` for its whole life."""

    __slots__ = (
        "handler",
        "loop",
        "request",
        "remote_address",
        "close_code",
        "close_reason",
        "_options",
        "_texts",
        "_send_text",
        "_send_close",
        "_queue",
        "_buffered",
        "_paused",
        "_held",
        "_opened",
        "_close_asked",
        "_send_failed",
        "_aborted",
        "_writer",
        "_writer_idle",
        "_reader",
        "_drained",
        "_close_timer",
        "__weakref__",
    )

    def __init__(
        self,
        handler: Handler,
        options: Options,
        request: Request,
        remote_address: Any,
        *,
        send_text: Callable[[str | bytes], Awaitable[None]],
        send_close: Callable[[int, str], Awaitable[None]],
        texts: PreparedTexts | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.handler = handler
        self.loop = loop or asyncio.get_running_loop()
        self.request: Request | None = request
        self.remote_address = remote_address
        self.close_code: int | None = None
        """Set once the connection is over: the peer's code (1006: no close frame), or ours."""
        self.close_reason = ""
        self._options = options
        self._texts = texts or PreparedTexts()
        self._send_text = send_text
        self._send_close = send_close
        self._queue: deque[tuple[str | bytes, int]] = deque()
        self._buffered = 0
        self._paused = False  # over the high watermark, not yet under the low one
        self._held = False  # pause_messages(): the handler takes no messages for now
        self._opened = False
        self._close_asked: tuple[int, str] | None = None
        self._send_failed = False  # the stack refused a send: the peer is gone, its disconnect follows
        self._aborted = False
        self._writer: asyncio.Task[None] | None = None
        self._writer_idle: asyncio.Future[None] | None = None  # the writer waits for work
        self._reader: asyncio.Task[Any] | None = None  # the stack's task, inside run()
        self._drained: asyncio.Future[None] | None = None  # the reader waits for the queue to drain
        self._close_timer: asyncio.TimerHandle | None = None

    # -- HubConnection -------------------------------------------------------------------------

    @property
    def buffered_amount(self) -> int:
        return self._buffered

    @property
    def is_open(self) -> bool:
        """True while messages can be queued (opened; no close asked, no failure, not over)."""
        return (
            self._opened
            and self._close_asked is None
            and not self._send_failed
            and not self._aborted
            and self.close_code is None
        )

    @property
    def writable(self) -> bool:
        return self.is_open and not self._paused

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, message: str | bytes) -> bool:
        if not self.is_open or self._buffered > self._options.write_hard_limit:
            return False
        self._enqueue(message, len(message))
        return True

    def send_prepared(self, prepared: PreparedMessage) -> bool:
        if not self.is_open or self._buffered > self._options.write_hard_limit:
            return False
        self._enqueue(self._texts.message_of(prepared), len(prepared.frame))
        return True

    def pause_messages(self) -> None:
        """Take no more messages from the stack until :meth:`resume_messages` (the handler's answers
        wait on other work)."""
        self._held = True

    def resume_messages(self) -> None:
        if self._held:
            self._held = False
            self._wake_reader()

    def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        if self.close_code is not None or self._close_asked is not None or self._aborted:
            return
        if not self._opened:
            self.abort()
            return
        self._close_asked = (code, reason)
        self._wake_writer()
        if self._options.close_timeout is not None:
            self._close_timer = self.loop.call_later(self._options.close_timeout, self._close_timed_out)

    def abort(self) -> None:
        if self._aborted or self.close_code is not None:
            return
        self._aborted = True
        self._drop_queue()
        current = asyncio.current_task()
        writer = self._writer
        if writer is not None and self._writer_idle is None and writer is not current:
            writer.cancel()  # stuck in the stack's send: the peer does not read
        self._wake_writer()
        reader = self._reader
        if reader is not None and reader is not current and self._drained is None:
            reader.cancel()  # waiting for the peer's next message: stop waiting (run() returns)
        self._wake_reader()

    def __repr__(self) -> str:
        state = "open" if self.is_open else "closed" if self.closed else "closing"
        return f"<AsyncConnection {self.remote_address} {state}>"

    # -- the stack's side ------------------------------------------------------------------------

    async def run(self, next_message: NextMessage) -> None:
        """The handshake is accepted: ``on_open``, every message to the handler, ``on_close``.

        Returns once the connection is over: the peer's close, the stack's disconnect, or :meth:`abort`.
        """
        task = asyncio.current_task()
        self._reader = task
        self._opened = True
        self._writer = self.loop.create_task(self._write())
        end = PeerClosed(CloseCode.ABNORMAL)
        try:
            self._call(self.handler.on_open, self)
            end = await self._read(next_message)
        except asyncio.CancelledError:
            if not self._aborted or task is None:
                raise  # not ours: the stack is cancelling its task
            task.uncancel()
        finally:
            self._finish(end)

    async def _read(self, next_message: NextMessage) -> PeerClosed:
        while not self._aborted:
            if self._paused or self._held:  # backpressure: no new commands while their answers wait
                self._drained = self.loop.create_future()
                try:
                    await self._drained
                finally:
                    self._drained = None
                continue
            message = await next_message()
            if isinstance(message, PeerClosed):
                return message
            if self.is_open:  # after our close, what still arrives is not a command any more
                self._call(self.handler.on_message, self, message)
        return PeerClosed(CloseCode.ABNORMAL)

    def _finish(self, end: PeerClosed) -> None:
        """Over: drop what is queued, stop the writer and the timer, ``on_close`` once."""
        if self.close_code is not None:
            return
        self.close_code, self.close_reason = end
        self._drop_queue()
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        writer, self._writer = self._writer, None
        if writer is not None and not writer.done() and self._writer_idle is None:
            writer.cancel()  # in the stack's send to a peer that is gone
        self._wake_writer()  # an idle writer returns
        self._reader = None
        if self._opened:
            self._call(self.handler.on_close, self, end.code, end.reason)

    # -- the writer ------------------------------------------------------------------------------

    def _enqueue(self, message: str | bytes, size: int) -> None:
        self._queue.append((message, size))
        self._buffered += size
        if self._buffered > self._options.write_high_water:
            self._paused = True
        self._wake_writer()

    def _wake_writer(self) -> None:
        idle = self._writer_idle
        if idle is not None and not idle.done():
            idle.set_result(None)

    def _wake_reader(self) -> None:
        drained = self._drained
        if drained is not None and not drained.done():
            drained.set_result(None)

    def _drop_queue(self) -> None:
        self._queue.clear()
        self._buffered = 0
        self._paused = False

    async def _write(self) -> None:
        """Hand the queue to the stack in order; then the close, if asked for."""
        queue = self._queue
        try:
            while self.close_code is None and not self._aborted:
                if queue:
                    message, size = queue[0]
                    await self._send_text(message)
                    if self.close_code is None and not self._aborted:  # else the queue was dropped
                        queue.popleft()
                        self._sent(size)
                elif self._close_asked is not None:
                    code, reason = self._close_asked
                    await self._send_close(code, reason)
                    return
                else:
                    self._writer_idle = self.loop.create_future()
                    try:
                        await self._writer_idle
                    finally:
                        self._writer_idle = None
        except Exception as exc:  # noqa: BLE001 - the stack refused: the peer is gone, its disconnect follows
            logger.debug("%s: send failed (%s), dropping the queue", self.remote_address, type(exc).__name__)
            self._send_failed = True
            self._drop_queue()
            self._wake_reader()

    def _sent(self, size: int) -> None:
        self._buffered -= size
        if self._paused and self._buffered <= self._low_water:
            self._paused = False
            self._wake_reader()
            if self.is_open:
                self._call(self.handler.on_writable, self)

    @property
    def _low_water(self) -> int:
        low = self._options.write_low_water
        return self._options.write_high_water // 4 if low is None else low

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self.close_code is None:
            logger.info(
                "%s: our close could not go out (the peer does not read): aborting", self.remote_address
            )
            self.abort()

    def _call(self, fn: Callable[..., object], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("handler %s raised", getattr(fn, "__name__", fn))
