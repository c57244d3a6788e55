"""permessage-deflate (RFC 7692): negotiation, per-message compression, bounded decompression.

:class:`PerMessageDeflate` is the factory an application passes in ``extensions=[...]``; the same object
serves both roles (``offer``/``accept_response`` on a client, ``negotiate`` on a server). Each
negotiated connection gets one :class:`_DeflateExtension`, which owns at most one zlib compressor (our
sending direction) and one decompressor (the peer's), each created lazily on the first compressed message
of its direction and dropped after every message when that direction has no context takeover.

Window bits 8: zlib refuses ``wbits=8`` for raw deflate, so a negotiated window of 8 is compressed with
``wbits=9``. That stays within a 256-byte window: zlib's deflate never emits a distance above
``w_size - MIN_LOOKAHEAD`` = 512 - 262 = 250 (``MAX_DIST`` in deflate.c), which the test suite checks by
inflating ``wbits=9`` output with ``wbits=-8``. Inbound, a window of 8 is inflated with 8, as agreed.

Defaults and why. Measured on this project's dev box (2 shared vCPUs, so ballpark; CPython 3.11.7,
zlib 1.2.13), JSON-like messages, context takeover, through ``encode``/``decode``, best of 3; rerun with
``python -m benchmarks.deflate_tuning``:

=========================  ======================  ======================  ============
setting                    compress MB/s           decompress MB/s         ratio
                           1 KiB msgs / 1 MiB      1 KiB msgs / 1 MiB      1 KiB / 1 MiB
=========================  ======================  ======================  ============
level 1, memLevel 5        87 / 168                221 / 562               0.295 / 0.268
level 6, memLevel 5        36 / 48                 229 / 543               0.248 / 0.222
level 9, memLevel 5        12 / 14                 233 / 565               0.239 / 0.213
level 6, memLevel 8        41 / 57                 229 / 585               0.248 / 0.220
level 6, memLevel 5, w 12  57 / 88                 216 / 510               0.257 / 0.231
=========================  ======================  ======================  ============

Memory per connection once a message went each way (tracemalloc: allocated, the worst case RSS reaches
under sustained traffic; fresh objects touch far less, e.g. ~22 KiB RSS at memLevel 5 / window 15):
memLevel 8 / window 15: 301 KiB; memLevel 5 / 15: 189 KiB; memLevel 5 / 12: 49 KiB; memLevel 5 / 9: 32 KiB.
The compressor is most of it (window 2 * 2^w, hash chains 2 * 2^w, hash heads 2 * 2^(mL+7), pending buffer
4 * 2^(mL+6) bytes); a decompressor is ~7 KiB + its 2^w window. Lazy creation makes an idle connection
(nothing compressed sent or received yet) cost ~0.2 KiB instead of the ~157 KiB (memLevel 5, window 15)
of eager objects; ``*_no_context_takeover`` frees the objects after every message (0.2 KiB between
messages) at the price of a fresh zlib state per message (~4 us on an idle box, ~25 us loaded) and a
worse ratio on small messages.

* ``compress_level=6``: zlib's default, also what websockets and ws send, so sizes and benchmarks compare
  like with like; level 1 is 2.4x (1 KiB) to 3.5x (1 MiB) faster for ~20 % more bytes: use it when CPU-bound.
* ``mem_level=5``: the same ratio as 8 within 1 %, 112 KiB less per compressor, 10-20 % slower.
* ``compress_threshold=64``: below it a message saves at most ~45 bytes even with context takeover (a 64 B
  message becomes ~18 B; without takeover only ~10 % is saved), less than a TCP/IP packet's own headers,
  while each one costs a zlib call (~4 us) or, without takeover, a whole fresh compressor.
* Window bits stay at the RFC default (15) unless negotiated; a memory-lean server is
  ``PerMessageDeflate(server_max_window_bits=12, client_max_window_bits=12)`` (~49 KiB per busy connection,
  ~4 % bigger output) or adds ``server_no_context_takeover=True, client_no_context_takeover=True``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from ._errors import CloseCode, ExtensionError
from ._frames import OP_BINARY, OP_TEXT, RSV1
from .extensions import Extension, ExtensionFactory, Params

if TYPE_CHECKING:  # pragma: no cover
    from zlib import _Compress, _Decompress

__all__ = ["PerMessageDeflate"]

_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_EMPTY_STORED = b"\x00" + _TAIL  # an empty non-final stored block: what ends a BFINAL message (§7.2.3.4)
# Inflate in pieces (see _DeflateExtension.decode_pieces): at most _OUT_PIECE bytes out of one zlib call
# (what the reader holds beside the message is one piece, and zlib its output blocks while it makes one),
# from input slices of at most _IN_PIECE bytes. 128 KiB: on 1 MiB messages, smaller pieces cost up to 20 %
# more (each growth of the message buffer is a realloc; see benchmarks/inflate.py).
_OUT_PIECE = 128 * 1024
_IN_PIECE = 16 * 1024
_WINDOW_VALUES = {str(bits): bits for bits in range(8, 16)}  # "8".."15", no leading zeros
_PARAM_NAMES = frozenset(
    (
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    )
)


class _InvalidParams(ValueError):
    """An offer or response breaks the RFC 7692 §7.1 parameter rules."""


class _Parsed:
    """The four RFC 7692 §7.1 parameters of one offer or response."""

    __slots__ = (
        "client_max_window_bits",
        "client_no_context_takeover",
        "server_max_window_bits",
        "server_no_context_takeover",
    )

    def __init__(self) -> None:
        self.server_no_context_takeover = False
        self.client_no_context_takeover = False
        self.server_max_window_bits: int | None = None
        self.client_max_window_bits: int | Literal[True] | None = None


def _parse(params: Params, *, is_offer: bool) -> _Parsed:
    """Validate and decode the parameters of one offer (``is_offer``) or one response."""
    parsed = _Parsed()
    seen: set[str] = set()
    for raw_name, value in params:
        name = raw_name.lower()
        if name not in _PARAM_NAMES:
            # RFC 7692 §7.1: a parameter not defined for use in an offer/response is invalid.
            raise _InvalidParams(f"unknown parameter {raw_name!r}")
        if name in seen:
            # RFC 7692 §7.1: multiple parameters with the same name are invalid.
            raise _InvalidParams(f"duplicate parameter {raw_name!r}")
        seen.add(name)
        if name.endswith("_no_context_takeover"):
            if value is not None:
                # RFC 7692 §7.1.1.1 / §7.1.1.2: these parameters have no value.
                raise _InvalidParams(f"{name} takes no value")
            setattr(parsed, name, True)
            continue
        if value is None:
            if name == "client_max_window_bits" and is_offer:
                # RFC 7692 §7.1.2.2: an offer may carry client_max_window_bits without a value.
                parsed.client_max_window_bits = True
                continue
            # RFC 7692 §7.1.2.1 / §7.1.2.2: otherwise the window bits parameters need a value.
            raise _InvalidParams(f"{name} needs a value")
        bits = _WINDOW_VALUES.get(value)
        if bits is None:
            # RFC 7692 §7.1.2.1 / §7.1.2.2: a decimal integer 8..15 without leading zeros.
            raise _InvalidParams(f"invalid {name} value {value!r}")
        setattr(parsed, name, bits)
    return parsed


def _format(parsed: _Parsed) -> str:
    """The ``Sec-WebSocket-Extensions`` element for these parameters, name first."""
    parts = [_NAME]
    if parsed.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if parsed.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if parsed.server_max_window_bits is not None:
        parts.append(f"server_max_window_bits={parsed.server_max_window_bits}")
    if parsed.client_max_window_bits is True:
        parts.append("client_max_window_bits")
    elif parsed.client_max_window_bits is not None:
        parts.append(f"client_max_window_bits={parsed.client_max_window_bits}")
    return "; ".join(parts)


def _check_bits(name: str, value: object, *, allow_true: bool = False) -> None:
    if value is None or (allow_true and value is True):
        return
    if isinstance(value, bool) or not isinstance(value, int) or not 8 <= value <= 15:
        extra = ", True" if allow_true else ""
        raise ValueError(f"{name} must be None{extra} or an int in 8..15, not {value!r}")


class PerMessageDeflate(ExtensionFactory):
    """The permessage-deflate extension (RFC 7692), for clients and servers.

    The four RFC parameters mean, on a **client**: what to put in the offer (``*_no_context_takeover``:
    offered when true; ``server_max_window_bits``: offered with this value when set, the server must
    answer with it or less; ``client_max_window_bits``: ``True`` offers it without a value, an int offers
    that limit, None leaves it out). On a **server**: what to impose on top of what the client offered
    (``*_no_context_takeover``: always answered when true; ``server_max_window_bits``: our compression
    window limit; ``client_max_window_bits``: the limit asked of the client when it offered the
    parameter, 8 being asked as 9 unless the client itself offered 8, ``True``/None: no limit).

    Tuning: ``compress_level`` (0-9) and ``mem_level`` (1-9) go to :func:`zlib.compressobj`;
    messages whose first frame is shorter than ``compress_threshold`` bytes (and which are not
    fragmented) are sent uncompressed unless the application passes ``compress=True``. Server policy:
    ``require_client_max_window_bits`` declines offers that do not let us bound the client's window
    (so an int ``client_max_window_bits`` really caps the memory of our decompressor).
    """

    name = _NAME

    def __init__(
        self,
        *,
        client_no_context_takeover: bool = False,
        server_no_context_takeover: bool = False,
        client_max_window_bits: int | Literal[True] | None = True,
        server_max_window_bits: int | None = None,
        compress_level: int = 6,
        mem_level: int = 5,
        compress_threshold: int = 64,
        require_client_max_window_bits: bool = False,
    ) -> None:
        _check_bits("client_max_window_bits", client_max_window_bits, allow_true=True)
        _check_bits("server_max_window_bits", server_max_window_bits)
        if not -1 <= compress_level <= 9:
            raise ValueError(f"compress_level must be in -1..9, not {compress_level!r}")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be in 1..9, not {mem_level!r}")
        if compress_threshold < 0:
            raise ValueError(f"compress_threshold must be >= 0, not {compress_threshold!r}")
        if require_client_max_window_bits and (
            client_max_window_bits is None or client_max_window_bits is True
        ):
            raise ValueError("require_client_max_window_bits needs an int client_max_window_bits")
        self.client_no_context_takeover = bool(client_no_context_takeover)
        self.server_no_context_takeover = bool(server_no_context_takeover)
        self.client_max_window_bits = client_max_window_bits
        self.server_max_window_bits = server_max_window_bits
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold
        self.require_client_max_window_bits = bool(require_client_max_window_bits)

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_max_window_bits={self.client_max_window_bits}, "
            f"server_max_window_bits={self.server_max_window_bits}, compress_level={self.compress_level}, "
            f"mem_level={self.mem_level}, compress_threshold={self.compress_threshold}, "
            f"require_client_max_window_bits={self.require_client_max_window_bits})"
        )

    # -- client role ---------------------------------------------------------------------------------

    def offer(self) -> str:
        """The client's offer, e.g. ``permessage-deflate; client_max_window_bits``."""
        parsed = _Parsed()
        parsed.server_no_context_takeover = self.server_no_context_takeover
        parsed.client_no_context_takeover = self.client_no_context_takeover
        parsed.server_max_window_bits = self.server_max_window_bits
        parsed.client_max_window_bits = self.client_max_window_bits
        return _format(parsed)

    def accept_response(self, params: Params) -> Extension:
        """Check the server's response to :meth:`offer`; raise :class:`ExtensionError` if invalid."""
        try:
            resp = _parse(params, is_offer=False)
        except _InvalidParams as exc:
            # RFC 7692 §7.1: an invalid response fails the connection.
            raise ExtensionError(f"{_NAME}: {exc}", CloseCode.PROTOCOL_ERROR) from None
        if self.server_no_context_takeover and not resp.server_no_context_takeover:
            # RFC 7692 §7.1.1.1: accepting our server_no_context_takeover means echoing it.
            raise ExtensionError(f"{_NAME}: server_no_context_takeover missing", CloseCode.PROTOCOL_ERROR)
        if self.server_max_window_bits is not None and (
            resp.server_max_window_bits is None or resp.server_max_window_bits > self.server_max_window_bits
        ):
            # RFC 7692 §7.1.2.1: accepting our server_max_window_bits means answering it with <= value.
            raise ExtensionError(f"{_NAME}: server_max_window_bits not honoured", CloseCode.PROTOCOL_ERROR)
        send_bits = 15
        if resp.client_max_window_bits is not None:
            assert resp.client_max_window_bits is not True  # _parse: responses carry a value
            if self.client_max_window_bits is None:
                # RFC 7692 §7.1.2.2: not in the offer, so it MUST NOT be in the response.
                raise ExtensionError(f"{_NAME}: unexpected client_max_window_bits", CloseCode.PROTOCOL_ERROR)
            if (
                self.client_max_window_bits is not True
                and resp.client_max_window_bits > self.client_max_window_bits
            ):
                # RFC 7692 §7.1.2.2: the response value is equal to or smaller than the offered one.
                raise ExtensionError(f"{_NAME}: client_max_window_bits too large", CloseCode.PROTOCOL_ERROR)
            send_bits = resp.client_max_window_bits
        elif isinstance(self.client_max_window_bits, int) and self.client_max_window_bits is not True:
            # RFC 7692 §7.1.2.2: an offered value is our own promise even if the server ignores it.
            send_bits = self.client_max_window_bits
        return _DeflateExtension(
            send_window_bits=send_bits,
            # RFC 7692 §7.1.1.2: our hint in the offer binds us; the server may also impose it.
            send_no_context_takeover=resp.client_no_context_takeover or self.client_no_context_takeover,
            recv_window_bits=resp.server_max_window_bits or 15,
            recv_no_context_takeover=resp.server_no_context_takeover,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )

    # -- server role ---------------------------------------------------------------------------------

    def negotiate(self, offers: list[Params]) -> tuple[str, Extension] | None:
        """Accept the first acceptable offer (client preference order), or decline all (None)."""
        for params in offers:
            try:
                offer = _parse(params, is_offer=True)
            except _InvalidParams:
                # RFC 7692 §7.1: decline an offer with an unknown, duplicated or invalid parameter.
                continue
            answer = self._answer(offer)
            if answer is not None:
                return _format(answer), self._server_extension(answer)
        return None

    def _answer(self, offer: _Parsed) -> _Parsed | None:
        """Our response parameters to one valid offer, or None when our policy declines it."""
        resp = _Parsed()
        # RFC 7692 §7.1.1.1: echo an offered server_no_context_takeover; we may add it on our own.
        resp.server_no_context_takeover = offer.server_no_context_takeover or self.server_no_context_takeover
        # RFC 7692 §7.1.1.2: a server may always impose client_no_context_takeover; echo the hint.
        resp.client_no_context_takeover = offer.client_no_context_takeover or self.client_no_context_takeover
        # RFC 7692 §7.1.2.1: answer an offered server_max_window_bits with the same or a smaller value;
        # we may also send it unasked. 8 is fine: see the module docstring.
        smwb = [b for b in (offer.server_max_window_bits, self.server_max_window_bits) if b is not None]
        resp.server_max_window_bits = min(smwb) if smwb else None
        ours = self.client_max_window_bits if self.client_max_window_bits is not True else None
        if ours == 8:
            ours = 9  # zlib-based clients (websockets, ...) cannot deflate with 8 and would fail; 8 if asked
        if offer.client_max_window_bits is None:
            if self.require_client_max_window_bits:
                return None  # RFC 7692 §7.1: the server may decline a configuration it doesn't support.
            # RFC 7692 §7.1.2.2: not offered, so it MUST NOT be in the response (client uses up to 15).
        else:
            # RFC 7692 §7.1.2.2: may answer with a value <= the offered one (any 8..15 if offered bare).
            cmwb = [b for b in (offer.client_max_window_bits, ours) if b is not None and b is not True]
            resp.client_max_window_bits = min(cmwb) if cmwb else None
        return resp

    def _server_extension(self, resp: _Parsed) -> _DeflateExtension:
        assert resp.client_max_window_bits is not True
        return _DeflateExtension(
            send_window_bits=resp.server_max_window_bits or 15,
            send_no_context_takeover=resp.server_no_context_takeover,
            recv_window_bits=resp.client_max_window_bits or 15,
            recv_no_context_takeover=resp.client_no_context_takeover,
            compress_level=self.compress_level,
            mem_level=self.mem_level,
            compress_threshold=self.compress_threshold,
        )


