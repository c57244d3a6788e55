"""adapters._protocol.CoreProtocol over a real socket pair: hold/release, the close timer, keepalive."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from wsproto_lite import ConnectionClosed, Event, Request, ServerConnection, TextMessage
from wsproto_lite.adapters._protocol import CoreProtocol

T = TypeVar("T")
UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 10)

    return asyncio.run(bounded())


def client_text(text: str) -> bytes:
    """A masked text frame, as a client sends it (§5.3)."""
    payload = text.encode()
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + key + masked


class Collector(CoreProtocol[ServerConnection]):
    """Accepts, records events, and holds after each text message when ``holding``."""

    def __init__(self, holding: bool = False, **options: float) -> None:
        super().__init__(ServerConnection(), **options)  # type: ignore[arg-type]
        self.events: list[Event] = []
        self.holding = holding
        self.closed = asyncio.Event()
        self.changed = asyncio.Event()

    def on_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()
        if type(event) is Request:
            self.conn.accept()
        elif type(event) is TextMessage and self.holding:
            self.hold()
        elif type(event) is ConnectionClosed:
            self.closed.set()


async def pair(protocol: Collector) -> socket.socket:
    """Our side on an asyncio transport, the peer a plain socket that has sent the upgrade request."""
    ours, peer = socket.socketpair()
    await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    peer.sendall(UPGRADE)
    peer.setblocking(False)
    return peer


def texts(protocol: Collector) -> list[str]:
    return [e.data for e in protocol.events if isinstance(e, TextMessage)]


async def until(protocol: Collector, predicate: Callable[[], object]) -> None:
    """Wait (on events, not on time) until ``predicate()`` holds."""
    while not predicate():
        protocol.changed.clear()
        await protocol.changed.wait()


def test_hold_stops_reading_and_release_delivers_in_order() -> None:
    async def main() -> None:
        protocol = Collector(holding=True)
        peer = await pair(protocol)
        peer.sendall(b"".join(client_text(str(i)) for i in range(5)))
        await until(protocol, lambda: texts(protocol))
        assert texts(protocol) == ["0"]  # the rest stays in the core
        assert not protocol.transport.is_reading()
        for expected in (["0", "1"], ["0", "1", "2"]):
            protocol.release()
            assert texts(protocol) == expected
        protocol.holding = False
        protocol.release()
        assert texts(protocol) == ["0", "1", "2", "3", "4"]
        assert protocol.transport.is_reading()
        peer.close()
        await protocol.closed.wait()

    run(main())


def test_close_timer_aborts_when_the_peer_never_answers_our_close() -> None:
    async def main() -> None:
        protocol = Collector(close_timeout=0.05)
        peer = await pair(protocol)
        await until(protocol, lambda: protocol.events)
        protocol.conn.close(1000)
        protocol.flush()
        assert protocol.close_timer is not None  # armed because the core now waits (close_expected)
        await protocol.closed.wait()  # the timer fired: abort -> ConnectionClosed(1006)
        closed = protocol.events[-1]
        assert isinstance(closed, ConnectionClosed) and closed.code == 1006
        assert protocol.transport.is_closing()
        peer.close()

    run(main())


@pytest.mark.parametrize("how", ["close timer", "keepalive", "close_transport"])
def test_a_peer_that_reads_nothing_cannot_keep_the_transport_open(how: str) -> None:
    """A peer that reads nothing, megabytes unwritten in our transport, then the connection is ended by
    ``how``: the transport must be gone (``connection_lost``) within the close timeout."""

    async def main() -> None:
        protocol = Collector(close_timeout=0.05, ping_interval=0.01, ping_timeout=0.05)
        lost = asyncio.Event()
        protocol.on_lost = lost.set  # type: ignore[method-assign]
        peer = await pair(protocol)
        await until(protocol, lambda: protocol.events)
        protocol.conn.send_binary(b"x" * (8 << 20))  # more than the socket pair holds
        protocol.flush()
        assert protocol.transport.get_write_buffer_size() > 0
        if how == "close timer":
            protocol.conn.close(1000)
            protocol.flush()
        elif how == "keepalive":
            protocol.start_keepalive()
        else:
            protocol.conn.abort()
            protocol.close_transport()
        await lost.wait()  # asyncio's transport.close() alone would wait for the peer to read: for ever
        assert protocol.lost
        peer.close()

    run(main())


def test_keepalive_pings_and_fails_a_peer_that_does_not_pong() -> None:
    async def main() -> None:
        protocol = Collector(ping_interval=0.01, ping_timeout=0.05)
        peer = await pair(protocol)
        await until(protocol, lambda: protocol.events)
        protocol.start_keepalive()
        await protocol.closed.wait()
        loop = asyncio.get_running_loop()
        data = b""
        while not data.endswith(b"keepalive ping timeout"):
            data += await loop.sock_recv(peer, 4096)
        assert b"\x89\x04" in data  # a ping with a 4-byte payload went out first
        assert b"\x88\x18\x03\xf3" in data  # then close 1011 with its reason
        peer.close()

    run(main())


def client_ping(payload: bytes) -> bytes:
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x89, 0x80 | len(payload)) + key + masked


def test_a_peer_that_pings_but_never_reads_cannot_grow_our_write_buffer() -> None:
    """§5.5.2 makes us answer every ping; when the peer reads none of it, we stop reading its pings."""

    async def main() -> None:
        protocol = Collector()
        peer = await pair(protocol)
        await until(protocol, lambda: protocol.events)
        burst = client_ping(b"p" * 125) * 512  # 64 KiB of pings
        sent, stalled = 0, 0
        while sent < 256 * 2**20 and stalled < 100:  # until we stop reading (or 256 MiB: no bound)
            try:
                sent += peer.send(burst)
                stalled = 0
            except BlockingIOError:
                stalled += 1
            for _ in range(5):  # let the loop read what it will
                await asyncio.sleep(0)
        assert stalled == 100, f"{sent} bytes of pings were all read"
        assert protocol.transport.get_write_buffer_size() < 2**20
        assert not protocol.transport.is_reading()
        peer.close()
        await protocol.closed.wait()

    run(main())


class _RecordingTransport:
    """What CoreProtocol.flush hands the transport, call by call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[bytes]]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", [data]))

    def writelines(self, data: list[bytes]) -> None:
        self.calls.append(("writelines", list(data)))

    def is_closing(self) -> bool:
        return False


def test_flush_hands_a_large_payload_to_the_transport_uncopied() -> None:
    """The payload sent is the object the transport gets (asyncio's writelines on 3.12+, else one write per
    buffer: 3.11's writelines would join); the frame before it and its header travel together."""

    async def scenario() -> list[tuple[str, list[bytes]]]:
        protocol = Collector()
        transport = _RecordingTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(UPGRADE)
        transport.calls.clear()
        payload = bytes(range(256)) * 4096
        protocol.conn.send_text("before")
        protocol.conn.send_binary(payload)
        protocol.flush()
        written = [buffer for _kind, buffers in transport.calls for buffer in buffers]
        assert any(buffer is payload for buffer in written)
        assert b"".join(written)[-len(payload) :] == payload and len(written) == 2
        return transport.calls

    calls = run(scenario())
    assert [kind for kind, _ in calls] == (
        ["writelines"] if sys.version_info >= (3, 12) else ["write", "write"]
    )
