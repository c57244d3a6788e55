"""TLSTransport: handshake in the loop, data both ways, large writes, verification failure, close."""

from __future__ import annotations

import hashlib
import socket
import ssl

import pytest
from srvtest_util import Digest, Recorder

from wsproto_lite.server.loop import EventLoop
from wsproto_lite.server.tls import _TLS_SLICE, TLSTransport


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


def test_backpressure_counts_ciphertext(
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
