"""bound.py and the hub's one bound on what is queued for a connection: replies, pushes, fan-out.

Units first (the bound's arithmetic), then the hub with fake connections whose unsent bytes the test sets
(no sockets, a fake clock: each rule of the bound, deterministic), then the whole thing over loopback:
clients that never read ask for large replies while history churns.
"""

from __future__ import annotations

import gc
import json
import socket
import time
import tracemalloc
import weakref
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from wsproto_lite.hub.bound import QueueBound, newest_within, publications_size
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import Publication, Reply
from wsproto_lite.hub.hub import Hub, HubLimits
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.memory import MemoryEngine
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode

from .conftest import HubThread, Raw, non_reading_client

# -- bound.py ------------------------------------------------------------------------------------------


def test_the_bound_admits_up_to_twice_the_limit_and_is_over_past_the_limit() -> None:
    bound = QueueBound(limit=1000, timeout=10.0)
    assert bound.hard == 2000 and bound.max_reply == 1000
    assert bound.admits(0, 2000) and bound.admits(1500, 500) and not bound.admits(1500, 501)
    assert not bound.over(1000) and bound.over(1001)


def _publications(sizes: list[int]) -> list[Publication]:
    return [Publication("c", i + 1, "x" * size, None) for i, size in enumerate(sizes)]


@given(st.lists(st.integers(0, 300), max_size=30), st.integers(0, 5000))
def test_newest_within_keeps_the_longest_newest_run_that_fits(sizes: list[int], budget: int) -> None:
    publications = _publications(sizes)
    kept = newest_within(publications, budget)
    assert list(kept) == publications[len(publications) - len(kept) :]  # a tail: the newest, in order
    assert publications_size(kept) <= budget
    if len(kept) < len(publications):  # one more would not fit
        assert publications_size(publications[len(publications) - len(kept) - 1 :]) > budget


def test_publications_size_is_what_they_take_in_a_reply() -> None:
    publications = _publications([5, 0, 70])
    listed = ",".join(p.json for p in publications)
    assert publications_size(publications) == len(listed) + 1  # one comma each (the last one: margin)


# -- the hub with fake connections ---------------------------------------------------------------------


class FakeLoop:
    """The hub's clock and timers; the tick runs when the test calls it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Any, *args: Any) -> Any:
        return _Handle()


class _Handle:
    def cancel(self) -> None:
        pass


class FakeConn:
    """A connection whose unsent bytes are what the hub queued minus what the test says was read."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.unsent = 0
        self.open = True
        self.paused = False  # the I/O layer's writing pause (over its high watermark)
        self.close_code: int | None = None
        self.remote_address = ("127.0.0.1", 4000)
        self.request = None

    @property
    def buffered_amount(self) -> int:
        return self.unsent

    @property
    def is_open(self) -> bool:
        return self.open

    @property
    def writable(self) -> bool:
        return self.open and not self.paused

    def send(self, message: str) -> bool:
        if not self.open:
            return False
        self.frames.append(message)
        self.unsent += len(message)
        return True

    def send_prepared(self, prepared: Any) -> bool:
        return self.send(prepared.frame.decode("utf-8", "replace"))

    def close(self, code: int, reason: str) -> None:
        if self.open:
            self.open = False
            self.close_code = code

    def read_all(self) -> list[dict[str, Any]]:
        """The peer reads everything queued so far."""
        frames, self.frames, self.unsent = self.frames, [], 0
        return [json.loads(f[f.index("{") :]) for f in frames]


LIMIT = 10_000
SLOW_TIMEOUT = 5.0


def make_hub(engine: MemoryEngine | None = None) -> tuple[Hub, FakeLoop]:
    hub = Hub(engine=engine, limits=HubLimits(queue_limit=LIMIT, slow_timeout=SLOW_TIMEOUT))
    loop = FakeLoop()
    hub.start(loop)  # type: ignore[arg-type]
    return hub, loop


def client(hub: Hub) -> FakeConn:
    conn = FakeConn()
    hub.on_open(conn)  # type: ignore[arg-type]
    command(hub, conn, "connect")
    conn.read_all()
    return conn


