"""SocketTransport: delivery, watermarks and backpressure, close/abort, EOF, resets."""

from __future__ import annotations

import hashlib
import socket
import struct
import tracemalloc
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from srvtest_util import Digest, Recorder

from wsproto_lite._writer import COPY_LIMIT
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.transport import SocketTransport


def _pair(loop: EventLoop, **kw: int) -> tuple[SocketTransport, Recorder, SocketTransport, Recorder]:
    a, b = socket.socketpair()
    pa, pb = Recorder(), Recorder()
    ta = SocketTransport(loop, a, pa, **kw)
    tb = SocketTransport(loop, b, pb)
    assert loop.run_until(lambda: pa.transport is not None and pb.transport is not None, 5)
    return ta, pa, tb, pb


def test_bytes_flow_both_ways(loop: EventLoop) -> None:
    ta, pa, tb, pb = _pair(loop)
    ta.write(b"ping")
    tb.writelines([b"po", b"", b"ng"])
    assert loop.run_until(lambda: pb.data == b"ping" and pa.data == b"pong", 5)
    ta.close()
    tb.close()
    assert loop.run_until(lambda: bool(pa.lost and pb.lost), 5)


def test_backpressure_pauses_and_resumes_and_preserves_data(loop: EventLoop) -> None:
    ta, pa, tb, pb = _pair(loop, high_water=64 * 1024, low_water=16 * 1024)
    tb.pause_reading()
    payload = bytes(range(256)) * 4096 * 8  # 8 MiB, far more than the socket buffers
    for i in range(0, len(payload), 100_000):
        ta.write(payload[i : i + 100_000])
    assert pa.events == ["pause"]
    assert ta.writing_paused and ta.get_write_buffer_size() > 64 * 1024
    tb.resume_reading()
    assert loop.run_until(lambda: len(pb.data) == len(payload), 20)
    assert pb.data == payload
    assert pa.events == ["pause", "resume"]
    assert ta.get_write_buffer_size() == 0
    ta.close()
    tb.close()
    assert loop.run_until(lambda: bool(pa.lost and pb.lost), 5)


def test_close_flushes_pending_data_then_peer_sees_eof(loop: EventLoop) -> None:
    ta, pa, tb, pb = _pair(loop, high_water=1 << 30)
    tb.pause_reading()
    payload = b"x" * (4 << 20)
    ta.write(payload)
    ta.close()
    ta.write(b"ignored after close")
    assert ta.is_closing()
    tb.resume_reading()
    assert loop.run_until(lambda: pb.eof and bool(pa.lost), 20)
    assert bytes(pb.data) == payload
    assert pa.lost == [None]


def test_abort_discards_buffer(loop: EventLoop) -> None:
    ta, pa, tb, pb = _pair(loop)
    tb.pause_reading()
    ta.write(b"y" * (8 << 20))
    ta.abort()
    assert pa.lost == [None]
    assert ta.get_write_buffer_size() == 0
    tb.resume_reading()
    assert loop.run_until(lambda: bool(pb.lost), 10)
    assert len(pb.data) < 8 << 20


def test_pause_reading_holds_data(loop: EventLoop) -> None:
    ta, pa, tb, pb = _pair(loop)
    tb.pause_reading()
    assert not tb.is_reading
    ta.write(b"held")
    loop.run_until(lambda: False, 0.05)
    assert pb.data == b""
    tb.resume_reading()
    assert loop.run_until(lambda: pb.data == b"held", 5)
    ta.abort()
    tb.abort()


def test_reset_reports_connection_lost_with_error(loop: EventLoop) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(listener.getsockname())
        server_sock, _ = listener.accept()
    finally:
        listener.close()
    proto = Recorder()
    SocketTransport(loop, server_sock, proto)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # linger 0: RST
    assert loop.run_until(lambda: bool(proto.lost), 5)
    assert isinstance(proto.lost[0], ConnectionResetError) or proto.eof


# -- scatter/gather: large pieces go to sendmsg as they are -------------------------------------------


class _SpySocket(socket.socket):
    """Records every buffer handed to send/sendmsg (the kernel still does the work)."""

    calls: list[tuple[str, list[object]]]

    def send(self, data: Any, *args: Any) -> int:
        self.calls.append(("send", [data]))
        return super().send(data, *args)

    def sendmsg(self, buffers: Any, *args: Any) -> int:
        buffers = list(buffers)
        self.calls.append(("sendmsg", buffers))
        return super().sendmsg(buffers, *args)


def _spy_pair(loop: EventLoop, sndbuf: int | None = None) -> tuple[SocketTransport, _SpySocket, Digest]:
    a, b = socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, sndbuf)
    spy = _SpySocket(a.family, a.type, a.proto, fileno=a.detach())
    spy.calls = []
    sender, receiver = Recorder(), Digest()
    ta = SocketTransport(loop, spy, sender)
    SocketTransport(loop, b, receiver)
    assert loop.run_until(lambda: sender.transport is not None and receiver.transport is not None, 5)
    return ta, spy, receiver


def _is_view_of(buffer: object, piece: bytes) -> bool:
    return buffer is piece or (isinstance(buffer, memoryview) and buffer.obj is piece)


def _abort_both(sender: SocketTransport, receiver: Digest) -> None:
    sender.abort()
    assert receiver.transport is not None
    receiver.transport.abort()


