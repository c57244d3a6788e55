"""TLS over :class:`SocketTransport` with ``ssl.MemoryBIO``: the handshake runs inside the loop."""

from __future__ import annotations

import logging
import socket
import ssl
from typing import Any

from .loop import EventLoop
from .transport import BaseProtocol, SocketTransport

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
    calls ``connection_lost(exc)``.  The write buffer (and so the watermarks) counts ciphertext.
    All plaintext the SSL object holds is drained on every read, so nothing stays hidden in it.
    """

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
        self._early_writes: list[bytes] = []
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
        if self._early_writes and not self._lost:
            chunks, self._early_writes = self._early_writes, []
            self.writelines(chunks)
        if not self._lost:
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

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data or self._closing or self._lost:
            return
        if self._handshaking:
            self._early_writes.append(bytes(data))
            return
        self._encrypt([data])

    def writelines(self, chunks: list[bytes]) -> None:
        if self._closing or self._lost:
            return
        if self._handshaking:
            self._early_writes.extend(bytes(c) for c in chunks if c)
            return
        self._encrypt(chunks)

    def _encrypt(self, chunks: list[bytes] | list[bytes | bytearray | memoryview]) -> None:
        """Encrypt the pieces in place, ``_TLS_SLICE`` bytes of plaintext at a time, each slice's records
        written before the next slice is encrypted: a large payload is never joined to its header nor
        copied whole, and the ciphertext waiting in the memory BIO stays bounded. (``SSLSocket`` would
        write records straight to the socket, but it has no ``sendmsg`` either and would take the
        handshake out of the loop; the BIO's one copy of the ciphertext is what this design costs.)"""
        ssl_object, out_bio = self._ssl, self._out_bio
        try:
            for chunk in chunks:
                if len(chunk) <= _TLS_SLICE:
                    if chunk:
                        ssl_object.write(chunk)
                    if out_bio.pending >= _TLS_SLICE:
                        self._flush_bio()
                    continue
                view = memoryview(chunk)
                for start in range(0, len(view), _TLS_SLICE):
                    ssl_object.write(view[start : start + _TLS_SLICE])
                    self._flush_bio()
                    if self._lost:
                        return
        except ssl.SSLError as exc:
            self._fatal(exc)
            return
        self._flush_bio()

    def close(self) -> None:
        if self._closing or self._lost:
            return
        if not self._handshaking:
            try:
                self._ssl.unwrap()  # queues close_notify; we do not wait for the peer's
            except (ssl.SSLError, OSError):
                pass
            self._flush_bio()
        super().close()

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