def command(
    hub: Hub, conn: FakeConn, method: str, params: dict[str, Any] | None = None, cid: int = 1
) -> None:
    hub.on_message(conn, json.dumps({"id": cid, method: params or {}}))  # type: ignore[arg-type]


def publish_history(hub: Hub, channel: str, count: int, size: int) -> None:
    for _ in range(count):
        assert hub.publish(channel, "x" * size).done


def dropped_as_slow(conn: FakeConn) -> bool:
    """Closed with 3008 slow, and no push announced it (a close only, as Centrifugo)."""
    frames = conn.read_all()
    return conn.close_code == DisconnectCode.SLOW and not any(
        "disconnect" in f.get("push", {}) for f in frames
    )


def test_replies_are_queued_up_to_twice_the_bound_then_the_connection_is_dropped_as_slow() -> None:
    hub, _ = make_hub()
    conn = client(hub)
    publish_history(hub, "chat:h", 20, 1000)  # ~1 050 characters each in a reply
    for cid in range(1, 5):  # replies of ~6 300: the fourth would be past 2 x 10 000
        command(hub, conn, "history", {"channel": "chat:h", "limit": 6}, cid)
    replies = [json.loads(f) for f in conn.frames]
    assert [len(r["history"]["publications"]) for r in replies] == [6, 6, 6]  # not the fourth
    assert conn.unsent <= 2 * LIMIT
    assert dropped_as_slow(conn) and hub.stats.slow_disconnects == 1
    assert hub.sessions[conn].closed  # type: ignore[index]


