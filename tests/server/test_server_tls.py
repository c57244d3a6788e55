"""TLSTransport: handshake in the loop, data both ways, large writes, verification failure, close."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srvtest_util import Digest, Recorder, ServerThread, raw_handshake

from wsproto_lite._frames import encode_frame
from wsproto_lite.server.handler import Handler
from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.options import Options
from wsproto_lite.server.tls import _TLS_SLICE, TLSTransport
from wsproto_lite.server.websocket import WebSocket


def _tls_pair(
    loop: EventLoop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> tuple[TLSTransport, Recorder, TLSTransport, Recorder]:
    a, b = socket.socketpair()
    ps, pc = Recorder(), Recorder()
    ts = TLSTransport(loop, a, ps, ssl_context=server_ctx, server_side=True)
    tc = TLSTransport(loop, b, pc, ssl_context=client_ctx, server_side=False, server_hostname="localhost")
    return ts, ps, tc, pc


def test_handshake_and_echo(
    loop: EventLoop, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    ts, ps, tc, pc = _tls_pair(loop, server_ssl_context, client_ssl_context)
    tc.write(b"early data is held until the handshake is done")
    assert loop.run_until(lambda: ps.transport is not None and pc.transport is not None, 10)
    assert ts.handshake_complete and tc.get_extra_info("ssl_object") is not None
    assert loop.run_until(lambda: ps.data == b"early data is held until the handshake is done", 5)
    big = bytes(range(256)) * 4 * 4096  # 4 MiB
    ts.write(big)
    assert loop.run_until(lambda: len(pc.data) == len(big), 20)
    assert pc.data == big
    ts.close()  # sends close_notify: the client sees a clean EOF
    assert loop.run_until(lambda: pc.eof and bool(ps.lost) and bool(pc.lost), 10)


def test_untrusted_certificate_fails_handshake(loop: EventLoop, server_ssl_context: ssl.SSLContext) -> None:
    ts, ps, tc, pc = _tls_pair(loop, server_ssl_context, ssl.create_default_context())
    assert loop.run_until(lambda: bool(pc.lost) and bool(ps.lost), 10)
    assert pc.transport is None and isinstance(pc.lost[0], ssl.SSLCertVerificationError)
    assert ps.transport is None


def test_backpressure_counts_everything_unsent(
    loop: EventLoop, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    ts, ps, tc, pc = _tls_pair(loop, server_ssl_context, client_ssl_context)
    assert loop.run_until(lambda: ps.transport is not None and pc.transport is not None, 10)
    tc.pause_reading()
    ts.set_write_buffer_limits(256 * 1024)
    for _ in range(40):
        ts.write(b"z" * 100_000)
    assert ps.events == ["pause"] and ts.get_write_buffer_size() > 256 * 1024
    tc.resume_reading()
    assert loop.run_until(lambda: len(pc.data) == 4_000_000, 20)
    assert ps.events == ["pause", "resume"]
    ts.abort()
    tc.abort()


def test_a_large_write_is_encrypted_in_bounded_slices(
    loop: EventLoop,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Header + 16 MiB payload over TLS: every byte arrives in order, and the ciphertext reaches the
    socket in slices of about _TLS_SLICE (the memory BIO never holds the whole payload's records, and
    the plaintext is read in place, not joined to its header)."""
    a, b = socket.socketpair()
    sender, receiver = Recorder(), Digest()
    ts = TLSTransport(loop, a, sender, ssl_context=server_ssl_context, server_side=True)
    tc = TLSTransport(
        loop, b, receiver, ssl_context=client_ssl_context, server_side=False, server_hostname="localhost"
    )
    assert loop.run_until(lambda: sender.transport is not None and receiver.transport is not None, 10)
    pieces: list[int] = []
    raw_write = ts._raw_write

    def spy(chunks: list[bytes | bytearray | memoryview]) -> None:
        pieces.extend(len(chunk) for chunk in chunks)
        raw_write(chunks)

    monkeypatch.setattr(ts, "_raw_write", spy)
    header, payload = b"\x82\x7f" + (16 << 20).to_bytes(8, "big"), bytes(range(256)) * (16 << 12)
    ts.writelines([header, payload])
    assert loop.run_until(lambda: receiver.size == len(header) + len(payload), 60)
    assert receiver.hash.digest() == hashlib.sha256(header + payload).digest()
    assert _TLS_SLICE <= 1 << 20  # the bound this test checks: far below the payload's 16 MiB
    assert len(pieces) >= 16 and max(pieces) < (1 << 20) + 4096  # a slice plus its records' overhead
    ts.abort()
    tc.abort()


def _handshaken_pair(
    loop: EventLoop, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, **client_kwargs: Any
) -> tuple[TLSTransport, Recorder, TLSTransport, Recorder]:
    a, b = socket.socketpair()
    ps, pc = Recorder(), Recorder()
    ts = TLSTransport(loop, a, ps, ssl_context=server_ctx, server_side=True)
    tc = TLSTransport(
        loop, b, pc, ssl_context=client_ctx, server_side=False, server_hostname="localhost", **client_kwargs
    )
    assert loop.run_until(lambda: ps.transport is not None and pc.transport is not None, 10)
    return ts, ps, tc, pc


