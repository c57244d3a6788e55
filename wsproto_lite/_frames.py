"""Frames on the wire (RFC 6455 §5.2): opcodes, the header, masking, serialization.

This module knows the bit layout and nothing about messages or connection state::

      0                   1                   2                   3
      0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
     +-+-+-+-+-------+-+-------------+-------------------------------+
     |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
     |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
     |N|V|V|V|       |S|             |   (if payload len==126/127)   |
     | |1|2|3|       |K|             |                               |
     +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
     |     Extended payload length continued, if payload len == 127  |
     + - - - - - - - - - - - - - - - +-------------------------------+
     |                               |Masking-key, if MASK set to 1  |
     +-------------------------------+-------------------------------+
     | Masking-key (continued)       |          Payload Data         |
     +-------------------------------- - - - - - - - - - - - - - - - +
"""

from __future__ import annotations

import enum
import functools
import struct
from typing import TYPE_CHECKING, NamedTuple

from ._speedups import accelerator

__all__ = [
    "Opcode",
    "FrameHeader",
    "parse_header",
    "encode_frame",
    "python_encode_frame",
    "frame_header",
    "apply_mask",
    "python_apply_mask",
    "PayloadBuffer",
    "PythonPayloadBuffer",
    "FIN",
    "RSV1",
    "RSV2",
    "RSV3",
    "RSV_MASK",
    "MASK_BIT",
    "LENGTH_BITS",
    "LENGTH_16",
    "LENGTH_64",
    "MAX_CONTROL_PAYLOAD",
    "INLINE_MASK_LIMIT",
    "CONTROL_BIT",
    "OPCODE_BITS",
    "MASK_KEY_SIZE",
]


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8). 0x3-0x7 and 0xB-0xF are reserved."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


# Plain ints for the hot paths: comparing ints is cheaper than comparing enum members.
OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA
CONTROL_BIT = 0x8  # §5.5: control frames are those whose opcode has its most significant bit set

# First byte: FIN, RSV1-3, opcode.
FIN = 0x80
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10
RSV_MASK = RSV1 | RSV2 | RSV3
OPCODE_BITS = 0x0F
# Second byte: MASK, then a 7-bit length; 126 and 127 announce a 16- and a 64-bit length that follow.
MASK_BIT = 0x80
LENGTH_BITS = 0x7F
LENGTH_16, LENGTH_64 = 126, 127
MASK_KEY_SIZE = 4

MAX_CONTROL_PAYLOAD = 125  # §5.5: all control frames MUST have a payload length of 125 bytes or less

_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack
_unpack_16 = struct.Struct("!H").unpack_from
_unpack_64 = struct.Struct("!Q").unpack_from


class FrameHeader(NamedTuple):
    """A parsed frame header. ``rsv`` keeps the bits in place (0x40 = RSV1)."""

    fin: bool
    rsv: int
    opcode: int
    mask: bytes | None
    length: int
    header_size: int


class HeaderError(Exception):
    """The header itself is malformed (§5.2: 64-bit length with the most significant bit set)."""


def parse_header(buf: bytes, pos: int = 0) -> FrameHeader | None:
    """Parse the header at ``buf[pos:]``; None if it is not complete yet.

    Only the layout is checked here; which opcodes, RSV bits and masks are allowed is the reader's call.
    """
    available = len(buf) - pos
    if available < 2:
        return None
    b0 = buf[pos]
    b1 = buf[pos + 1]
    length = b1 & LENGTH_BITS
    size = 2
    if length == LENGTH_16:
        size = 4
        if available < size:
            return None
        (length,) = _unpack_16(buf, pos + 2)
    elif length == LENGTH_64:
        size = 10
        if available < size:
            return None
        (length,) = _unpack_64(buf, pos + 2)
        if length >> 63:
            # §5.2: "the most significant bit MUST be 0"
            raise HeaderError("64-bit payload length has its most significant bit set")
    mask = None
    if b1 & MASK_BIT:
        if available < size + MASK_KEY_SIZE:
            return None
        mask = bytes(buf[pos + size : pos + size + MASK_KEY_SIZE])
        size += MASK_KEY_SIZE
    return FrameHeader(bool(b0 & FIN), b0 & RSV_MASK, b0 & OPCODE_BITS, mask, length, size)


def frame_header(
    opcode: int, length: int, fin: bool = True, rsv: int = 0, mask: bytes | None = None
) -> bytes:
    """The header of a frame, mask key included when given, without the payload."""
    b0 = (FIN if fin else 0) | rsv | opcode
    mask_bit = 0 if mask is None else MASK_BIT
    # §5.2: the minimal number of bytes MUST be used to encode the length
    if length < LENGTH_16:
        header = bytes((b0, mask_bit | length))
    elif length < 0x10000:
        header = _pack_16(b0, mask_bit | LENGTH_16, length)
    else:
        header = _pack_64(b0, mask_bit | LENGTH_64, length)
    return header if mask is None else header + mask


def python_encode_frame(
    opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bytes | None = None
) -> bytes:
    """Serialize one whole frame; with ``mask`` (4 bytes) the payload is masked (§5.3).

    This is the reference: ``encode_frame`` is the compiled version of it when the accelerator is active
    (one allocation, the payload copied or masked into it once), else this one.
    """
    header = frame_header(opcode, len(payload), fin, rsv, mask)
    return header + (payload if mask is None else apply_mask(payload, mask))