class _DeflateExtension(Extension):
    """permessage-deflate on one connection: RSV1 rules, bounded inflate, deflate with tail stripping."""

    name = _NAME
    rsv_mask = RSV1

    def __init__(
        self,
        *,
        send_window_bits: int,
        send_no_context_takeover: bool,
        recv_window_bits: int,
        recv_no_context_takeover: bool,
        compress_level: int = 6,
        mem_level: int = 5,
        compress_threshold: int = 64,
    ) -> None:
        self.send_window_bits = send_window_bits
        self.send_no_context_takeover = send_no_context_takeover
        self.recv_window_bits = recv_window_bits
        self.recv_no_context_takeover = recv_no_context_takeover
        self.compress_level = compress_level
        self.mem_level = mem_level
        self.compress_threshold = compress_threshold
        self._compressor: _Compress | None = None
        self._decompressor: _Decompress | None = None
        self._out_compressed = False  # the outbound message in progress is compressed
        self._in_compressed = False  # the inbound message in progress is compressed
        self._after_final = b""  # bytes received after a BFINAL block ended the inbound stream
        self._in_fed = False  # the inbound message has had compressed bytes
        self._restarts_left = 1  # new DEFLATE streams still allowed in this decode() call

    def __repr__(self) -> str:
        return (
            f"<_DeflateExtension send_window_bits={self.send_window_bits} "
            f"send_no_context_takeover={self.send_no_context_takeover} "
            f"recv_window_bits={self.recv_window_bits} "
            f"recv_no_context_takeover={self.recv_no_context_takeover}>"
        )

    # -- inbound -------------------------------------------------------------------------------------

    def rsv_ok(self, opcode: int, rsv: int, first_frame: bool) -> bool:
        """RSV1 may only mark the first frame of a text or binary message."""
        if not rsv & RSV1:
            return True
        # RFC 7692 §6.1: no "Per-Message Compressed" bit on control frames or non-first fragments
        # (RFC 6455 §5.2: the core then fails the connection with 1002).
        return first_frame and opcode in (OP_TEXT, OP_BINARY)

    def decodes(self, rsv: int) -> bool:
        """Compressed iff RSV1 is set (RFC 7692 §6)."""
        # RFC 7692 §6: a message without RSV1 is not compressed and passes through untouched.
        return bool(rsv & RSV1)

    def start_inbound(self, rsv: int) -> bool:
        """A data message starts: prepare the decompressor if it is compressed (RFC 7692 §6)."""
        self._in_compressed = self.decodes(rsv)
        if self._in_compressed:
            d = self._decompressor
            # RFC 7692 §7.1.1: without the peer's context takeover every message starts a fresh window;
            # a stream that ended with a BFINAL block (§7.2.3.4) cannot be continued either.
            if d is None or self.recv_no_context_takeover or d.eof:
                self._decompressor = zlib.decompressobj(wbits=-self.recv_window_bits)
        return self._in_compressed

    def decode(self, data: bytes, fin: bool, max_size: int | None) -> bytes:
        """Inflate the next piece of a compressed message into at most ``max_size`` bytes.

        ``max_size`` is what the message may still grow by (the core passes its limit minus what this
        message has decoded so far); None: unbounded. Over it: :class:`ExtensionError` 1009.
        """
        parts = list(self.decode_pieces(data, fin, max_size))
        if len(parts) == 1:
            return parts[0]
        return b"".join(parts)

    def decode_pieces(self, data: bytes, fin: bool, max_size: int | None) -> Iterator[bytes]:
        """:meth:`decode` as it inflates: pieces of at most ``_OUT_PIECE`` bytes, each yielded before the
        next is inflated, so the reader copies each into the message buffer and at no time holds more
        than the message plus one piece (RFC 7692 §8: the decompressed size bounds what a peer costs)."""
        if not self._in_compressed:
            if data:
                yield data
            return
        self._restarts_left = 1
        if not fin:
            self._in_fed = self._in_fed or bool(data)
            yield from self._inflate((data,), max_size)
            return
        if not data and not self._in_fed:
            # An empty payload holds no deflate data at all (a compliant sender sends 0x00, RFC 7692
            # §7.2.3.6); appending the tail alone would leave the inflater inside a stored block header.
            inputs: tuple[bytes, ...] = ()
        elif len(data) <= 2048:
            # RFC 7692 §7.2.2: append 00 00 ff ff to the payload, then inflate (one input when small).
            inputs = (data + _TAIL,)
        else:
            # RFC 7692 §7.2.2: append 00 00 ff ff to the payload before inflating its end.
            inputs = (data, _TAIL)
        yield from self._inflate(inputs, max_size)
        self._in_compressed = self._in_fed = False
        self._after_final = b""  # only ever the appended tail here: the next message starts a new stream
        if self.recv_no_context_takeover:
            self._decompressor = None  # freed between messages: nothing to take over

    def _inflate(self, inputs: tuple[bytes, ...], max_size: int | None) -> Iterator[bytes]:
        produced = 0
        for whole in inputs:
            view = memoryview(whole)
            for start in range(0, len(view), _IN_PIECE):
                # Bounded input slices: zlib copies what a call leaves unread (unconsumed_tail), so an
                # input that inflates hugely costs O(slice) per output piece, not O(input).
                data: bytes | memoryview = view[start : start + _IN_PIECE]
                while data:
                    d = self._decompressor
                    assert d is not None
                    if d.eof:
                        # RFC 7692 §7.2.1 / §7.2.3.4: a BFINAL block ended the DEFLATE stream. The appended
                        # tail (after a 0x00 octet, an empty stored block) may follow it, or further blocks
                        # ("the next DEFLATE block follows the padded data"): a fresh inflater decodes
                        # those, as no window survives a final block.
                        pending = self._after_final + data
                        if _TAIL.startswith(pending) or _EMPTY_STORED.startswith(pending):
                            self._after_final = pending
                            break
                        if not self._restarts_left:
                            # Each restart copies the rest of the input slice (zlib's unused_data): one
                            # per piece (frame) keeps a stream of tiny final blocks from costing
                            # quadratic time.
                            raise ExtensionError(
                                f"{_NAME}: too many final DEFLATE blocks", CloseCode.INVALID_DATA
                            )
                        self._restarts_left -= 1
                        self._after_final = b""
                        d = self._decompressor = zlib.decompressobj(wbits=-self.recv_window_bits)
                        data = pending
                    # RFC 7692 §8: inflate at most one byte past the budget, so a tiny frame that would
                    # inflate enormously costs O(max_size); the rest stays in unconsumed_tail, unread.
                    room = (
                        _OUT_PIECE if max_size is None else min(_OUT_PIECE, max(max_size - produced, 0) + 1)
                    )
                    try:
                        out = d.decompress(data, room)
                    except zlib.error as exc:
                        # RFC 6455 §7.4.1: 1007 for payload data inconsistent with the message.
                        raise ExtensionError(
                            f"{_NAME}: invalid compressed data ({exc})", CloseCode.INVALID_DATA
                        ) from None
                    produced += len(out)
                    if max_size is not None and produced > max_size:
                        # RFC 6455 §7.4.1: 1009 for a message too big to process.
                        raise ExtensionError(
                            f"{_NAME}: message exceeds the size limit", CloseCode.MESSAGE_TOO_BIG
                        )
                    data = d.unused_data if d.eof else d.unconsumed_tail
                    if out:
                        yield out

    def release(self) -> None:
        """The connection is closed: free both zlib objects and any half-decoded state now."""
        self._compressor = self._decompressor = None
        self._in_compressed = self._out_compressed = self._in_fed = False
        self._after_final = b""

    # -- outbound ------------------------------------------------------------------------------------

    def encode(self, data: bytes, first_frame: bool, fin: bool, compress: bool | None) -> tuple[int, bytes]:
        """Deflate one outbound frame payload; RSV1 set on the first frame of a compressed message."""
        if first_frame:
            if compress is None:
                # Decided once per message: fragmented messages are presumed large.
                compress = not fin or len(data) >= self.compress_threshold
            self._out_compressed = compress
        if not self._out_compressed:
            # RFC 7692 §6: an endpoint may send any message uncompressed, with RSV1 clear.
            return 0, data
        c = self._compressor
        if c is None:
            # zlib refuses raw wbits=8; wbits=9 output fits a 256-byte window (module docstring).
            c = self._compressor = zlib.compressobj(
                self.compress_level, zlib.DEFLATED, -max(self.send_window_bits, 9), self.mem_level
            )
        # RFC 7692 §7.2.1: each fragment is flushed to a byte boundary (an empty stored block ends it).
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            self._out_compressed = False
            if out.endswith(_TAIL):
                # RFC 7692 §7.2.1: remove the 00 00 ff ff tail, at the end of the message only.
                out = out[:-4]
            elif not out:  # pragma: no cover - zlib always flushes something after compress()
                # RFC 7692 §7.2.3.6: an empty final fragment is a single 0x00 octet.
                out = b"\x00"
            else:  # pragma: no cover
                raise AssertionError("zlib sync flush did not end with 00 00 ff ff")
            if self.send_no_context_takeover:
                # RFC 7692 §7.1.1: no context takeover: the next message starts with an empty window.
                self._compressor = None
        # RFC 7692 §6.1: RSV1 on the first frame of a compressed message only.
        return (RSV1 if first_frame else 0), out
