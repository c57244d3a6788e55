"""Sockets: binding listeners (IPv4 + IPv6, SO_REUSEPORT), accepting, non-blocking connect."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

from .loop import EventLoop, TimerHandle

__all__ = ["bind_sockets", "Listener", "connect_socket"]

logger = logging.getLogger("server.net")

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
        loop.add_reader(sock, self._accept_ready)

    def _accept_ready(self) -> None:
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                conn, address = self.sock.accept()
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
        if self._paused_timer is not None:
            self._paused_timer.cancel()
        self.loop.forget(self.sock)
        self.sock.close()


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
    state: dict[str, object] = {"done": False}
    try:
        infos = socket.getaddrinfo(host, port, socket.AF_UNSPEC, socket.SOCK_STREAM)
    except OSError as exc:
        loop.call_soon(on_done, None, exc)
        return lambda: None
    candidates = list(infos)
    current: list[socket.socket] = []
    timer: list[TimerHandle] = []

    def finish(sock: socket.socket | None, exc: BaseException | None) -> None:
        if state["done"]:
            return
        state["done"] = True
        for t in timer:
            t.cancel()
        on_done(sock, exc)

    def try_next(last_exc: BaseException | None) -> None:
        if state["done"]:
            return
        if not candidates:
            finish(None, last_exc or OSError("no address to connect to"))
            return
        family, type_, proto, _name, addr = candidates.pop(0)
        sock = socket.socket(family, type_, proto)
        sock.setblocking(False)
        current[:] = [sock]
        err = sock.connect_ex(addr)
        if err in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            loop.add_writer(sock, lambda: connected(sock))
        else:
            sock.close()
            try_next(
                ConnectionRefusedError(
                    err, f"connect to {host}:{port} failed: {errno.errorcode.get(err, err)}"
                )
            )

    def connected(sock: socket.socket) -> None:
        loop.forget(sock)
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            sock.close()
            exc_type = ConnectionRefusedError if err == errno.ECONNREFUSED else OSError
            try_next(exc_type(err, f"connect to {host}:{port} failed: {errno.errorcode.get(err, err)}"))
            return
        current.clear()
        finish(sock, None)

    def cancel() -> None:
        if state["done"]:
            return
        state["done"] = True
        for t in timer:
            t.cancel()
        for sock in current:
            loop.forget(sock)
            sock.close()

    def on_timeout() -> None:
        for sock in current:
            loop.forget(sock)
            sock.close()
        current.clear()
        finish(None, TimeoutError(f"connect to {host}:{port} timed out"))

    if timeout is not None:
        timer.append(loop.call_later(timeout, on_timeout))
    loop.call_soon(try_next, None)
    return cancel
