"""Outgoing frames: masking (§5.3) and fragmentation (§5.4)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsproto_lite._errors import LocalProtocolError
from wsproto_lite._frames import frame_header
from wsproto_lite._writer import COPY_LIMIT, FrameWriter, coalesce, python_coalesce

from .wire import frame


def test_server_frames_are_not_masked_and_fragments_continue() -> None:
    writer = FrameWriter(None)
    writer.data(0x1, b"a", fin=False, compress=None)
    writer.data(0x1, b"b", fin=False, compress=None)
    writer.data(0x1, b"", fin=True, compress=None)
    assert b"".join(writer.out) == frame(0x1, b"a", fin=False, mask=None) + frame(
        0x0, b"b", fin=False, mask=None
    ) + frame(0x0, b"", mask=None)


def test_client_frames_use_a_fresh_key_each() -> None:
    keys = iter([b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"])
    writer = FrameWriter(lambda n: next(keys))
    writer.frame(0x2, b"abc")
    writer.frame(0x9, b"")
    assert b"".join(writer.out) == frame(0x2, b"abc", mask=b"\x01\x02\x03\x04") + frame(
        0x9, b"", mask=b"\x05\x06\x07\x08"
    )


def test_one_fragmented_message_at_a_time() -> None:
    writer = FrameWriter(None)
    writer.data(0x2, b"a", fin=False, compress=None)
    with pytest.raises(LocalProtocolError):
        writer.data(0x1, b"b", fin=True, compress=None)


@given(st.sampled_from([0x1, 0x2]), st.binary(max_size=200), st.booleans())
def test_the_fast_case_queues_what_the_general_path_would(opcode: int, payload: bytes, fin: bool) -> None:
    """Small final frames of a server are ready-made; every frame is still header + payload (§5.2)."""
    writer = FrameWriter(None)
    writer.data(opcode, payload, fin)
    assert b"".join(writer.out) == frame_header(opcode, len(payload), fin) + payload


def test_no_ready_made_frame_inside_a_fragmented_message() -> None:
    writer = FrameWriter(None)
    writer.data(0x1, b"a", fin=False)
    writer.data(0x1, b"b")  # small and final, but a continuation (§5.4)
    writer.data(0x2, b"c")  # the message is finished: the fast case applies again
    assert b"".join(writer.out) == frame(0x1, b"a", fin=False, mask=None) + frame(
        0x0, b"b", mask=None
    ) + frame(0x2, b"c", mask=None)


def test_prepared_frames_wait_for_a_fragmented_message() -> None:
    writer = FrameWriter(None)
    writer.data(0x2, b"a", fin=False)
    with pytest.raises(LocalProtocolError):
        writer.prepared(b"\x82\x00")
    writer.data(0x2, b"")
    writer.prepared(b"\x82\x00")
    assert writer.out[-1] == b"\x82\x00"


def test_raw_bytes_are_queued_as_they_are() -> None:
    writer = FrameWriter(None)
    writer.raw(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    writer.data(0x1, b"hi")
    assert writer.out == [b"HTTP/1.1 101 Switching Protocols\r\n\r\n", b"\x81\x02hi"]


# -- buffers for sendmsg: large payloads are never copied ---------------------------------------------

_SIZES = st.one_of(
    st.integers(0, 300), st.sampled_from([COPY_LIMIT - 1, COPY_LIMIT, 65535, 65536]), st.integers(0, 70000)
)
_FRAMES = st.lists(
    st.tuples(st.sampled_from([0x1, 0x2, 0x9, 0xA]), _SIZES, st.booleans(), st.integers(0, 255)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(_FRAMES, st.booleans())
def test_the_buffers_are_the_frames_and_large_payloads_are_the_callers_objects(
    frames: list[tuple[int, int, bool, int]], masked: bool
) -> None:
    """Joined, the buffers are exactly the frames (§5.2, §5.3 with the key drawn for each frame); every
    unmasked payload of COPY_LIMIT bytes or more is the caller's object itself; no two small buffers
    follow each other (they would have been one)."""
    keys = [bytes((i, i + 1, i + 2, i + 3)) for i in range(len(frames))]
    key_iter = iter(keys)
    writer = FrameWriter((lambda n: next(key_iter)) if masked else None)
    expected = b""
    unmasked_large: list[bytes] = []  # the payloads that must reach the I/O layer as they are
    for i, (opcode, size, fin, fill) in enumerate(frames):
        payload = bytes([fill]) * (min(size, 125) if opcode & 0x8 else size)  # §5.5: control <= 125
        fin = fin or bool(opcode & 0x8)
        writer.frame(opcode, payload, fin)
        expected += frame(opcode, payload, fin, mask=keys[i] if masked else None)
        if not masked and len(payload) >= COPY_LIMIT:
            unmasked_large.append(payload)
    buffers = writer.take()
    assert writer.out == [] and writer.take() == []
    assert b"".join(buffers) == expected
    for before, after in zip(buffers, buffers[1:], strict=False):
        assert len(before) >= COPY_LIMIT or len(after) >= COPY_LIMIT
    for payload in unmasked_large:
        assert any(buffer is payload for buffer in buffers)


@pytest.mark.parametrize("join", [coalesce, python_coalesce])  # the active one and the reference
def test_coalesce_joins_runs_of_small_pieces_only(join: Callable[[list[bytes], int], list[bytes]]) -> None:
    big = b"x" * COPY_LIMIT
    pieces = [b"a", b"b", big, b"c", big, big, b"d", b"e"]
    out = join(pieces, COPY_LIMIT)
    assert out == [b"ab", big, b"c", big, big, b"de"]
    assert out[1] is big and out[3] is big and out[4] is big
    assert join([], COPY_LIMIT) == [] and join([b"a"], COPY_LIMIT) == [b"a"]
