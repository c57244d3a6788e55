"""Fan-out below the interpreter (``server/fanout.py``, ``_cfanout.c``): the bytes on the wire are those of
the per-connection path, in order, whatever the kernel takes; TLS and busy connections take the Python path;
a reset peer among many is found by its transport; connections are freed with the collector off.

The peers are raw sockets (a plain reader, a "slow" one with tiny kernel buffers that reads only at the end,
a TLS reader) on one server loop: a plain and a TLS listener share it, and ``broadcast`` gets both sets.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from srvtest_util import Echo, ServerThread, assert_echo_works, raw_connect, raw_handshake
from test_server_memory import Freed, Tracking, collector_off, cyclic_garbage_of_ours, reset

from wsproto_lite import prepare_message
from wsproto_lite.server import fanout
from wsproto_lite.server.options import Options
from wsproto_lite.server.websocket import WebSocket
from wsproto_lite.server.ws_server import WebSocketServer

TINY = 4096  # bytes of kernel buffer on both sides of a slow peer: partial writes after a few KiB
OPTIONS = Options(ping_interval=None, write_high_water=8 << 20)  # nothing skipped as congested here

MODES = ["c", "python", "per-connection"]
Broadcast = Callable[[list[WebSocket], bytes | str], int]


def _broadcaster(mode: str, server: WebSocketServer, monkeypatch: pytest.MonkeyPatch) -> Broadcast:
    """How the frames go out: the C loop, its pure-Python reference, or the per-connection path of old."""
    if mode == "c":
        compiled = fanout._load()
        if compiled is None:
            pytest.skip("the C fan-out loop is not built (or WSPROTO_LITE_NO_SPEEDUPS=1)")
        monkeypatch.setattr(fanout, "send_many", compiled)
    elif mode == "python":
        monkeypatch.setattr(fanout, "send_many", fanout.send_many_py)
    else:

        def one_by_one(conns: list[WebSocket], message: bytes | str) -> int:
            prepared = prepare_message(message)
            return sum(conn.send_prepared(prepared) for conn in conns)

        return one_by_one
    return lambda conns, message: server.broadcast(message, conns)


class Peer:
    """A raw client socket and the server's connection for it."""

    def __init__(self, kind: str, sock: socket.socket, conn: WebSocket) -> None:
        self.kind = kind
        self.sock = sock
        self.conn = conn

    def read(self, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            chunk = self.sock.recv(min(size - len(out), 1 << 16))
            assert chunk, f"{self.kind} peer: the server closed after {len(out)} of {size} bytes"
            out += chunk
        return bytes(out)


class Fleet:
    """One loop, a plain and a TLS listener; makes peers of each kind."""

    def __init__(self, st: ServerThread, tls: WebSocketServer, client_ctx: ssl.SSLContext) -> None:
        self.st = st
        self.tls = tls
        self.client_ctx = client_ctx

    def peer(self, kind: str, stack: ExitStack) -> Peer:
        if kind == "tls":
            raw = raw_connect(self.tls.port)
            sock: socket.socket = self.client_ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if kind == "slow":  # before connect: the window is set by the handshake
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY)
            sock.settimeout(10)
            sock.connect(("127.0.0.1", self.st.port))
        stack.callback(sock.close)
        raw_handshake(sock)
        address = sock.getsockname()
        conn = self.st.call(lambda: self._server_side(address))
        if kind == "slow":
            self.st.call(lambda: conn.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TINY))
        return Peer(kind, sock, conn)

    def _server_side(self, address: Any) -> WebSocket:
        (conn,) = [
            c
            for c in (*self.st.server.connections, *self.tls.connections)
            if c.is_open and c.remote_address[:2] == address[:2]
        ]
        return conn


@contextmanager
def fleet(server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext) -> Iterator[Fleet]:
    with ServerThread(Echo(), options=OPTIONS) as st:
        tls = st.call(
            lambda: WebSocketServer(
                Echo(),
                host="127.0.0.1",
                port=0,
                loop=st.loop,
                options=OPTIONS,
                ssl_context=server_ssl_context,
            )
        )
        try:
            yield Fleet(st, tls, client_ssl_context)
        finally:
            st.call(tls.close)


def wire(messages: list[bytes | str]) -> bytes:
    return b"".join(prepare_message(m).frame for m in messages)


MESSAGES = st.lists(
    st.one_of(
        st.binary(max_size=70_000),
        st.text(max_size=3_000),
        st.sampled_from([b"", b"x" * 125, b"y" * 126, b"z" * 65_535, b"w" * 65_536]),
    ),
    min_size=1,
    max_size=6,
)
KINDS = st.lists(st.sampled_from(["reader", "slow", "tls"]), min_size=1, max_size=6)


