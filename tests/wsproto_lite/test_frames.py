"""Frame layout (RFC 6455 §5.2) and masking (§5.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite._frames import (
    FrameHeader,
    HeaderError,
    Opcode,
    apply_mask,
    encode_frame,
    frame_header,
    parse_header,
)

from .wire import MASK, frame


def naive_mask(data: bytes, mask: bytes, offset: int = 0) -> bytes:
    return bytes(b ^ mask[(i + offset) % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_lengths_use_the_minimal_encoding(length: int) -> None:
    header = frame_header(0x2, length)
    assert len(header) == (2 if length < 126 else 4 if length < 65536 else 10)
    assert header == frame(0x2, b"\0" * length, mask=None)[: len(header)]


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536])
def test_parse_masked_header(length: int) -> None:
    data = frame(0x1, b"a" * length)
    header = parse_header(data)
    assert header == FrameHeader(True, 0, 0x1, MASK, length, len(data) - length)


def test_parse_header_needs_all_its_bytes() -> None:
    data = frame(0x2, b"x" * 70000)
    for cut in range(14):
        assert parse_header(data[:cut]) is None
    assert parse_header(data[:14]) is not None


def test_parse_header_at_an_offset() -> None:
    data = b"junk" + frame(0x9, b"hi", fin=True, rsv=0x40, mask=None)
    assert parse_header(data, 4) == FrameHeader(True, 0x40, 0x9, None, 2, 2)


def test_64_bit_length_with_the_top_bit_set_is_malformed() -> None:
    # §5.2: "the most significant bit MUST be 0"
    with pytest.raises(HeaderError):
        parse_header(b"\x82\x7f\x80" + b"\0" * 7)
    assert parse_header(b"\x82\x7f\x7f" + b"\xff" * 7) is not None


def test_opcode_names() -> None:
    assert [op.name for op in Opcode] == ["CONTINUATION", "TEXT", "BINARY", "CLOSE", "PING", "PONG"]


@given(st.binary(max_size=40000), st.binary(min_size=4, max_size=4), st.integers(0, 7))
def test_mask_matches_the_definition(data: bytes, mask: bytes, offset: int) -> None:
    # §5.3: octet i of the masked data is octet i of the original XOR octet (i mod 4) of the key
    assert apply_mask(data, mask, offset) == naive_mask(data, mask, offset)


@given(st.binary(max_size=70000), st.binary(min_size=4, max_size=4))
def test_masking_twice_is_identity(data: bytes, mask: bytes) -> None:
    assert apply_mask(apply_mask(data, mask), mask) == data


def test_mask_large_payload_in_blocks() -> None:
    data = bytes(range(256)) * 4099  # over the block size, not a multiple of it
    mask = b"\x01\x02\x03\x04"
    assert apply_mask(data, mask) == naive_mask(data, mask)
    assert apply_mask(data[:-3], mask, 2) == naive_mask(data[:-3], mask, 2)


@given(
    opcode=st.sampled_from([0x0, 0x1, 0x2, 0x8, 0x9, 0xA]),
    payload=st.one_of(st.binary(max_size=300), st.integers(65530, 65540).map(lambda n: b"z" * n)),
    fin=st.booleans(),
    rsv=st.sampled_from([0, 0x40, 0x20, 0x10, 0x70]),
    mask=st.one_of(st.none(), st.binary(min_size=4, max_size=4)),
)
def test_serialize_parse_round_trip(
    opcode: int, payload: bytes, fin: bool, rsv: int, mask: bytes | None
) -> None:
    data = encode_frame(opcode, payload, fin, rsv, mask)
    header = parse_header(data)
    assert header is not None
    assert (header.fin, header.rsv, header.opcode, header.mask, header.length) == (
        fin,
        rsv,
        opcode,
        mask,
        len(payload),
    )
    body = data[header.header_size :]
    assert (apply_mask(body, mask) if mask else body) == payload
    if mask is not None:
        assert data == frame(opcode, payload, fin, rsv, mask)
