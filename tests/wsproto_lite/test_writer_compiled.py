"""The send path's compiled pieces (``_cspeedups.encode_frame``, ``_cspeedups.coalesce``) against their
pure-Python references (``_frames.python_encode_frame``, ``_writer.python_coalesce``).

The compiled module is imported directly, so these run in both CI passes (with and without
``WSPROTO_LITE_NO_SPEEDUPS=1``); they are skipped where it was not built. The writer's own tests
(test_writer.py) run with whichever is active, so each pass checks the writer on one of them.
"""

from __future__ import annotations

import gc
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite._frames import python_encode_frame
from wsproto_lite._writer import COPY_LIMIT, FrameWriter, python_coalesce

from .test_speedups import C, needs_c, unaligned
from .wire import frame

# Lengths on both sides of every header size (§5.2: 7-bit, 16-bit and 64-bit lengths) and random ones.
_LENGTHS = st.one_of(
    st.sampled_from([0, 1, 7, 8, 125, 126, 127, 65535, 65536, 65537]),
    st.integers(0, 3000),
    st.integers(0, 300_000),
)
_MASKS = st.one_of(st.none(), st.binary(min_size=4, max_size=4))
_RSV = st.sampled_from([0, 0x10, 0x20, 0x40, 0x70])


@needs_c
@given(st.integers(0, 15), _LENGTHS, st.booleans(), _RSV, _MASKS, st.integers(0, 255), st.integers(0, 7))
def test_c_encode_frame_equals_python(
    opcode: int, length: int, fin: bool, rsv: int, mask: bytes | None, fill: int, skew: int
) -> None:
    assert C is not None
    payload = bytes([fill, fill ^ 0x5A]) * (length // 2) + bytes([fill]) * (length % 2)
    expected = python_encode_frame(opcode, payload, fin, rsv, mask)
    assert expected == frame(opcode, payload, fin, rsv=rsv, mask=mask)  # the reference is the wire format
    assert C.encode_frame(opcode, payload, fin, rsv, mask) == expected
    assert C.encode_frame(opcode, unaligned(payload, skew), fin, rsv, mask) == expected  # a memoryview
    assert C.encode_frame(opcode, bytearray(payload), fin=fin, rsv=rsv, mask=mask) == expected  # keywords
    assert type(C.encode_frame(opcode, payload)) is bytes


@needs_c
def test_c_encode_frame_defaults_are_a_final_plain_frame() -> None:
    assert C is not None
    assert C.encode_frame(0x1, b"hi") == python_encode_frame(0x1, b"hi") == b"\x81\x02hi"
    assert C.encode_frame(payload=b"", opcode=0x9) == b"\x89\x00"


@needs_c
@pytest.mark.parametrize(
    "args, kwargs, error",
    [
        ((0x1, b"x", True, 0, b"123"), {}, ValueError),  # a mask of 3 bytes (§5.3: 4)
        ((0x1, b"x", True, 0, b"12345"), {}, ValueError),
        ((0x1,), {}, TypeError),
        ((0x1, b"x", True, 0, None, 1), {}, TypeError),
        ((0x1, b"x"), {"opcode": 2}, TypeError),
        ((0x1, b"x"), {"key": 2}, TypeError),
        ((0x1, "x"), {}, TypeError),  # str is not a buffer
        ((0x100, b"x"), {}, ValueError),  # the first byte would not fit
        ((0x1, b"x", True, 0x100), {}, ValueError),
        ((-1, b"x"), {}, ValueError),
        ((2**70, b"x"), {}, OverflowError),
        ((0x1, b"x", True, 0, 1234), {}, TypeError),  # a mask that is not a buffer
    ],
)
def test_c_encode_frame_checks_its_arguments(
    args: tuple[object, ...], kwargs: dict[str, object], error: type
) -> None:
    assert C is not None
    with pytest.raises(error):
        C.encode_frame(*args, **kwargs)


_PIECES = st.lists(
    st.one_of(st.binary(max_size=20), st.integers(0, 20_000).map(lambda n: b"p" * n)), max_size=12
)


@needs_c
@given(_PIECES, st.sampled_from([1, 10, COPY_LIMIT, 20_001]))
def test_c_coalesce_equals_python_and_keeps_the_same_objects(pieces: list[bytes], limit: int) -> None:
    assert C is not None
    expected = python_coalesce(pieces, limit)
    result = C.coalesce(pieces, limit)
    assert result == expected and type(result) is list
    for got, want in zip(result, expected, strict=True):
        if any(got is piece for piece in pieces):  # a large piece or a run of one: never copied
            assert any(want is piece for piece in pieces)
    for piece in pieces:
        if len(piece) >= limit:
            assert any(got is piece for got in result)


@needs_c
def test_c_coalesce_joins_any_buffers() -> None:
    assert C is not None
    big = b"x" * COPY_LIMIT
    out = C.coalesce([bytearray(b"ab"), memoryview(b"cd"), big, b"e"], COPY_LIMIT)
    assert out == [b"abcd", big, b"e"] and type(out[0]) is bytes and out[1] is big


@needs_c
@pytest.mark.parametrize(
    "args, error",
    [
        (((b"a",), COPY_LIMIT), TypeError),  # a tuple, not a list
        (([b"a"],), TypeError),
        (([b"a", 1], COPY_LIMIT), TypeError),  # a piece without a length
        (([b"a", "bc"], COPY_LIMIT), TypeError),  # a str has a length but no bytes
        (([b"a"], 2**70), OverflowError),
    ],
)
def test_c_coalesce_checks_its_arguments(args: tuple[object, ...], error: type) -> None:
    assert C is not None
    with pytest.raises(error):
        C.coalesce(*args)


@needs_c
def test_c_send_path_leaks_nothing() -> None:
    """The compiled calls hold no reference after they return (payloads, masks, pieces), even on errors."""
    assert C is not None
    payload, mask, big = b"y" * 70_000, b"abcd", b"z" * COPY_LIMIT
    pieces = [b"a", big, b"b", b"c"]
    before = [sys.getrefcount(x) for x in (payload, mask, big)]
    gc.disable()
    try:
        for _ in range(100):
            C.encode_frame(0x2, payload, True, 0, mask)
            C.coalesce(pieces, COPY_LIMIT)
            with pytest.raises(ValueError):
                C.encode_frame(0x2, payload, True, 0, b"abc")
    finally:
        gc.enable()
    assert [sys.getrefcount(x) for x in (payload, mask, big)] == before


def test_a_masked_writer_queues_each_whole_message_as_one_piece_or_two() -> None:
    """A client's final frame is one piece (the accelerator builds it in one allocation) or, in pure
    Python, a header and the masked payload for large ones; either way the wire bytes are the frame."""
    keys = iter([b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"])
    writer = FrameWriter(lambda n: next(keys))
    small, large = b"s" * 300, b"l" * (COPY_LIMIT + 1)
    writer.data(0x2, small)
    writer.data(0x1, large)
    assert len(writer.out) in (2, 3) and len(writer.out[0]) == 4 + 4 + 300
    assert b"".join(writer.take()) == frame(0x2, small, mask=b"\x01\x02\x03\x04") + frame(
        0x1, large, mask=b"\x05\x06\x07\x08"
    )
