"""Fan-out: one prepared frame to many connections, the socket writes done below the interpreter.

A connection whose frame may go straight to its socket (:meth:`WebSocket.direct_fd`: the core consents,
plain TCP, nothing buffered) gives its file descriptor; all of them are written by one call of the C loop
``_cfanout.send_many`` (one non-blocking ``send()`` each, the GIL released).  What a socket did not take
(a partial write, EAGAIN, an error) goes back to that connection's transport buffer, so order, watermarks,
the slow-consumer timer and error handling stay the transport's.  Every other connection (TLS, something
queued, another transport) takes the ordinary ``send_prepared`` path.  Without the C module (not built, or
``WSPROTO_LITE_NO_SPEEDUPS=1``) :func:`send_many_py` does the same in Python.

Descriptors are collected without running any callback and written right after, so none of them can be
closed (and its number reused) in between.  A broadcast to every connection of a server does not even ask
each one: :class:`DirectSockets` keeps those known to be writable directly with their descriptors, so for
10 000 idle connections the Python work before the C loop is two list copies.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from wsproto_lite import PreparedMessage

from .loop import EventLoop
from .prepared_sends import PreparedSends
from .websocket import WebSocket

__all__ = [
    "DirectSockets",
    "TickFlush",
    "direct_enabled",
    "fan_out",
    "send_direct",
    "send_each",
    "send_each_py",
    "send_many",
    "send_many_py",
    "split_direct",
]

SendMany = Callable[[list[int], bytes], list[tuple[int, int]]]
SendEach = Callable[[list[int], list[bytes]], list[tuple[int, int]]]


def send_many_py(fds: list[int], data: bytes) -> list[tuple[int, int]]:
    """The reference of ``_cfanout.send_many``: one ``send`` of ``data`` per socket; ``(index, result)`` for
    each that did not take it all, result = bytes taken (0 for EAGAIN) or ``-errno``."""
    shortfalls: list[tuple[int, int]] = []
    size = len(data)
    for index, fd in enumerate(fds):
        try:
            sent = os.write(fd, data)  # a socket: write() is send() without flags; EINTR is retried (PEP 475)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # SIGPIPE is ignored by CPython: a reset peer gives EPIPE/ECONNRESET here
            sent = -(exc.errno or 1)
        if sent != size:
            shortfalls.append((index, sent))
    return shortfalls


def send_each_py(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
    """The reference of ``_cfanout.send_each``: ``datas[i]`` to ``fds[i]``, answered as ``send_many_py``."""
    shortfalls: list[tuple[int, int]] = []
    for index, fd in enumerate(fds):
        shortfalls += [(index, sent) for _, sent in send_many_py([fd], datas[index])]
    return shortfalls


def _load() -> SendMany | None:
    if os.environ.get("WSPROTO_LITE_NO_SPEEDUPS", "") not in ("", "0"):
        return None
    try:
        from wsproto_lite import _cfanout
    except ImportError:  # not built (no compiler, not POSIX, a source checkout)
        return None
    send: SendMany = _cfanout.send_many
    return send


def _load_each() -> SendEach | None:
    if _load() is None:
        return None
    from wsproto_lite import _cfanout

    send: SendEach = _cfanout.send_each
    return send


_compiled = _load()
_compiled_each = _load_each()
#: The loops in use: the compiled ones, or the pure-Python references.
send_many: SendMany = _compiled if _compiled is not None else send_many_py
send_each: SendEach = _compiled_each if _compiled_each is not None else send_each_py


def direct_enabled() -> bool:
    """True when the compiled fan-out loop is in use."""
    return _compiled is not None


class DirectSockets:
    """The open connections of one server, split by what a broadcast must do for each: ``ready`` (with its
    socket) may take a prepared frame straight from the C loop, ``unsure`` must be asked first
    (:meth:`WebSocket.direct_fd`).  A broadcast to every connection then costs no Python per ready one.

    A connection is ``ready`` only from a check that found it so (open, the core consents, plain TCP with
    nothing buffered, not traced) until it next does anything that could change that: it moves itself to
    ``unsure`` (:meth:`unsure_again`) whenever it starts a batch of events, writes, queues a deferred frame
    or takes a short direct write (``websocket.py``, ``prepared_sends.py``), before control goes back to
    the loop, so no callback can see it ``ready`` when it is not.  It leaves both at ``connection_lost``,
    right after its socket is closed: a closed descriptor (whose number a new socket may reuse) is never
    written to.  Only the connection writes to its transport (its bytes are frames: nothing else may).

    Kept only once a broadcast to every connection asked for it (:meth:`activate`): a server that never
    makes one (the hub fans out per channel) pays neither the memory nor more than a test per write.
    """

    __slots__ = ("active", "ready", "unsure")

    def __init__(self) -> None:
        self.active = False
        self.ready: dict[WebSocket, int] = {}
        self.unsure: set[WebSocket] = set()

    def activate(self, conns: Iterable[WebSocket]) -> None:
        """Start keeping the sets, from ``conns``: those open with their socket are joined."""
        if not self.active:
            self.active = True
            for conn in conns:
                if conn.is_open and conn.transport is not None and not conn.transport.is_closed:
                    self.unsure.add(conn)

    def join(self, conn: WebSocket) -> None:
        """``conn`` is open: the next broadcast asks it."""
        if self.active:
            self.unsure.add(conn)

    def unsure_again(self, conn: WebSocket) -> None:
        """``conn`` may have changed: the next broadcast asks it again."""
        if self.ready.pop(conn, -1) >= 0:
            self.unsure.add(conn)

    def leave(self, conn: WebSocket) -> None:
        """``conn``'s socket is closed: it is in neither set (and not referred to) any more."""
        self.ready.pop(conn, None)
        self.unsure.discard(conn)

    def split(self) -> tuple[list[WebSocket], list[int], list[WebSocket]]:
        """``(direct, fds, rest)`` over every joined connection: the unsure ones are asked (those that
        may take a frame directly become ready), the ready ones are not."""
        ready, unsure = self.ready, self.unsure
        rest: list[WebSocket] = []
        for conn in list(unsure):
            fd = conn.direct_fd()
            if fd < 0:
                rest.append(conn)
            else:
                unsure.discard(conn)
                ready[conn] = fd
        return list(ready), list(ready.values()), rest

    def fd_of(self, conn: WebSocket) -> int:
        """``conn``'s socket when a frame may go to it directly, else -1 (asks it unless it is ready)."""
        fd = self.ready.get(conn, -1)
        if fd < 0:
            fd = conn.direct_fd()
            if fd >= 0 and conn in self.unsure:
                self.unsure.discard(conn)
                self.ready[conn] = fd
        return fd


