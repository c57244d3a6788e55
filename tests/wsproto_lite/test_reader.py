"""Frames to message events: the rules of §5.1-5.5, §8.1 and §10.4 with their close codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite import _frames, _reader
from wsproto_lite._config import Config
from wsproto_lite._errors import RemoteProtocolError
from wsproto_lite._events import (
    BinaryChunk,
    BinaryMessage,
    CloseReceived,
    Event,
    Ping,
    Pong,
    TextChunk,
    TextMessage,
)
from wsproto_lite._reader import MessageReader

from .wire import FRAMES, close, frame, read_in_chunks, text


def read(data: bytes, config: Config | None = None, server: bool = True) -> list[Event]:
    """Events parsed from ``data``, or a ("error", code) item where the reader raised."""
    reader = MessageReader(config or Config(), expect_masked=server)
    reader.feed(data)
    events: list[Event] = []
    while True:
        try:
            event = reader.next_event()
        except RemoteProtocolError as exc:
            events.append(("error", exc.code))  # type: ignore[arg-type]
            return events
        if event is None:
            return events
        events.append(event)


def test_text_binary_and_control_frames() -> None:
    data = text("héllo") + frame(0x2, b"\x00\xff") + frame(0x9, b"p") + frame(0xA, b"q") + close(1001, b"bye")
    assert read(data) == [
        TextMessage("héllo"),
        BinaryMessage(b"\x00\xff"),
        Ping(b"p"),
        Pong(b"q"),
        CloseReceived(1001, "bye"),
    ]


def test_client_side_reads_unmasked_frames() -> None:
    assert read(frame(0x1, b"hi", mask=None), server=False) == [TextMessage("hi")]


def test_fragments_with_control_frames_interleaved() -> None:
    # §5.4: control frames MAY be injected in the middle of a fragmented message
    data = frame(0x1, b"fr", fin=False) + frame(0x9, b"") + frame(0x0, b"ag", fin=False) + frame(0x0, b"s")
    assert read(data) == [Ping(b""), TextMessage("frags")]
    data = frame(0x2, b"", fin=False) + frame(0x0, b"", fin=False) + frame(0x0, b"")
    assert read(data) == [BinaryMessage(b"")]


def test_utf8_split_across_fragments() -> None:
    raw = "κόσμε".encode()
    data = frame(0x1, raw[:1], fin=False) + frame(0x0, raw[1:4], fin=False) + frame(0x0, raw[4:])
    assert read(data) == [TextMessage("κόσμε")]


@pytest.mark.parametrize(
    "data, code",
    [
        (frame(0x1, b"x", mask=None), 1002),  # §5.1: unmasked from a client
        (frame(0x3, b""), 1002),  # §5.2: reserved data opcode
        (frame(0xB, b""), 1002),  # §5.2: reserved control opcode
        (frame(0x1, b"x", rsv=0x40), 1002),  # §5.2: RSV1 without an extension
        (frame(0x1, b"x", rsv=0x10), 1002),
        (frame(0x9, b"x" * 126), 1002),  # §5.5: control payload over 125
        (frame(0x9, b"x", fin=False), 1002),  # §5.5: fragmented control frame
        (frame(0x0, b"x"), 1002),  # §5.4: nothing to continue
        (frame(0x1, b"a", fin=False) + frame(0x1, b"b"), 1002),  # §5.4: new message inside a fragmented one
        (frame(0x1, b"\xff"), 1007),  # §8.1
        (frame(0x8, b"\x03"), 1002),  # §5.5.1: one-byte close payload
        (close(1004), 1002),  # §7.4.1
        (close(1000, b"\xff"), 1007),
        (b"\x81\xff\x80" + b"\0" * 7 + b"mask", 1002),  # §5.2: 64-bit length with the top bit
    ],
)
def test_protocol_errors(data: bytes, code: int) -> None:
    assert read(data)[-1] == ("error", code)


def test_masked_frame_from_a_server() -> None:
    assert read(text("x"), server=False) == [("error", 1002)]


def test_events_before_the_bad_frame_are_delivered_first() -> None:
    # Autobahn 3.x, 4.x, 5.15: valid messages before a bad frame still reach the application
    data = text("one") + frame(0x9, b"") + text("two") + frame(0x1, b"x", rsv=0x20) + text("never")
    assert read(data) == [TextMessage("one"), Ping(b""), TextMessage("two"), ("error", 1002)]


def test_invalid_utf8_fails_before_the_frame_is_complete() -> None:
    # Autobahn 6.4.x: fail fast in the middle of a frame
    whole = frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited")
    reader = MessageReader(Config(), expect_masked=True)
    reader.feed(whole[: 6 + 13])  # the header, the key and the text up to \xf4\x90
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_event()
    assert info.value.code == 1007


def test_limits() -> None:
    config = Config(max_message_size=10, max_fragments=3)
    assert read(text("x" * 10), config) == [TextMessage("x" * 10)]
    assert read(text("x" * 11), config) == [("error", 1009)]
    # the limit applies to the message across fragments, and fails before the payload arrives
    assert read(frame(0x2, b"x" * 6, fin=False) + frame(0x0, b"x" * 6)[:6], config) == [("error", 1009)]
    three = frame(0x2, b"", fin=False) + frame(0x0, b"", fin=False) + frame(0x0, b"")
    assert read(three, config) == [BinaryMessage(b"")]
    four = frame(0x2, b"", fin=False) + frame(0x0, b"", fin=False) * 2 + frame(0x0, b"")
    assert read(four, config) == [("error", 1009)]
    assert read(frame(0x2, b"x" * 5), Config(max_frame_size=4))[-1] == ("error", 1009)


def test_a_huge_length_is_refused_from_the_header_alone() -> None:
    header = b"\x82\xff" + (2**63 - 1).to_bytes(8, "big") + b"mask"
    assert read(header) == [("error", 1009)]


def test_a_huge_allowed_length_reserves_no_huge_buffer() -> None:
    # §10.4: a limit the application raised very high; the header alone must not make the message
    # buffer reserve its length (a MemoryError would escape the core), it grows as the payload arrives
    config = Config(max_message_size=2**62)
    header = b"\x82\xff" + (2**61).to_bytes(8, "big") + b"\0\0\0\0"
    assert read(header + b"abc", config) == []


def test_streaming_chunks() -> None:
    config = Config(stream_messages=True)
    raw = "κόσμε".encode()
    data = (
        frame(0x1, raw[:3], fin=False) + frame(0x0, raw[3:]) + frame(0x2, b"ab", fin=False) + frame(0x0, b"c")
    )
    assert read(data, config) == [
        TextChunk("κ", False),
        TextChunk("όσμε", True),
        BinaryChunk(b"ab", False),
        BinaryChunk(b"c", True),
    ]


def test_streaming_a_large_frame_as_it_arrives() -> None:
    config = Config(stream_messages=True, max_message_size=None)
    payload = bytes(range(256)) * 1000
    data = frame(0x2, payload)
    reader = MessageReader(config, expect_masked=True)
    received = b""
    for i in range(0, len(data), 7000):
        reader.feed(data[i : i + 7000])
        while (event := reader.next_event()) is not None:
            assert isinstance(event, BinaryChunk)
            received += event.data
            assert event.final == (len(received) == len(payload))
    assert received == payload


def test_byte_by_byte() -> None:
    data = (
        text("hello")
        + frame(0x1, "wörld".encode(), fin=False)
        + frame(0xA, b"pp")
        + frame(0x0, b"!")
        + close()
    )
    expected = read(data)
    reader = MessageReader(Config(), expect_masked=True)
    events = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        while (event := reader.next_event()) is not None:
            events.append(event)
    assert (
        events
        == expected
        == [TextMessage("hello"), Pong(b"pp"), TextMessage("wörld!"), CloseReceived(1000, "")]
    )


def test_buffered_counts_unparsed_bytes() -> None:
    reader = MessageReader(Config(), expect_masked=True)
    reader.feed(text("a"))
    reader.feed(text("b"))
    assert reader.buffered == 14
    assert reader.next_event() == TextMessage("a")
    assert reader.buffered == 7


@given(st.lists(FRAMES, max_size=12), st.booleans(), st.sampled_from([100, 1000, None]))
def test_fast_path_and_general_path_agree(frames: list[bytes], stream: bool, limit: int | None) -> None:
    """Whole frames in one chunk take the fast path; one byte at a time forces the general path."""
    data = b"".join(frames)
    config = Config(stream_messages=stream, max_message_size=limit)
    whole = read(data, config)
    reader = MessageReader(config, expect_masked=True)
    slow: list[Event] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        try:
            while (event := reader.next_event()) is not None:
                slow.append(event)
        except RemoteProtocolError as exc:
            slow.append(("error", exc.code))  # type: ignore[arg-type]
            break
    if stream:  # the general path may split a message into more chunks: compare the joined messages
        whole, slow = _join_chunks(whole), _join_chunks(slow)
    assert slow == whole


def _join_chunks(events: list[Event]) -> list[object]:
    out: list[object] = []
    parts: list[object] = []
    for event in events:
        if isinstance(event, (TextChunk, BinaryChunk)):
            parts.append(event.data)
            if event.final:
                out.append(("".join if isinstance(event, TextChunk) else b"".join)(parts))  # type: ignore[operator]
                parts = []
        else:
            out.append(event)
    return out


# -- the compiled PayloadBuffer against the pure-Python one -----------------------------------------------

try:
    from wsproto_lite import _cspeedups
except ImportError:  # not built: nothing to compare
    _cspeedups = None  # type: ignore[assignment]

# Sequences that are not UTF-8 (RFC 3629): a byte never used, an overlong form, an encoded surrogate,
# a code point over U+10FFFF, a sequence cut short by the next byte, and one cut short by the end.
_BAD_UTF8 = [b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82(", b"\xce"]


@st.composite
def _messages(draw: Callable[..., object]) -> bytes:
    """One data message in 1-4 fragments, each with its own mask key: text (maybe with an invalid UTF-8
    sequence at a random place) or binary, small or large enough to span chunks; sometimes a ping inside."""
    kind = draw(st.sampled_from(["text", "bad text", "binary"]))
    if kind == "binary":
        payload: bytes = draw(st.one_of(st.binary(max_size=40), st.binary(min_size=300, max_size=3000)))  # type: ignore[assignment]
    else:
        body: str = draw(st.one_of(st.text(max_size=40), st.text(min_size=100, max_size=1000)))  # type: ignore[assignment]
        payload = body.encode()
        if kind == "bad text":
            at: int = draw(st.integers(0, len(payload)))  # type: ignore[assignment]
            payload = payload[:at] + draw(st.sampled_from(_BAD_UTF8)) + payload[at:]  # type: ignore[operator]
    cuts: list[int] = draw(st.lists(st.integers(0, len(payload)), max_size=3))  # type: ignore[assignment]
    bounds = [0, *sorted(cuts), len(payload)]
    frames = []
    for i in range(len(bounds) - 1):
        key: bytes = draw(st.binary(min_size=4, max_size=4))  # type: ignore[assignment]
        opcode = (0x1 if kind != "binary" else 0x2) if i == 0 else 0x0
        last = i == len(bounds) - 2
        frames.append(frame(opcode, payload[bounds[i] : bounds[i + 1]], fin=last, mask=key))
        if not last and draw(st.booleans()):
            frames.append(frame(0x9, b"ping", mask=key))  # §5.4: control frames between fragments
    return b"".join(frames)


@pytest.mark.skipif(_cspeedups is None, reason="C accelerator not built")
@given(st.lists(_messages(), min_size=1, max_size=5), st.data())
def test_compiled_and_python_payload_buffers_give_the_same_events(
    messages: list[bytes], data: st.DataObject
) -> None:
    """Whatever the chunking, masks and offsets: the same messages, the same errors at the same place
    (1007 at the first bad piece, §8.1; 1009 over the limit, §10.4), with either implementation."""
    stream = b"".join(messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    results = []
    for buffer, mask, inline_limit in [
        (_cspeedups.PayloadBuffer, _cspeedups.apply_mask, 0),
        (_frames.PythonPayloadBuffer, _frames.python_apply_mask, 512),
    ]:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_reader, "PayloadBuffer", buffer)
            patch.setattr(_reader, "apply_mask", mask)
            patch.setattr(_reader, "INLINE_MASK_LIMIT", inline_limit)
            results.append(read_in_chunks(stream, cuts, Config(max_message_size=2000), server=True))
    assert results[0] == results[1]
