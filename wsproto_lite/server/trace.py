"""``--trace``: describe every frame crossing the wire, for people learning the protocol.

The connection hands this module the bytes it reads and writes; headers are decoded with the core's
``parse_header`` (display only: it never influences what the connection does).  Memory is bounded: of
each payload only the preview is kept.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from wsproto_lite import FrameHeader, HeaderError, Opcode, apply_mask, parse_header

__all__ = ["FrameTracer", "describe_header", "OPCODE_NAMES"]

OPCODE_NAMES = {op.value: op.name for op in Opcode}
PREVIEW = 40
_MAX_HTTP_HEAD = 65536


def describe_header(header: bytes) -> str:
    """One line naming each field of a complete frame header (2 to 14 bytes)."""
    try:
        parsed = parse_header(header)
    except HeaderError as exc:
        return f"malformed header: {exc}"
    if parsed is None:
        return "incomplete header"
    return _describe(parsed)


def _describe(h: FrameHeader) -> str:
    rsv = h.rsv >> 4
    how = {4: " (16-bit extended length)", 10: " (64-bit extended length)"}.get(
        h.header_size - (4 if h.mask else 0), ""
    )
    name = OPCODE_NAMES.get(h.opcode, f"RESERVED-{h.opcode:#x}")
    rsv_text = f"RSV1={rsv >> 2} RSV2={(rsv >> 1) & 1} RSV3={rsv & 1}"
    if rsv & 4:
        rsv_text += " (compressed: permessage-deflate)"
    mask = f"MASK=1 key={h.mask.hex()}" if h.mask else "MASK=0"
    return f"FIN={int(h.fin)} {rsv_text} opcode={h.opcode:#x} {name} {mask} payload={h.length} bytes{how}"


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
            return view[len(view) :]
        head = bytes(self.http[:end]).decode("latin-1").split("\r\n")
        rest = bytes(self.http[end + 4 :])
        self.emit(f"{self.label} {self.arrow} HTTP {head[0]}  ({len(head) - 1} header lines)")
        for line in head[1:]:
            self.emit(f"{self.label} {self.arrow}     {line}")
        self.http = bytearray()
        self.in_http = False
        if head[0].startswith("HTTP/") and " 101 " not in head[0] + " ":
            self.dead = True  # no frames follow a refusal
        return memoryview(rest)

    def _feed_header(self, view: memoryview) -> memoryview:
        before = len(self.header)
        self.header += view[: 14 - before]
        try:
            h = parse_header(bytes(self.header))
        except HeaderError as exc:
            self.emit(f"{self.label} {self.arrow} malformed frame header ({exc}); trace stops")
            self.dead = True
            return view[len(view) :]
        if h is None:
            return view[len(self.header) - before :]
        header = bytes(self.header[: h.header_size])
        self.header = bytearray()
        self.mask = h.mask or b""
        self.opcode = h.opcode
        if h.opcode in (1, 2):
            self.message_opcode = h.opcode
            self.compressed = bool(h.rsv & 0x40)
        elif h.opcode != 0:
            self.compressed = False
        self.total = self.remaining = h.length
        self.payload = bytearray()
        self.offset = 0
        self.emit(f"{self.label} {self.arrow} {_describe(h)}")
        self.emit(f"{self.label} {self.arrow}     header bytes: {_hexdump(header)}")
        if h.length == 0:
            self._done()
        return view[h.header_size - before :]

    def _feed_payload(self, view: memoryview) -> memoryview:
        take = min(self.remaining, len(view))
        keep = max(0, min(take, PREVIEW - len(self.payload)))
        if keep:
            chunk = bytes(view[:keep])
            self.payload += apply_mask(chunk, self.mask, self.offset) if self.mask else chunk
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
