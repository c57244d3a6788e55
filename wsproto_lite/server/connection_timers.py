"""The timer half of a connection: what happens when the handshake, close, keepalive or slow-consumer
timer of a :class:`~.websocket.WebSocket` fires (armed by the connection, kept by :class:`~.timers.Timers`).
Every decision is still the core's or the keepalive policy's (:mod:`.keepalive`); these only ask."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from wsproto_lite import ClientConnection, ConnectionState, ServerConnection

from .keepalive import KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON, PingTracker
from .loop import EventLoop
from .options import SLOW_CONSUMER_CLOSE_CODE, Options
from .timers import Timer, Timers
from .transport import SocketTransport

__all__ = ["TimerCallbacks"]

logger = logging.getLogger("wsproto_lite.server.websocket")


class TimerCallbacks:
    """Mixed into :class:`~.websocket.WebSocket`, whose state these methods share (declared here)."""

    core: ServerConnection | ClientConnection
    loop: EventLoop
    options: Options
    transport: SocketTransport | None
    remote_address: Any
    error: BaseException | None
    _opened: bool
    _timers: Timers
    _pings: PingTracker

    if TYPE_CHECKING:

        @property
        def is_open(self) -> bool: ...

        @property
        def closed(self) -> bool: ...

        @property
        def buffered_amount(self) -> int: ...

        def abort(self) -> None: ...

        def close(self, code: int = ..., reason: str = "") -> None: ...

        def ping(self, payload: bytes = b"") -> bool: ...

    def _handshake_timed_out(self) -> None:
        if not self._opened:
            logger.info("%s: opening handshake timed out", self.remote_address)
            if self.error is None:
                self.error = TimeoutError("opening handshake timed out")
            self.abort()

    def _close_timed_out(self) -> None:
        logger.info("%s: closing handshake timed out, aborting", self.remote_address)
        self.abort()

    def _schedule_ping(self) -> None:
        if self.options.ping_interval is not None and not self.closed:
            self._timers.arm(Timer.PING, self.options.ping_interval, self._keepalive)

    def _keepalive(self) -> None:
        if not self.is_open:
            return
        if Timer.PONG not in self._timers:
            self.ping(self._pings.ping(self.loop.time()))
            if self.options.ping_timeout is not None:
                self._timers.arm(Timer.PONG, self.options.ping_timeout, self._pong_timed_out)
        self._schedule_ping()

    def _pong_timed_out(self) -> None:
        if self.transport is not None and not self.transport.is_reading and not self.closed:
            # we stopped reading ourselves (backpressure): the pong may be waiting in the socket
            self._timers.arm(Timer.PONG, self.options.ping_timeout or 1.0, self._pong_timed_out)
            return
        logger.info("%s: no pong within %ss, closing", self.remote_address, self.options.ping_timeout)
        self._pings.forget()
        self.close(KEEPALIVE_CLOSE_CODE, KEEPALIVE_CLOSE_REASON)
        # An unresponsive peer will not answer the close either: close the socket once the frame is out,
        # or now if it cannot go out (the peer does not read).
        if self.transport is not None and self.transport.buffered:
            self.abort()
        elif self.transport is not None and not self.transport.is_closed:
            self.transport.close()

    def _over_hard_limit(self) -> bool:
        return self.transport is not None and self.transport.buffered > self.options.write_hard_limit

    def _over_hard_limit_now(self) -> None:
        """Unsent data went over ``write_hard_limit`` (a write took it there, or a send was refused): the
        slow-consumer timer runs, unless it already does."""
        if Timer.SLOW_CONSUMER not in self._timers:
            self._timers.arm(Timer.SLOW_CONSUMER, self.options.slow_consumer_timeout, self._slow_consumer)

    def _slow_consumer(self) -> None:
        if self.closed or not self._over_hard_limit():
            return
        logger.warning(
            "%s: slow consumer (%d bytes unsent for %ss), closing with %d",
            self.remote_address,
            self.buffered_amount,
            self.options.slow_consumer_timeout,
            SLOW_CONSUMER_CLOSE_CODE,
        )
        if self.core.state is ConnectionState.OPEN:
            self.core.close(SLOW_CONSUMER_CLOSE_CODE, "slow consumer")
        # the close frame would sit behind megabytes the peer does not read: drop the socket now
        self.core.buffers_to_send()
        self.abort()
