"""``--trace``: describe every frame crossing the wire, for people learning the protocol.

The core has no public trace hook yet, so this module decodes frame *headers* itself, for display
only: it never influences what the connection does.  Memory is bounded: of each payload only the
preview is kept.
"""

from __future__ import annotations

import struct
from typing import Callable

__all__ = ["FrameTracer", "describe_header", "OPCODE_NAMES"]

OPCODE_NAMES = {
    0x0: "CONTINUATION",
    0x1: "TEXT",
    0x2: "BINARY",
    0x8: "CLOSE",
    0x9: "PING",
    0xA: "PONG",
}
PREVIEW = 40
_MAX_HTTP_HEAD = 65536


def describe_header(header: bytes) -> str:
    """One line naming each field of a complete frame header (2 to 14 bytes)."""
    b0, b1 = header[0], header[1]
    fin, rsv, opcode = b0 >> 7, (b0 >> 4) & 7, b0 & 0xF
    masked, length = b1 >> 7, b1 & 0x7F
    pos = 2
    if length == 126:
        (length,) = struct.unpack_from("!H", header, 2)
        pos = 4
        how = " (16-bit extended length)"
    elif length == 127:
        (length,) = struct.unpack_from("!Q", header, 2)
        pos = 10
        how = " (64-bit extended length)"
    else:
        how = ""
    name = OPCODE_NAMES.get(opcode, f"RESERVED-{opcode:#x}")
    rsv_text = f"RSV1={rsv >> 2} RSV2={(rsv >> 1) & 1} RSV3={rsv & 1}"
    if rsv & 4:
        rsv_text += " (compressed: permessage-deflate)"
    mask = f"MASK=1 key={header[pos:pos + 4].hex()}" if masked else "MASK=0"
    return f"FIN={fin} {rsv_text} opcode={opcode:#x} {name} {mask} payload={length} bytes{how}"


def _hexdump(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _preview(payload: bytes, opcode: int, total: int, compressed: bool) -> str:
    if opcode == 0x8 and len(payload) >= 2 and not compressed:
        (code,) = struct.unpack_from("!H", payload)
        return f"close code={code} reason={payload[2:].decode('utf-8', 'replace')!r}"
    more = f" ... (+{total - len(payload)} bytes)" if total > len(payload) else ""
    if opcode == 0x1 and not compressed:
        return f"{payload.decode('utf-8', 'replace')!r}{more}"
    return f"{payload.hex(' ')}{more}" if payload else "(empty)"


class _Direction:
    """Incremental decoder of one direction of the byte stream: the HTTP head, then frames."""

    def __init__(self, arrow: str, emit: Callable[[str], None], label: str) -> None:
        self.arrow = arrow
        self.emit = emit
        self.label = label
        self.in_http = True
        self.http = bytearray()
        self.dead = False
        self.header = bytearray()
        self.need: int | None = None  # header length once known
        self.remaining = 0  # payload bytes still to come
        self.total = 0
        self.mask = b""
        self.opcode = 0
        self.compressed = False
        self.payload = bytearray()
        self.offset = 0
        self.message_opcode = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self.dead:
            if self.in_http:
                view = self._feed_http(view)
            elif self.remaining:
                view = self._feed_payload(view)
            else:
                view = self._feed_header(view)

    def _feed_http(self, view: memoryview) -> memoryview:
        self.http += view
        end = self.http.find(b"\r\n\r\n")
        if end < 0:
            if len(self.http) > _MAX_HTTP_HEAD:
                self.emit(f"{self.label} {self.arrow} HTTP head over {_MAX_HTTP_HEAD} bytes; trace stops")
                self.dead = True
            return view[len(view):]
        head = bytes(self.http[:end]).decode("latin-1").split("\r\n")
        rest = bytes(self.http[end + 4:])
        self.emit(f"{self.label} {self.arrow} HTTP {head[0]}  ({len(head) - 1} header lines)")
        for line in head[1:]:
            self.emit(f"{self.label} {self.arrow}     {line}")
        self.http = bytearray()
        self.in_http = False
        if head[0].startswith("HTTP/") and " 101 " not in head[0] + " ":
            self.dead = True  # no frames follow a refusal
        return memoryview(rest)

    def _feed_header(self, view: memoryview) -> memoryview:
        take = (self.need or 2) - len(self.header)
        self.header += view[:take]
        view = view[take:]
        if self.need is None and len(self.header) >= 2:
            b1 = self.header[1]
            ext = {126: 2, 127: 8}.get(b1 & 0x7F, 0)
            self.need = 2 + ext + (4 if b1 & 0x80 else 0)
        if self.need is None or len(self.header) < self.need:
            return view
        header = bytes(self.header)
        self.header = bytearray()
        self.need = None
        b0, b1 = header[0], header[1]
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            (length,) = struct.unpack_from("!H", header, 2)
            pos = 4
        elif length == 127:
            (length,) = struct.unpack_from("!Q", header, 2)
            pos = 10
        self.mask = header[pos:pos + 4] if b1 & 0x80 else b""
        self.opcode = b0 & 0xF
        if self.opcode in (1, 2):
            self.message_opcode = self.opcode
            self.compressed = bool(b0 & 0x40)
        elif self.opcode != 0:
            self.compressed = False
        self.total = self.remaining = length
        self.payload = bytearray()
        self.offset = 0
        self.emit(f"{self.label} {self.arrow} {describe_header(header)}")
        self.emit(f"{self.label} {self.arrow}     header bytes: {_hexdump(header)}")
        if length == 0:
            self._done()
        return view

    def _feed_payload(self, view: memoryview) -> memoryview:
        take = min(self.remaining, len(view))
        keep = max(0, min(take, PREVIEW - len(self.payload)))
        if keep:
            chunk = bytes(view[:keep])
            if self.mask:
                chunk = bytes(c ^ self.mask[(self.offset + i) % 4] for i, c in enumerate(chunk))
            self.payload += chunk
        self.offset += take
        self.remaining -= take
        if not self.remaining:
            self._done()
        return view[take:]

    def _done(self) -> None:
        opcode = self.message_opcode if self.opcode == 0 else self.opcode
        note = " (unmasked for display)" if self.mask else ""
        if self.compressed and opcode in (1, 2):
            note += " (compressed bytes)"
        text = _preview(bytes(self.payload), opcode, self.total, self.compressed and opcode in (1, 2))
        self.emit(f"{self.label} {self.arrow}     payload{note}: {text}")


class FrameTracer:
    """Feed it both directions of one connection; it calls ``emit(line)`` for each thing it sees."""

    def __init__(self, label: str, emit: Callable[[str], None], *, server_side: bool) -> None:
        self.server_side = server_side
        self._out = _Direction("==> send", emit, label)
        self._in = _Direction("<== recv", emit, label)

    def feed(self, outgoing: bool, data: bytes) -> None:
        """Account for ``data`` sent (``outgoing``) or received."""
        (self._out if outgoing else self._in).feed(data)
