"""One connection to Redis read and written on the hub's loop (``RespSocket``), and how it is made
(``Connecting``).

Setting a connection up (TCP or unix connect, TLS for ``rediss://``, AUTH and SELECT from the URL) is
redis-py's ``Connection.connect()``, run in a short-lived thread per attempt (rare: at start and after a
failure) so the loop never blocks on it; the loop then takes the connected socket, non-blocking.  From
there commands are packed by ``hiredis.pack_command`` (redis-py's packer encodes every argument in Python
first: 4x the CPU) and replies parsed by ``hiredis.Reader`` (the ``redis`` extra requires hiredis): no
RESP of our own.

Bounded: one readable callback reads at most ``_READ_BUDGET`` bytes (the rest waits for the next
iteration, other connections go first); a reply not complete yet stays in hiredis's buffer.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

try:
    import hiredis
except ImportError:  # pragma: no cover - redis_shard.require_redis() says which extra to install
    pass

if TYPE_CHECKING:
    from .transport import HubLoop

__all__ = ["Connecting", "RespSocket"]

logger = logging.getLogger("wsproto_lite.hub.redis")

_RECV_SIZE = 65536
_READ_BUDGET = 4 * _RECV_SIZE  # bytes one readable callback takes at most
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Connecting:
    """One connection attempt: redis-py's ``connect()`` in a thread of its own (named ``name``), the
    result handed to ``done`` in the loop thread (``error`` is None on success).  ``cancel`` never
    waits: a connection made after it is closed by the thread itself."""

    def __init__(self, loop: HubLoop, client: Any, name: str, done: Callable[[Connecting], None]) -> None:
        self.loop = loop
        self.connection: Any = client.connection_pool.make_connection()
        self.error: BaseException | None = None
        self.lock = threading.Lock()
        self.cancelled = False
        self.finished = False
        self.done = done
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.connection.connect()
        except Exception as exc:  # redis-py's errors, OSError, TLS: the attempt failed
            self.error = exc
        with self.lock:
            if self.cancelled:
                self.connection.disconnect()
                return
            self.finished = True
        try:
            self.loop.call_soon_threadsafe(self._finish)
        except (RuntimeError, OSError):  # the loop is gone (closed before the hub stopped us)
            self.connection.disconnect()

    def _finish(self) -> None:
        self.thread.join(1.0)  # it is returning: no thread of ours outlives the attempt
        if not self.cancelled:
            self.done(self)

    def cancel(self) -> None:
        """Loop thread: nobody wants this connection any more; it is closed (now, or once made)."""
        with self.lock:
            self.cancelled = True
            if not self.finished:
                return
        self.connection.disconnect()


class RespSocket:
    """A connected redis-py connection's socket, non-blocking on the loop: ``send`` packs and writes
    commands (what the socket does not take now is written when it is writable), every readable chunk's
    complete replies go to ``on_replies`` in one list (in order; an error answer is its
    ``hiredis.ReplyError``, a reply that is not UTF-8 its ``UnicodeDecodeError``); a broken connection
    calls ``on_broken(reason)`` once, from the loop (never from inside ``send``)."""

    def __init__(
        self,
        loop: HubLoop,
        connection: Any,
        on_replies: Callable[[list[Any]], None],
        on_broken: Callable[[str], None],
    ) -> None:
        self.loop = loop
        self.connection = connection
        self.sock: Any = connection._sock  # redis-py connected it; from now on it is read here only
        self.sock.setblocking(False)
        self.fd: int = self.sock.fileno()
        self.reader = hiredis.Reader(encoding="utf-8")
        self.unsent = bytearray()
        self.on_replies = on_replies
        self.on_broken = on_broken
        self.closed = False
        self.last_read = loop.time()
        loop.add_reader(self.fd, self._on_readable)

    def send(self, commands: list[tuple[Any, ...]]) -> None:
        """Write ``commands`` (argument tuples) after what is still unsent."""
        if self.closed:
            return
        pack_command = hiredis.pack_command  # str as UTF-8, int and float as text: as redis-py packs
        data = b"".join([pack_command(command) for command in commands])
        if self.unsent:
            self.unsent += data
            return
        try:
            sent = self.sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self.loop.call_later(0.0, self._break, f"write failed: {exc}")
            return
        if sent < len(data):
            self.unsent += memoryview(data)[sent:]
            self.loop.add_writer(self.fd, self._on_writable)

    def _on_writable(self) -> None:
        try:
            sent = self.sock.send(self.unsent)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self._break(f"write failed: {exc}")
            return
        del self.unsent[:sent]
        if not self.unsent:
            self.loop.remove_writer(self.fd)

    def _on_readable(self) -> None:
        broken = self._read()
        replies = self._replies()
        if replies:
            self.on_replies(replies)
        if broken:
            self._break(broken)

    def _read(self) -> str:
        """Feed what the socket holds (up to the budget) to the parser; why the link broke, or ''."""
        budget = _READ_BUDGET
        sock = self.sock
        while budget > 0 and not self.closed:
            try:
                data = sock.recv(_RECV_SIZE)
            except _WOULD_BLOCK:
                return ""
            except OSError as exc:
                return f"read failed: {exc}"
            if not data:
                return "Redis closed the connection"
            self.reader.feed(data)
            self.last_read = self.loop.time()
            budget -= len(data)
            if len(data) < _RECV_SIZE and not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                return ""
        if not self.closed and isinstance(sock, ssl.SSLSocket) and sock.pending():
            # over the budget with bytes TLS already decrypted: the socket may never be readable again
            # for them (the kernel has nothing more), so come back for them next iteration
            self.loop.call_later(0.0, self._on_readable)
        return ""

    def _replies(self) -> list[Any]:
        replies: list[Any] = []
        reader = self.reader
        while True:
            try:
                reply = reader.gets()
            except UnicodeDecodeError as exc:  # read whole, just not text: the caller decides
                reply = exc
            except hiredis.ProtocolError as exc:
                self.loop.call_later(0.0, self._break, f"protocol error: {exc}")
                return replies
            if reply is False:
                return replies
            replies.append(reply)

    def _break(self, reason: str) -> None:
        if not self.closed:
            self.close()
            self.on_broken(reason)

    def close(self) -> None:
        """Stop watching the socket and close it (idempotent); ``on_broken`` is not called."""
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.fd)
        if self.unsent:
            self.loop.remove_writer(self.fd)
        self.connection.disconnect()
