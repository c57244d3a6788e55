"""TLS over :class:`SocketTransport` with ``ssl.MemoryBIO``: the handshake runs inside the loop."""

from __future__ import annotations

import logging
import socket
import ssl
from collections import deque
from typing import Any

from .._writer import COPY_LIMIT
from .loop import EventLoop
from .transport import _NOTHING_QUEUED, BaseProtocol, SocketTransport

__all__ = ["TLSTransport", "server_context", "client_context"]

logger = logging.getLogger("wsproto_lite.server.tls")

#: Plaintext encrypted per step before its records are handed to the socket (see ``_encrypt``).
_TLS_SLICE = 256 * 1024


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A TLS server context (TLS 1.2+) loaded with a certificate chain and key."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile, keyfile)
    return ctx


def client_context(ca_file: str | None = None, *, verify: bool = True) -> ssl.SSLContext:
    """A TLS client context verifying certificates (system CAs, or ``ca_file``) unless ``verify=False``."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TLSTransport(SocketTransport):
    """A :class:`SocketTransport` that encrypts with an ``SSLObject`` over two memory BIOs.

    The protocol's ``connection_made()`` is called once the handshake succeeded; a failed handshake only
    calls ``connection_lost(exc)``.  All plaintext the SSL object holds is drained on every read, so
    nothing stays hidden in it.

    Writes are encrypted lazily: the plaintext pieces are queued as they are (by reference, like the
    plain transport's buffer) and encrypted only while the socket takes the ciphertext, one slice of
    ``_TLS_SLICE`` plaintext bytes at a time, so a peer that reads slowly never makes the transport hold a
    second, encrypted copy of what is queued: at most one slice's records wait besides the plaintext.
    The write buffer (``buffered``, the watermarks) counts the plaintext queued plus the ciphertext not
    yet taken by the kernel.  ``close()`` sends close_notify after everything queued.  A small write
    while nothing waits is encrypted and sent at once, without being queued.
    """

    _decrypts = True

    def __init__(
        self,
        loop: EventLoop,
        sock: socket.socket,
        protocol: BaseProtocol,
        *,
        ssl_context: ssl.SSLContext,
        server_side: bool,
        server_hostname: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._in_bio = ssl.MemoryBIO()
        self._out_bio = ssl.MemoryBIO()
        self._ssl = ssl_context.wrap_bio(
            self._in_bio, self._out_bio, server_side=server_side, server_hostname=server_hostname
        )
        self._handshaking = True
        # Plaintext not encrypted yet; an empty tuple while nothing waits (as the base class's buffer).
        self._plain: deque[memoryview] | tuple[()] = _NOTHING_QUEUED
        self._plain_size = 0
        self._close_notified = False
        super().__init__(loop, sock, protocol, **kwargs)

    def _make_connection(self) -> None:
        if self._lost:
            return
        self._start_reading()
        self._do_handshake()

    def _do_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_bio()
            return
        except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
            self._flush_bio()
            logger.debug("TLS handshake with %s failed: %s", self.peername, exc)
            self._fatal(exc)
            return
        self._handshaking = False
        self._flush_bio()
        self.protocol.connection_made(self)
        if not self._lost:
            self._pump()  # what was written during the handshake
        if not self._lost:
            self._check_high_water()
            self._read_plaintext()

    def _incoming(self, data: bytes) -> None:
        self._in_bio.write(data)
        if self._handshaking:
            self._do_handshake()
        else:
            self._read_plaintext()

    def _read_plaintext(self) -> None:
        while not self._lost:
            try:
                chunk = self._ssl.read(self._read_size)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                self._flush_bio()
                if not self._eof:
                    super()._incoming_eof()
                return
            except ssl.SSLError as exc:
                self._fatal(exc)
                return
            if not chunk:
                if not self._eof:
                    super()._incoming_eof()
                return
            self.protocol.data_received(chunk)
        self._flush_bio()  # reading may produce records to send (alerts, key updates)

    def _incoming_eof(self) -> None:
        self._in_bio.write_eof()
        if self._handshaking:
            self._fatal(ConnectionResetError("connection closed during the TLS handshake"))
            return
        self._read_plaintext()
        if not self._eof and not self._lost:
            super()._incoming_eof()

    def _flush_bio(self) -> None:
        data = self._out_bio.read()
        if data:
            self._raw_write([data])

    # -- writing -------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        """Plaintext queued plus ciphertext not yet taken by the kernel."""
        return self._buffer_size + self._plain_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._lost:
            return
        if len(data) <= _TLS_SLICE and not self._buffer and not self._plain and not self._handshaking:
            # Fast path (a small frame, nothing waiting): encrypted and handed to the socket at once.
            try:
                self._ssl.write(data)
            except ssl.SSLError as exc:
                self._fatal(exc)
                return
            self._flush_bio()
            return
        self._queue_plain([data])

    def writelines(self, chunks: list[bytes]) -> None:
        if not self._closing and not self._lost:
            self._queue_plain(chunks)

    def _queue_plain(self, chunks: list[bytes] | list[bytes | bytearray | memoryview]) -> None:
        """Encrypt now what the socket takes now; queue the rest of the plaintext as it is."""
        plain = self._plain
        if not isinstance(plain, deque):
            plain = self._plain = deque()
        for chunk in chunks:
            if chunk:
                view = memoryview(chunk).cast("B")
                plain.append(view)
                self._plain_size += len(view)
        if self._handshaking:
            return  # encrypted once the handshake is done
        if not self._buffer:  # else the socket is full: _on_writable continues
            self._pump()
        if not self._lost:
            self._check_high_water()

    def _pump(self) -> None:
        """Encrypt queued plaintext, a slice at a time, as long as the socket takes all the ciphertext;
        close_notify once everything is out of the queue after :meth:`close`."""
        if self._handshaking:
            return
        while self._plain and not self._buffer and not self._lost:
            self._encrypt_slice()
            self._flush_bio()
        if self._closing and not self._plain and not self._lost:
            self._send_close_notify()

    def _encrypt_slice(self) -> None:
        """Encrypt up to ``_TLS_SLICE`` bytes from the head of the plaintext queue into the memory BIO:
        large pieces are read in place, runs of small ones joined first (one record, not one each)."""
        plain = self._plain
        assert isinstance(plain, deque)  # called while plaintext waits
        write, budget = self._ssl.write, _TLS_SLICE
        run: list[memoryview] = []  # small pieces, joined before they are encrypted
        run_size = 0
        try:
            while plain and budget:
                piece = plain[0]
                if len(piece) <= budget:
                    plain.popleft()
                else:
                    piece, plain[0] = piece[:budget], piece[budget:]
                budget -= len(piece)
                self._plain_size -= len(piece)
                if len(piece) < COPY_LIMIT:
                    run.append(piece)
                    run_size += len(piece)
                    if run_size >= COPY_LIMIT:
                        write(_joined(run))
                        run, run_size = [], 0
                    continue
                if run:
                    write(_joined(run))
                    run, run_size = [], 0
                write(piece)
            if run:
                write(_joined(run))
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        if not plain:
            self._plain = _NOTHING_QUEUED

    def _refill(self) -> None:
        self._pump()  # the socket took all the ciphertext: encrypt the next slice of what waits

    # -- closing -------------------------------------------------------------------------------

    def close(self) -> None:
        if self._closing or self._lost:
            return
        self._closing = True
        self._stop_reading()
        if self._handshaking:
            self._drop_plain()
        elif not self._plain:
            self._send_close_notify()
        if not self._buffer and not self._lost:
            self.loop.call_soon(self._linger)

    def _send_close_notify(self) -> None:
        if self._close_notified:
            return
        self._close_notified = True
        try:
            self._ssl.unwrap()  # queues close_notify; we do not wait for the peer's
        except (ssl.SSLError, OSError):
            pass
        self._flush_bio()

    def _linger(self) -> None:
        if not self._plain and not self._buffer:
            super()._linger()

    def _drop_plain(self) -> None:
        self._plain = _NOTHING_QUEUED
        self._plain_size = 0

    def _connection_lost(self, exc: BaseException | None) -> None:
        self._drop_plain()
        super()._connection_lost(exc)

    @property
    def handshake_complete(self) -> bool:
        """True once the TLS handshake succeeded."""
        return not self._handshaking

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._ssl
        if name == "cipher":
            return self._ssl.cipher()
        return super().get_extra_info(name, default)


def _joined(pieces: list[memoryview]) -> bytes | memoryview:
    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
