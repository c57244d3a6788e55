"""The compiled fast case of the reader (``_cspeedups.parse_messages``) and its compiled header parser
(``_cspeedups.parse_header``) against the pure-Python reader and ``_frames.parse_header``.

The pure-Python reader is the reference: on any stream of frames (valid, broken or random bytes), cut
into chunks anywhere, with either role and any limits, the reader with the compiled loop must give the
same events and the same close code at the same place. Both readers are set up explicitly here (the
compiled module is imported directly), so these tests run in both CI passes; they are skipped where the
accelerator was not built.
"""

from __future__ import annotations

import gc
import struct
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from types import ModuleType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite import _frames, _reader
from wsproto_lite._config import Config
from wsproto_lite._errors import CloseCode
from wsproto_lite._events import BinaryMessage, Event, Ping, TextMessage
from wsproto_lite._frames import FrameHeader, HeaderError
from wsproto_lite._reader import MessageReader

from . import wire
from .wire import MASK, frame, read_in_chunks


def _compiled() -> ModuleType | None:
    try:
        from wsproto_lite import _cspeedups
    except ImportError:
        return None
    return _cspeedups


C = _compiled()
pytestmark = pytest.mark.skipif(C is None, reason="C accelerator not built")

_TEXT_SLOT = TextMessage.__dict__["data"]
_BINARY_SLOT = BinaryMessage.__dict__["data"]


@contextmanager
def _implementation(compiled: bool) -> Iterator[None]:
    """The reader with the compiled fast case and masking, or the pure-Python reference throughout."""
    assert C is not None
    with pytest.MonkeyPatch.context() as patch:
        if compiled:
            patch.setattr(_reader, "_parse_messages", C.parse_messages)
            patch.setattr(_reader, "_parse_message", C.parse_message)
            patch.setattr(_reader, "_parse_header", partial(C.parse_header, FrameHeader, HeaderError))
            patch.setattr(_reader, "apply_mask", C.apply_mask)
            patch.setattr(_reader, "PayloadBuffer", C.PayloadBuffer)
            patch.setattr(_reader, "INLINE_MASK_LIMIT", 0)
        else:
            patch.setattr(_reader, "_parse_messages", None)
            patch.setattr(_reader, "_parse_message", None)
            patch.setattr(_reader, "_parse_header", _frames.parse_header)
            patch.setattr(_reader, "apply_mask", _frames.python_apply_mask)
            patch.setattr(_reader, "PayloadBuffer", _frames.PythonPayloadBuffer)
            patch.setattr(_reader, "INLINE_MASK_LIMIT", 512)
        yield


def _both(data: bytes, cuts: list[int], config: Config, server: bool = True) -> list[object]:
    """Read with both implementations; assert they agree; return the events."""
    with _implementation(compiled=True):
        compiled = read_in_chunks(data, cuts, config, server=server)
    with _implementation(compiled=False):
        python = read_in_chunks(data, cuts, config, server=server)
    assert compiled == python
    assert [type(e) for e in compiled] == [type(e) for e in python]
    return compiled


_BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82(", b"\xce"]


def _raw_frame(first: int, payload: bytes, masked: bool, length_form: int, key: bytes) -> bytes:
    """A frame with any first byte (FIN, RSV, opcode) and any length encoding, minimal or not (§5.2)."""
    n = len(payload)
    bit = 0x80 if masked else 0
    if length_form == 0 and n < 126:
        head = struct.pack("!BB", first, bit | n)
    elif length_form <= 1 and n < 65536:
        head = struct.pack("!BBH", first, bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, bit | 127, n)
    if not masked:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@st.composite
def _payloads(draw: Callable[..., object]) -> bytes:
    text: str = draw(st.one_of(st.text(max_size=20), st.text(min_size=100, max_size=400)))  # type: ignore[assignment]
    payload = text.encode()
    choice: int = draw(st.integers(0, 3))  # type: ignore[assignment]
    if choice == 0:  # invalid UTF-8 somewhere
        at: int = draw(st.integers(0, len(payload)))  # type: ignore[assignment]
        payload = payload[:at] + draw(st.sampled_from(_BAD_UTF8)) + payload[at:]  # type: ignore[operator]
    elif choice == 1:
        payload = draw(st.binary(max_size=200))  # type: ignore[assignment]
    elif choice == 2 and draw(st.booleans()):
        payload = payload * 200  # 16-bit lengths and frames spanning chunks
    return payload


@st.composite
def _frames_any(draw: Callable[..., object], server: bool) -> bytes:
    """Mostly frames the fast case takes, among every kind it must leave alone, and random bytes."""
    kind: str = draw(st.sampled_from(["fast"] * 6 + ["any first byte", "wrong mask", "junk"]))  # type: ignore[assignment]
    key: bytes = draw(st.binary(min_size=4, max_size=4))  # type: ignore[assignment]
    payload: bytes = draw(_payloads())  # type: ignore[assignment]
    form: int = draw(st.integers(0, 2))  # type: ignore[assignment]
    if kind == "junk":
        return draw(st.binary(max_size=20))  # type: ignore[return-value]
    if kind == "fast":
        first: int = draw(st.sampled_from([0x81, 0x82]))  # type: ignore[assignment]
        return _raw_frame(first, payload, server, draw(st.sampled_from([0, 0, 0, form])), key)  # type: ignore[arg-type]
    if kind == "wrong mask":
        return _raw_frame(0x82, payload, not server, form, key)
    first = draw(st.integers(0, 255))  # type: ignore[assignment]
    if first & 0x08:  # control frames: mostly small, so some are valid
        payload = payload[: draw(st.sampled_from([125, 126, 0]))]  # type: ignore[misc]
    return _raw_frame(first, payload, server, form, key)


_CONFIGS = st.builds(
    Config,
    max_message_size=st.sampled_from([None, 50, 1000, 2**20]),
    max_frame_size=st.sampled_from([None, 20, 300]),
)


@given(st.booleans(), st.data())
def test_compiled_and_python_readers_agree_on_any_stream(server: bool, data: st.DataObject) -> None:
    """Same events, same close code at the same place (§5.1-5.5, §8.1, §10.4), whatever the chunking."""
    frames = data.draw(st.lists(_frames_any(server), max_size=10))
    stream = b"".join(frames)
    config = data.draw(_CONFIGS)
    cuts = data.draw(st.one_of(st.just([]), st.lists(st.integers(0, len(stream)), max_size=6)))
    _both(stream, cuts, config, server)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=4), st.booleans())
def test_compiled_and_python_readers_agree_on_random_bytes(
    data: bytes, cuts: list[int], server: bool
) -> None:
    _both(data, [min(c, len(data)) for c in cuts], Config(), server)


def test_a_long_run_of_small_messages_then_a_ping_then_invalid_utf8() -> None:
    messages = [frame(0x1, f"m{i}".encode()) for i in range(500)] + [
        frame(0x2, bytes([i])) for i in range(256)
    ]
    stream = b"".join(messages) + frame(0x9, b"p") + frame(0x1, b"ok") + frame(0x1, b"a\xffb")
    events = _both(stream, [], Config())
    assert events[:500] == [TextMessage(f"m{i}") for i in range(500)]
    assert events[500:756] == [BinaryMessage(bytes([i])) for i in range(256)]
    assert events[756:] == [Ping(b"p"), TextMessage("ok"), ("error", CloseCode.INVALID_DATA)]


# -- parse_messages itself ----------------------------------------------------------------------------


def _parse(data: bytes, pos: int = 0, masked: bool = True, limit: int = 0xFFFF) -> tuple[int, list[Event]]:
    assert C is not None
    out: list[Event] = []
    end = C.parse_messages(
        data, pos, masked, limit, out, TextMessage, _TEXT_SLOT, BinaryMessage, _BINARY_SLOT
    )
    return end, out


def test_parse_messages_takes_every_whole_message_in_one_call() -> None:
    stream = frame(0x1, "é".encode() * 100) + frame(0x2, b"\x00" * 200) + frame(0x1, b"") + frame(0x2, b"x")
    end, events = _parse(b"junk" + stream, 4)
    assert end == 4 + len(stream)
    assert events == [
        TextMessage("é" * 100),
        BinaryMessage(b"\x00" * 200),
        TextMessage(""),
        BinaryMessage(b"x"),
    ]
    assert [type(e.data) for e in events] == [str, bytes, str, bytes]
    # unmasked, as a client reads a server's frames
    end, events = _parse(frame(0x1, b"hi", mask=None), masked=False)
    assert (end, events) == (4, [TextMessage("hi")])


