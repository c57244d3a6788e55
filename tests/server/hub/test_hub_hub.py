"""The hub over loopback with real clients: every command and push, limits, slow subscribers, memory."""

from __future__ import annotations

import gc
import json
import weakref
from typing import Any

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.hub import HubLimits
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, NamespaceOptions, Namespaces
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode, HubError
from wsproto_lite.server.errors import ConnectionClosed

from .conftest import HubThread, Raw, non_reading_client


def test_connect_comes_first_and_once(raw: Any) -> None:
    r = raw(connect=False)
    assert r.error("subscribe", {"channel": "chat:a"}) == ErrorCode.BAD_REQUEST
    result = r.ok("connect", {"name": "js", "data": {"name": "ann"}})
    assert set(result) == {"client", "version", "ping", "pong"}
    assert result["client"] and result["ping"] == 25 and result["pong"] is True
    assert r.error("connect") == ErrorCode.BAD_REQUEST
    assert r.roundtrip()


def test_presence_names_that_would_disguise_text_are_refused(raw: Any) -> None:
    r = raw(connect=False)
    reply = r.cmd("connect", {"data": {"name": "ann\u202egnp.exe"}})  # shown as "annexe.png"
    assert reply["error"]["code"] == ErrorCode.BAD_REQUEST
    assert r.error("connect", {"data": {"name": "bob\x1b[2J"}}) == ErrorCode.BAD_REQUEST  # a terminal escape
    assert r.ok("connect", {"data": {"name": "Zoë 👩\u200d💻"}})["client"]
    r.ok("subscribe", {"channel": "chat:names"})
    presence = r.ok("presence", {"channel": "chat:names"})["presence"]
    assert [c["conn_info"] for c in presence.values()] == [{"name": "Zoë 👩\u200d💻"}]


def test_a_token_without_a_verifier_is_refused(raw: Any) -> None:
    r = raw(connect=False)
    assert r.error("connect", {"token": "abc"}) == ErrorCode.UNAUTHORIZED
    assert r.closed() == (DisconnectCode.INVALID_TOKEN, "unauthorized")  # no push: a close, as Centrifugo
    assert r.pushes == []


def test_websocket_paths(hub: HubThread) -> None:
    from wsproto_lite.server.client import connect
    from wsproto_lite.server.errors import HandshakeError

    for path in ("/connection/websocket", "/ws"):
        with connect(f"ws://127.0.0.1:{hub.hub_server.port}{path}") as ws:
            ws.send('{"id":1,"connect":{}}')
            assert str(ws.recv(timeout=5)).startswith('{"id":1,"connect":{"client":')
    with pytest.raises(HandshakeError) as info:
        connect(f"ws://127.0.0.1:{hub.hub_server.port}/other")
    assert info.value.status == 404


def test_publish_reaches_subscribers_with_offset_and_info(raw: Any) -> None:
    a, b = raw("a"), raw("b")
    sub = a.ok("subscribe", {"channel": "chat:room", "recoverable": True})
    assert sub["recoverable"] is True and sub["positioned"] is True and sub["offset"] == 0 and sub["epoch"]
    assert "recoverable" not in b.ok("subscribe", {"channel": "chat:other"})  # only when asked
    published = b.ok("publish", {"channel": "chat:room", "data": {"text": "hi", "n": [1, 2]}})
    assert published == {"offset": 1, "epoch": sub["epoch"]}
    push = a.push()
    assert set(push) == {"channel", "pub"} and push["channel"] == "chat:room" and push["pub"]["offset"] == 1
    assert push["pub"]["data"] == {"text": "hi", "n": [1, 2]}
    info = push["pub"]["info"]
    assert info == {"user": "", "client": info["client"], "conn_info": {"name": "b"}} and info["client"]


