"""The hub's protocol on every transport it runs on (``start_hub``/``any_raw`` in conftest.py): our selectors
server and HubASGI under uvicorn serve the same commands, pushes, errors, limits and close codes."""

from __future__ import annotations

import gc
import socket
import weakref
from typing import Any

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hub import HubLimits, Session, Subscription
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode, HubError
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import ConnectionClosed, HandshakeError

from .conftest import Raw, non_reading_client


def _users(token: str, request: object) -> str:
    if not token.startswith("user:"):
        raise HubError(ErrorCode.UNAUTHORIZED, "bad token")
    return token[5:]


def _closed_code(r: Raw) -> int:
    """Read until the connection closes; its close code."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            r.recv()
    return closed.value.code


def test_connect_comes_first_and_once(any_raw: Any) -> None:
    r = any_raw(connect=False)
    assert r.error("subscribe", {"channel": "chat:a"}) == ErrorCode.BAD_REQUEST
    result = r.ok("connect", {"name": "js", "data": {"name": "ann"}})
    assert set(result) == {"client", "version", "ping", "pong"} and result["client"]
    assert r.error("connect") == ErrorCode.BAD_REQUEST
    assert r.roundtrip()


def test_websocket_paths(any_hub: Any) -> None:
    for path in ("/connection/websocket", "/ws"):
        with connect(f"ws://127.0.0.1:{any_hub.port}{path}") as ws:
            ws.send('{"id":1,"connect":{}}')
            assert str(ws.recv(timeout=5)).startswith('{"id":1,"connect":{')
    with pytest.raises(HandshakeError) as info:
        connect(f"ws://127.0.0.1:{any_hub.port}/other")
    assert info.value.status == 404


def test_publish_fans_out_with_offsets_and_info(any_raw: Any) -> None:
    subscribers = [any_raw(f"s{i}") for i in range(3)]
    publisher, watcher = any_raw("p"), any_raw("w")
    epoch = subscribers[0].ok("subscribe", {"channel": "stock:x"})["epoch"]
    for s in subscribers[1:]:
        assert s.ok("subscribe", {"channel": "stock:x"})["epoch"] == epoch
    watcher.ok("subscribe", {"channel": "stock:*"})
    for n in (1, 2):
        reply = publisher.ok("publish", {"channel": "stock:x", "data": {"n": n}})
        assert reply == {"offset": n, "epoch": epoch}
    for s in subscribers:
        pushes = [s.push(), s.push()]
        assert [(p["channel"], p["pub"]["offset"], p["pub"]["data"]) for p in pushes] == [
            ("stock:x", 1, {"n": 1}),
            ("stock:x", 2, {"n": 2}),
        ]
        assert set(pushes[0]["pub"]["info"]) == {"client", "user", "conn_info"}
    seen = [(p["channel"], p["pub"]["channel"], p["pub"]["data"]) for p in (watcher.push(), watcher.push())]
    assert seen == [("stock:*", "stock:x", {"n": 1}), ("stock:*", "stock:x", {"n": 2})]


def test_presence_join_and_leave(start_hub: Any) -> None:
    h = start_hub(authenticate=_users)
    clients: list[Raw] = []

    def join(user: str) -> tuple[Raw, str]:
        r = Raw(h.url)
        clients.append(r)
        client = r.ok("connect", {"token": f"user:{user}", "data": {"name": user.title()}})["client"]
        r.ok("subscribe", {"channel": "chat:team"})
        return r, client

    try:
        alice, a = join("alice")
        bob, b = join("bob")
        bob_info = {"client": b, "user": "bob", "conn_info": {"name": "Bob"}}
        assert alice.push() == {"channel": "chat:team", "join": {"info": bob_info}}
        assert bob.ok("presence", {"channel": "chat:team"})["presence"] == {
            a: {"client": a, "user": "alice", "conn_info": {"name": "Alice"}},
            b: bob_info,
        }
        assert bob.ok("presence_stats", {"channel": "chat:team"}) == {"num_clients": 2, "num_users": 2}
        alice.close()  # a closed connection leaves
        assert bob.push()["leave"]["info"]["client"] == a
        assert bob.ok("presence_stats", {"channel": "chat:team"}) == {"num_clients": 1, "num_users": 1}
    finally:
        for r in clients:
            r.close()


def test_history(any_raw: Any) -> None:
    a = any_raw()
    epoch = a.ok("subscribe", {"channel": "chat:h"})["epoch"]
    for i in range(1, 6):
        a.ok("publish", {"channel": "chat:h", "data": i})
    assert a.ok("history", {"channel": "chat:h"}) == {"publications": [], "epoch": epoch, "offset": 5}
    everything = a.ok("history", {"channel": "chat:h", "limit": -1})["publications"]
    assert [p["data"] for p in everything] == [1, 2, 3, 4, 5]
    assert [p["offset"] for p in a.ok("history", {"channel": "chat:h", "limit": 2})["publications"]] == [1, 2]
    since = {"epoch": epoch, "offset": 3}
    after = a.ok("history", {"channel": "chat:h", "since": since, "limit": -1})["publications"]
    assert [p["data"] for p in after] == [4, 5]
    other = {"epoch": "other", "offset": 1}
    assert a.error("history", {"channel": "chat:h", "since": other, "limit": -1}) == 112


def test_recovery_with_and_without_the_gap_held(start_hub: Any) -> None:
    names = Namespaces(
        {**DEFAULT_NAMESPACES, "tiny": NamespaceOptions(history_size=3, history_ttl=60, allow_publish=True)}
    )
    h = start_hub(HubConfig(port=0, namespaces=names))
    away, publisher = Raw(h.url), Raw(h.url)
    away.ok("connect")
    publisher.ok("connect")
    start = away.ok("subscribe", {"channel": "tiny:t", "recoverable": True})
    publisher.ok("publish", {"channel": "tiny:t", "data": 1})
    assert away.push()["pub"]["offset"] == 1
    away.close()
    publisher.ok("publish", {"channel": "tiny:t", "data": 2})
    publisher.ok("publish", {"channel": "tiny:t", "data": 3})
    back = Raw(h.url)
    back.ok("connect")
    got = back.ok("subscribe", {"channel": "tiny:t", "recover": True, "epoch": start["epoch"], "offset": 1})
    assert got["recovered"] is True and [p["data"] for p in got["publications"]] == [2, 3]
    for i in range(4, 8):  # offsets 4..7, only 5..7 held: a client at offset 3 missed 4
        publisher.ok("publish", {"channel": "tiny:t", "data": i})
    late = Raw(h.url)
    late.ok("connect")
    lost = late.ok("subscribe", {"channel": "tiny:t", "recover": True, "epoch": start["epoch"], "offset": 3})
    assert "recovered" not in lost and "publications" not in lost and lost["offset"] == 7
    assert [back.push()["pub"]["offset"] for _ in range(4)] == [4, 5, 6, 7]  # live after the recovery
    for r in (publisher, back, late):
        r.close()


def test_restart_disconnects_with_3001_and_a_new_epoch(any_hub: Any) -> None:
    a = Raw(any_hub.url)
    a.ok("connect")
    before = a.ok("subscribe", {"channel": "chat:r"})
    a.ok("publish", {"channel": "chat:r", "data": "old"})
    assert a.push()["pub"]["offset"] == 1
    any_hub.restart()
    assert a.closed() == (DisconnectCode.SHUTDOWN, "shutdown") and a.pushes == []  # no push: a close
    b = Raw(any_hub.url)
    b.ok("connect")
    after = b.ok("subscribe", {"channel": "chat:r", "recover": True, "epoch": before["epoch"], "offset": 1})
    assert "recovered" not in after and after["epoch"] != before["epoch"]
    b.close()


def test_errors_leave_the_connection_alive(any_raw: Any) -> None:
    r = any_raw()
    for frame, cid, code in [
        ('{"id": 8, "fly": {}}', 8, ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 9, "subscribe": []}', 9, ErrorCode.BAD_REQUEST),
        ('{"id": 10, "ping": {"pad": "' + "x" * (64 * 1024) + '"}}', 10, ErrorCode.LIMIT_EXCEEDED),
    ]:
        r.send(frame)
        reply = r.recv()
        assert reply["id"] == cid and reply["error"]["code"] == code, (frame[:60], reply)
    assert r.error("subscribe", {"channel": "nope:x"}) == ErrorCode.UNKNOWN_CHANNEL
    assert r.error("subscribe", {"channel": "chat:*"}) == ErrorCode.PERMISSION_DENIED
    assert r.ok("unsubscribe", {"channel": "lobby"}) == {}  # not subscribed: fine (Centrifugo)
    assert r.roundtrip()
    r.send("{not json")
    assert _closed_code(r) == DisconnectCode.BAD_REQUEST  # unreadable: 3501, never an ``id: 0`` reply


def test_close_codes_binary_1003_too_large_1009_unauthorized_3500(any_hub: Any) -> None:
    binary, large, refused = Raw(any_hub.url), Raw(any_hub.url), Raw(any_hub.url)
    binary.ok("connect")
    binary.send(b'{"id": 2, "ping": {}}')
    assert _closed_code(binary) == 1003
    large.ok("connect")
    large.send("x" * (any_hub.config.frame_limit() + 1))
    assert _closed_code(large) == 1009
    assert refused.error("connect", {"token": "abc"}) == ErrorCode.UNAUTHORIZED  # no verifier configured
    assert refused.closed() == (DisconnectCode.UNAUTHORIZED, "unauthorized") and refused.pushes == []
    assert any_hub.wait_sessions(0)


def test_connect_timeout_3502(start_hub: Any) -> None:
    h = start_hub(HubConfig(port=0, limits=HubLimits(connect_timeout=0.2)))
    r = Raw(h.url)  # never sends connect; the hub's once-a-second tick closes it
    assert r.closed() == (DisconnectCode.CONNECT_TIMEOUT, "connect timeout") and r.pushes == []


def test_server_side_publish_unsubscribe_and_disconnect(any_raw: Any, any_hub: Any) -> None:
    a = any_raw(connect=False)
    client_a = a.ok("connect")["client"]
    a.ok("subscribe", {"channel": "chat:s"})
    publication = any_hub.call(any_hub.hub.publish, "chat:s", {"from": "server"}).result()
    assert publication.offset == 1
    assert a.push() == {"channel": "chat:s", "pub": {"offset": 1, "data": {"from": "server"}}}
    conn = any_hub.call(any_hub.hub.connection_of, client_a)
    assert any_hub.call(any_hub.hub.unsubscribe, conn, "chat:s") is True
    assert a.push() == {"channel": "chat:s", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    any_hub.call(any_hub.hub.disconnect, conn, 4321, "bye")
    assert a.closed() == (4321, "bye") and a.pushes == []


def _slow_subscriber(port: int) -> socket.socket:
    """A raw client subscribed to bench:x that reads nothing, with a small receive buffer."""
    return non_reading_client(port, {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "bench:x"}})


def test_slow_subscriber_is_dropped_with_3008_while_a_fast_one_keeps_receiving(start_hub: Any) -> None:
    rates = RateLimits(bytes_per_second=1e12, bytes_burst=1e12)  # the publisher floods on purpose
    h = start_hub(HubConfig(port=0, limits=HubLimits(queue_limit=128 * 1024), rate_limits=rates))
    slow_sock = _slow_subscriber(h.port)
    fast, publisher = Raw(h.url), Raw(h.url)
    fast.ok("connect")
    publisher.ok("connect")
    fast.ok("subscribe", {"channel": "bench:x"})
    while h.call(lambda: sum(len(s.subscriptions) for s in h.hub.sessions.values())) < 2:
        publisher.roundtrip()  # the slow one's subscribe is on its way
    blob = "x" * 32 * 1024
    count = 0
    while h.call(lambda: h.hub.stats.slow_disconnects) == 0:
        publisher.ok("publish", {"channel": "bench:x", "data": blob})
        assert fast.push()["pub"]["data"] == blob  # the fast one reads as it goes: never held back
        count += 1
        assert count < 2000, "the slow subscriber was never dropped"
    data = b""
    close_frame = b"\x88\x06\x0b\xc0slow"  # RFC 6455 §5.5.1: code 3008, reason "slow"
    while close_frame not in data:
        chunk = slow_sock.recv(1 << 20)
        assert chunk, "closed before the close frame"
        data += chunk
    assert b"disconnect" not in data  # no push before the close (Centrifugo)
    publisher.ok("publish", {"channel": "bench:x", "data": "after"})
    assert fast.push()["pub"]["data"] == "after"
    slow_sock.close()
    fast.close()
    publisher.close()


def test_a_closed_connection_is_freed_without_gc(any_hub: Any) -> None:
    """Session, subscriptions and the connection object itself: freed by reference counting alone."""
    r = Raw(any_hub.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:mem"})
    r.ok("subscribe", {"channel": "stock:*"})
    r.ok("publish", {"channel": "chat:mem", "data": 1})
    assert r.push()["pub"]["data"] == 1
    gc.collect()
    gc.disable()
    try:

        def refs() -> list[weakref.ref[Any]]:
            ((conn, session),) = any_hub.hub.sessions.items()
            assert isinstance(session, Session)
            subs = list(session.subscriptions.values())
            assert all(isinstance(s, Subscription) for s in subs) and len(subs) == 2
            return [weakref.ref(conn), weakref.ref(session), *(weakref.ref(s) for s in subs)]

        weak = any_hub.call(refs)
        r.close()
        assert any_hub.wait_sessions(0)
        any_hub.call(lambda: None)  # what the close scheduled in the loop (the writer's end) has run
        assert any_hub.call(lambda: [w() is None for w in weak]) == [True] * 4
        hub = any_hub.hub
        assert any_hub.call(lambda: (hub._channels, hub._patterns, hub._clients, hub._pending)) == (
            {},
            {},
            {},
            {},
        )
        assert any_hub.call(lambda: hub.engine.presence_channel_count) == 0
    finally:
        gc.enable()
