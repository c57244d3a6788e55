"""Non-blocking stream transport: buffered writes with watermarks, read pausing, clean close.

Ownership: while its socket is open, the loop's selector holds the transport and the transport holds its
protocol; ``connection_lost`` is the last callback, after which the transport lets go of the protocol
(and the loop of the transport), so a closed connection is freed by reference counting alone.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections import deque
from typing import Any

from .._writer import COPY_LIMIT
from .loop import EventLoop, TimerHandle

__all__ = ["BaseProtocol", "SocketTransport", "DEFAULT_HIGH_WATER", "DEFAULT_READ_SIZE"]

logger = logging.getLogger("wsproto_lite.server.transport")

DEFAULT_HIGH_WATER = 1 << 20
DEFAULT_READ_SIZE = 256 * 1024
#: A read of at least this many bytes makes the next read go into a bytes object of its own (see
#: ``_on_readable``); a smaller one switches back to the loop's scratch buffer.
LARGE_READ = 64 * 1024
#: Seconds a closed connection keeps draining the peer's input after our FIN (see ``_linger``).
LINGER_TIMEOUT = 2.0
_IOV_MAX = 512  # stay well under the kernel's IOV_MAX (1024 on Linux)
#: Up to this many buffered bytes are joined into one send(); above, the pieces go to sendmsg as they are,
#: so a large payload is never copied (a copy of a few KiB costs less than gathering: measured).
_JOIN_LIMIT = COPY_LIMIT


class BaseProtocol:
    """Callbacks a transport makes; every method is a no-op by default."""

    def connection_made(self, transport: SocketTransport) -> None:
        """The transport is ready (for TLS: after the handshake)."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived from the peer."""

    def eof_received(self) -> bool:
        """The peer closed its side; return True to keep the transport half-open."""
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket is closed; ``exc`` is None after a clean close."""

    def pause_writing(self) -> None:
        """The write buffer went over the high watermark."""

    def resume_writing(self) -> None:
        """The write buffer drained under the low watermark."""


_NOTHING_QUEUED: tuple[()] = ()

#: What a transport points at once its protocol got ``connection_lost``: callbacks go nowhere.
_DETACHED = BaseProtocol()


class SocketTransport:
    """A connected non-blocking socket driven by an :class:`EventLoop`.

    ``write()`` never blocks: what the kernel does not take at once is queued as memoryviews and flushed
    with ``sendmsg`` when the socket is writable. ``writelines()`` hands its pieces to ``sendmsg`` as they
    are (scatter/gather: a large payload is not copied, a partial write resumes inside a piece); only
    when they add up to a few KiB are they joined into one ``send``.  Over ``high_water`` buffered bytes
    the protocol's ``pause_writing()`` is called, under ``low_water`` its ``resume_writing()``.
    """

    #: Read bytes go through :meth:`_incoming` (TLS: ciphertext), not straight to the protocol.
    _decrypts = False

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        protocol: BaseProtocol,
        *,
        high_water: int = DEFAULT_HIGH_WATER,
        low_water: int | None = None,
        read_size: int = DEFAULT_READ_SIZE,
        peername: Any = None,
    ) -> None:
        """``peername``: the peer's address when known (``accept()`` returned it): no ``getpeername()``."""
        self.loop = loop
        self.sock = sock
        self.protocol = protocol
        # What the kernel did not take yet; ``_NOTHING_QUEUED`` (an empty tuple) while nothing waits: an
        # empty deque costs 760 bytes per idle connection (issue 22), so one exists only while needed.
        self._buffer: deque[memoryview] | tuple[()] = _NOTHING_QUEUED
        self._buffer_size = 0
        self._read_size = read_size
        self._high_water = high_water
        self._low_water = high_water // 4 if low_water is None else low_water
        self.writing_paused = False
        """True between ``pause_writing()`` and ``resume_writing()`` (read it, never set it)."""
        self._reading = False
        self._reading_paused = False
        self._large_reads = False  # the last read was large: read into a bytes object of its own
        self._eof = False
        self._linger_timer: TimerHandle | None = None
        self._closing = False
        self._lost = False
        self._fd = sock.fileno()
        #: The socket a fan-out may write to directly while nothing is buffered; -1: never (a subclass such
        #: as TLS turns what is written into something else than the bytes given).
        self._direct_fd = self._fd if type(self) is SocketTransport else -1
        self.peername: Any = peername
        sock.setblocking(False)
        if peername is None:
            try:
                self.peername = sock.getpeername()
            except OSError:
                pass
        try:  # asked of every socket: ``sock.family`` would cost an enum conversion per connection
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # not TCP (a Unix socket)
        self._start()

    def _start(self) -> None:
        self.loop.call_soon(self._make_connection)

    def _make_connection(self) -> None:
        if self._lost:
            return
        self._start_reading()
        self.protocol.connection_made(self)

    # -- reading -------------------------------------------------------------------------------

    def _start_reading(self) -> None:
        if not self._reading and not self._reading_paused and not self._eof and not self._closing:
            self._reading = True
            self.loop.add_reader(self._fd, self._on_readable)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self.loop.remove_reader(self._fd)

    def pause_reading(self) -> None:
        """Stop reading from the peer (backpressure) until :meth:`resume_reading`."""
        self._reading_paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        """Start reading from the peer again."""
        self._reading_paused = False
        if not self._lost:
            self._start_reading()

    @property
    def is_reading(self) -> bool:
        """True when the transport watches the socket for incoming data."""
        return self._reading

    def _on_readable(self) -> None:
        """Read what the socket holds and hand it on.

        ``recv(read_size)`` allocates ``read_size`` bytes and shrinks them to what arrived: for a 40-byte
        message that is an mmap/munmap pair, or a heap trim, per read, depending on malloc's state (12-23
        µs against 3.5, issue 22). So small reads go into the loop's scratch buffer and only what arrived
        is copied out; while reads are large (a bulk transfer) they go into their own bytes, no copy.
        """
        try:
            if self._large_reads:
                data = self.sock.recv(self._read_size)
            else:
                scratch = self.loop.read_scratch
                if len(scratch) < self._read_size:
                    scratch = self.loop.read_scratch = memoryview(bytearray(self._read_size))
                data = scratch[: self.sock.recv_into(scratch, self._read_size)].tobytes()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal(exc)
            return
        self._large_reads = len(data) >= LARGE_READ
        if not data:
            self._incoming_eof()
        elif self._decrypts:
            self._incoming(data)
        else:  # plain TCP: straight to the protocol (one call less for every read)
            self.protocol.data_received(data)

    def _incoming(self, data: bytes) -> None:
        """Bytes read from the socket, for a subclass that must turn them into the protocol's first
        (``_decrypts``: TLS decrypts them); the others hand them over directly."""
        self.protocol.data_received(data)

    def _incoming_eof(self) -> None:
        self._eof = True
        self._stop_reading()
        keep_open = self.protocol.eof_received()
        if not keep_open and not self._closing:
            self.close()

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` now, or queue what the kernel does not take; it is sent as soon as it allows."""
        if not data or self._closing or self._lost:
            return
        if self._buffer:  # behind what waits
            self._raw_write([data])
        else:  # nothing waits: straight to the kernel
            self._send_first(data)

    @property
    def buffered(self) -> int:
        """Bytes queued but not yet taken by the kernel (:meth:`get_write_buffer_size`, as an attribute)."""
        return self._buffer_size

    def writelines(self, chunks: list[bytes]) -> None:
        """Queue several byte strings at once (scatter-gather send)."""
        if not self._closing:
            self._raw_write([c for c in chunks if c])

    def _raw_write(self, chunks: list[bytes | bytearray | memoryview]) -> None:
        if self._lost or not chunks:
            return
        if not self._buffer and len(chunks) == 1:
            self._send_first(chunks[0])  # nothing is waiting: to the kernel without queuing it
            return
        buffer = self._buffer
        if not isinstance(buffer, deque):
            buffer = self._buffer = deque()
        for chunk in chunks:
            view = memoryview(chunk).cast("B")
            buffer.append(view)
            self._buffer_size += len(view)
        if len(buffer) == len(chunks):  # the buffer was empty: try to send right now
            self._flush()
            if self._lost:
                return
            if self._buffer:
                self.loop.add_writer(self._fd, self._on_writable)
        self._check_high_water()

    def _send_first(self, data: bytes | bytearray | memoryview) -> None:
        """``data`` with nothing queued ahead of it: one ``send()``; what the kernel did not take is queued,
        sent when the socket is writable; a failure closes the transport (``_fatal``)."""
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._fatal(exc)
            return
        if sent < len(data):
            self.queue_unsent(memoryview(data).cast("B")[sent:])

    def direct_fd(self) -> int:
        """The socket's descriptor when bytes may be sent on it directly, bypassing :meth:`write` (a
        fan-out's C loop): nothing is buffered, so they go out in order; else -1."""
        return self._direct_fd if not self._buffer and not self._closing else -1

    def queue_unsent(self, data: memoryview) -> None:
        """Queue what a direct send (see :meth:`direct_fd`) left: the kernel's buffer was full, or the send
        failed (the next send, when the socket is writable, reports the error and closes)."""
        if self._lost or not data:
            return
        buffer = self._buffer
        was_empty = not buffer
        if not isinstance(buffer, deque):  # created only while bytes wait (an idle connection holds none)
            buffer = self._buffer = deque()
        buffer.append(data)
        self._buffer_size += len(data)
        if was_empty:
            self.loop.add_writer(self._fd, self._on_writable)
        self._check_high_water()

    def _flush(self) -> None:
        """Send as much of the buffer as the kernel takes now."""
        buffer = self._buffer
        while buffer:
            try:
                if len(buffer) == 1:
                    sent = self.sock.send(buffer[0])
                elif self._buffer_size <= _JOIN_LIMIT:
                    sent = self.sock.send(b"".join(buffer))
                else:
                    sent = self.sock.sendmsg(list(_head(buffer, _IOV_MAX)))
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal(exc)
                return
            if sent == 0:
                return
            self._consume(sent)

    def _consume(self, sent: int) -> None:
        buffer = self._buffer
        assert isinstance(buffer, deque)  # sent > 0: something was queued
        self._buffer_size -= sent
        drop_sent(buffer, sent)
        if not buffer:
            self._buffer = _NOTHING_QUEUED

    def _on_writable(self) -> None:
        self._flush()
        if self._lost:
            return
        if not self._buffer:
            self._refill()
            if self._lost:
                return
        if not self._buffer:
            self.loop.remove_writer(self._fd)
            if self._closing:
                self._linger()
                return
        self._check_low_water()

    def _refill(self) -> None:
        """The socket took everything queued: a subclass may queue more now (TLS encrypts what waits)."""

    def _check_high_water(self) -> None:
        if not self.writing_paused and self.buffered > self._high_water:
            self.writing_paused = True
            try:
                self.protocol.pause_writing()
            except Exception:
                logger.exception("pause_writing raised")

    def _check_low_water(self) -> None:
        if self.writing_paused and self.buffered <= self._low_water:
            self.writing_paused = False
            try:
                self.protocol.resume_writing()
            except Exception:
                logger.exception("resume_writing raised")

    def get_write_buffer_size(self) -> int:
        """Bytes queued but not yet taken by the kernel (asyncio's name for :attr:`buffered`)."""
        return self.buffered

    def set_write_buffer_limits(self, high: int, low: int | None = None) -> None:
        """Change the watermarks (``low`` defaults to ``high // 4``)."""
        self._high_water = high
        self._low_water = high // 4 if low is None else low
        self._check_high_water()
        self._check_low_water()

    # -- closing -------------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """True once the socket is closed (``connection_lost`` was called)."""
        return self._lost

    def is_closing(self) -> bool:
        """True once :meth:`close` or :meth:`abort` was called or the socket was lost."""
        return self._closing or self._lost

    def close(self) -> None:
        """Stop reading, flush the buffer, then close the socket."""
        if self._closing or self._lost:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self.loop.call_soon(self._linger)

    def _linger(self) -> None:
        """Everything is sent: half-close, then discard what the peer still sends until it closes too.

        Closing a socket whose receive queue is not empty makes the kernel answer with a reset, which
        can destroy our last bytes (a close frame with its code) before the peer reads them. So we send
        FIN with shutdown() and read until the peer's EOF, for at most LINGER_TIMEOUT seconds.
        """
        if self._lost:
            return
        if self._eof:
            self._connection_lost(None)
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._connection_lost(None)
            return
        self._linger_timer = self.loop.call_later(LINGER_TIMEOUT, self._connection_lost, None)
        self.loop.add_reader(self._fd, self._drain)

    def _drain(self) -> None:
        try:
            data = self.sock.recv(self._read_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._connection_lost(None)

    def abort(self) -> None:
        """Close the socket now, discarding buffered data."""
        self._fatal(None)

    def _fatal(self, exc: BaseException | None) -> None:
        if exc is not None and not _is_reset(exc):
            logger.debug("transport error on %s: %r", self.peername, exc)
        self._buffer = _NOTHING_QUEUED
        self._buffer_size = 0
        self._closing = True
        self._connection_lost(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._reading = False
        if self._linger_timer is not None:
            self._linger_timer.cancel()
            self._linger_timer = None
        self._buffer = _NOTHING_QUEUED
        self._buffer_size = 0
        self.loop.forget(self._fd)
        protocol, self.protocol = self.protocol, _DETACHED  # the last callback: break protocol <-> transport
        try:
            self.sock.close()
        finally:
            try:
                protocol.connection_lost(exc)
            except Exception:
                logger.exception("connection_lost raised")

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``"peername"``, ``"sockname"``, ``"socket"`` (and ``"ssl_object"`` for TLS)."""
        if name == "peername":
            return self.peername
        if name == "socket":
            return self.sock
        if name == "sockname":
            try:
                return self.sock.getsockname()
            except OSError:
                return default
        return default


def _head(buffer: deque[memoryview] | tuple[()], count: int) -> list[memoryview]:
    out: list[memoryview] = []
    for view in buffer:
        out.append(view)
        if len(out) >= count:
            break
    return out


def send_pieces(sock: socket.socket, pieces: deque[memoryview]) -> None:
    """Write ``pieces`` in order with ``sendmsg`` (a blocking socket), never joining them."""
    while pieces:
        drop_sent(pieces, sock.sendmsg(_head(pieces, _IOV_MAX)))


def drop_sent(pieces: deque[memoryview], sent: int) -> None:
    """Take the ``sent`` bytes the kernel took off the front of ``pieces`` (a partial piece is cut)."""
    while sent:
        head = pieces[0]
        if len(head) <= sent:
            sent -= len(head)
            pieces.popleft()
        else:
            pieces[0] = head[sent:]
            sent = 0


def _is_reset(exc: BaseException) -> bool:
    return isinstance(exc, (ConnectionResetError, BrokenPipeError)) or (
        isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE, errno.ETIMEDOUT)
    )