_UNUSUAL = [
    (frame(0x1, b"a", fin=False), "a fragment (§5.4)"),
    (frame(0x0, b"a"), "a continuation (§5.4)"),
    (frame(0x9, b"a"), "a control frame (§5.5)"),
    (frame(0x3, b"a"), "a reserved opcode (§5.2)"),
    (frame(0x1, b"a", rsv=0x40), "an RSV bit (§5.2)"),
    (frame(0x1, b"a", mask=None), "an unmasked frame at a server (§5.1)"),
    (frame(0x1, b"\xce"), "invalid UTF-8 (§8.1)"),
    (b"\x82\xff\x80" + bytes(7) + MASK + b"a", "a 64-bit length with its most significant bit set (§5.2)"),
    (b"\x82\xff" + struct.pack("!Q", 2**64 - 1) + MASK, "the largest 64-bit length"),
    (frame(0x2, b"a" * 70000)[:12], "a 64-bit length cut short"),
    (frame(0x2, b"a" * 301), "over the limit (§10.4)"),
    (frame(0x2, b"a" * 300)[:-1], "cut short"),
    (frame(0x2, b"a" * 300)[:3], "a 16-bit length cut short"),
    (b"\x82", "one byte"),
]


@pytest.mark.parametrize(("head", "why"), _UNUSUAL, ids=[why for _, why in _UNUSUAL])
def test_parse_messages_stops_at_anything_unusual(head: bytes, why: str) -> None:
    ok = frame(0x2, b"ok")
    after = b"" if "short" in why or why == "one byte" else ok  # a frame cut short ends the input
    end, events = _parse(ok + head + after, limit=300)
    assert (end, events) == (len(ok), [BinaryMessage(b"ok")])


def test_parse_messages_takes_any_length_encoding_up_to_the_limit() -> None:
    """7-, 16- and 64-bit lengths (§5.2), minimal or not; the limit (§10.4) bounds the length."""
    big = frame(0x2, b"a" * 70000)
    assert _parse(big + big, limit=70000) == (2 * len(big), [BinaryMessage(b"a" * 70000)] * 2)
    assert _parse(big, limit=69999) == (0, [])
    five = b"\x81\xff" + struct.pack("!Q", 5) + b"\0\0\0\0hello"  # 5 in the 64-bit form, zero mask
    assert _parse(five, limit=5) == (len(five), [TextMessage("hello")])
    with pytest.raises(ValueError, match="limit"):
        _parse(five, limit=-1)


def test_parse_messages_unmasks_with_each_frames_key() -> None:
    keys = [MASK, b"\x00\x00\x00\x00", b"\xff\x01\x80\x7f"]
    stream = b"".join(frame(0x1, b"same text, 17 b.", mask=key) for key in keys)
    assert _parse(stream)[1] == [TextMessage("same text, 17 b.")] * 3


def test_parse_messages_refuses_bad_arguments() -> None:
    assert C is not None
    data = frame(0x2, b"x")
    good = (data, 0, True, 100, [], TextMessage, _TEXT_SLOT, BinaryMessage, _BINARY_SLOT)
    with pytest.raises(ValueError, match="position"):
        C.parse_messages(data, len(data) + 1, *good[2:])
    with pytest.raises(ValueError, match="position"):
        C.parse_messages(data, -1, *good[2:])
    with pytest.raises(TypeError):
        C.parse_messages(*good[:4], (), *good[5:])  # not a list
    with pytest.raises(TypeError):
        C.parse_messages(*good[:5], "not a type", *good[6:])
    with pytest.raises(TypeError):
        C.parse_messages(*good[:8], object())  # not a descriptor
    with pytest.raises(TypeError):
        C.parse_messages(*good[:8], _TEXT_SLOT)  # TextMessage's slot on a BinaryMessage
    with pytest.raises(TypeError):
        C.parse_messages(*good[:8])
    assert C.parse_messages(*good) == len(data)


def _parse_one(data: bytes, masked: bool = True, limit: int = 300) -> object:
    assert C is not None
    return C.parse_message(data, masked, limit, TextMessage, _TEXT_SLOT, BinaryMessage, _BINARY_SLOT)