def test_no_history_namespace_has_no_offsets(raw: Any) -> None:
    a = raw()
    sub = a.ok("subscribe", {"channel": "bench:x", "recoverable": True, "positioned": True})
    assert sub == {}
    assert a.ok("publish", {"channel": "bench:x", "data": 1}) == {}
    push = a.push()
    assert push == {"channel": "bench:x", "pub": {"data": 1, "info": push["pub"]["info"]}}
    assert a.error("history", {"channel": "bench:x"}) == ErrorCode.NOT_AVAILABLE
    assert a.error("presence", {"channel": "bench:x"}) == ErrorCode.NOT_AVAILABLE
    assert a.error("presence_stats", {"channel": "bench:x"}) == ErrorCode.NOT_AVAILABLE


def test_subscribe_errors_and_unsubscribe(raw: Any) -> None:
    a = raw()
    assert a.error("subscribe", {"channel": "nope:x"}) == ErrorCode.UNKNOWN_CHANNEL
    assert a.error("subscribe", {"channel": "chat:*"}) == ErrorCode.PERMISSION_DENIED
    assert a.error("subscribe", {"channel": 5}) == ErrorCode.BAD_REQUEST
    assert a.error("subscribe", {"channel": "chat:a b"}) == ErrorCode.BAD_REQUEST
    assert a.error("subscribe", {}) == ErrorCode.BAD_REQUEST
    a.ok("subscribe", {"channel": "lobby"})
    assert a.error("subscribe", {"channel": "lobby"}) == ErrorCode.ALREADY_SUBSCRIBED
    assert a.ok("unsubscribe", {"channel": "lobby"}) == {}
    assert a.ok("unsubscribe", {"channel": "lobby"}) == {}  # not subscribed: still {} (Centrifugo)
    a.ok("publish", {"channel": "lobby", "data": "after"})
    a.ok("subscribe", {"channel": "lobby"})
    a.ok("publish", {"channel": "lobby", "data": "again"})
    assert a.push()["pub"]["data"] == "again"  # nothing arrived while unsubscribed


def test_publish_errors(hub: HubThread) -> None:
    names = Namespaces({**DEFAULT_NAMESPACES, "news": NamespaceOptions(history_size=5, history_ttl=60)})
    hub.stop()
    h = HubThread(HubConfig(port=0, namespaces=names))
    try:
        r = Raw(h.url)
        r.ok("connect")
        assert r.error("publish", {"channel": "news:x", "data": 1}) == ErrorCode.PERMISSION_DENIED
        assert r.error("publish", {"channel": "chat:x"}) == ErrorCode.BAD_REQUEST  # no data
        assert r.error("publish", {"channel": "stock:*", "data": 1}) == ErrorCode.BAD_REQUEST
        assert r.ok("publish", {"channel": "chat:x", "data": None})["offset"] == 1
        r.close()
    finally:
        h.stop()


def test_limit_of_subscriptions_per_connection() -> None:
    h = HubThread(HubConfig(port=0, limits=HubLimits(max_channels_per_connection=3)))
    try:
        r = Raw(h.url)
        r.ok("connect")
        for i in range(3):
            r.ok("subscribe", {"channel": f"c{i}"})
        assert r.error("subscribe", {"channel": "c3"}) == ErrorCode.LIMIT_EXCEEDED
        r.close()
    finally:
        h.stop()


