"""From application calls to bytes on the wire: the one place that frames outbound data (RFC 6455 §5).

The connection hands every payload to :class:`FrameWriter` and drains its ``out`` queue. The writer masks
(client role, §5.3), runs the extensions, keeps fragmented messages in order (§5.4), and has one fast case
in front of its general path: a final frame without extensions, outside a fragmented message, is queued
as one piece (a server's tiny frame as two ready-made header bytes plus the payload; otherwise built in
one call, with the accelerator in one allocation, masking included).

Payloads are never copied into their frame: a header and its payload are separate pieces of ``out``, and
:meth:`FrameWriter.take` hands the payload object itself to the I/O layer (which writes it with
``sendmsg``/writev). Only small pieces are joined, into one buffer with their neighbours: below
:data:`COPY_LIMIT` a copy costs less than one more buffer to gather (measured on loopback sockets). A
masked frame's payload is the masked copy (§5.3: that copy is inherent, and the only one); a compressed
one is zlib's output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ._errors import LocalProtocolError
from ._frames import FIN, LENGTH_16, MASK_KEY_SIZE, OP_BINARY, OP_CONT, apply_mask, encode_frame, frame_header
from ._speedups import accelerator
from .extensions import Extension

__all__ = ["FrameWriter", "COPY_LIMIT", "coalesce", "python_coalesce"]

#: Pieces at least this long are handed out as they are (never copied); shorter neighbours are joined.
COPY_LIMIT = 8192

# The two header bytes of every small final text/binary frame without mask or RSV bits (§5.2: FIN,
# opcode, 7-bit length), ready-made: _SMALL_HEADERS[opcode << 7 | length].
_SMALL_HEADERS = [bytes((FIN | (i >> 7), i & 0x7F)) for i in range((OP_BINARY + 1) << 7)]

# With the accelerator a masked frame of any size is built in one allocation (the masked copy of the
# payload is inherent, §5.3, and the header costs nothing more); the pure-Python encode_frame would copy a
# large masked payload a second time to put the header in front, so there large ones stay two pieces.
_WHOLE_MASKED_LIMIT = 1 << 62 if accelerator is not None else COPY_LIMIT


class FrameWriter:
    """Turns payloads into frames appended to ``out``, the connection's output queue (bytes, in order)."""

    def __init__(self, mask_key: Callable[[int], bytes] | None) -> None:
        self._mask_key = mask_key  # None: server, frames are not masked (§5.1)
        self._extensions: tuple[Extension, ...] = ()
        self._continuing: int | None = None  # opcode of the fragmented message being sent
        # The fast case applies: no extension, no fragmented message in progress.
        self._plain = True
        self.out: list[bytes] = []

    def use_extensions(self, extensions: Sequence[Extension]) -> None:
        """The handshake negotiated these extensions: every data frame from now on goes through them."""
        self._extensions = tuple(extensions)
        self._plain = not self._extensions

    def take(self) -> list[bytes]:
        """Empty ``out``: its pieces in order, small neighbours joined (see :func:`coalesce`)."""
        out = self.out
        self.out = []
        return coalesce(out, COPY_LIMIT) if len(out) > 1 else out

    def raw(self, data: bytes) -> None:
        """Queue bytes that are not a frame (the HTTP head of the opening handshake)."""
        self.out.append(data)

    def data(self, opcode: int, payload: bytes, fin: bool = True, compress: bool | None = None) -> None:
        """Queue a text/binary frame; ``fin=False`` leaves the message open for more calls."""
        if fin and self._plain:
            # The fast case: a whole message, nothing to encode or to keep in order; what the general path
            # below would queue. A server's tiny frame is a ready-made header and the payload.
            if self._mask_key is None and (length := len(payload)) < LENGTH_16:
                self.out.append(_SMALL_HEADERS[opcode << 7 | length] + payload)
            else:
                self.frame(opcode, payload)
            return
        first = self._continuing is None
        if not first and opcode != self._continuing:
            raise LocalProtocolError("another message is being sent in fragments; finish it first (§5.4)")
        rsv = 0
        for extension in self._extensions:
            bits, payload = extension.encode(payload, first, fin, compress)
            rsv |= bits
        self._continuing = None if fin else opcode
        self._plain = not self._extensions and fin
        self.frame(opcode if first else OP_CONT, payload, fin, rsv)

    def whole_frame(self, opcode: int, payload: bytes) -> bytes | None:
        """The frame of a whole small message, to be written at once instead of queued in ``out``: only
        when the fast case applies (no extension, no fragmented message under way, §5.4), nothing is
        queued ahead of it and it is one small piece (under :data:`COPY_LIMIT`); else None, nothing done.
        The very bytes :meth:`data` would queue."""
        if not self._plain or self.out or (length := len(payload)) >= COPY_LIMIT:
            return None
        if self._mask_key is None:
            if length < LENGTH_16:
                return _SMALL_HEADERS[opcode << 7 | length] + payload
            return encode_frame(opcode, payload)
        return encode_frame(opcode, payload, True, 0, self._mask_key(MASK_KEY_SIZE))  # §5.3: a fresh key

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
        length = len(payload)
        if self._mask_key is None:
            if length < COPY_LIMIT:  # one piece now rather than a join in take()
                out.append(encode_frame(opcode, payload, fin, rsv))
            else:  # the payload itself, never copied
                out.append(frame_header(opcode, length, fin, rsv))
                out.append(payload)
            return
        # §5.3: a fresh, unpredictable masking key for every frame
        mask = self._mask_key(MASK_KEY_SIZE)
        if length < _WHOLE_MASKED_LIMIT:
            out.append(encode_frame(opcode, payload, fin, rsv, mask))
        else:
            out.append(frame_header(opcode, length, fin, rsv, mask))
            out.append(apply_mask(payload, mask))


def python_coalesce(pieces: list[bytes], limit: int = COPY_LIMIT) -> list[bytes]:
    """``pieces`` with every run of pieces shorter than ``limit`` joined into one; longer pieces are kept
    as the very same objects (no copy). The concatenation is unchanged.

    This is the reference: ``coalesce`` is the compiled version of it when the accelerator is active."""
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


# The compiled version, chosen once at import like _frames.apply_mask (it takes the limit explicitly).
if TYPE_CHECKING or accelerator is None:
    coalesce = python_coalesce
else:
    coalesce = accelerator.coalesce