@given(st.lists(wire.FRAMES, max_size=3), st.integers(0, 800), st.booleans(), st.sampled_from([0, 100, 1000]))
def test_parse_message_is_parse_messages_taking_exactly_one_message(
    frames: list[bytes], cut: int, masked: bool, limit: int
) -> None:
    """``parse_message`` gives an event exactly when ``parse_messages`` takes the whole input as one
    message, and the same event; anything else (several messages, a part of one, a frame the fast case
    leaves to the general path, bytes after it) gives None."""
    data = b"".join(frames)
    data = data[:cut] if cut < len(data) else data
    end, events = _parse(data, masked=masked, limit=limit)
    one = _parse_one(data, masked, limit)
    if end == len(data) and len(events) == 1:
        assert one == events[0] and type(one) is type(events[0])
    else:
        assert one is None


def test_parse_message_examples() -> None:
    assert _parse_one(frame(0x1, "é".encode())) == TextMessage("é")
    assert _parse_one(frame(0x2, b"\x00" * 300)) == BinaryMessage(b"\x00" * 300)
    assert _parse_one(frame(0x1, b"hi", mask=None), masked=False) == TextMessage("hi")
    assert _parse_one(frame(0x1, b"a") + frame(0x1, b"b")) is None  # two messages
    assert _parse_one(frame(0x1, b"a") + b"\x81") is None  # and the start of another
    assert _parse_one(frame(0x1, b"ab")[:-1]) is None  # cut short
    assert _parse_one(frame(0x1, b"\xff")) is None  # not UTF-8: the general path closes with 1007
    assert _parse_one(frame(0x2, b"a" * 301)) is None  # over the limit: the general path's 1009
    assert _parse_one(b"") is None
    with pytest.raises(ValueError, match="limit"):
        _parse_one(frame(0x2, b"a"), limit=-1)
    with pytest.raises(TypeError):
        C.parse_message(frame(0x2, b"a"), True, 9, TextMessage, _TEXT_SLOT, BinaryMessage, _TEXT_SLOT)  # type: ignore[union-attr]


def test_the_reader_uses_the_compiled_loop_when_the_accelerator_is_active() -> None:
    calls: list[int] = []
    assert C is not None

    def counting(*args: object) -> int:
        calls.append(1)
        return C.parse_messages(*args)  # type: ignore[no-any-return, arg-type]

    with _implementation(compiled=True), pytest.MonkeyPatch.context() as patch:
        patch.setattr(_reader, "_parse_messages", counting)
        reader = MessageReader(Config(), expect_masked=True)
        reader.feed(frame(0x1, b"a") * 100)
        assert reader.next_event() == TextMessage("a")
        assert len(reader.ready) == 99
    assert calls == [1]


# -- parse_header -------------------------------------------------------------------------------------


def _any_header(first: int, masked: bool, n: int, form: int, key: bytes) -> bytes:
    """A header with any first byte and any value in a 7-, 16- or 64-bit length field (§5.2)."""
    bit = 0x80 if masked else 0
    if form == 0:
        head = bytes([first, bit | n % 126])
    elif form == 1:
        head = bytes([first, bit | 126]) + struct.pack("!H", n & 0xFFFF)
    else:  # any 64-bit value, the most significant bit included
        head = bytes([first, bit | 127]) + struct.pack("!Q", n)
    return head + (key if masked else b"")


_headers = st.one_of(
    st.binary(max_size=16),
    st.builds(
        _any_header,
        st.integers(0, 255),
        st.booleans(),
        st.one_of(
            st.integers(0, 2**16),
            st.integers(0, 2**64 - 1),
            st.sampled_from([125, 126, 127, 2**16 - 1, 2**16, 2**62, 2**63 - 1, 2**63, 2**64 - 1]),
        ),
        st.integers(0, 2),
        st.binary(min_size=4, max_size=4),
    ),
)


def _header_or_error(parse: Callable[[bytes, int], object], data: bytes, pos: int) -> object:
    try:
        return parse(data, pos)
    except HeaderError as exc:
        return ("HeaderError", str(exc))