def split_direct(
    conns: Iterable[Any], exclude: object = None
) -> tuple[list[WebSocket], list[int], list[Any]]:
    """``(direct, fds, rest)``: the connections a frame may be written to directly with their sockets, and
    the others in their order.  ``exclude``, when it could go direct, is in neither list."""
    direct: list[WebSocket] = []
    fds: list[int] = []
    rest: list[Any] = []
    for conn in conns:
        if not isinstance(conn, WebSocket):
            fd = -1
        elif conn.direct_sockets is not None:
            fd = conn.direct_sockets.fd_of(conn)
        else:
            fd = conn.direct_fd()
        if fd < 0:
            rest.append(conn)
        elif conn is not exclude:
            direct.append(conn)
            fds.append(fd)
    return direct, fds, rest


def send_direct(direct: list[WebSocket], fds: list[int], prepared: PreparedMessage) -> None:
    """Write ``prepared`` to every socket in ``fds`` in one call; queue what each did not take."""
    if not fds:
        return
    frame = prepared.frame
    for index, sent in send_many(fds, frame):
        direct[index].direct_shortfall(frame, sent)


def fan_out(conns: Iterable[WebSocket], prepared: PreparedMessage) -> int:
    """Queue ``prepared`` on every connection (directly where it may go, else ``send_prepared``); returns
    how many took it."""
    direct, fds, rest = split_direct(conns)
    send_direct(direct, fds, prepared)
    taken = len(direct)
    for conn in rest:
        if conn.send_prepared(prepared):
            taken += 1
    return taken


class TickFlush:
    """Connections whose fan-out frames wait in their core's queue until the end of this loop iteration.

    A burst of publications (several read at once) then reaches each socket in one ``send()`` instead of
    one per publication.  The frames are in each core's queue from the start, behind whatever was queued
    before and ahead of whatever comes after, so any other write on the connection sends them first, in
    order, and ``buffered_amount`` (so the hub's queue bound) counts them.  At the end of the iteration the
    connections that may be written directly (plain TCP, nothing buffered, open) get their queued bytes
    from one :func:`send_each` call; the others flush as usual.
    """

    __slots__ = ("_loop", "_conns")

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._conns: list[PreparedSends] = []

    def add(self, conn: PreparedSends) -> None:
        """``conn`` queued a frame in its core: flush it at the end of this iteration (once)."""
        if not self._conns:
            self._loop.call_soon(self.flush)
        self._conns.append(conn)

    def flush(self) -> None:
        """Collect the direct writes (no callback runs meanwhile, so no socket closes), write them in one
        call, queue what each socket did not take, then flush the other connections as usual."""
        conns, self._conns = self._conns, []
        direct: list[PreparedSends] = []
        fds: list[int] = []
        datas: list[bytes] = []
        others: list[PreparedSends] = []
        for conn in conns:
            taken = conn.take_for_direct()
            if taken is None:
                others.append(conn)
            else:
                direct.append(conn)
                fds.append(taken[0])
                datas.append(taken[1])
        if fds:
            for index, sent in send_each(fds, datas):
                direct[index].direct_shortfall(datas[index], sent)
        for conn in others:
            conn.flush_deferred()
