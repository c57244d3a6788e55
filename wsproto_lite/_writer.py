"""From application calls to bytes on the wire: the one place that frames outbound data (RFC 6455 §5).

The connection hands every payload to :class:`FrameWriter` and drains its ``out`` queue. The writer masks
(client role, §5.3), runs the extensions, keeps fragmented messages in order (§5.4), and has one fast case
inside its general path: a small, final frame of a server without extensions is two ready-made header
bytes plus the payload.

Payloads are never copied into their frame: a header and its payload are separate pieces of ``out``, and
:meth:`FrameWriter.take` hands the payload object itself to the I/O layer (which writes it with
``sendmsg``/writev). Only small pieces are joined, into one buffer with their neighbours: below
:data:`COPY_LIMIT` a copy costs less than one more buffer to gather (measured on loopback sockets). A
masked frame's payload is the masked copy (§5.3: that copy is inherent, and the only one); a compressed
one is zlib's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._errors import LocalProtocolError
from ._frames import FIN, LENGTH_16, MASK_KEY_SIZE, OP_BINARY, OP_CONT, apply_mask, frame_header
from .extensions import Extension

__all__ = ["FrameWriter", "COPY_LIMIT", "coalesce"]

#: Pieces at least this long are handed out as they are (never copied); shorter neighbours are joined.
COPY_LIMIT = 8192

# The two header bytes of every small final text/binary frame without mask or RSV bits (§5.2: FIN,
# opcode, 7-bit length), ready-made: _SMALL_HEADERS[opcode << 7 | length].
_SMALL_HEADERS = [bytes((FIN | (i >> 7), i & 0x7F)) for i in range((OP_BINARY + 1) << 7)]


class FrameWriter:
    """Turns payloads into frames appended to ``out``, the connection's output queue (bytes, in order)."""

    def __init__(self, mask_key: Callable[[int], bytes] | None) -> None:
        self._mask_key = mask_key  # None: server, frames are not masked (§5.1)
        self._extensions: tuple[Extension, ...] = ()
        self._continuing: int | None = None  # opcode of the fragmented message being sent
        # The fast case applies: server role, no extension, no fragmented message in progress.
        self._small_ready_made = mask_key is None
        self.out: list[bytes] = []

    def use_extensions(self, extensions: Sequence[Extension]) -> None:
        """The handshake negotiated these extensions: every data frame from now on goes through them."""
        self._extensions = tuple(extensions)
        self._small_ready_made = self._mask_key is None and not self._extensions

    def take(self) -> list[bytes]:
        """Empty ``out``: its pieces in order, small neighbours joined (see :func:`coalesce`)."""
        out = self.out
        self.out = []
        return coalesce(out) if len(out) > 1 else out

    def raw(self, data: bytes) -> None:
        """Queue bytes that are not a frame (the HTTP head of the opening handshake)."""
        self.out.append(data)

    def data(self, opcode: int, payload: bytes, fin: bool = True, compress: bool | None = None) -> None:
        """Queue a text/binary frame; ``fin=False`` leaves the message open for more calls."""
        if fin and self._small_ready_made and (length := len(payload)) < LENGTH_16:
            # The fast case: what the general path below would queue, without a call per step.
            self.out.append(_SMALL_HEADERS[opcode << 7 | length] + payload)
            return
        first = self._continuing is None
        if not first and opcode != self._continuing:
            raise LocalProtocolError("another message is being sent in fragments; finish it first (§5.4)")
        rsv = 0
        for extension in self._extensions:
            bits, payload = extension.encode(payload, first, fin, compress)
            rsv |= bits
        self._continuing = None if fin else opcode
        self._small_ready_made = self._mask_key is None and not self._extensions and fin
        self.frame(opcode if first else OP_CONT, payload, fin, rsv)

    @property
    def idle(self) -> bool:
        """Nothing queued and no fragmented message under way: a whole frame may go to the wire next."""
        return self._continuing is None and not self.out

    def prepared(self, frame: bytes) -> None:
        """Queue a whole frame built beforehand (an unmasked, uncompressed broadcast frame)."""
        if self._continuing is not None:
            raise LocalProtocolError("a fragmented message is being sent; finish it first (§5.4)")
        self.out.append(frame)

    def frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> None:
        """Queue one frame as it is (control frames, and data frames once encoded)."""
        out = self.out
        if self._mask_key is None:
            out.append(frame_header(opcode, len(payload), fin, rsv))
            if payload:
                out.append(payload)
        else:
            # §5.3: a fresh, unpredictable masking key for every frame
            mask = self._mask_key(MASK_KEY_SIZE)
            out.append(frame_header(opcode, len(payload), fin, rsv, mask))
            if payload:
                out.append(apply_mask(payload, mask))


def coalesce(pieces: list[bytes], limit: int = COPY_LIMIT) -> list[bytes]:
    """``pieces`` with every run of pieces shorter than ``limit`` joined into one; longer pieces are kept
    as the very same objects (no copy). The concatenation is unchanged."""
    result: list[bytes] = []
    run: list[bytes] = []
    for piece in pieces:
        if len(piece) < limit:
            run.append(piece)
            continue
        if run:
            result.append(run[0] if len(run) == 1 else b"".join(run))
            run = []
        result.append(piece)
    if run:
        result.append(run[0] if len(run) == 1 else b"".join(run))
    return result
