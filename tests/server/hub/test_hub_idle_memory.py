"""What an idle subscribed connection costs the hub's Python heap (issue 22: <= 8 KiB of RSS each).

The hub runs in this process (a loop thread) under tracemalloc; the clients are raw sockets in a child
process, so none of their memory is counted. Each sends the upgrade request of a browser-like client,
``connect`` and ``subscribe``, and waits for both replies. After a warm-up batch (the channel, caches),
the growth of the traced heap over ``CLIENTS`` more connections, divided by their number, is the cost of
one: the WebSocket and its core (reader, writer, handshake request), the transport and its socket, the
hub's session, subscription and rate-limit buckets, the timers.

The bound pins today's figure (about 4.8 KB per connection with CPython 3.11; 9.8 KB before issue 22's
cuts: an empty deque alone is 760 bytes) with a margin: whatever adds a buffer, a dict or a
deque to every connection fails it.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.limits import RateLimits

from .conftest import HubThread

WARM_UP = 10
CLIENTS = 200
BOUND = 5600  # bytes of Python heap per idle subscribed connection (measured ~4.8 KB; see the docstring)

CLIENT_SCRIPT = r"""
import json, os, socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
def frame(value):
    data = json.dumps(value).encode()
    mask = os.urandom(4)
    assert len(data) < 126
    return bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
socks = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        b"Origin: http://127.0.0.1\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0\r\n\r\n"
    )
    sock.sendall(frame({"id": 1, "connect": {}}) + frame({"id": 2, "subscribe": {"channel": "idle"}}))
    got = b""
    while got.count(b'"id":') < 2:  # the 101, then both replies (no error: checked by the test's count)
        chunk = sock.recv(65536)
        assert chunk, got
        got += chunk
    assert b'"error"' not in got, got
    socks.append(sock)
print("ready", flush=True)
sys.stdin.read()  # hold the connections open until the test closes stdin
"""


class Clients:
    """``count`` idle subscribed hub connections held by a child process, until ``close()``."""

    def __init__(self, port: int, count: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT_SCRIPT, str(port), str(count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == "ready", "the clients could not connect and subscribe"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def hub_open_to_many() -> Iterator[HubThread]:
    """A hub whose per-IP connection rate does not refuse the test's clients (all from 127.0.0.1)."""
    limits = RateLimits(connections_per_second_per_ip=1e9, connections_burst_per_ip=1e9)
    h = HubThread(HubConfig(port=0, rate_limits=limits))
    yield h
    h.stop()


def subscribed(h: HubThread) -> int:
    return int(h.call(lambda: sum(len(s.subscriptions) for s in h.hub.sessions.values())))


def test_idle_subscribed_connection_heap_bytes(hub_open_to_many: HubThread) -> None:
    h = hub_open_to_many
    held: list[Clients] = []
    gc.disable()  # reference counting alone frees what the hub lets go of
    try:
        held.append(Clients(h.port, WARM_UP))
        h.call(lambda: None)
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        held.append(Clients(h.port, CLIENTS))
        h.call(lambda: None)  # the loop has run everything the last replies scheduled
        grown = tracemalloc.get_traced_memory()[0] - before
        assert subscribed(h) == WARM_UP + CLIENTS
        per_connection = grown / CLIENTS
        print(f"{per_connection:.0f} bytes of Python heap per idle subscribed connection")
        assert per_connection < BOUND, f"{per_connection:.0f} bytes per idle subscribed connection"
    finally:
        tracemalloc.stop()
        gc.enable()
        for clients in held:
            clients.close()
    assert h.wait_sessions(0)  # and every one is freed once its client is gone