def test_a_reply_larger_than_the_bound_is_refused_with_106_and_not_queued() -> None:
    hub, _ = make_hub()
    conn = client(hub)
    publish_history(hub, "chat:h", 20, 1000)
    command(hub, conn, "history", {"channel": "chat:h", "limit": 20})  # ~22 000 characters
    assert conn.unsent < 200
    (reply,) = conn.read_all()
    assert reply["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert hub.stats.limit_trips["reply_size"] == 1
    command(hub, conn, "history", {"channel": "chat:h", "limit": 8})  # what fits still works
    (reply,) = conn.read_all()
    assert len(reply["history"]["publications"]) == 8


def test_a_recovery_larger_than_the_bound_is_not_recovered() -> None:
    """Centrifugo sends publications only with ``recovered: true``: what does not fit is not recovered
    (the position only; the client reloads), never a partial list that looks complete."""
    hub, _ = make_hub()
    conn = client(hub)
    command(hub, conn, "subscribe", {"channel": "chat:r"})
    epoch = conn.read_all()[0]["subscribe"]["epoch"]
    command(hub, conn, "unsubscribe", {"channel": "chat:r"})
    publish_history(hub, "chat:r", 20, 1000)
    conn.read_all()
    command(hub, conn, "subscribe", {"channel": "chat:r", "recover": True, "epoch": epoch, "offset": 0})
    (reply,) = conn.read_all()
    result = reply["subscribe"]
    assert "recovered" not in result and "publications" not in result and result["offset"] == 20
    assert hub.stats.limit_trips["reply_size"] == 1
    publish_history(hub, "chat:r", 1, 10)  # live after the reply, without a gap or a duplicate
    assert [p["push"]["pub"]["offset"] for p in conn.read_all()] == [21]


def behind(hub: Hub, *conns: FakeConn) -> None:
    """Take the connections over the bound the way it happens: a publication queued on them."""
    for conn in conns:
        command(hub, conn, "subscribe", {"channel": "bench:behind"})
        conn.read_all()
        conn.unsent = LIMIT - 10
    hub.publish("bench:behind", "over")
    for conn in conns:
        assert LIMIT < conn.unsent < 2 * LIMIT
        conn.paused = True  # the I/O layer's high watermark is the same bound


def test_a_connection_over_the_bound_for_the_slow_timeout_is_dropped_and_one_that_drains_is_not() -> None:
    hub, loop = make_hub()
    stuck, draining = client(hub), client(hub)
    behind(hub, stuck, draining)
    loop.now += SLOW_TIMEOUT / 2
    hub._tick()
    draining.unsent, draining.paused = 0, False  # the peer read: the I/O layer calls on_writable
    hub.on_writable(draining)  # type: ignore[arg-type]
    draining.unsent, draining.paused = LIMIT + 1, True  # and fell behind again
    hub._tick()
    assert stuck.close_code is None and draining.close_code is None
    loop.now += SLOW_TIMEOUT / 2
    hub._tick()
    assert dropped_as_slow(stuck) and draining.close_code is None
    assert hub.stats.slow_disconnects == 1
    loop.now += SLOW_TIMEOUT / 2
    hub._tick()
    assert dropped_as_slow(draining) and hub.stats.slow_disconnects == 2
    assert list(hub._behind) == [draining]  # the stuck one was forgotten at the tick, once closed
    hub.on_close(draining, DisconnectCode.SLOW, "slow")  # type: ignore[arg-type]
    assert hub._behind == {}  # and this one at its close: nothing keeps a closed connection


def test_paused_under_the_bound_still_counts_as_over() -> None:
    """Reading stays paused until the I/O layer's low watermark: a peer that stops reading there is slow."""
    hub, loop = make_hub()
    conn = client(hub)
    behind(hub, conn)
    conn.unsent = LIMIT // 2  # read a little, still paused
    hub._tick()
    loop.now += SLOW_TIMEOUT
    hub._tick()
    assert dropped_as_slow(conn)


def test_a_connection_that_drains_is_no_longer_timed() -> None:
    hub, loop = make_hub()
    conn = client(hub)
    behind(hub, conn)
    conn.read_all()
    conn.paused = False
    hub.on_writable(conn)  # type: ignore[arg-type]
    hub._tick()
    assert hub._behind == {}
    loop.now += 2 * SLOW_TIMEOUT
    hub._tick()
    assert conn.close_code is None and hub.stats.slow_disconnects == 0


def test_pushes_count_in_the_bound() -> None:
    hub, _ = make_hub()
    conn, other = client(hub), client(hub)
    command(hub, conn, "subscribe", {"channel": "chat:p"})
    conn.read_all()
    conn.unsent = 2 * LIMIT - 20  # a join push (~120 characters) does not fit any more
    command(hub, other, "subscribe", {"channel": "chat:p"})
    assert dropped_as_slow(conn) and hub.stats.slow_disconnects == 1
    assert not any("join" in f.get("push", {}) for f in conn.read_all())
    # a server-side unsubscribe push, likewise
    third = client(hub)
    command(hub, third, "subscribe", {"channel": "chat:q"})
    third.read_all()
    third.unsent = 2 * LIMIT - 20
    assert hub.unsubscribe(third, "chat:q")  # type: ignore[arg-type]
    assert dropped_as_slow(third) and hub.stats.slow_disconnects == 2


def test_fan_out_over_the_bound_is_still_delivered_and_past_twice_it_drops_at_once() -> None:
    hub, _ = make_hub()
    behind, fast = client(hub), client(hub)
    for conn in (behind, fast):
        command(hub, conn, "subscribe", {"channel": "bench:f"})
        conn.read_all()
    behind.unsent = LIMIT + 1  # over the bound: the tick's timer decides, not this publication
    hub.publish("bench:f", "a")
    assert behind.close_code is None and [p["push"]["pub"]["data"] for p in behind.read_all()] == ["a"]
    behind.unsent = 2 * LIMIT - 10  # the next publication would go past twice the bound
    hub.publish("bench:f", "b")
    assert dropped_as_slow(behind) and hub.stats.slow_disconnects == 1
    assert [p["push"]["pub"]["data"] for p in fast.read_all()] == ["a", "b"]
    assert list(hub._channels["bench:f"].by_conn) == [fast]


class Later(MemoryEngine):
    """Presence answers when the test says: the replies behind it wait in the outbox."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Reply[Any]] = []

    def presence(self, channel: str) -> Reply[Any]:
        reply: Reply[Any] = Reply()
        self.waiting.append(reply)
        return reply


def test_replies_waiting_in_the_outbox_count_in_the_bound() -> None:
    engine = Later()
    hub, _ = make_hub(engine)
    conn = client(hub)
    publish_history(hub, "chat:o", 6, 1000)
    command(hub, conn, "presence", {"channel": "chat:o"}, 1)  # answered later: the others wait behind
    for cid in range(2, 6):  # 4 replies of ~6 600 characters, built while the first is unanswered
        command(hub, conn, "history", {"channel": "chat:o", "limit": 6}, cid)
    session = hub.sessions[conn]  # type: ignore[index]
    assert session.outbox_bytes <= 2 * LIMIT
    assert conn.read_all() == []  # no reply went out: they all wait behind the first
    assert conn.close_code == DisconnectCode.SLOW and hub.stats.slow_disconnects == 1
    engine.waiting[0].resolve([])  # the late answer finds the connection gone: nothing is built or sent
    assert conn.frames == [] and session.outbox_bytes == 0 and not session.outbox


# -- over loopback: clients that never read ------------------------------------------------------------


def _frame(value: dict[str, Any]) -> bytes:
    payload = json.dumps(value).encode()
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


def test_clients_that_never_read_large_replies_are_dropped_as_slow_and_memory_stays_bounded() -> None:
    """Issue 18 item 2: clients pipelining large ``history`` calls that they never read, while the
    history churns (publications evicted): the hub queues at most about the bound for each, stops
    reading their commands, drops them as slow, and its memory comes back down."""
    limit = 128 * 1024
    clients, pipelined = 20, 30
    namespaces = Namespaces(
        {
            **DEFAULT_NAMESPACES,
            "big": NamespaceOptions(history_size=1000, history_ttl=300, allow_publish=True),
        }
    )
    config = HubConfig(
        port=0,
        namespaces=namespaces,
        limits=HubLimits(queue_limit=limit, slow_timeout=1.0),
        rate_limits=RateLimits(
            bytes_per_second=1e12, bytes_burst=1e12, commands_per_second=1e6, commands_burst=1e6
        ),
        max_history_bytes=4 << 20,  # the history churns: older publications are evicted
    )
    h = HubThread(config)
    publisher = Raw(h.url)
    publisher.ok("connect")
    blob = "p" * 30_000  # 4 in a history reply: ~120 KiB, under the bound
    sockets: list[socket.socket] = []
    try:
        for _ in range(40):
            publisher.ok("publish", {"channel": "big:h", "data": blob})
        gc.disable()  # what the slow ones held must go by reference counting alone
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for _ in range(clients):
            sock = non_reading_client(h.hub_server.port)
            commands = [{"id": 1, "connect": {}}] + [
                {"id": i, "history": {"channel": "big:h", "limit": 4}} for i in range(2, pipelined + 2)
            ]
            sock.sendall(b"".join(_frame(c) for c in commands))
            sockets.append(sock)
        h.call(lambda: None)
        sessions = [weakref.ref(s) for s in h.call(lambda: list(h.hub.sessions.values()))]
        deadline = time.monotonic() + 20
        peak = 0
        while h.call(lambda: h.hub.stats.slow_disconnects) < clients:
            publisher.ok("publish", {"channel": "big:h", "data": blob})  # the history churns meanwhile
            peak = max(peak, tracemalloc.get_traced_memory()[0] - baseline)
            assert time.monotonic() < deadline, f"not dropped as slow ({peak / 2**20:.1f} MiB queued)"
            time.sleep(0.05)
        growth = peak
        print(f"peak growth {growth / 2**20:.1f} MiB for {clients} clients")
        # each: at most about twice the bound queued, plus the commands read but not run
        assert growth < clients * 3 * limit + (4 << 20)
        assert h.wait_sessions(1, timeout=15)  # only the publisher left: every slow one is gone
        assert h.call(lambda: h.hub._behind) == {}
        assert sum(ref() is not None for ref in sessions) == 1  # the publisher's
        after = tracemalloc.get_traced_memory()[0] - baseline
        assert after < 4 << 20, f"{after / 2**20:.1f} MiB still held after the slow clients are gone"
    finally:
        tracemalloc.stop()
        gc.enable()
        for sock in sockets:
            sock.close()
        publisher.close()
        h.stop()
