"""The bytes of one message that arrive decoded in pieces (inflated, RFC 7692), gathered into one ``bytes``.

A decoded message's size is not known before its last piece, so the buffer grows; what it may cost is
bounded by the message limit (RFC 6455 §10.4, RFC 7692 §8): :class:`DecodedBuffer` never reserves more
than ``limit`` bytes (plus a constant), and the ``bytes`` it hands out is the buffer itself, not a copy.

How, with the standard library only: the pieces are written into an :class:`io.BytesIO`, whose
``getvalue()`` returns its internal ``bytes`` object without copying (shrunk in place to the size written)
when no view of it is exported. BytesIO grows by exactly what is asked while a write more than doubles it
and by 1/8 beyond that, so below three quarters of the limit it grows on its own (at most 0.75 * 9/8 of
the limit reserved), and the first write that goes past three quarters reserves the whole limit in one
step (writing one byte at its end: the gap is zero-filled, then cut off when the message is taken). A
message of one piece never touches a BytesIO: that piece is the message.
"""

from __future__ import annotations

import io

__all__ = ["DecodedBuffer"]


class DecodedBuffer:
    """One message's decoded pieces, gathered with at most ``limit`` bytes reserved (None: unbounded)."""

    __slots__ = ("_first", "_io", "_limit", "_reserved", "_size")

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._first: bytes | None = None  # the only piece so far (no BytesIO yet)
        self._io: io.BytesIO | None = None
        self._size = 0
        self._reserved = False  # the whole limit is reserved in _io

    def __len__(self) -> int:
        return self._size

    def append(self, piece: bytes) -> None:
        """Append one decoded piece (copied into the buffer unless it stays the only one)."""
        if not piece:
            return
        buffer = self._io
        if buffer is None:
            first = self._first
            if first is None:
                self._first = piece
                self._size = len(piece)
                return
            self._first = None
            buffer = self._io = io.BytesIO()
            buffer.write(first)
        size = self._size + len(piece)
        limit = self._limit
        if not self._reserved and limit is not None and size * 4 > limit * 3:
            self._reserved = True
            # One exact step to the whole limit (or to this size, if a caller went past it).
            buffer.seek(max(limit, size) - 1)
            buffer.write(b"\0")
            buffer.seek(self._size)
        buffer.write(piece)
        self._size = size

    def take(self) -> bytes:
        """The message: the one ``bytes`` the pieces were gathered in. The buffer is empty afterwards."""
        buffer, first, size = self._io, self._first, self._size
        self._io = self._first = None
        self._size = 0
        self._reserved = False
        if buffer is None:
            return b"" if first is None else first
        buffer.truncate(size)  # drops the reserved, zero-filled end, if any
        return buffer.getvalue()
