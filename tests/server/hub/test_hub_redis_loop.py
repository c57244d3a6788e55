"""The Redis engine reads and writes Redis on the hub's own loop: replies split anywhere parse the same,
a broken or silent Redis fails what is in flight (108) without resending it, no thread is left running,
no file descriptor is left open.  Real redis-servers (started by the tests, on free ports)."""

from __future__ import annotations

import gc
import os
import secrets
import signal
import socket
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import Reply
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, Namespaces
from wsproto_lite.hub.protocol import ErrorCode
from wsproto_lite.server.loop import EventLoop

from .authkit import opened
from .conftest import HubThread, Raw
from .redis_util import RedisServer

NodeMaker = Callable[..., HubThread]


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()  # each test its own: command counts start at zero, it may be stopped
    yield server
    server.stop()


@pytest.fixture
def make_node() -> Iterator[NodeMaker]:
    """``make_node(url, **engine options)``: a hub node (stepped clock) on a Redis engine."""
    from wsproto_lite.hub.redis_engine import RedisEngine

    made: list[HubThread] = []

    def make(url: str, **options: Any) -> HubThread:
        namespaces = Namespaces(opened(DEFAULT_NAMESPACES, anonymous=True))
        prefix = "t" + secrets.token_hex(4)
        node = HubThread(
            HubConfig(port=0, namespaces=namespaces, rate_limits=RateLimits(commands_burst=1000)),
            engine=lambda: RedisEngine(url, prefix=prefix, **options),
        )
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def _client(node: HubThread) -> Raw:
    r = Raw(node.url)
    r.ok("connect", {})
    return r


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _redis_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hub-redis")]


# -- replies split across reads -------------------------------------------------------------------


