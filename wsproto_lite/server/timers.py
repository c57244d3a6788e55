"""The timers of one connection (handshake, close, keepalive, slow consumer): at most one of each armed."""

from __future__ import annotations

import enum
from collections.abc import Callable

from .loop import EventLoop, TimerHandle

__all__ = ["Timer", "Timers"]


class Timer(enum.Enum):
    """The timers of one connection; at most one of each is armed."""

    HANDSHAKE = "opening handshake"
    CLOSE = "closing handshake"  # our close is out (or the core waits for the server's TCP close)
    PING = "keepalive ping"
    PONG = "keepalive pong"
    SLOW_CONSUMER = "slow consumer"
    SERVER_TCP_CLOSE = "server's TCP close"  # client: §7.1.1, the server closes TCP first


_TIMER_INDEX = {timer: index for index, timer in enumerate(Timer)}


class Timers:
    """A connection's armed timers by name. An armed timer refers to its callback (and so to the
    connection) only until it fires or is cancelled: :meth:`cancel_all` leaves nothing scheduled.

    The handles sit in a list with one place per kind of timer: a dict holding the one timer an idle
    connection has armed (its keepalive ping) costs ~290 bytes, the list ~120 (issue 22)."""

    __slots__ = ("_loop", "_armed")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._armed: list[TimerHandle | None] = [None] * len(_TIMER_INDEX)

    def arm(self, timer: Timer, delay: float, callback: Callable[[], object]) -> None:
        self.cancel(timer)
        self._armed[_TIMER_INDEX[timer]] = self._loop.call_later(delay, self._fire, timer, callback)

    def _fire(self, timer: Timer, callback: Callable[[], object]) -> None:
        self._armed[_TIMER_INDEX[timer]] = None
        callback()

    def cancel(self, timer: Timer) -> None:
        index = _TIMER_INDEX[timer]
        handle = self._armed[index]
        if handle is not None:
            self._armed[index] = None
            handle.cancel()

    def cancel_all(self) -> None:
        armed = self._armed
        for index, handle in enumerate(armed):
            if handle is not None:
                armed[index] = None
                handle.cancel()

    def __contains__(self, timer: Timer) -> bool:
        return self._armed[_TIMER_INDEX[timer]] is not None