def test_wildcard_delivery(raw: Any) -> None:
    watcher, exact, publisher = raw(), raw(), raw()
    assert "recoverable" not in watcher.ok("subscribe", {"channel": "stock:*", "recoverable": True})
    watcher.ok("subscribe", {"channel": "stock:US.*"})
    exact.ok("subscribe", {"channel": "stock:AAPL"})
    publisher.ok("publish", {"channel": "stock:AAPL", "data": {"p": 1}})
    publisher.ok("publish", {"channel": "stock:US.IBM", "data": {"p": 2}})
    publisher.ok("publish", {"channel": "chat:x", "data": {"p": 3}})  # another namespace: not delivered
    got = exact.push()
    assert got["channel"] == "stock:AAPL" and "channel" not in got["pub"] and got["pub"]["offset"] == 1
    # through a wildcard: the push names the subscription (the pattern), the publication its channel
    seen = [(p["channel"], p["pub"]["channel"], p["pub"]["data"]) for p in (watcher.push() for _ in range(3))]
    assert [(pattern, channel, data["p"]) for pattern, channel, data in seen] == [
        ("stock:*", "stock:AAPL", 1),
        ("stock:*", "stock:US.IBM", 2),
        ("stock:US.*", "stock:US.IBM", 2),
    ] or sorted((pattern, channel) for pattern, channel, _ in seen) == sorted(
        [("stock:*", "stock:AAPL"), ("stock:*", "stock:US.IBM"), ("stock:US.*", "stock:US.IBM")]
    )
    assert watcher.error("subscribe", {"channel": "stock:*", "recover": True, "epoch": "x", "offset": 0}) in (
        ErrorCode.ALREADY_SUBSCRIBED,
        ErrorCode.BAD_REQUEST,
    )
    watcher.ok("unsubscribe", {"channel": "stock:*"})
    watcher.ok("unsubscribe", {"channel": "stock:US.*"})
    publisher.ok("publish", {"channel": "stock:US.X", "data": 4})
    watcher.ok("subscribe", {"channel": "chat:marker"})
    publisher.ok("publish", {"channel": "chat:marker", "data": "m"})
    assert watcher.push()["pub"]["data"] == "m"  # nothing from the patterns it left


def _users(token: str, request: object) -> str:
    if not token.startswith("user:"):
        raise HubError(ErrorCode.UNAUTHORIZED, "bad token")
    return token[5:]


def test_presence_one_user_on_two_connections() -> None:
    h = HubThread(authenticate=_users)
    clients: list[Raw] = []
    try:

        def join(user: str, name: str) -> tuple[Raw, str]:
            r = Raw(h.url)
            clients.append(r)
            client = r.ok("connect", {"token": f"user:{user}", "data": {"name": name}})["client"]
            r.ok("subscribe", {"channel": "chat:team"})
            return r, client

        alice1, a1 = join("alice", "Alice (laptop)")
        alice2, a2 = join("alice", "Alice (phone)")
        assert alice1.push() == {
            "channel": "chat:team",
            "join": {"info": {"client": a2, "user": "alice", "conn_info": {"name": "Alice (phone)"}}},
        }
        bob, b = join("bob", "Bob")
        assert alice1.push()["join"]["info"]["client"] == b and alice2.push()["join"]["info"]["client"] == b
        presence = bob.ok("presence", {"channel": "chat:team"})["presence"]
        assert presence == {
            a1: {"client": a1, "user": "alice", "conn_info": {"name": "Alice (laptop)"}},
            a2: {"client": a2, "user": "alice", "conn_info": {"name": "Alice (phone)"}},
            b: {"client": b, "user": "bob", "conn_info": {"name": "Bob"}},
        }
        assert bob.ok("presence_stats", {"channel": "chat:team"}) == {"num_clients": 3, "num_users": 2}
        alice2.ok("unsubscribe", {"channel": "chat:team"})
        leave = bob.push()
        assert leave["leave"]["info"]["client"] == a2
        assert bob.ok("presence_stats", {"channel": "chat:team"}) == {"num_clients": 2, "num_users": 2}
        alice1.close()  # a closed connection leaves too
        assert bob.push()["leave"]["info"]["client"] == a1
        assert bob.ok("presence_stats", {"channel": "chat:team"}) == {"num_clients": 1, "num_users": 1}
        assert bob.ok("presence_stats", {"channel": "chat:empty"}) == {"num_clients": 0, "num_users": 0}
    finally:
        for r in clients:
            r.close()
        h.stop()