@pytest.mark.parametrize("mode", MODES)
def test_every_peer_mix_gets_the_bytes_of_the_per_connection_path(
    mode: str,
    server_ssl_context: ssl.SSLContext,
    client_ssl_context: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fleet(server_ssl_context, client_ssl_context) as ships:
        broadcast = _broadcaster(mode, ships.st.server, monkeypatch)

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
        @given(kinds=KINDS, messages=MESSAGES)
        def check(kinds: list[str], messages: list[bytes | str]) -> None:
            with ExitStack() as stack:
                peers = [ships.peer(kind, stack) for kind in kinds]
                conns = [p.conn for p in peers]
                for message in messages:
                    assert ships.st.call(lambda m=message: broadcast(conns, m)) == len(peers)
                expected = wire(messages)
                for peer in peers:
                    assert peer.read(len(expected)) == expected, peer.kind

        check()


def _spy_on_send_many(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Records every shortfall the C loop (or its reference) reports."""
    shortfalls: list[tuple[int, int]] = []
    real = fanout.send_many

    def spy(fds: list[int], data: bytes) -> list[tuple[int, int]]:
        got = real(fds, data)
        shortfalls.extend((sent, len(data)) for _, sent in got)
        return got

    monkeypatch.setattr(fanout, "send_many", spy)
    return shortfalls


def test_a_non_reading_peer_with_tiny_buffers_gets_every_frame_in_order_after_partial_writes(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    shortfalls = _spy_on_send_many(monkeypatch)
    messages: list[bytes | str] = [f"{i:05d}:".encode() + bytes([i % 251]) * 3001 for i in range(60)]
    with fleet(server_ssl_context, client_ssl_context) as ships, ExitStack() as stack:
        peers = [ships.peer(kind, stack) for kind in ("reader", "slow", "reader", "tls", "reader")]
        conns = [p.conn for p in peers]
        expected = wire(messages)
        step = len(expected) // len(messages)
        for index, message in enumerate(messages):
            assert ships.st.call(lambda m=message: ships.st.server.broadcast(m, conns)) == len(peers)
            for peer in peers:
                if peer.kind != "slow":  # the readers keep up: their frames go out directly every time
                    assert peer.read(step) == expected[index * step : (index + 1) * step]
        slow = peers[1]
        assert ships.st.call(lambda: slow.conn.buffered_amount) > 0  # the rest waits in its transport
        assert any(0 <= sent < size for sent, size in shortfalls)  # a direct send was cut short
        assert slow.read(len(expected)) == expected


def test_a_reset_peer_among_many_is_found_by_its_transport_and_the_others_get_the_frame(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    shortfalls = _spy_on_send_many(monkeypatch)
    with fleet(server_ssl_context, client_ssl_context) as ships, ExitStack() as stack:
        peers = [ships.peer("reader", stack) for _ in range(8)]
        gone = peers[3]

        def reset_then_broadcast() -> int:  # in the loop thread: the server cannot notice the reset first
            reset(gone.sock)
            return ships.st.server.broadcast(b"after the reset", [p.conn for p in peers])

        assert ships.st.call(reset_then_broadcast) == len(peers)
        assert any(sent < 0 for sent, _ in shortfalls)  # the send failed (ECONNRESET/EPIPE), left queued
        expected = wire([b"after the reset"])
        for peer in peers:
            if peer is not gone:
                assert peer.read(len(expected)) == expected
        assert ships.st.wait_connections(len(peers) - 1)
        assert ships.st.call(lambda: gone.conn.closed)
        assert_echo_works(ships.st.url)


def test_tls_and_busy_connections_take_the_python_path(
    server_ssl_context: ssl.SSLContext, client_ssl_context: ssl.SSLContext
) -> None:
    with fleet(server_ssl_context, client_ssl_context) as ships, ExitStack() as stack:
        plain, tls, busy = (ships.peer(kind, stack) for kind in ("reader", "tls", "slow"))
        assert ships.st.call(lambda: busy.conn.send(b"x" * 200_000) and busy.conn.buffered_amount > 0)
        direct, fds, rest = ships.st.call(lambda: fanout.split_direct([plain.conn, tls.conn, busy.conn]))
        assert direct == [plain.conn] and fds == [plain.conn.transport._fd]
        assert rest == [tls.conn, busy.conn]
        direct, _, rest = ships.st.call(lambda: fanout.split_direct([plain.conn], exclude=plain.conn))
        assert direct == [] and rest == []


def test_connections_are_freed_with_the_collector_off_after_a_broadcast_left_frames_queued() -> None:
    freed = Freed()
    messages = [bytes([i]) * 20_000 for i in range(8)]
    with collector_off():
        with ServerThread(Tracking(freed), options=OPTIONS) as st, ExitStack() as stack:
            socks = []
            for _ in range(6):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, TINY)
                sock.settimeout(10)
                sock.connect(("127.0.0.1", st.port))
                stack.callback(sock.close)
                raw_handshake(sock)
                socks.append(sock)
            conns = st.call(st.server.open_connections)
            assert len(conns) == len(socks)
            for conn in conns:
                st.call(lambda c=conn: c.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TINY))
            del conns, conn
            for message in messages:
                st.call(lambda m=message: st.server.broadcast(m))
            assert st.call(lambda: sum(c.buffered_amount > 0 for c in st.server.connections)) == len(socks)
            for sock in socks:
                reset(sock)
            assert st.wait_connections(0)
            assert freed.wait_all() == []
            assert cyclic_garbage_of_ours() == []
    assert freed.tracked >= 3 * len(socks)
