"""The hub's fan-out through the C loop (``channels.send_all`` -> ``fanout.TickFlush``): a subscriber that
stops reading (tiny kernel buffers: direct sends cut short, the rest in its transport) still gets every
publication in order, the readers get theirs at once, and the hub's counters count every delivery."""

from __future__ import annotations

import json
import socket

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.limits import HubLimits, RateLimits
from wsproto_lite.server import fanout

from .conftest import HubThread, Raw, non_reading_client

CHANNEL = "bench:fanout"
TINY = 4096


def read_pushes(sock: socket.socket, count: int) -> list[dict[str, object]]:
    """The first ``count`` pushes in the unmasked server text frames from ``sock`` (RFC 6455 §5.2; a frame
    may hold several ``\n``-separated replies and pushes)."""
    data = bytearray()
    out: list[dict[str, object]] = []

    def need(size: int) -> None:
        while len(data) < size:
            chunk = sock.recv(1 << 16)
            assert chunk, "the hub closed the connection"
            data.extend(chunk)

    while len(out) < count:
        need(2)
        length, start = data[1] & 0x7F, 2
        if length == 126:
            need(4)
            length, start = int.from_bytes(data[2:4], "big"), 4
        elif length == 127:
            need(10)
            length, start = int.from_bytes(data[2:10], "big"), 10
        need(start + length)
        assert data[0] == 0x81, data[:2]
        lines = [json.loads(line) for line in data[start : start + length].decode().split("\n")]
        out += [line["push"] for line in lines if "push" in line]
        del data[: start + length]
    return out[:count]


def test_a_stalled_subscriber_gets_every_publication_in_order_and_the_counters_count_all(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shortfalls: list[int] = []
    real = fanout.send_each

    def spy(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
        got = real(fds, datas)
        shortfalls.extend(sent for _, sent in got)
        return got

    monkeypatch.setattr(fanout, "send_each", spy)
    rates = RateLimits(bytes_per_second=1e12, bytes_burst=1e12)
    h = HubThread(HubConfig(port=0, limits=HubLimits(queue_limit=1 << 20), rate_limits=rates))
    try:
        stalled = non_reading_client(
            h.port, {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": CHANNEL}}
        )
        readers = [Raw(h.url) for _ in range(3)]
        publisher = Raw(h.url)
        for client in (*readers, publisher):
            client.ok("connect")
        for reader in readers:
            reader.ok("subscribe", {"channel": CHANNEL})
        assert h.call(lambda: len(h.hub._channels[CHANNEL].by_conn)) == 4
        for conn in h.call(lambda: list(h.hub._channels[CHANNEL].by_conn)):
            if conn.remote_address[1] == stalled.getsockname()[1]:
                h.call(lambda c=conn: c.transport.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, TINY))
        before = h.call(lambda: (h.hub.stats.deliveries, h.hub.stats.messages_out))
        blobs = [f"{i:03d}" + "x" * 3000 for i in range(40)]
        for blob in blobs:
            publisher.ok("publish", {"channel": CHANNEL, "data": blob})
            for reader in readers:
                assert reader.push()["pub"]["data"] == blob
        after = h.call(lambda: (h.hub.stats.deliveries, h.hub.stats.messages_out))
        # 4 pushes per publication, plus its reply to the publisher
        assert (after[0] - before[0], after[1] - before[1]) == (4 * len(blobs), 5 * len(blobs))
        assert any(sent >= 0 for sent in shortfalls)  # a direct send was cut short: the rest was queued
        pushes = read_pushes(stalled, len(blobs))
        assert [push["pub"]["data"] for push in pushes] == blobs  # type: ignore[index]
        stalled.close()
        for client in (*readers, publisher):
            client.close()
    finally:
        h.stop()


def test_a_burst_of_publications_reaches_each_subscriber_in_one_write_and_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    writes: list[bytes] = []
    real = fanout.send_each

    def spy(fds: list[int], datas: list[bytes]) -> list[tuple[int, int]]:
        writes.extend(datas)
        return real(fds, datas)

    monkeypatch.setattr(fanout, "send_each", spy)
    h = HubThread(HubConfig(port=0))
    try:
        readers = [Raw(h.url) for _ in range(3)]
        for reader in readers:
            reader.ok("connect")
            reader.ok("subscribe", {"channel": CHANNEL})
        publisher = non_reading_client(h.port, {"id": 1, "connect": {}})
        burst = b""
        for i in range(5):  # one TCP write: the hub reads and handles the five in one loop iteration
            payload = json.dumps({"id": 2 + i, "publish": {"channel": CHANNEL, "data": f"p{i}"}}).encode()
            burst += bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload
        publisher.sendall(burst)
        for reader in readers:
            assert [reader.push()["pub"]["data"] for _ in range(5)] == [f"p{i}" for i in range(5)]
        together = [w for w in writes if w.count(b'"pub"') == 5]
        assert len(together) == len(readers)  # each reader's five pushes left in one send()
        publisher.close()
        for reader in readers:
            reader.close()
    finally:
        h.stop()
