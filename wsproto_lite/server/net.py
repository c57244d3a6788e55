"""Sockets: binding listeners (IPv4 + IPv6, SO_REUSEPORT), accepting, non-blocking connect."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable
from typing import Any

from .loop import EventLoop, TimerHandle

__all__ = ["bind_sockets", "Listener", "connect_socket"]

logger = logging.getLogger("wsproto_lite.server.net")

_ACCEPTS_PER_WAKEUP = 128
_EMFILE_PAUSE = 0.1


def bind_sockets(
    host: str | None, port: int, *, reuse_port: bool = False, backlog: int = 1024
) -> list[socket.socket]:
    """Listening sockets for every address of ``host`` (``None``/``""``: all IPv4 and IPv6 interfaces).

    With ``port=0`` every socket gets the port chosen for the first one.
    """
    flags = socket.AI_PASSIVE
    infos = socket.getaddrinfo(host or None, port, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, flags)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, type_, proto, _name, addr in infos:
            if (family, addr[0]) in seen or family not in (socket.AF_INET, socket.AF_INET6):
                continue
            seen.add((family, addr[0]))
            sock = socket.socket(family, type_, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                addr = (addr[0], sockets[0].getsockname()[1], *addr[2:])
            sock.bind(addr)
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class Listener:
    """Accepts connections on a listening socket and hands each to ``on_accept(sock, address)``."""

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        on_accept: Callable[[socket.socket, object], None],
    ) -> None:
        self.loop = loop
        self.sock = sock
        self._on_accept = on_accept
        self._paused_timer: TimerHandle | None = None
        self._closed = False
        # What every accepted socket is built with, as plain ints: ``socket.accept()`` reads ``family`` and
        # ``type`` from the listener each time, two enum conversions per connection (issue 22).
        self._family, self._type = int(sock.family), int(sock.type)
        loop.add_reader(sock, self._accept_ready)

    def _accept_ready(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                # what socket.accept() does (CPython, since 3.3), minus its two enum conversions
                fd, address = self.sock._accept()  # type: ignore[attr-defined]
                conn = socket.socket(self._family, self._type, 0, fileno=fd)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.error("accept() failed (%s): pausing accepts for %.1fs", exc, _EMFILE_PAUSE)
                    self.loop.remove_reader(self.sock)
                    self._paused_timer = self.loop.call_later(_EMFILE_PAUSE, self._resume)
                    return
                raise
            self._on_accept(conn, address)

    def _resume(self) -> None:
        self._paused_timer = None
        if not self._closed:
            self.loop.add_reader(self.sock, self._accept_ready)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the socket listens on."""
        name = self.sock.getsockname()
        return name[0], name[1]

    def close(self) -> None:
        """Stop accepting and close the listening socket."""
        if self._closed:
            return
        self._closed = True
        self._on_accept = _refuse  # let go of the server (its bound method refers back to us)
        if self._paused_timer is not None:
            self._paused_timer.cancel()
        self.loop.forget(self.sock)
        self.sock.close()


def _refuse(sock: socket.socket, _address: object) -> None:
    sock.close()


def connect_socket(
    loop: EventLoop,
    host: str,
    port: int,
    on_done: Callable[[socket.socket | None, BaseException | None], None],
    *,
    timeout: float | None = None,
) -> Callable[[], None]:
    """Start a non-blocking TCP connect; ``on_done(sock, None)`` or ``on_done(None, exc)`` follows.

    Name resolution is blocking (``getaddrinfo``); the addresses are tried in order.  Returns a function
    that cancels the attempt.
    """
    attempt = _ConnectAttempt(loop, host, port, on_done)
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except OSError as exc:
        attempt.fail_soon(exc)
        return attempt.cancel
    attempt.start(infos, timeout)
    return attempt.cancel


class _ConnectAttempt:
    """One connect over the addresses of a host, tried in order, then ``on_done`` exactly once.

    Everything it holds (the socket being connected, the timer, ``on_done``) is dropped when it is done or
    cancelled, so a finished attempt keeps nothing alive.
    """

    def __init__(
        self,
        loop: EventLoop,
        host: str,
        port: int,
        on_done: Callable[[socket.socket | None, BaseException | None], None],
    ) -> None:
        self._loop = loop
        self._where = f"{host}:{port}"
        self._on_done: Callable[[socket.socket | None, BaseException | None], None] | None = on_done
        self._candidates: list[Any] = []
        self._sock: socket.socket | None = None
        self._timer: TimerHandle | None = None

    def start(self, infos: list[Any], timeout: float | None) -> None:
        self._candidates = list(infos)
        if timeout is not None:
            self._timer = self._loop.call_later(timeout, self._timed_out)
        self._loop.call_soon(self._try_next, None)

    def fail_soon(self, exc: BaseException) -> None:
        self._loop.call_soon(self._finish, None, exc)

    def cancel(self) -> None:
        """Give up: close the socket being connected; ``on_done`` is not called."""
        self._drop_socket()
        self._release()

    def _try_next(self, last_exc: BaseException | None) -> None:
        if self._on_done is None:
            return
        if not self._candidates:
            self._finish(None, last_exc or OSError("no address to connect to"))
            return
        family, type_, proto, _name, addr = self._candidates.pop(0)
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        err = sock.connect_ex(addr)
        if err in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            self._sock = sock
            self._loop.add_writer(sock, self._connected)
        else:
            sock.close()
            self._try_next(self._error(ConnectionRefusedError, err))

    def _connected(self) -> None:
        sock = self._sock
        assert sock is not None
        self._loop.forget(sock)
        self._sock = None
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            self._try_next(self._error(ConnectionRefusedError if err == errno.ECONNREFUSED else OSError, err))
            return
        self._finish(sock, None)

    def _timed_out(self) -> None:
        self._timer = None
        self._drop_socket()
        self._finish(None, TimeoutError(f"connect to {self._where} timed out"))

    def _finish(self, sock: socket.socket | None, exc: BaseException | None) -> None:
        on_done = self._on_done
        self._release()
        if on_done is not None:
            on_done(sock, exc)
        elif sock is not None:
            sock.close()

    def _release(self) -> None:
        self._on_done = None
        self._candidates = []
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _drop_socket(self) -> None:
        if self._sock is not None:
            self._loop.forget(self._sock)
            self._sock.close()
            self._sock = None

    def _error(self, kind: type[OSError], err: int) -> OSError:
        return kind(err, f"connect to {self._where} failed: {errno.errorcode.get(err, err)}")
