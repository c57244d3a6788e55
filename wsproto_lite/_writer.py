"""From application calls to frames: one direction of a connection (RFC 6455 §5.2-5.6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._errors import LocalProtocolError
from ._frames import OP_BINARY, OP_CONT, OP_TEXT, apply_mask, frame_header
from .extensions import Extension

__all__ = ["FrameWriter", "SMALL_HEADERS"]


# The two header bytes of every small final text/binary server frame, ready-made (§5.2: FIN, opcode, 7-bit
# length): SMALL_HEADERS[opcode][length].
SMALL_HEADERS = {opcode: [bytes((0x80 | opcode, n)) for n in range(126)] for opcode in (OP_TEXT, OP_BINARY)}


class FrameWriter:
    """Turns payloads into frames appended to ``out``: masks (client, §5.3) and applies extensions."""

    def __init__(self, mask_key: Callable[[int], bytes] | None, extensions: Sequence[Extension] = ()) -> None:
        self._mask_key = mask_key  # None: server, frames are not masked (§5.1)
        self._extensions = tuple(extensions)
        self.continuing: int | None = None  # opcode of the fragmented message being sent
        # Connection.send_text/send_binary take a fast path of their own when this is true: a small,
        # unmasked, untransformed, unfragmented frame is SMALL_HEADERS[opcode][length] + payload.
        self.plain_server = mask_key is None and not self._extensions
        self.out: list[bytes] = []

    def data(self, opcode: int, payload: bytes, fin: bool, compress: bool | None) -> None:
        """Queue a text/binary frame; ``fin=False`` leaves the message open for more calls."""
        first = self.continuing is None
        if not first and opcode != self.continuing:
            raise LocalProtocolError("another message is being sent in fragments; finish it first (§5.4)")
        rsv = 0
        for extension in self._extensions:
            bits, payload = extension.encode(payload, first, fin, compress)
            rsv |= bits
        self.continuing = None if fin else opcode
        self.frame(opcode if first else OP_CONT, payload, fin, rsv)

    def frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0) -> None:
        """Queue one frame as it is."""
        out = self.out
        if self._mask_key is None:
            out.append(frame_header(opcode, len(payload), fin, rsv))
            if payload:
                out.append(payload)
        else:
            # §5.3: a fresh, unpredictable masking key for every frame
            mask = self._mask_key(4)
            out.append(frame_header(opcode, len(payload), fin, rsv, mask))
            if payload:
                out.append(apply_mask(payload, mask))