def test_history_limit_since_reverse(raw: Any) -> None:
    a = raw()
    epoch = a.ok("subscribe", {"channel": "chat:h"})["epoch"]
    for i in range(1, 6):
        a.ok("publish", {"channel": "chat:h", "data": i})
    position = a.ok("history", {"channel": "chat:h"})  # no limit: the position only (Centrifugo)
    assert position == {"publications": [], "offset": 5, "epoch": epoch}
    everything = a.ok("history", {"channel": "chat:h", "limit": -1})
    assert [p["data"] for p in everything["publications"]] == [1, 2, 3, 4, 5]
    assert everything["offset"] == 5 and everything["epoch"] == epoch
    # without ``since``: the oldest first (centrifuge internal/memstream Get)
    assert [p["offset"] for p in a.ok("history", {"channel": "chat:h", "limit": 2})["publications"]] == [1, 2]
    assert [
        p["data"] for p in a.ok("history", {"channel": "chat:h", "limit": 2, "reverse": True})["publications"]
    ] == [5, 4]
    since = {"epoch": epoch, "offset": 3}
    after = a.ok("history", {"channel": "chat:h", "since": since, "limit": -1})["publications"]
    assert [p["data"] for p in after] == [4, 5]
    backwards = a.ok("history", {"channel": "chat:h", "since": since, "reverse": True, "limit": -1})[
        "publications"
    ]
    assert [p["data"] for p in backwards] == [2, 1]
    assert a.ok("history", {"channel": "chat:h", "limit": 0})["publications"] == []
    assert (
        a.error("history", {"channel": "chat:h", "since": {"epoch": "other", "offset": 1}, "limit": 9}) == 112
    )
    assert (
        a.error("history", {"channel": "chat:h", "since": {"epoch": epoch, "offset": 9}, "limit": 9}) == 112
    )
    assert a.error("history", {"channel": "chat:h", "limit": -2}) == ErrorCode.BAD_REQUEST
    assert a.error("history", {"channel": "chat:h", "reverse": "yes"}) == ErrorCode.BAD_REQUEST
    assert a.error("history", {"channel": "chat:h", "since": {"offset": 1}}) == ErrorCode.BAD_REQUEST


def _recover(channel: str, epoch: str, offset: int) -> dict[str, Any]:
    """A subscribe that recovers, as the SDKs send it (flat fields)."""
    return {"channel": channel, "recoverable": True, "recover": True, "epoch": epoch, "offset": offset}


def _small_history_hub() -> HubThread:
    names = Namespaces(
        {**DEFAULT_NAMESPACES, "tiny": NamespaceOptions(history_size=3, history_ttl=60, allow_publish=True)}
    )
    return HubThread(HubConfig(port=0, namespaces=names))


def test_recovery_with_and_without_the_gap_held() -> None:
    h = _small_history_hub()
    try:
        away, publisher = Raw(h.url), Raw(h.url)
        away.ok("connect")
        publisher.ok("connect")
        start = away.ok("subscribe", {"channel": "tiny:t", "recoverable": True})
        publisher.ok("publish", {"channel": "tiny:t", "data": 1})
        assert away.push()["pub"]["offset"] == 1
        away.close()  # gone; two publications while away: both still held
        publisher.ok("publish", {"channel": "tiny:t", "data": 2})
        publisher.ok("publish", {"channel": "tiny:t", "data": 3})
        back = Raw(h.url)
        back.ok("connect")
        got = back.ok("subscribe", _recover("tiny:t", start["epoch"], 1))
        assert got["recovered"] is True and got["offset"] == 3 and got["epoch"] == start["epoch"]
        assert got["was_recovering"] is True and got["recoverable"] is True
        assert [p["data"] for p in got["publications"]] == [2, 3]
        assert all("channel" not in p and "info" in p for p in got["publications"])
        # up to date: nothing to recover is still a full recovery
        again = Raw(h.url)
        again.ok("connect")
        same = again.ok("subscribe", _recover("tiny:t", start["epoch"], 3))
        assert same["recovered"] is True and same["publications"] == []
        # four more: offsets 4..7, only 5..7 held; a client at offset 3 missed 4
        for i in range(4, 8):
            publisher.ok("publish", {"channel": "tiny:t", "data": i})
        late = Raw(h.url)
        late.ok("connect")
        lost = late.ok("subscribe", _recover("tiny:t", start["epoch"], 3))
        assert "recovered" not in lost and lost["was_recovering"] is True and lost["offset"] == 7
        assert "publications" not in lost  # Centrifugo sends publications only when recovered
        # flag 2 (centrifuge-js with getState): 112 rather than a gap
        assert late.error("subscribe", {**_recover("tiny:t2", start["epoch"], 3), "flag": 3}) == 112
        wrong = Raw(h.url)
        wrong.ok("connect")
        other = wrong.ok("subscribe", _recover("tiny:t", "0000", 3))
        assert other.get("recovered", False) is False and "publications" not in other
        for r in (publisher, back, again, late, wrong):
            r.close()
    finally:
        h.stop()


