"""The readiness poller under :class:`~.loop.EventLoop`: ``select.epoll`` itself where there is one.

``selectors`` costs a Python-level wrapper per wait (a list of ``(SelectorKey, events)`` pairs, built
through a key lookup per ready descriptor) and a ``SelectorKey`` per registered socket: about a
microsecond per loop iteration, a sizeable share of one echo round trip (issue 22). The loop keeps its
own ``fd -> callbacks`` table, so it only needs ``register``/``modify``/``unregister``/``poll`` on plain
descriptors: exactly ``select.epoll``'s methods. Elsewhere (macOS, Windows) :class:`SelectorsPoller` gives
the same four methods over ``selectors.DefaultSelector``.
"""

from __future__ import annotations

import select
import selectors
from typing import Protocol

__all__ = ["Poller", "SelectorsPoller", "make_poller"]


class Poller(Protocol):
    """What the loop asks of a poller (``select.epoll`` has these methods as they are)."""

    def register(self, fd: int, eventmask: int) -> None: ...

    def modify(self, fd: int, eventmask: int) -> None: ...

    def unregister(self, fd: int) -> None: ...

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]: ...

    def close(self) -> None: ...


class SelectorsPoller:
    """The same interface over ``selectors.DefaultSelector``, for platforms without epoll."""

    IN = selectors.EVENT_READ
    OUT = selectors.EVENT_WRITE

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()

    def register(self, fd: int, eventmask: int) -> None:
        self._selector.register(fd, eventmask)

    def modify(self, fd: int, eventmask: int) -> None:
        self._selector.modify(fd, eventmask)

    def unregister(self, fd: int) -> None:
        self._selector.unregister(fd)

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        return [(key.fd, events) for key, events in self._selector.select(timeout)]

    def close(self) -> None:
        self._selector.close()


def make_poller(use_epoll: bool = True) -> tuple[Poller, int, int]:
    """A new poller and its readable and writable event bits.

    With epoll an error or hang-up (``EPOLLERR``, ``EPOLLHUP``) is reported whatever was asked for; the
    loop treats any bit but the writable one as "readable" and any but the readable one as "writable"
    (as ``selectors`` does), so the callback that reads or writes meets the error.
    """
    if use_epoll and hasattr(select, "epoll"):
        return select.epoll(), select.EPOLLIN, select.EPOLLOUT
    return SelectorsPoller(), SelectorsPoller.IN, SelectorsPoller.OUT