def test_a_large_payload_reaches_sendmsg_as_the_callers_object(loop: EventLoop) -> None:
    """A frame header and a 16 KiB payload: both go to sendmsg, the payload not joined (not copied)."""
    header, payload = b"\x82\x7e\x40\x00", bytes(range(256)) * 64
    ta, spy, receiver = _spy_pair(loop)
    ta.writelines([header, payload])
    assert loop.run_until(lambda: receiver.size == len(header) + len(payload), 5)
    assert receiver.hash.digest() == hashlib.sha256(header + payload).digest()
    (kind, buffers) = spy.calls[0]
    assert kind == "sendmsg"
    assert any(isinstance(b, memoryview) and b.obj is payload for b in buffers)
    _abort_both(ta, receiver)


def test_small_pieces_are_joined_into_one_send(loop: EventLoop) -> None:
    ta, spy, receiver = _spy_pair(loop)
    ta.writelines([b"ab", b"cd", b"ef"])
    assert loop.run_until(lambda: receiver.size == 6, 5)
    assert spy.calls == [("send", [b"abcdef"])]
    _abort_both(ta, receiver)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 300_000), min_size=1, max_size=8))
def test_partial_sendmsg_writes_deliver_every_byte_in_order(sizes: list[int]) -> None:
    """A tiny send buffer: the kernel takes a little at a time, so writes stop inside pieces and resume
    there; every byte arrives once, in order; no piece is ever joined to another (nothing copied)."""
    loop = EventLoop()
    try:
        ta, spy, receiver = _spy_pair(loop, sndbuf=4096)
        pieces = [bytes([i % 251]) * size for i, size in enumerate(sizes)]
        for i in range(0, len(pieces), 3):
            ta.writelines(pieces[i : i + 3])
        total = sum(sizes)
        assert loop.run_until(lambda: receiver.size == total, 20)
        assert receiver.hash.digest() == hashlib.sha256(b"".join(pieces)).digest()
        assert len(spy.calls) > 1 or total < 1 << 20  # the kernel took it in several steps
        for _kind, buffers in spy.calls:
            for buffer in buffers:
                assert len(buffer) <= COPY_LIMIT or any(_is_view_of(buffer, piece) for piece in pieces)
        _abort_both(ta, receiver)
    finally:
        loop.close()


def test_a_write_taken_in_part_queues_the_rest_without_sending_again(loop: EventLoop) -> None:
    """``write`` with nothing queued: one ``send()``; what the kernel did not take waits for the socket to
    be writable (no second attempt meanwhile), and a write behind it queues behind it: every byte arrives
    once, in order."""
    ta, spy, receiver = _spy_pair(loop, sndbuf=4096)
    first, second = bytes(range(256)) * 4096, b"after" * 100  # 1 MiB: far more than the buffers take
    ta.write(first)
    assert spy.calls == [("send", [first])]
    assert 0 < ta.buffered < len(first)
    ta.write(second)
    assert len(spy.calls) == 1  # queued behind the rest, not sent past it
    total = len(first) + len(second)
    assert loop.run_until(lambda: receiver.size == total, 20)
    assert receiver.hash.digest() == hashlib.sha256(first + second).digest()
    assert ta.buffered == 0
    _abort_both(ta, receiver)


def test_a_64_mib_payload_is_sent_without_a_copy(loop: EventLoop) -> None:
    """tracemalloc: writing header + 64 MiB and sending it all allocates far less than the payload."""
    payload = b"\x5a" * (64 << 20)
    ta, spy, receiver = _spy_pair(loop)
    tracemalloc.start()
    try:
        ta.writelines([b"\x82\x7f" + (len(payload)).to_bytes(8, "big"), payload])
        assert loop.run_until(lambda: receiver.size == len(payload) + 10, 60)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, peak
    _abort_both(ta, receiver)


def test_a_small_read_does_not_allocate_the_read_size(loop: EventLoop) -> None:
    """A 40-byte message is read into the loop's scratch buffer and copied out: no 256 KiB allocation per
    read (``recv(read_size)`` would allocate read_size bytes, then shrink them)."""
    ta, pa, tb, pb = _pair(loop)
    ta.write(b"warm-up")  # the first read grows the loop's scratch buffer once
    assert loop.run_until(lambda: pb.data == b"warm-up", 5)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for i in range(20):
            ta.write(b"m" * 40)
            assert loop.run_until(lambda i=i: len(pb.data) == 7 + 40 * (i + 1), 5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 1024
    ta.close()
    tb.close()
    assert loop.run_until(lambda: bool(pa.lost and pb.lost), 5)


def test_large_and_small_reads_alternate_intact(loop: EventLoop) -> None:
    """Bulk reads (their own bytes objects) and small reads (through the scratch buffer) in any order."""
    ta, pa, tb, pb = _pair(loop)
    sent = b""
    for size in (300_000, 10, 200_000, 5, 70_000, 1, 64 * 1024, 3):
        chunk = hashlib.sha256(str(size).encode()).digest() * (size // 32 + 1)
        sent += chunk[:size]
        ta.write(chunk[:size])
        want = len(sent)
        assert loop.run_until(lambda want=want: len(pb.data) == want, 5)
    assert pb.data == sent
    ta.close()
    tb.close()
    assert loop.run_until(lambda: bool(pa.lost and pb.lost), 5)