def test_recovery_after_a_restart_reports_a_new_epoch(hub: HubThread) -> None:
    a = Raw(hub.url)
    a.ok("connect")
    before = a.ok("subscribe", {"channel": "chat:r", "recoverable": True})
    a.ok("publish", {"channel": "chat:r", "data": "old"})
    assert a.push()["pub"]["offset"] == 1
    hub.restart()
    assert a.closed() == (DisconnectCode.SHUTDOWN, "shutdown")  # 3001: reconnect
    assert a.pushes == []
    b = Raw(hub.url)
    b.ok("connect")
    after = b.ok("subscribe", _recover("chat:r", before["epoch"], 1))
    assert "recovered" not in after and after["epoch"] != before["epoch"] and "publications" not in after
    b.close()


def test_bad_commands_get_errors_and_the_connection_lives(raw: Any) -> None:
    r = raw()
    cases: list[tuple[str, int, int]] = [
        ('{"id": 7, "method": 3}', 7, ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 8, "fly": {}}', 8, ErrorCode.METHOD_NOT_FOUND),
        ('{"id": 9, "subscribe": []}', 9, ErrorCode.BAD_REQUEST),
        ('{"id": 11, "subscribe": {"channel": "chat:x", "recover": 5}}', 11, ErrorCode.BAD_REQUEST),
        ('{"id": 12, "history": {"channel": "chat:x", "limit": "all"}}', 12, ErrorCode.BAD_REQUEST),
        ('{"id": 13, "connect": {}}', 13, ErrorCode.BAD_REQUEST),  # connected already
        ('{"id": 14, "rpc": {"method": "m"}}', 14, ErrorCode.NOT_AVAILABLE),  # no RPC handler
        ('{"id": 15, "ping": {"pad": "' + "x" * (64 * 1024) + '"}}', 15, ErrorCode.LIMIT_EXCEEDED),
    ]
    for frame, cid, code in cases:
        r.send(frame)
        reply = r.recv()
        assert reply["id"] == cid and reply["error"]["code"] == code, (frame[:60], reply)
    r.send('{"send": {"data": "nobody handles it"}}')  # no reply to a send
    assert r.roundtrip()


@pytest.mark.parametrize(
    "frame",
    [
        "{not json",
        "[1, 2]",
        '"text"',
        '{"ping": {}}',  # a command without an id
        '{"id": -1, "ping": {}}',
        '{"id": true, "ping": {}}',
        '{"id": 1.5, "ping": {}}',
        '{"id": 10, "publish": {"channel": "chat:x", "data": NaN}}',
        "[" * 60_000,
        '{"id": 1' + "0" * 5000 + "}",
        "x" * (64 * 1024 + 1),
        '{"id": 1, "ping": {}}\n\n{"id": 2, "ping": {}}',
    ],
    ids=lambda frame: frame[:24],
)
def test_an_unreadable_frame_closes_3501_without_an_id_0_reply(raw: Any, frame: str) -> None:
    """Centrifugo's client.go: a frame that is not commands is a bad request: close 3501.  Never an error
    reply with ``id: 0`` (the SDKs would take a reply without an id for a ping)."""
    r = raw()
    r.send(frame)
    code, _ = r.closed()
    assert code == DisconnectCode.BAD_REQUEST and r.pushes == []


