"""What a compressed message costs the receiver (RFC 7692 §8, RFC 6455 §10.4 / §7.4.1 1009), both roles.

Peaks are measured with tracemalloc while the frames are fed in 64 KiB chunks, against the memory traced
before the first chunk: a deflate bomb (1 GiB of zeros, ~1 MiB compressed) costs at most 1.1 times the
message limit plus a constant before the 1009, and a message exactly at the limit is delivered for at
most the message itself (binary: the bytes; text: the str and its decoded pieces) plus that slack.
"""

from __future__ import annotations

import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wsproto_lite import (
    Accepted,
    BinaryMessage,
    ClientConnection,
    Config,
    Connection,
    ConnectionClosed,
    Event,
    PerMessageDeflate,
    Request,
    ServerConnection,
    TextMessage,
)
from wsproto_lite._decoded_buffer import DecodedBuffer
from wsproto_lite._deflate import _OUT_PIECE, _DeflateExtension

from .wire import MASK

MIB = 2**20
CHUNK = 64 * 1024  # what one read from the socket hands the connection, and one frame's payload
SLACK = 512 * 1024  # the constant: a chunk, a compressed fragment, an inflated piece, zlib's state


def make_bomb() -> bytes:
    """A raw deflate stream (tail stripped) of ~1 MiB that inflates to 1 GiB of zeros."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * MIB
    first = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    steady = c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)
    assert steady == c.compress(zeros) + c.flush(zlib.Z_SYNC_FLUSH)  # each further MiB: the same bytes
    return (first + steady * 1023)[:-4]


BOMB = make_bomb()


def compress(data: bytes) -> bytes:
    """One message as a permessage-deflate sender makes it (RFC 7692 §7.2.1: the tail removed)."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def frame(opcode: int, payload: bytes, *, fin: bool, rsv1: bool, masked: bool) -> bytes:
    """A frame built by hand (RFC 6455 §5.2), masked the way a client sends it (§5.3)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    head = bytes([first, (0x80 if masked else 0) | 127]) + len(payload).to_bytes(8, "big")
    if not masked:
        return head + payload
    key = (MASK * (len(payload) // 4 + 1))[: len(payload)]
    xored = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return head + MASK + xored.to_bytes(len(payload), "little")


def message_chunks(opcode: int, compressed: bytes, *, masked: bool) -> list[bytes]:
    """A compressed message in fragments of CHUNK bytes, one fragment per chunk received."""
    pieces = [compressed[i : i + CHUNK] for i in range(0, len(compressed), CHUNK)] or [b""]
    return [
        frame(opcode if i == 0 else 0, piece, fin=i == len(pieces) - 1, rsv1=i == 0, masked=masked)
        for i, piece in enumerate(pieces)
    ]


def connected(role: str, takeover: bool, limit: int) -> Connection:
    """An open connection in ``role`` with permessage-deflate, receiving messages of up to ``limit``."""
    pmd = PerMessageDeflate(client_no_context_takeover=not takeover, server_no_context_takeover=not takeover)
    config = Config(max_message_size=limit, max_frame_size=CHUNK)  # the compressed fragments' size
    client = ClientConnection("example.com", "/", extensions=[pmd], config=config)
    server = ServerConnection(config=config, extensions=[pmd])
    server.receive_data(client.data_to_send())
    assert isinstance(server.next_event(), Request)
    server.accept()
    client.receive_data(server.data_to_send())
    assert isinstance(client.next_event(), Accepted)
    receiver = server if role == "server" else client
    extension = receiver.extensions[0]
    assert isinstance(extension, _DeflateExtension)
    assert extension.recv_no_context_takeover is not takeover
    return receiver


def receive_peak(receiver: Connection, chunks: list[bytes]) -> tuple[list[Event], int]:
    """Feed the chunks one at a time, taking the events; the events and the traced peak in bytes."""
    events: list[Event] = []
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for chunk in chunks:
            receiver.receive_data(chunk)
            events.extend(receiver.events())
            if events and isinstance(events[-1], ConnectionClosed):
                break
        peak = tracemalloc.get_traced_memory()[1] - baseline
    finally:
        tracemalloc.stop()
    return events, peak


ROLES = pytest.mark.parametrize("role", ["server", "client"])
TAKEOVER = pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no_context_takeover"])


@ROLES
@TAKEOVER
@pytest.mark.parametrize("limit_mib", [1, 16, 64])
def test_a_deflate_bomb_costs_the_limit_and_a_constant_then_1009(
    role: str, takeover: bool, limit_mib: int
) -> None:
    limit = limit_mib * MIB
    receiver = connected(role, takeover, limit)
    chunks = message_chunks(0x2, BOMB, masked=role == "server")
    events, peak = receive_peak(receiver, chunks)
    assert isinstance(events[-1], ConnectionClosed) and events[-1].code == 1009
    assert not any(isinstance(event, BinaryMessage) for event in events)
    assert peak <= 1.1 * limit + SLACK, f"peak {peak / limit:.2f}x the limit"


@ROLES
@TAKEOVER
@pytest.mark.parametrize("limit_mib", [1, 16])
def test_a_binary_message_exactly_at_the_limit_costs_itself(
    role: str, takeover: bool, limit_mib: int
) -> None:
    limit = limit_mib * MIB
    receiver = connected(role, takeover, limit)
    data = bytes(range(256)) * (limit // 256)
    chunks = message_chunks(0x2, compress(data), masked=role == "server")
    events, peak = receive_peak(receiver, chunks)
    assert events == [BinaryMessage(data)]
    assert peak <= 1.1 * limit + SLACK, f"peak {peak / limit:.2f}x the limit"


@ROLES
@TAKEOVER
def test_a_text_message_exactly_at_the_limit_costs_its_str_twice_at_most(role: str, takeover: bool) -> None:
    limit = 16 * MIB
    receiver = connected(role, takeover, limit)
    data = "é" * (limit // 2)  # 2 bytes of UTF-8 each, 1 byte each in the str (Latin-1 kind)
    encoded = data.encode()
    assert len(encoded) == limit
    chunks = message_chunks(0x1, compress(encoded), masked=role == "server")
    del encoded
    events, peak = receive_peak(receiver, chunks)
    assert events == [TextMessage(data)]
    # The str (limit / 2) and its decoded pieces (as much again): no copy of the decoded bytes is kept.
    assert peak <= 1.1 * limit + SLACK, f"peak {peak / limit:.2f}x the limit"


@ROLES
@TAKEOVER
def test_one_byte_over_the_limit_is_1009(role: str, takeover: bool) -> None:
    receiver = connected(role, takeover, MIB)
    chunks = message_chunks(0x2, compress(b"x" * (MIB + 1)), masked=role == "server")
    events, _ = receive_peak(receiver, chunks)
    assert isinstance(events[-1], ConnectionClosed) and events[-1].code == 1009


@settings(max_examples=60, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=300_000), st.text(max_size=3000).map(str.encode)),
    text=st.booleans(),
    cuts=st.lists(st.integers(min_value=1, max_value=70_000), max_size=8),
    slack=st.integers(min_value=-2, max_value=2),
    role=st.sampled_from(["server", "client"]),
    takeover=st.booleans(),
)
def test_messages_round_trip_in_any_chunking_and_the_limit_is_exact(
    data: bytes, text: bool, cuts: list[int], slack: int, role: str, takeover: bool
) -> None:
    try:
        message: Event = TextMessage(data.decode()) if text else BinaryMessage(data)
    except UnicodeDecodeError:
        message, text = BinaryMessage(data), False
    limit = max(len(data) + slack, 0)
    receiver = connected(role, takeover, limit)
    wire = b"".join(message_chunks(0x1 if text else 0x2, compress(data), masked=role == "server"))
    events: list[Event] = []
    start = 0
    for cut in [*cuts, len(wire)]:  # the last cut takes whatever is left
        if wire[start : start + cut]:  # (an empty chunk would be the end of the stream)
            receiver.receive_data(wire[start : start + cut])
            events.extend(receiver.events())
        start += cut
    if len(data) <= limit:
        assert events == [message]
    else:
        assert isinstance(events[-1], ConnectionClosed) and events[-1].code == 1009


# -- the pieces and the buffer -------------------------------------------------------------------------


def inflating(takeover: bool = True) -> _DeflateExtension:
    ext = _DeflateExtension(
        send_window_bits=15,
        send_no_context_takeover=not takeover,
        recv_window_bits=15,
        recv_no_context_takeover=not takeover,
    )
    assert ext.start_inbound(0x40)
    return ext


def test_decode_pieces_are_bounded_and_join_to_decode() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    compressed = compress(data)
    pieces = list(inflating().decode_pieces(compressed, True, None))
    assert max(map(len, pieces)) <= _OUT_PIECE and len(pieces) >= len(data) // _OUT_PIECE
    assert b"".join(pieces) == data == inflating().decode(compressed, True, None)


def test_decode_pieces_are_lazy_up_to_the_1009() -> None:
    pieces = inflating().decode_pieces(BOMB, True, 10 * _OUT_PIECE)
    produced = 0
    with pytest.raises(Exception) as info:  # noqa: PT011 - checked just below
        for piece in pieces:
            produced += len(piece)
    assert getattr(info.value, "code", None) == 1009
    assert produced == 10 * _OUT_PIECE  # everything up to the budget was handed out, one piece at a time


def pieces_of(total: int, size: int) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield bytes([start // size % 251]) * min(size, total - start)


@pytest.mark.parametrize("piece_size", [1000, CHUNK, 3 * CHUNK + 7])
@pytest.mark.parametrize("fill", [0.3, 0.74, 0.76, 1.0])
def test_decoded_buffer_reserves_at_most_the_limit(piece_size: int, fill: float) -> None:
    limit = 8 * MIB
    total = int(limit * fill)
    expected = b"".join(pieces_of(total, piece_size))
    buffer = DecodedBuffer(limit)
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for piece in pieces_of(total, piece_size):
            buffer.append(piece)
        del piece
        assert len(buffer) == total
        message = buffer.take()
        current, peak = (value - baseline for value in tracemalloc.get_traced_memory())
    finally:
        tracemalloc.stop()
    assert message == expected
    assert peak <= 1.02 * limit + 2 * piece_size + 4096
    assert current <= total + 4096  # the message is the buffer, shrunk to its size: no copy of it
    assert len(buffer) == 0 and buffer.take() == b""


def test_decoded_buffer_hands_out_a_single_piece_itself() -> None:
    piece = bytes(range(256)) * 10
    buffer = DecodedBuffer(None)
    buffer.append(b"")
    buffer.append(piece)
    assert buffer.take() is piece
    for part in (b"ab", b"", b"cd", b"e"):
        buffer.append(part)
    assert buffer.take() == b"abcde"