@given(st.binary(max_size=8), _headers, st.integers(0, 30))
def test_compiled_parse_header_equals_python(prefix: bytes, header: bytes, cut: int) -> None:
    """Every prefix of any header: the same FrameHeader (or None, or HeaderError) as the reference."""
    assert C is not None
    compiled = partial(C.parse_header, FrameHeader, HeaderError)
    data = prefix + header[: min(cut, len(header))]
    got = _header_or_error(compiled, data, len(prefix))
    want = _header_or_error(_frames.parse_header, data, len(prefix))
    assert got == want
    assert type(got) is type(want)
    if isinstance(got, FrameHeader):
        assert [type(x) for x in got] == [type(x) for x in want]  # type: ignore[union-attr]


def test_compiled_parse_header_examples() -> None:
    assert C is not None
    parse = partial(C.parse_header, FrameHeader, HeaderError)
    assert parse(frame(0x1, b"a" * 300), 0) == FrameHeader(True, 0, 1, MASK, 300, 8)
    assert parse(b"x" + frame(0x2, b"a" * 70000, mask=None, fin=False, rsv=0x70), 1) == FrameHeader(
        False, 0x70, 2, None, 70000, 10
    )
    assert parse(b"\x82\xfe\x01", 0) is None
    assert parse(b"", 0) is None
    for length in (2**16, 2**62, 2**63 - 1):  # any 64-bit length without the most significant bit
        assert parse(b"\x82\x7f" + struct.pack("!Q", length), 0) == FrameHeader(True, 0, 2, None, length, 10)
    with pytest.raises(HeaderError, match="most significant bit"):
        parse(b"\x82\x7f\x80" + bytes(7), 0)
    with pytest.raises(HeaderError, match="most significant bit"):
        parse(b"\x82\xff\x80" + bytes(7), 0)  # masked: known bad before the masking key is in
    with pytest.raises(ValueError, match="position"):
        parse(b"ab", 3)
    with pytest.raises(TypeError):
        C.parse_header(dict, HeaderError, b"\x82\x00", 0)
    with pytest.raises(TypeError):
        C.parse_header(FrameHeader, "not an exception", b"\x82\x00", 0)
    with pytest.raises(TypeError):
        C.parse_header(FrameHeader, HeaderError, b"\x82\x00")


def test_parsing_leaks_no_reference_and_no_memory() -> None:
    """The events hold the only references to their payloads, and the types, slots and input gain none:
    dropping the events frees everything (reference counting alone, the collector disabled), on every
    path, the failing ones included."""
    assert C is not None
    data = frame(0x1, "é".encode() * 40) + frame(0x2, b"x" * 300) + frame(0x1, b"ascii") + frame(0x1, b"\xff")
    watched = [TextMessage, BinaryMessage, _TEXT_SLOT, _BINARY_SLOT, data, FrameHeader, HeaderError]
    before = [sys.getrefcount(x) for x in watched]
    gc.disable()
    try:
        tracemalloc.start()
        for _round in range(2):  # the first round warms up caches; the second must not grow
            start, _peak = tracemalloc.get_traced_memory()
            for _ in range(300):
                end, events = _parse(data)
                assert len(events) == 3 and end == len(data) - 7
                # held by the list (the event) or the event (its data), and getrefcount's argument
                counts = [(sys.getrefcount(events[i]), sys.getrefcount(events[i].data)) for i in range(3)]
                assert counts == [(2, 2)] * 3
                del events
                single = _parse_one(frame(0x1, b"one message"))
                held = (sys.getrefcount(single), sys.getrefcount(single.data))  # type: ignore[attr-defined]
                assert held == (2, 2)  # this name (the event), the event (its data); and the argument
                del single
                assert _parse_one(data) is None
                C.parse_header(FrameHeader, HeaderError, data, 0)
                # the failing paths (plain try/except: pytest.raises keeps cycles the collector would free)
                try:
                    C.parse_header(FrameHeader, HeaderError, b"\x82\x7f\xff" + bytes(7), 0)
                except HeaderError:
                    pass
                try:
                    C.parse_messages(
                        data, 0, True, 999, [], TextMessage, _TEXT_SLOT, BinaryMessage, _TEXT_SLOT
                    )
                except TypeError:
                    pass
                else:
                    raise AssertionError("a slot of the wrong type was accepted")
            grown = tracemalloc.get_traced_memory()[0] - start
        tracemalloc.stop()
    finally:
        gc.enable()
    assert grown < 10_000, grown
    assert [sys.getrefcount(x) for x in watched] == before