def test_a_batch_gets_one_reply_per_command_in_order(raw: Any) -> None:
    r = raw(connect=False)
    r.send('{"connect":{"name":"js"},"id":1}\n{"subscribe":{"channel":"chat:batch","flag":1},"id":2}\n')
    assert "client" in r.reply(1)["connect"]
    assert r.reply(2)["subscribe"] == {
        "epoch": r.ok("history", {"channel": "chat:batch"})["epoch"],
        "offset": 0,
    }


def test_a_lone_surrogate_is_refused_and_cannot_poison_a_channel(raw: Any) -> None:
    a, b = raw(connect=False), raw()
    a.send('{"id": 1, "connect": {"data": {"name": "\\ud800"}}}')
    assert a.closed()[0] == DisconnectCode.BAD_REQUEST  # a lone surrogate: not I-JSON, the frame is refused
    a = raw(connect=False)
    a.ok("connect", {"data": {"name": "\U0001f600"}})  # an escaped pair is an emoji: fine
    b.ok("subscribe", {"channel": "chat:lone"})
    a.ok("publish", {"channel": "chat:lone", "data": "\U0001f600"})
    assert b.push()["pub"]["data"] == "\U0001f600"
    history = b.ok("history", {"channel": "chat:lone", "limit": -1})["publications"]
    assert [p["data"] for p in history] == ["\U0001f600"]
    a.send(json.dumps({"id": 9, "publish": {"channel": "chat:lone", "data": ["ok", "\udfff"]}}))
    assert a.closed()[0] == DisconnectCode.BAD_REQUEST


def test_a_frame_over_the_io_limit_is_closed_1009(hub: HubThread) -> None:
    r = Raw(hub.url)
    r.ok("connect")
    r.send("x" * (hub.config.frame_limit() + 1))
    with pytest.raises(ConnectionClosed) as closed:
        r.recv()
    assert closed.value.code == 1009


def test_binary_frames_are_closed_1003(raw: Any, hub: HubThread) -> None:
    r, other = raw(), raw()
    r.ok("subscribe", {"channel": "chat:b"})
    other.ok("subscribe", {"channel": "chat:b"})
    assert "join" in r.push()
    r.send(b'{"id": 1, "ping": {}}')
    with pytest.raises(ConnectionClosed) as closed:
        r.recv()
    assert closed.value.code == 1003
    assert "leave" in other.push()  # it was cleaned up at once
    assert other.roundtrip()


def test_slow_subscriber_is_dropped_while_a_fast_one_keeps_receiving() -> None:
    limit = 128 * 1024
    # the publisher floods on purpose: no byte-rate limit in the way (limits.py has its own tests)
    rates = RateLimits(bytes_per_second=1e12, bytes_burst=1e12)
    h = HubThread(HubConfig(port=0, limits=HubLimits(queue_limit=limit), rate_limits=rates))
    try:
        # the slow client reads nothing and keeps its receive buffer small, so the hub's queue fills
        slow_sock = non_reading_client(
            h.hub_server.port, {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "bench:x"}}
        )
        fast, publisher = Raw(h.url), Raw(h.url)
        fast.ok("connect")
        publisher.ok("connect")
        fast.ok("subscribe", {"channel": "bench:x"})
        h.call(lambda: None)
        assert h.call(lambda: sum(len(s.subscriptions) for s in h.hub.sessions.values())) == 2
        blob = "x" * 32 * 1024
        count = 0
        while h.call(lambda: h.hub.stats.slow_disconnects) == 0:
            publisher.ok("publish", {"channel": "bench:x", "data": blob})
            assert fast.push()["pub"]["data"] == blob  # the fast one reads as it goes: never held back
            count += 1
            assert count < 2000, "the slow subscriber was never dropped"
        print("publications until the slow one was dropped:", count)
        # at once: the slow one holds no subscription any more
        assert h.call(lambda: list(h.hub._channels["bench:x"].by_conn)) == [
            c for c, s in h.call(lambda: list(h.hub.sessions.items())) if s.subscriptions
        ]
        # what the slow one reads once it wakes up: publications, then close 3008 (no push: Centrifugo)
        data = b""
        close_frame = b"\x88\x06\x0b\xc0slow"  # RFC 6455 §5.5.1: code 3008, reason "slow"
        while close_frame not in data:
            chunk = slow_sock.recv(1 << 20)
            assert chunk, "closed before the close frame"
            data += chunk
        assert b"disconnect" not in data
        publisher.ok("publish", {"channel": "bench:x", "data": "after"})
        assert fast.push()["pub"]["data"] == "after"
        slow_sock.close()
        fast.close()
        publisher.close()
    finally:
        h.stop()


