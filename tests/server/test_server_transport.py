"""SocketTransport: delivery, watermarks and backpressure, close/abort, EOF, resets."""

from __future__ import annotations

import socket
import struct

from srvtest_util import Recorder

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