def test_a_message_the_peer_does_not_read_is_not_encrypted_ahead(
    loop: EventLoop, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """Header + 16 MiB payload to a peer that does not read: the transport holds the payload by reference
    and encrypts only what the socket takes (plus one slice), so what it allocates stays far below a
    second copy of the payload; the buffered amount still counts every byte not yet taken by the kernel."""
    ts, ps, tc, pc = _handshaken_pair(loop, server_ssl_context, client_ssl_context)
    tc.pause_reading()  # the peer stops reading
    header, payload = b"\x82\x7f" + (16 << 20).to_bytes(8, "big"), bytes(range(256)) * (16 << 12)
    tracemalloc.start()
    try:
        ts.writelines([header, payload])
        for _ in range(50):  # writable callbacks until the kernel's buffers are full
            loop.run_once(0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak / 2**20:.1f} MiB allocated for a queued 16 MiB message"
    assert ts.get_write_buffer_size() == ts.buffered > len(payload) - (4 << 20)
    assert ps.events == ["pause"]
    tc.resume_reading()
    digest = hashlib.sha256(header + payload).digest()
    assert loop.run_until(lambda: len(pc.data) == len(header) + len(payload), 60)
    assert hashlib.sha256(pc.data).digest() == digest
    assert ps.events == ["pause", "resume"] and ts.buffered == 0
    ts.abort()
    tc.abort()


def test_close_notify_follows_everything_queued(
    loop: EventLoop, server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """close() while megabytes wait for a peer that does not read: all of it arrives, then a clean EOF
    (close_notify after the last byte), then the socket closes."""
    ts, ps, tc, pc = _handshaken_pair(loop, server_ssl_context, client_ssl_context)
    tc.pause_reading()
    data = bytes(range(256)) * 8192  # 2 MiB
    ts.write(data)
    ts.write(b"tail")
    ts.close()
    ts.write(b"after close: dropped")
    assert ts.buffered > 0 and not ps.lost
    tc.resume_reading()
    assert loop.run_until(lambda: pc.eof and bool(ps.lost), 20)
    assert pc.data == data + b"tail" and ps.lost == [None]
    tc.abort()


Write = tuple[str, list[int]]


@st.composite
def _writes(draw: st.DrawFn) -> list[Write]:
    size = st.one_of(st.integers(1, 100), st.integers(100, 20_000), st.integers(200_000, 1_200_000))
    how = st.sampled_from(["write", "write-bytearray", "writelines", "stall", "drain"])
    ops: list[Write] = []
    for _ in range(draw(st.integers(1, 12))):
        op = draw(how)
        count = 1 if op.startswith("write-") or op == "write" else draw(st.integers(0, 4))
        ops.append((op, draw(st.lists(size, min_size=count, max_size=count))))
    return ops


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_writes(), read_size=st.integers(512, 300_000), data=st.data())
def test_interleaved_writes_arrive_in_order(
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
    ops: list[Write],
    read_size: int,
    data: st.DataObject,
) -> None:
    """Small and large writes, by reference and in lists, while the peer stalls and reads again in chunks
    of a random size: the peer gets exactly the bytes written, in order, then close_notify."""
    loop = EventLoop()
    try:
        ts, ps, tc, pc = _handshaken_pair(loop, server_ssl_context, client_ssl_context, read_size=read_size)
        expected = bytearray()
        counter = 0

        def piece(size: int) -> bytes:
            nonlocal counter
            counter += 1
            return bytes([counter % 251]) * (size - 1) + b"|"

        for op, sizes in ops:
            if op == "stall":
                tc.pause_reading()
            elif op == "drain":
                tc.resume_reading()
                for _ in range(data.draw(st.integers(0, 20))):
                    loop.run_once(0)
            else:
                pieces = [piece(size) for size in sizes]
                expected += b"".join(pieces)
                if op == "write":
                    ts.write(pieces[0])
                elif op == "write-bytearray":
                    ts.write(memoryview(bytearray(pieces[0])))
                else:
                    ts.writelines(pieces)
        ts.close()
        tc.resume_reading()
        assert loop.run_until(lambda: pc.eof and bool(ps.lost), 30)
        assert pc.data == expected and ps.lost == [None]
        tc.abort()
    finally:
        loop.close()


class SendsOnRequest(Handler):
    """Sends ``payload`` once when a message arrives; ``sent`` is set once ``send`` returned."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.sent = threading.Event()
        self.accepted: list[bool] = []

    def on_message(self, conn: WebSocket, message: str | bytes) -> None:
        self.accepted.append(conn.send(self.payload))
        self.sent.set()


def test_a_server_sending_16_mib_to_a_tls_peer_that_does_not_read_holds_one_copy(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    """End to end: the server's ``send`` of a 16 MiB message to a TLS client that stops reading allocates
    far less than the message (the core hands the payload by reference, the transport encrypts what the
    socket takes); every byte still arrives once the client reads."""
    payload = bytes(range(256)) * (16 << 12)
    handler = SendsOnRequest(payload)
    with ServerThread(handler, ssl_context=server_ssl_context, options=Options(ping_interval=None)) as st:
        raw = socket.create_connection(("127.0.0.1", st.port), timeout=20)
        client = client_ssl_context.wrap_socket(raw, server_hostname="localhost")
        with client:
            assert raw_handshake(client) == b""
            tracemalloc.start()
            try:
                client.sendall(encode_frame(0x1, b"go", mask=b"abcd"))
                assert handler.sent.wait(20)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert handler.accepted == [True]
            assert peak < 4 << 20, f"{peak / 2**20:.1f} MiB allocated to send a 16 MiB message"
            header = b"\x82\x7f" + len(payload).to_bytes(8, "big")
            received = hashlib.sha256()
            size, want = 0, len(header) + len(payload)
            while size < want:
                chunk = client.recv(min(1 << 20, want - size))
                assert chunk
                received.update(chunk)
                size += len(chunk)
            assert received.digest() == hashlib.sha256(header + payload).digest()
