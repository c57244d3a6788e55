"""From bytes to message events: frame rules (§5.2-5.5), fragmentation (§5.4), UTF-8 (§8.1), limits (§10.4).

The reader is incremental and lazy. :meth:`MessageReader.feed` only stores bytes; each call of
:meth:`MessageReader.next_event` parses just far enough to produce one event. So a peer's bad frame is
noticed only after every event before it was handed out, and a data frame's payload is consumed as it
arrives, piece by piece (a text frame with invalid UTF-8 fails at the first bad piece, not at its end).
A message that is not streamed is assembled in a :class:`._frames.PayloadBuffer`, unmasked on the way
from the received chunk into it (compiled: one copy per byte; the pure-Python reference slices and
joins); its text is decoded once, at the end, after the pieces from the first non-ASCII one on went
through the incremental UTF-8 check.

One path with a fast case inside it: while no message is half-assembled, :meth:`_parse_whole_frames`
takes the final, plain text/binary frames already whole in the buffer in one loop, in the vocabulary of
:mod:`._frames` (its constants; ``apply_mask``, except that payloads under ``INLINE_MASK_LIMIT`` are
XORed inline the way apply_mask does them, as the pure-Python call would cost ~20 % of a 16-125 byte
frame; the limit is 0 when the compiled apply_mask is active, which is cheaper at every size), and
stops at the first frame that is anything else; the general path then applies every rule to that frame
and reports errors at the right place. Tests check that both give the same events for any chunking.
With the C accelerator, whole messages (not streamed) take ``_cspeedups.parse_messages`` instead: the
same loop, the same checks and the same events, in one call per buffer; and the general path parses
headers with ``_cspeedups.parse_header``. The Python code stays the reference (tests compare them).

The reader never reacts (no pong, no close): it reports, and raises :class:`RemoteProtocolError` with
the close code when the peer breaks a rule. Reactions are the connection's job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import partial

from ._close import parse_close_payload
from ._config import Config
from ._decoded_buffer import DecodedBuffer
from ._errors import CloseCode, RemoteProtocolError
from ._events import (
    BinaryChunk,
    BinaryMessage,
    CloseReceived,
    Event,
    Ping,
    Pong,
    TextChunk,
    TextMessage,
)
from ._frames import (
    CONTROL_BIT,
    FIN,
    INLINE_MASK_LIMIT,
    LENGTH_16,
    LENGTH_BITS,
    MASK_BIT,
    MASK_KEY_SIZE,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameHeader,
    HeaderError,
    PayloadBuffer,
    apply_mask,
    parse_header,
)
from ._speedups import accelerator
from ._utf8 import Utf8Decoder
from .extensions import Extension

__all__ = ["MessageReader"]

_DATA_OPCODES = (OP_TEXT, OP_BINARY)
# The first header byte of the frames the fast path takes: FIN, no RSV bits, text or binary (§5.2).
_FIN_TEXT, _FIN_BINARY = FIN | OP_TEXT, FIN | OP_BINARY
# The Python fast loop parses 7- and 16-bit lengths (§5.2): frames with a 64-bit length take the general
# path. The compiled one parses any length, and takes whole frames up to this size (one copy of a larger
# payload, unmasked with the GIL held, is the general path's: it releases the GIL for it).
_FAST_MAX_LENGTH = 256 * 1024
_from_bytes = int.from_bytes  # a module global: ``int.from_bytes`` would build a bound method per call
# The slot setters of the frozen message events, for the fast path (frozen dataclasses route every
# assignment in __init__ through object.__setattr__, which costs more than the rest of a small frame).
_TEXT_SLOT, _BINARY_SLOT = TextMessage.__dict__["data"], BinaryMessage.__dict__["data"]
_SET_TEXT, _SET_BINARY = _TEXT_SLOT.__set__, _BINARY_SLOT.__set__
_new = object.__new__
# The compiled fast case (whole messages only: streamed ones take the Python loop), and the compiled
# header parser (the same results as ``parse_header``, the reference), when the accelerator is active.
_parse_messages = None if accelerator is None else accelerator.parse_messages
_parse_message = None if accelerator is None else accelerator.parse_message
_parse_header: Callable[[bytes, int], FrameHeader | None] = (
    parse_header if accelerator is None else partial(accelerator.parse_header, FrameHeader, HeaderError)
)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)
# The most a message buffer reserves ahead of its payload: what a header alone may make us set aside
# (§10.4), before any of the payload arrived; larger messages grow the buffer as their bytes come in.
_CAPACITY_MAX = 256 * 1024


class MessageReader:
    """Parses one direction of a connection into message and control-frame events."""

    def __init__(self, config: Config, expect_masked: bool, extensions: Sequence[Extension] = ()) -> None:
        self._stream = config.stream_messages
        self._max_message = config.max_message_size
        self._max_frame = config.frame_limit
        self._max_fragments = config.max_fragments
        self._expect_masked = expect_masked
        self._extensions = tuple(extensions)
        self._allowed_rsv = 0
        for extension in self._extensions:
            self._allowed_rsv |= extension.rsv_mask
        self._fast_limit = self._fast_path_limit()
        # Input not parsed yet: ``_buf[_pos:]`` then the chunks in ``_chunks``.
        self._buf = b""
        self._pos = 0
        self._chunks: list[bytes] = []  # rarely more than one (an empty deque costs 760 bytes, issue 22)
        # The data frame whose payload is being consumed (None between frames).
        self._frame: FrameHeader | None = None
        self._frame_left = 0  # payload bytes of ``_frame`` still to come
        # The message being assembled (opcode None between messages).
        self._msg_opcode: int | None = None
        # Its payload so far, unless streamed (see _begin_message); None between messages. A message an
        # extension decodes is gathered in ``_decoded`` instead, as the decoded pieces come.
        self._payload: PayloadBuffer | None = None
        self._decoded: DecodedBuffer | None = None
        # The decoded text of an extension-decoded text message so far (None outside one: no empty list
        # per idle connection, issue 22).
        self._texts: list[str] | None = None
        self._msg_size = 0
        self._msg_frames = 0
        self._msg_decoder: Extension | None = None  # the extension that decodes this message, if any
        self._utf8: Utf8Decoder | None = None
        #: Data messages parsed ahead by the fast path (never control frames or errors), in REVERSE order:
        #: the next one is ``ready.pop()``. A list, not a deque: an idle connection keeps an empty one,
        #: 56 bytes instead of a deque's 760 (issue 22); filled only when empty, then reversed once.
        self.ready: list[Event] = []

    # -- input -----------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Queue bytes for parsing; nothing is parsed until :meth:`next_event`."""
        if data:
            self._chunks.append(data)

    def feed_one_message(self, data: bytes) -> TextMessage | BinaryMessage | None:
        """Feed ``data``; when it is one whole message the fast case takes (a small, final, plain data
        frame, see the module docstring), nothing was waiting and messages are not streamed, return its
        event at once instead of queuing it for :meth:`next_event` (one call for the most common read:
        one message).  Otherwise None, and ``data`` is queued as :meth:`feed` does."""
        if (
            self._stream
            or self._frame is not None
            or self._msg_opcode is not None
            or self.ready
            or self._chunks
            or self._pos < len(self._buf)  # unparsed bytes (a frame's head): they come first
        ):
            self.feed(data)
            return None
        if _parse_message is not None and self._fast_limit >= 0:  # compiled: exactly one message, or None
            message = _parse_message(
                data,
                self._expect_masked,
                self._fast_limit,
                TextMessage,
                _TEXT_SLOT,
                BinaryMessage,
                _BINARY_SLOT,
            )
            if message is not None:
                return message  # type: ignore[no-any-return]
        self._buf, self._pos = data, 0
        ready = self.ready
        if self._parse_whole_frames() and self._pos == len(data) and len(ready) == 1:
            self._buf, self._pos = b"", 0
            return ready.pop()  # type: ignore[return-value]  # not streamed: whole messages only
        return None  # what was parsed waits in ``ready``, the rest from ``_pos``: next_event goes on

    @property
    def buffered(self) -> int:
        """Bytes received but not parsed yet."""
        return len(self._buf) - self._pos + sum(map(len, self._chunks))

    def _more(self) -> bool:
        """Append the next queued chunk to the unparsed bytes; False if there is none."""
        if not self._chunks:
            return False
        # A list's pop(0) moves the rest: cheap, as the I/O layers parse after every chunk they feed.
        chunk = self._chunks.pop(0)
        if self._pos >= len(self._buf):
            self._buf = chunk
        else:
            self._buf = self._buf[self._pos :] + chunk
        self._pos = 0
        return True

    def _fast_path_limit(self) -> int:
        """The longest payload the fast path may take; -1 when an extension decodes plain messages too."""
        if any(extension.decodes(0) for extension in self._extensions):
            return -1  # every message goes through the extension: the general path
        limits = (_FAST_MAX_LENGTH, self._max_frame, self._max_message)
        return min(limit for limit in limits if limit is not None)

    # -- parsing ---------------------------------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed. Raises RemoteProtocolError."""
        ready = self.ready
        if ready:
            return ready.pop()
        if self._frame is None:
            if self._pos >= len(self._buf) and not self._chunks:
                # Between frames with no input: nothing to parse (the usual end of a batch; one call per
                # read instead of three). Let go of the last chunk, as below.
                self._buf, self._pos = b"", 0
                return None
            if self._msg_opcode is None and self._parse_whole_frames():
                return ready.pop()
        event = self._next_event()
        if event is None and self._pos >= len(self._buf):
            # Everything read is parsed: let go of the last chunk (up to a whole read, kept for as long as
            # the connection idles otherwise; issue 22).
            self._buf, self._pos = b"", 0
        return event

    def _parse_whole_frames(self) -> bool:
        """Fast case: parse the small, final, plain data frames at the head of the buffer into ``ready``
        (empty when called), up to the first frame that is anything else (see the module docstring)."""
        if self._fast_limit < 0 or (self._pos >= len(self._buf) and not self._more()):
            return False
        if _parse_messages is None or self._stream:
            return self._parse_whole_frames_python()
        # The compiled loop: the same frames, checks and events as the Python one below.
        out: list[Event] = []
        self._pos = _parse_messages(
            self._buf,
            self._pos,
            self._expect_masked,
            self._fast_limit,
            out,
            TextMessage,
            _TEXT_SLOT,
            BinaryMessage,
            _BINARY_SLOT,
        )
        out.reverse()  # handed out with pop(): the first parsed goes first
        self.ready.extend(out)
        return bool(out)

    def _parse_whole_frames_python(self) -> bool:
        """The fast case in Python: the reference for the compiled ``parse_messages``, and the one used
        for streamed messages."""
        buf, pos, size, limit = self._buf, self._pos, len(self._buf), self._fast_limit
        mask_bit, key_size = (MASK_BIT, MASK_KEY_SIZE) if self._expect_masked else (0, 0)
        stream, append, new = self._stream, self.ready.append, object.__new__
        while size - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            if (b0 != _FIN_TEXT and b0 != _FIN_BINARY) or b1 & MASK_BIT != mask_bit:
                break  # not final, RSV bits, not text or binary, or the wrong mask bit (§5.1, §5.2)
            length = b1 & LENGTH_BITS
            start = pos + 2 + key_size
            if length == LENGTH_16 and size - pos >= 4:
                length = buf[pos + 2] << 8 | buf[pos + 3]
                start += 2
            elif length >= LENGTH_16:
                break  # a 64-bit length, or a 16-bit one not in the buffer yet
            end = start + length
            if end > size or length > limit:
                break
            payload = buf[start:end]
            if key_size:  # §5.3
                key = buf[start - key_size : start]
                if length >= INLINE_MASK_LIMIT:
                    payload = apply_mask(payload, key)
                else:  # one big-integer XOR, as apply_mask does it: inline, as the call costs more
                    xor = _from_bytes((key * ((length + 3) >> 2))[:length], "little")
                    payload = (_from_bytes(payload, "little") ^ xor).to_bytes(length, "little")
            if b0 == _FIN_TEXT:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # the general path reports it, at the first bad byte (§8.1)
                if stream:
                    append(TextChunk(text, True))
                else:  # the same frozen event as TextMessage(text), without __init__'s overhead
                    _SET_TEXT(message := new(TextMessage), text)
                    append(message)
            elif stream:
                append(BinaryChunk(payload, True))
            else:
                _SET_BINARY(binary := new(BinaryMessage), payload)
                append(binary)
            pos = end
        self._pos = pos
        self.ready.reverse()  # handed out with pop(): the first parsed goes first
        return bool(self.ready)

    def _next_event(self) -> Event | None:
        while True:
            if self._frame is not None:
                event = self._consume_payload()
                if event is not None:
                    return event
                if self._frame is not None and not self._chunks and self._pos >= len(self._buf):
                    return None  # the payload is not complete and the input is exhausted
                continue
            try:
                header = _parse_header(self._buf, self._pos)
            except HeaderError as exc:
                raise RemoteProtocolError(str(exc)) from None
            if header is None:
                if self._more():
                    continue
                return None
            if header.opcode & CONTROL_BIT:
                # Control frames wait until their (small) payload is complete.
                end = self._pos + header.header_size + header.length
                if header.length <= MAX_CONTROL_PAYLOAD and end > len(self._buf):
                    self._check_control(header)
                    if self._more():
                        continue
                    return None
                self._check_control(header)
                payload = self._buf[self._pos + header.header_size : end]
                self._pos = end
                if header.mask is not None:
                    payload = apply_mask(payload, header.mask)
                return self._control_event(header.opcode, payload)
            self._start_data_frame(header)
            self._pos += header.header_size

    def _check_frame(self, header: FrameHeader, first_frame: bool) -> None:
        # §5.1: a server MUST close on an unmasked frame; a client MUST close on a masked one
        if (header.mask is not None) != self._expect_masked:
            raise RemoteProtocolError(
                "unmasked frame from a client" if self._expect_masked else "masked frame from a server"
            )
        rsv = header.rsv
        if rsv:
            # §5.2: RSV1-3 MUST be 0 unless an extension defining them was negotiated
            if rsv & ~self._allowed_rsv:
                raise RemoteProtocolError(f"reserved bits {rsv >> 4:03b} set without an extension")
            for extension in self._extensions:
                bits = rsv & extension.rsv_mask
                if bits and not extension.rsv_ok(header.opcode, bits, first_frame):
                    raise RemoteProtocolError(f"reserved bits {rsv >> 4:03b} not allowed on this frame")

    def _check_control(self, header: FrameHeader) -> None:
        if header.opcode not in _CONTROL_OPCODES:
            # §5.2: opcodes 0xB-0xF are reserved; "the receiving endpoint MUST _Fail_"
            raise RemoteProtocolError(f"reserved opcode {header.opcode:#x}")
        # §5.5: control frames MUST have a payload of 125 bytes or less and MUST NOT be fragmented
        if header.length > MAX_CONTROL_PAYLOAD:
            raise RemoteProtocolError("control frame payload longer than 125 bytes")
        if not header.fin:
            raise RemoteProtocolError("fragmented control frame")
        self._check_frame(header, True)

    def _control_event(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)  # §5.5.2
        if opcode == OP_PONG:
            return Pong(payload)  # §5.5.3
        code, reason = parse_close_payload(payload)  # §5.5.1
        return CloseReceived(code, reason)

    def _start_data_frame(self, header: FrameHeader) -> None:
        opcode = header.opcode
        length = header.length
        if opcode == OP_CONT:
            # §5.4: a continuation frame only continues a fragmented message
            if self._msg_opcode is None:
                raise RemoteProtocolError("continuation frame without a message to continue")
            self._check_frame(header, False)
        elif opcode in _DATA_OPCODES:
            # §5.4: fragments of one message are not interleaved with another data message
            if self._msg_opcode is not None:
                raise RemoteProtocolError("new data frame inside a fragmented message")
            self._check_frame(header, True)
            self._begin_message(opcode, header.rsv, length)
        else:
            # §5.2: opcodes 0x3-0x7 are reserved
            raise RemoteProtocolError(f"reserved opcode {opcode:#x}")
        # §10.4: limits on frame and message size; fail before buffering the payload
        if self._max_frame is not None and length > self._max_frame:
            raise RemoteProtocolError(f"frame of {length} bytes over the limit", CloseCode.MESSAGE_TOO_BIG)
        if (
            self._msg_decoder is None
            and self._max_message is not None
            and self._msg_size + length > self._max_message
        ):
            raise RemoteProtocolError("message over the size limit", CloseCode.MESSAGE_TOO_BIG)
        self._msg_frames += 1
        if self._max_fragments is not None and self._msg_frames > self._max_fragments:
            raise RemoteProtocolError("message in too many fragments", CloseCode.MESSAGE_TOO_BIG)
        self._frame = header
        self._frame_left = length

    def _begin_message(self, opcode: int, rsv: int, length: int) -> None:
        self._msg_opcode = opcode
        self._msg_size = 0
        self._msg_frames = 0
        self._msg_decoder = None
        for extension in self._extensions:
            if extension.start_inbound(rsv & extension.rsv_mask):
                self._msg_decoder = extension
        # A streamed text message is decoded piece by piece; an assembled one only needs the incremental
        # decoder from its first non-ASCII piece on (see _assemble).
        self._utf8 = Utf8Decoder() if opcode == OP_TEXT and self._stream else None
        self._payload = self._decoded = None
        if self._stream:
            pass
        elif self._msg_decoder is not None:
            # Never more than the limit reserved, and the gathered bytes are the message (no copy); a
            # text message is decoded piece by piece into ``_texts`` (see _assemble_decoded).
            self._decoded = DecodedBuffer(self._max_message)
            if opcode == OP_TEXT:
                self._utf8 = Utf8Decoder()
                self._texts = []
        else:
            # Sized by this first frame when a limit bounds its length, up to _CAPACITY_MAX (beyond, it
            # grows as the payload arrives: a header alone cannot reserve a huge block). Nothing is
            # allocated before the first byte is appended, so the §10.4 checks that follow come first.
            sized = self._max_frame is not None
            self._payload = PayloadBuffer(min(length, _CAPACITY_MAX) if sized else 0, opcode == OP_TEXT)

    def _consume_payload(self) -> Event | None:
        """Consume what is available of the current data frame's payload; maybe return an event."""
        header = self._frame
        assert header is not None
        available = len(self._buf) - self._pos
        if available == 0 and self._frame_left:
            # Take the next chunk as it is (no copy); a large payload is consumed chunk by chunk.
            if not self._more():
                return None
            available = len(self._buf)
        take = min(available, self._frame_left)
        start = self._pos
        end = self._pos = start + take
        offset = header.length - self._frame_left
        self._frame_left -= take
        final = False
        if not self._frame_left:
            self._frame = None
            final = header.fin
        if self._payload is not None and self._msg_decoder is None:
            # §5.3: unmasked on the way from the received chunk into the message, in one copy
            self._msg_size += take
            return self._assemble(self._buf, start, end, header.mask, offset, final)
        piece = self._buf[start:end]
        if header.mask is not None:
            piece = apply_mask(piece, header.mask, offset)  # §5.3
        return self._message_piece(piece, final)

    def _message_piece(self, piece: bytes, final: bool) -> Event | None:
        """Feed a piece of unmasked payload of a streamed or extension-decoded message into it."""
        decoder = self._msg_decoder
        if decoder is not None:
            # e.g. permessage-deflate: the extension bounds the decoded size itself (RFC 7692 §8.1)
            remaining = None if self._max_message is None else self._max_message - self._msg_size
            if self._decoded is not None:
                return self._assemble_decoded(decoder.decode_pieces(piece, final, remaining), final)
            piece = decoder.decode(piece, final, remaining)
        self._add_size(len(piece))
        opcode = self._msg_opcode
        if final:
            self._msg_opcode = None
        if opcode == OP_TEXT:
            assert self._utf8 is not None
            text = self._utf8.decode(piece, final)  # §8.1: fail at the first invalid byte
            return TextChunk(text, final) if text or final else None
        return BinaryChunk(piece, final) if piece or final else None

    def _assemble(
        self, data: bytes, start: int, end: int, mask: bytes | None, offset: int, final: bool
    ) -> Event | None:
        """Append ``data[start:end]`` (payload byte ``offset`` on, masked with ``mask`` unless None) to the
        message being assembled; return the message when this was its last piece."""
        payload = self._payload
        assert payload is not None
        ascii = payload.append(data, start, end, mask, offset)
        if self._msg_opcode == OP_TEXT and (not ascii or self._utf8 is not None):
            # §8.1: fail at the first invalid byte. ASCII is valid UTF-8 by itself, so the incremental
            # decoder sees the pieces from the first non-ASCII one on (it may hold a sequence cut short).
            if self._utf8 is None:
                self._utf8 = Utf8Decoder()
            piece = data[start:end]
            self._utf8.decode(piece if mask is None else apply_mask(piece, mask, offset))
        if not final:
            return None
        opcode = self._msg_opcode
        self._msg_opcode = None
        self._payload = None
        if opcode == OP_TEXT:
            # Every piece was valid: only a sequence cut short by the end can fail here (§8.1).
            try:
                decoded = payload.take_text()  # compiled: an all-ASCII message is not copied again
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError(f"invalid UTF-8: {exc.reason}", CloseCode.INVALID_DATA) from None
            _SET_TEXT(text := _new(TextMessage), decoded)  # TextMessage(decoded), without __init__
            return text
        _SET_BINARY(binary := _new(BinaryMessage), payload.take())
        return binary

    def _add_size(self, size: int) -> None:
        self._msg_size += size
        if self._max_message is not None and self._msg_size > self._max_message:
            raise RemoteProtocolError("message over the size limit", CloseCode.MESSAGE_TOO_BIG)

    def _assemble_decoded(self, pieces: Iterable[bytes], final: bool) -> Event | None:
        """Gather the decoded pieces of one received piece into the message, each as it is decoded (so
        the message and one piece are all that is held); return the message when this was its end.

        Binary: into the :class:`DecodedBuffer` whose ``bytes`` is the message. Text: each piece is
        decoded as it comes (§8.1: failing at the first invalid byte) and the message is the join of the
        decoded ``str`` pieces, so no bytes of it are kept (measured: the whole-message UTF-8 decode of
        CPython transiently takes up to twice the byte length besides the bytes and the result)."""
        buffer = self._decoded
        assert buffer is not None
        if self._msg_opcode == OP_BINARY:
            for piece in pieces:
                self._add_size(len(piece))
                buffer.append(piece)
            if not final:
                return None
            self._msg_opcode = None
            self._decoded = None
            return BinaryMessage(buffer.take())
        utf8 = self._utf8
        assert utf8 is not None
        texts = self._texts
        assert texts is not None
        for piece in pieces:
            self._add_size(len(piece))
            text = utf8.decode(piece)
            if text:
                texts.append(text)
        if not final:
            return None
        text = utf8.decode(b"", True)  # §8.1: a sequence cut short by the end of the message
        self._msg_opcode = None
        self._decoded = None
        self._utf8 = None
        self._texts = None
        if text:
            texts.append(text)
        return TextMessage(texts[0] if len(texts) == 1 else "".join(texts))
