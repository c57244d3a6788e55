"""Drive a ``wsproto_lite`` connection from an asyncio transport: bytes, time and flow control.

This is the only place the adapters touch the wire. It feeds what the transport reads to the core, hands
the core's events to a subclass (:meth:`CoreProtocol.on_event`), writes what the core queued, and closes
the transport when the core says so. All protocol decisions (framing, pongs, close replies, close codes,
limits) are the core's; this class only adds what needs a clock or a socket:

- the close timer and keepalive, by the policy of ``wsproto_lite.server.keepalive`` (shared with the
  selectors layer and the trio adapter): a close timer armed while the core waits for the peer
  (``close_expected``), ``abort()`` when it fires; a ping every ``ping_interval`` seconds, and a close
  with 1011 followed by closing the transport when no pong comes back within ``ping_timeout``; a
  transport closed with data still unwritten (a peer that reads nothing) is aborted ``close_timeout``
  later (:meth:`close_transport`), so a connection always ends;
- receive backpressure: a subclass calls :meth:`hold` when its consumer is full; events then stay in the
  core (which parses lazily) and the transport stops reading until :meth:`release`;
- send backpressure: :meth:`drain` waits while the transport's buffer is above its high-water mark
  (``pause_writing``/``resume_writing``), and the transport is not read meanwhile (a peer that sends
  pings but reads nothing cannot grow our buffer of pongs).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Generic, TypeVar, cast

from wsproto_lite import Connection, ConnectionState, Event, Pong

from ..server.keepalive import CLOSE_TIMEOUT, KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON, PingTracker

Conn = TypeVar("Conn", bound=Connection)

#: asyncio's socket transports write ``writelines()`` with one ``sendmsg`` from Python 3.12 on; before,
#: ``writelines()`` joins its pieces (a copy of every payload), so the pieces are written one by one.
_WRITELINES_GATHERS = sys.version_info >= (3, 12)


def _unwritten(transport: asyncio.Transport) -> int:
    """Bytes the transport still has to write (0 for a duck-typed transport that keeps none, such as
    uvicorn's test doubles)."""
    size = getattr(transport, "get_write_buffer_size", None)
    return int(size()) if size is not None else 0


class CoreProtocol(asyncio.Protocol, Generic[Conn]):
    """An asyncio protocol around one core connection; subclasses implement :meth:`on_event`."""

    transport: asyncio.Transport

    def __init__(
        self,
        conn: Conn,
        *,
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        close_timeout: float = CLOSE_TIMEOUT,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.conn = conn
        self.loop = loop or asyncio.get_running_loop()
        #: Seconds to wait for the peer's close frame (or its TCP close) once ours is sent.
        self.close_timeout = close_timeout
        self.close_timer: asyncio.TimerHandle | None = None
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.ping_timer: asyncio.TimerHandle | None = None
        self._pings = PingTracker()
        self._pong_timer: asyncio.TimerHandle | None = None
        self._held = False  # the consumer is full: leave events in the core
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._pumping = False
        self._unflushed = 0  # bytes sent since the last transport write (see write_soon)
        self._flush_handle: asyncio.Handle | None = None
        #: The transport is gone (``connection_lost`` ran).
        self.lost = False

    # -- what subclasses implement -----------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        """One event from the core, in order (``ConnectionClosed`` last, exactly once)."""
        raise NotImplementedError

    def on_lost(self) -> None:
        """The transport is gone (after the core has been told)."""

    # -- asyncio.Protocol --------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # duck-typed: write, close, pause/resume_reading

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        self.pump()
        self.flush()  # pongs, close replies, handshake answers (the application has not run yet)

    def eof_received(self) -> bool | None:
        self.conn.receive_data(b"")  # EOF is data to the core: it ends the connection (§7.1.5: 1006)
        self.pump()
        self.flush()
        return None  # let asyncio close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._cancel_timers()
        if self.conn.state is not ConnectionState.CLOSED:
            # Tell the core the transport ended; messages it already has are still delivered first.
            self.conn.receive_data(b"")
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        self.pump()
        self.flush()
        self.on_lost()

    def pause_writing(self) -> None:
        # The peer does not read: stop reading it too, or the pongs and close replies the core answers
        # its frames with would pile up in the transport's buffer without bound.
        self._writing_paused = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        self._update_reading()

    def _update_reading(self) -> None:
        """Read the transport unless the consumer is full (held) or the peer is not reading our writes."""
        paused = self._held or self._writing_paused
        if paused != self._reading_paused and not self.lost:
            self._reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    # -- moving events and bytes -------------------------------------------------------------------

    def pump(self) -> None:
        """Hand the core's events to :meth:`on_event` (until :meth:`hold`); close the transport at once if
        the core says so, else leave the writing to the caller (or to the end of this loop iteration)."""
        if not self._pumping:
            self._pumping = True
            try:
                for event in self.conn.events():
                    if type(event) is Pong:
                        self._pong_received(event.payload)
                    self.on_event(event)
                    if self._held:
                        break
            finally:
                self._pumping = False
        conn = self.conn
        if conn.should_close_transport or (conn.close_expected and self.close_timer is None):
            self.flush()  # the transport's fate changes now

    def write_soon(self, size: int) -> None:
        """After a send of ``size`` bytes: write at the end of this loop iteration, so that the messages an
        application sends in one go (an echo of a pipelined batch) leave in one transport write; at once
        when 64 KiB are waiting, so that a sender that never yields still meets the transport's
        backpressure."""
        self._unflushed += size
        if self._unflushed >= 65536:
            self.flush()
        else:
            self.flush_soon()

    def flush_soon(self) -> None:
        """:meth:`flush` at the end of this loop iteration (once, however often it is asked for)."""
        if self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what the core queued; close the transport or arm the close timer as the core's state says."""
        conn = self.conn
        self._unflushed = 0
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        buffers = conn.buffers_to_send()  # a large payload is its own buffer, never copied into its frame
        if self.lost:
            return
        if len(buffers) == 1:
            self.transport.write(buffers[0])
        elif buffers:
            if _WRITELINES_GATHERS:
                self.transport.writelines(buffers)  # one sendmsg
            else:
                for buffer in buffers:  # writelines would join them (asyncio before 3.12)
                    self.transport.write(buffer)
        if conn.should_close_transport:
            self.close_transport()
        elif conn.close_expected and self.close_timer is None:
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_timed_out)

    def close_transport(self, *, wait: bool = True) -> None:
        """Close the transport once what is written has gone out, but within ``close_timeout`` (``wait``)
        or at once (not ``wait``: the peer has had its time already).

        asyncio closes a transport only after its write buffer is empty: a peer that reads nothing would
        keep the connection (and whatever waits for it to end, such as a server's shutdown) forever, so
        the transport is aborted when that wait is over.
        """
        if self.transport.is_closing():
            return  # closed already, and its wait bounded then
        self._cancel_timers()
        self.transport.close()
        if self.lost or not _unwritten(self.transport):
            return
        if wait:
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
        else:
            self.transport.abort()

    def hold(self) -> None:
        """The consumer is full: stop taking events from the core and stop reading the transport."""
        self._held = True
        self._update_reading()

    def release(self) -> None:
        """The consumer has room again: deliver what the core holds, then read the transport again."""
        if not self._held:
            return
        self._held = False
        self.pump()
        if self._held:  # more is waiting in the core: answers leave with this iteration's writes
            self.flush_soon()
        else:  # the core is dry: what the application sent for it leaves now, then read again
            self.flush()
            self._update_reading()

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark (or the transport is gone)."""
        if self._writing_paused and not self.lost:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    @property
    def latency(self) -> float:
        """Round-trip time of the last answered keepalive ping, in seconds."""
        return self._pings.latency

    @property
    def ping_sent_at(self) -> float:
        """When the last keepalive ping was sent (loop time; 0.0: none yet)."""
        return self._pings.sent_at

    # -- timers ------------------------------------------------------------------------------------

    def _close_timed_out(self) -> None:
        # §7.1.1: the peer did not finish the closing handshake in time; give up on it.
        self.close_timer = None
        self.conn.abort()
        self.close_transport(wait=False)  # what is still unwritten (our close, perhaps) is dropped
        self.pump()

    def start_keepalive(self) -> None:
        """Start sending keepalive pings (call once the connection is OPEN)."""
        if self.ping_interval and not self.lost:
            self.ping_timer = self.loop.call_later(self.ping_interval, self._send_keepalive_ping)

    def stop_keepalive(self) -> None:
        """No more keepalive pings."""
        for timer in (self.ping_timer, self._pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self._pong_timer = None
        self._pings.forget()

    def _send_keepalive_ping(self) -> None:
        self.ping_timer = None
        if not self.conn.can_send:
            return
        self.conn.send_ping(self._pings.ping(self.loop.time()))
        self.flush()
        if self.ping_timeout is not None:
            self._pong_timer = self.loop.call_later(self.ping_timeout, self._keepalive_timed_out)
        else:
            self.start_keepalive()

    def _pong_received(self, payload: bytes) -> None:
        if not self._pings.pong(payload, self.loop.time()):
            return  # §5.5.3: an unsolicited pong needs no answer
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        self.start_keepalive()

    def _keepalive_timed_out(self) -> None:
        self._pong_timer = None
        self._pings.forget()
        if self.conn.can_send:
            self.conn.close(KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON)
            self.flush()
        # The peer is unresponsive: waiting for its close reply would only wait for the close timer.
        self.conn.abort()
        self.close_transport()  # the close frame goes out if the peer still reads, else the timer aborts
        self.pump()

    def _cancel_timers(self) -> None:
        self.stop_keepalive()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