def _record_stream(server: RedisServer) -> bytes:
    """What a subscribing connection reads from a real Redis: confirmations, messages (one not UTF-8,
    one large), an error answer, a pong."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sub:
        sub.sendall(b"SUBSCRIBE t:ch:a t:ch:b\r\nPSUBSCRIBE t:ch:p*\r\n")
        received = b""
        while received.count(b"subscribe") < 3:
            received += sub.recv(65536)
        publisher = server.client()
        publisher.publish("t:ch:a", "p\n\n\n\n\n\n1")
        publisher.publish("t:ch:px", "p\n\n\n\n\n\n2")
        publisher.execute_command("PUBLISH", "t:ch:b", b"\xff\xfe")
        publisher.publish("t:ch:b", "x" * 3000)
        sub.sendall(b"GET k\r\nPING\r\n")
        while not received.endswith(b"$4\r\npong\r\n$0\r\n\r\n"):
            received += sub.recv(65536)
        return received


class _Batches:
    """A shard's subscribing connection fed a recorded stream through a socket pair, chunk by chunk:
    what it hands the engine (``on_messages``) and what it counts as not ours."""

    def __init__(self) -> None:
        import redis

        from wsproto_lite.hub.redis_engine import RedisEngine
        from wsproto_lite.hub.redis_resp import RespSocket
        from wsproto_lite.hub.redis_shard import Wait

        self.seen: list[Any] = []
        self.engine = RedisEngine("redis://127.0.0.1:1/0", prefix="t")  # never started: no connection
        self.engine.on_messages = self.seen.extend  # type: ignore[method-assign]
        self.loop = EventLoop()
        self.engine.attach(self.loop)
        self.waits = [Wait(Reply(), 1) for _ in range(3)]
        pubsub = self.engine.shards[0].pubsub
        pubsub.sent.extend(self.waits)
        ours, self.theirs = socket.socketpair()
        connection = redis.connection.Connection()
        connection._sock = ours  # what Connecting hands over: a connected redis-py connection
        self.broken: list[str] = []
        self.link = RespSocket(self.loop, connection, pubsub._on_replies, self.broken.append)

    def feed(self, stream: bytes, cuts: list[int]) -> tuple[list[Any], int]:
        try:
            bounds = [0, *sorted(set(cuts)), len(stream)]
            for start, end in zip(bounds, bounds[1:], strict=False):
                self.theirs.sendall(stream[start:end])
                self.link._on_readable()
            assert not self.broken
            return self.seen, self.engine.bad_messages
        finally:
            self.link.close()
            self.theirs.close()
            self.loop.close()


@pytest.fixture(scope="module")
def recorded() -> Iterator[bytes]:
    server = RedisServer()
    try:
        yield _record_stream(server)
    finally:
        server.stop()


def _shape(seen: list[Any], waits: list[Any]) -> list[Any]:
    return [f"wait{waits.index(m)}" if m in waits else m for m in seen]


def test_a_recorded_stream_read_whole(recorded: bytes) -> None:
    batches = _Batches()
    seen, bad = batches.feed(recorded, [])
    assert _shape(seen, batches.waits) == [
        "wait0",
        "wait1",
        "wait2",
        ["message", "t:ch:a", "p\n\n\n\n\n\n1"],
        ["pmessage", "t:ch:p*", "t:ch:px", "p\n\n\n\n\n\n2"],
        ["message", "t:ch:b", "x" * 3000],
    ]
    assert bad == 1  # the message that is not UTF-8: counted, the ones after it still read


def test_a_recorded_stream_split_at_every_byte(recorded: bytes) -> None:
    whole = _Batches()
    expected = _shape(whole.feed(recorded, [])[0], whole.waits), whole.engine.bad_messages
    batches = _Batches()
    seen, bad = batches.feed(recorded, list(range(1, len(recorded))))
    assert (_shape(seen, batches.waits), bad) == expected


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_recorded_stream_split_anywhere(recorded: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(1, len(recorded) - 1), max_size=40))
    whole = _Batches()
    expected = _shape(whole.feed(recorded, [])[0], whole.waits), whole.engine.bad_messages
    batches = _Batches()
    seen, bad = batches.feed(recorded, cuts)
    assert (_shape(seen, batches.waits), bad) == expected


# -- faults ---------------------------------------------------------------------------------------


def _calls(server: RedisServer) -> dict[str, int]:
    stats = server.client().info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_redis_killed_with_batches_in_flight_fails_them_and_resends_none(
    redis_server: RedisServer, make_node: NodeMaker
) -> None:
    node = make_node(redis_server.url)
    publisher = _client(node)
    publisher.ok("publish", {"channel": "chat:k", "data": 0})  # connected, scripts loaded
    shard = node.call(lambda: node.hub_server.engine.shards[0])
    gc.collect()
    gc.disable()  # the broken link's objects (and the batches in flight) are freed by reference counting
    try:
        old_link = weakref.ref(node.call(lambda: shard.link.sock))
        _publish_while_redis_dies(publisher, redis_server)
        assert node.call(old_link) is None
    finally:
        gc.enable()
    redis_server.start()  # same port, empty: every command it counts came after the restart
    assert node.call(lambda: shard.link.ok) is False
    publisher.roundtrip()
    node.loop.advance(1.0)  # past the pause after a failed connection
    assert publisher.ok("publish", {"channel": "chat:k", "data": "after"})["offset"] == 1
    calls = _calls(redis_server)
    assert calls.get("evalsha", 0) == 1  # the one publication sent after: none of the failed resent
    assert calls.get("publish", 0) <= 1, calls  # the node announcing itself (control channel), if due


def _publish_while_redis_dies(publisher: Raw, redis_server: RedisServer) -> None:
    count = 200
    for i in range(1, count + 1):  # pipelined: many batches in flight when Redis dies
        publisher.send({"id": 1000 + i, "publish": {"channel": "chat:k", "data": i}})
        if i == count // 3:
            assert redis_server.proc is not None
            redis_server.proc.kill()
            redis_server.proc.wait()
    replies = [publisher.reply(1000 + i, timeout=15) for i in range(1, count + 1)]
    failed = [r for r in replies if "error" in r]
    assert failed, "Redis died after every publication was answered: nothing was in flight"
    for r in failed:
        assert r["error"]["code"] == ErrorCode.NOT_AVAILABLE and r["error"]["temporary"] is True
    offsets = [r["publish"]["offset"] for r in replies if "publish" in r]
    assert offsets == list(range(2, 2 + len(offsets)))  # the answered ones, in order


def test_a_redis_that_stops_answering_fails_the_jobs_in_flight_after_the_timeout(
    redis_server: RedisServer, make_node: NodeMaker
) -> None:
    node = make_node(redis_server.url)
    publisher = _client(node)
    publisher.ok("publish", {"channel": "chat:t", "data": 0})
    shard = node.call(lambda: node.hub_server.engine.shards[0])
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # the connection stays up; nothing is answered
    try:
        publisher.send({"id": 500, "publish": {"channel": "chat:t", "data": 1}})
        for _ in range(1000):  # each check is a call into the loop: it has read the command when true
            if node.call(lambda: len(shard.link.writes)):
                break
        else:
            pytest.fail("the publication never went out")
        node.loop.advance(5.0)  # the command timeout, on the hub's clock
        reply = publisher.reply(500, timeout=10)
        assert reply["error"]["code"] == ErrorCode.NOT_AVAILABLE and reply["error"]["temporary"] is True
        assert publisher.roundtrip()  # the hub answers meanwhile
        assert node.call(lambda: node.hub_server.engine.health()["shards"][0]["commands_ok"]) is False
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    node.loop.advance(1.0)
    # the unanswered one may have run (Redis read it when it woke): never sent twice, so 2 or 3
    assert publisher.ok("publish", {"channel": "chat:t", "data": 2})["offset"] in (2, 3)


def test_a_listening_socket_that_never_answers_leaves_the_hub_responsive(make_node: NodeMaker) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # connections are accepted by the kernel; nothing is ever read or answered
    fds = _open_fds()
    try:
        port = silent.getsockname()[1]
        node = make_node(f"redis://127.0.0.1:{port}/0", command_timeout=0.5)
        publisher = _client(node)
        reply = publisher.cmd("publish", {"channel": "chat:s", "data": 1})
        assert reply["error"]["code"] == ErrorCode.NOT_AVAILABLE and reply["error"]["temporary"] is True
        assert publisher.roundtrip()
        publisher.close()
        node.stop()  # at once, an attempt to connect still waiting for its answer
        for thread in threading.enumerate():
            if thread.name.startswith("hub-redis"):
                thread.join(10)  # it closes the connection it made (bounded by the timeouts)
        assert _redis_threads() == []
    finally:
        silent.close()
    assert _open_fds() <= fds | {str(silent.fileno())}  # nothing of the node's left open


def test_no_redis_thread_runs_and_every_socket_is_closed_after_stop(
    redis_server: RedisServer, make_node: NodeMaker
) -> None:
    fds = _open_fds()
    node = make_node(redis_server.url)
    r = _client(node)
    r.ok("subscribe", {"channel": "chat:n"})  # the subscribing connection is up: confirmed
    publisher = _client(node)
    publisher.ok("publish", {"channel": "chat:n", "data": 1})  # the command connection too
    assert r.push()["pub"]["data"] == 1
    assert _redis_threads() == []  # both connections read and written on the hub's loop
    assert len(_open_fds() - fds) >= 2
    r.close()
    publisher.close()
    node.stop()
    assert _open_fds() <= fds


def test_a_silent_pubsub_link_is_pinged_then_found_dead_and_resubscribed(
    redis_server: RedisServer, make_node: NodeMaker
) -> None:
    from wsproto_lite.hub.protocol import DisconnectCode
    from wsproto_lite.hub.redis_pubsub import HEALTH_INTERVAL

    node = make_node(redis_server.url)
    reader = _client(node)
    reader.ok("subscribe", {"channel": "chat:h"})
    shard = node.call(lambda: node.hub_server.engine.shards[0])
    gc.collect()
    gc.disable()  # the dead link's objects are freed by reference counting
    old_link = weakref.ref(node.call(lambda: shard.pubsub.link))
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # the link stays up and silent
    try:
        node.loop.advance(HEALTH_INTERVAL)  # idle that long: a PING goes out
        node.call(lambda: None)  # an iteration: the timers now due have run before the next call
        assert node.call(lambda: shard.pubsub.ping_sent_at) is not None
        assert node.call(lambda: shard.pubsub.ok) is True
        node.loop.advance(HEALTH_INTERVAL)  # no answer by the next check: the link is dead
        node.call(lambda: None)
        assert node.call(lambda: shard.pubsub.ok) is False
        assert node.call(old_link) is None
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
        gc.enable()
    # back: resubscribed, and the channel's subscribers told to recover what they may have missed
    assert reader.closed(timeout=15) == (DisconnectCode.INSUFFICIENT_STATE, "insufficient state")
    assert node.call(lambda: shard.pubsub.reconnects) == 1


def test_rediss_large_publications_through_tls_on_the_loop(
    cert_files: tuple[str, str, str], make_node: NodeMaker
) -> None:
    """TLS sockets, non-blocking: records split across reads, data the TLS layer holds after a read
    (``pending``), writes the socket takes in parts."""
    server = RedisServer(tls=cert_files)
    try:
        node = make_node(server.url)
        reader, publisher = _client(node), _client(node)
        reader.ok("subscribe", {"channel": "chat:tls"})
        big = [f"{i}:" + "x" * 40_000 for i in range(1, 9)]
        for i, data in enumerate(big, 1):
            publisher.send({"id": 100 + i, "publish": {"channel": "chat:tls", "data": data}})
        acks = [publisher.reply(100 + i, timeout=10) for i in range(1, len(big) + 1)]
        assert [a["publish"]["offset"] for a in acks] == list(range(1, len(big) + 1))
        assert [reader.push(timeout=10)["pub"]["data"] for _ in big] == big
        history = publisher.ok("history", {"channel": "chat:tls", "limit": -1})["publications"]
        assert [p["data"] for p in history] == big
    finally:
        server.stop()