def test_sessions_and_subscriptions_are_freed_at_close_without_gc(hub: HubThread) -> None:
    from wsproto_lite.hub.hub import Session, Subscription

    r = Raw(hub.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:mem"})
    r.ok("subscribe", {"channel": "stock:*"})
    gc.disable()
    try:

        def refs() -> list[weakref.ref[Any]]:
            (session,) = hub.hub.sessions.values()
            assert isinstance(session, Session)
            subs = list(session.subscriptions.values())
            assert all(isinstance(s, Subscription) for s in subs) and len(subs) == 2
            return [weakref.ref(session), *(weakref.ref(s) for s in subs)]

        weak = hub.call(refs)
        r.close()
        assert hub.wait_sessions(0)
        assert hub.call(lambda: [w() is None for w in weak]) == [True, True, True]
        assert hub.call(lambda: (hub.hub._channels, hub.hub._patterns, hub.hub._clients)) == ({}, {}, {})
        assert hub.call(lambda: hub.hub.engine.presence_channel_count) == 0
    finally:
        gc.enable()


def test_an_engine_failure_is_error_100_and_the_connection_lives() -> None:
    from wsproto_lite.hub.memory import MemoryEngine

    class Broken(MemoryEngine):
        def publish(self, channel: str, data_json: str, info_json: str | None, options: Any) -> Any:
            raise RuntimeError("backend down")

    h = HubThread(engine=Broken)
    try:
        r = Raw(h.url)
        r.ok("connect")
        reply = r.cmd("publish", {"channel": "chat:x", "data": 1})
        assert reply["error"] == {"code": 100, "message": "internal error", "temporary": True}
        assert r.roundtrip()
        r.close()
    finally:
        h.stop()


def test_server_side_publish_and_unsubscribe(raw: Any, hub: HubThread) -> None:
    a, b = raw(connect=False), raw()
    client_a = a.ok("connect")["client"]
    a.ok("subscribe", {"channel": "chat:s"})
    b.ok("subscribe", {"channel": "chat:s"})
    assert "join" in a.push()
    publication = hub.call(hub.hub.publish, "chat:s", {"from": "server"}).result()
    assert publication.offset == 1
    push = a.push()
    assert push == {"channel": "chat:s", "pub": {"offset": 1, "data": {"from": "server"}}}  # no info
    with pytest.raises(HubError):
        hub.call(hub.hub.publish, "nope:x", 1)
    with pytest.raises(HubError):
        hub.call(hub.hub.publish, "chat:s", object())
    conn = hub.call(hub.hub.connection_of, client_a)
    assert hub.call(hub.hub.unsubscribe, conn, "chat:s") is True
    assert a.push() == {"channel": "chat:s", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    assert "pub" in b.push() and "leave" in b.push()
    assert hub.call(hub.hub.unsubscribe, conn, "chat:s") is False
    assert a.ok("unsubscribe", {"channel": "chat:s"}) == {}
    assert hub.call(hub.hub.connection_of, "nobody") is None