_SMALL = 512  # below this, one big-integer XOR is the fastest; above, translate tables win (measured)
#: Payloads shorter than this are masked as one big-integer XOR (see apply_mask). A hot path may do that
#: inline instead of calling apply_mask (the reader's fast case does: the call is ~20 % of the cost of a
#: 16-125 byte frame in pure Python); set it to 0 when apply_mask gets an accelerator that is faster.
INLINE_MASK_LIMIT = _SMALL
_BLOCK = 262144  # larger payloads are unmasked in blocks (the I/O layer reads 256 KiB at a time)


@functools.cache
def _xor_tables() -> list[bytes]:
    """``_xor_tables()[k]`` maps every byte b to b ^ k: a bytes.translate table per possible key byte.
    Built on first use (a few ms), so a process that runs the compiled masking never builds them."""
    return [bytes(b ^ k for b in range(256)) for k in range(256)]


def python_apply_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (§5.3); applying it twice is the identity.

    ``offset`` is the position of ``data[0]`` in the frame payload, for payloads processed in pieces.
    Pure Python without a per-byte loop: small payloads are XORed as one big integer with the repeated
    key; larger ones byte-lane by byte-lane, with ``bytes.translate`` on every fourth byte.

    This is the reference: ``apply_mask`` is the compiled version of it when the accelerator is active
    (``_cspeedups.c``, the same bytes for every input, tested against this function), else this one.
    """
    n = len(data)
    if not n:
        return b""
    if offset & 3:
        shift = offset & 3
        mask = mask[shift:] + mask[:shift]
    if n < _SMALL:
        key = (mask * ((n + 3) >> 2))[:n]
        return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    xor = _xor_tables()
    tables = [xor[k] for k in mask]
    if n <= _BLOCK:
        return _translate_lanes(data, tables)
    view = memoryview(data)
    return b"".join([_translate_lanes(view[i : i + _BLOCK], tables) for i in range(0, n, _BLOCK)])


def _translate_lanes(data: bytes | memoryview, tables: list[bytes]) -> bytes:
    out = bytearray(data)
    out[0::4] = out[0::4].translate(tables[0])
    out[1::4] = out[1::4].translate(tables[1])
    out[2::4] = out[2::4].translate(tables[2])
    out[3::4] = out[3::4].translate(tables[3])
    return bytes(out)


class PythonPayloadBuffer:
    """A message's payload assembled from received pieces, unmasked on the way in (§5.3).

    For the reader: ``append(chunk, start, end, mask, offset)`` takes the payload bytes straight out of a
    received chunk, so a message needs no slice, no unmasked piece and no join. ``take()`` returns the
    whole payload and empties the buffer. This is the reference; ``PayloadBuffer`` is the compiled version
    when the accelerator is active (one copy per byte from the chunk into the final ``bytes``).
    """

    __slots__ = ("_pieces", "_size")

    def __init__(self, capacity: int = 0, text: bool = False) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        # ``text`` only matters to the compiled version (it then stores the payload in a ``str``)
        self._pieces: list[bytes] = []  # joined by take(); the capacity is only a hint here
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(
        self,
        data: bytes | bytearray | memoryview,
        start: int,
        end: int,
        mask: bytes | None = None,
        offset: int = 0,
        /,
    ) -> bool:
        """Append ``data[start:end]``, unmasked with ``mask`` unless None, ``data[start]`` being payload
        byte ``offset``. Returns whether every byte appended is ASCII: such a piece of a text message is
        valid UTF-8 by itself, so the caller can skip decoding it (§8.1) when no sequence is pending."""
        if not 0 <= start <= end <= len(data):
            raise ValueError(f"[{start}:{end}] is not a slice of a buffer of {len(data)} bytes")
        piece = bytes(data[start:end])  # no copy when it is all of a bytes object
        if mask is not None:
            piece = python_apply_mask(piece, mask, offset)
        self._pieces.append(piece)
        self._size += len(piece)
        return piece.isascii()

    def take(self) -> bytes:
        """The payload appended so far; the buffer starts empty again."""
        pieces = self._pieces
        self._pieces = []
        self._size = 0
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def take_text(self) -> str:
        """The payload appended so far decoded as UTF-8 (UnicodeDecodeError when it is not, §8.1);
        the buffer starts empty again."""
        return self.take().decode("utf-8")


# The compiled versions are chosen once, at import, so the hot paths pay no dispatch: the accelerator when
# it is active (see ``_speedups.py``), else the pure-Python references above. Type checkers see the
# references (the compiled ones have the same signatures, see _cspeedups.pyi).
if TYPE_CHECKING or accelerator is None:
    apply_mask = python_apply_mask
    encode_frame = python_encode_frame
    PayloadBuffer = PythonPayloadBuffer
else:
    apply_mask = accelerator.apply_mask
    encode_frame = accelerator.encode_frame
    PayloadBuffer = accelerator.PayloadBuffer
    INLINE_MASK_LIMIT = 0  # the compiled call costs less than the inline XOR at every size (measured)
