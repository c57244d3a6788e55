"""The prepared-frame half of a connection: the per-subscriber steps of broadcast and fan-out.

A frame built once (``prepare_message``) is queued in the core (:meth:`PreparedSends.send_prepared`), left
there for the end of the loop iteration (:meth:`~PreparedSends.defer_prepared`, flushed by
``fanout.TickFlush``), or written by the fan-out loop straight to the socket when the core and the
transport consent (:meth:`~PreparedSends.direct_fd`, :meth:`~PreparedSends.take_for_direct`), what the
socket did not take going back to the transport (:meth:`~PreparedSends.direct_shortfall`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wsproto_lite import ClientConnection, LocalProtocolError, ServerConnection

from .options import Options
from .timers import Timers
from .transport import SocketTransport

if TYPE_CHECKING:
    from wsproto_lite import PreparedMessage

    from .fanout import DirectSockets, TickFlush
    from .trace import FrameTracer

__all__ = ["PreparedSends"]


class PreparedSends:
    """Mixed into :class:`~.websocket.WebSocket`, whose state these methods share (declared here)."""

    core: ServerConnection | ClientConnection
    options: Options
    transport: SocketTransport | None
    _opened: bool
    _tracer: FrameTracer | None
    _timers: Timers
    _dispatching: bool
    _unflushed: int
    _tick_pending: bool
    direct_sockets: DirectSockets | None

    if TYPE_CHECKING:

        def _queued(self, size: int) -> None: ...

        def _flush(self) -> None: ...

        def _over_hard_limit_now(self) -> None: ...

        def _unsure_again(self) -> None: ...

    def send_prepared(self, prepared: PreparedMessage) -> bool:
        """Queue a frame built once by ``prepare_message`` (server role; see ``server.broadcast``).

        The per-subscriber path of every broadcast: the same checks as :meth:`send`, in as few steps.
        """
        if not self._core_takes(prepared):
            return False
        self._queued(len(prepared.frame))
        return True

    def _core_takes(self, prepared: PreparedMessage) -> bool:
        """Queue ``prepared`` in the core when open and under the hard limit (the core's consent: OPEN, no
        fragmented message under way)."""
        transport = self.transport
        if not self._opened or transport is None or transport.buffered > self.options.write_hard_limit:
            return False
        try:
            self.core.send_prepared(prepared)
        except LocalProtocolError:
            return False
        return True

    def direct_fd(self) -> int:
        """The socket a prepared frame may be written to directly (``fanout.send_direct``), or -1.

        Only when the core consents (open, no fragmented message, nothing queued in it) and the transport
        is plain TCP with nothing buffered: the frame then goes out in order.  Not while tracing frames.
        """
        transport = self.transport
        if (
            not self._opened
            or transport is None
            or self._tracer is not None
            or not self.core.consents_to_direct()
        ):
            return -1
        return transport.direct_fd()

    def defer_prepared(self, prepared: PreparedMessage, tick: TickFlush) -> bool:
        """:meth:`send_prepared`, written at the end of this loop iteration by ``tick`` (with whatever else
        was queued meanwhile: a burst of publications leaves in one ``send()``)."""
        if not self._core_takes(prepared):
            return False
        transport = self.transport
        assert transport is not None  # checked by _core_takes
        size = len(prepared.frame)
        if self._dispatching or transport.buffered + self._unflushed + size >= self.options.write_high_water:
            self._queued(size)  # at the end of its own batch, or now: over the watermark it must pause
        else:
            self._unflushed += size
            self._unsure_again()
            if not self._tick_pending:
                self._tick_pending = True
                tick.add(self)
        return True

    def take_for_direct(self) -> tuple[int, bytes] | None:
        """For ``tick``'s flush: ``(socket, bytes)`` when what the core queued may be written directly (open,
        plain TCP, nothing buffered), taking it out of the core; else None (then :meth:`flush_deferred`).
        Runs no callback."""
        self._tick_pending = False
        transport = self.transport
        if (
            not self._unflushed
            or self._dispatching
            or transport is None
            or self._tracer is not None
            or not self.core.can_send
        ):
            return None
        fd = transport.direct_fd()
        if fd < 0:
            return None
        chunks = self.core.buffers_to_send()
        self._unflushed = 0
        if not chunks:
            return None
        return fd, chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def flush_deferred(self) -> None:
        """Write what the core queued, unless it was already written (or this batch writes it at its end)."""
        if self._unflushed and not self._dispatching:
            self._flush()

    def direct_shortfall(self, frame: bytes, sent: int) -> None:
        """A direct send took ``sent`` bytes of ``frame`` (< 0: it failed): queue the rest on the transport,
        which sends it when the socket is writable (or reports the error then), as :meth:`_flush` would."""
        transport = self.transport
        if transport is None:
            return
        transport.queue_unsent(memoryview(frame)[max(sent, 0) :])
        self._unsure_again()
        if transport.buffered > self.options.write_hard_limit:
            self._over_hard_limit_now()
