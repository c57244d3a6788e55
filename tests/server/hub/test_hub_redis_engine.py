"""redis_engine.py with a real redis-server: hub nodes that share channels, presence and history.

Each node is a HubServer in its own loop thread with its own RedisEngine (own connections),
so two nodes in one test process talk only through Redis, like two machines.  Process-level tests
(SIGKILL, --workers) are in test_hub_supervisor.py.
"""

from __future__ import annotations

import gc
import json
import secrets
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsproto_lite.hub.auth import AuthConfig
from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.engine import Reply
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, Namespaces
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode, HubError

from .authkit import opened
from .conftest import HubThread, Raw
from .redis_util import RedisServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


Nodes = Callable[..., HubThread]


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[Nodes]:
    """``nodes(url=None, **engine options)``: a hub node on the test's own key prefix."""
    from wsproto_lite.hub.redis_engine import RedisEngine

    prefix = "t" + secrets.token_hex(4)
    made: list[HubThread] = []

    def make(url: str | None = None, **options: Any) -> HubThread:
        # an API key for the HTTP API; anonymous clients publishing in the built-in namespaces
        namespaces = Namespaces(opened(DEFAULT_NAMESPACES, anonymous=True))
        config = HubConfig(port=0, auth=AuthConfig(api_keys=(API_KEY,)), namespaces=namespaces)
        node = HubThread(
            config, engine=lambda: RedisEngine(url or redis_server.url, prefix=prefix, **options)
        )
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Raw]]:
    made: list[Raw] = []

    def make(node: HubThread, name: str = "") -> Raw:
        r = Raw(node.url)
        made.append(r)
        r.ok("connect", {"data": {"name": name}} if name else {})
        return r

    yield make
    for r in made:
        r.close()


API_KEY = "k-redis-" + secrets.token_hex(8)


def _http(node: HubThread, path: str, params: Any = None, method: str = "POST") -> tuple[int, Any]:
    """A request to the node's HTTP side; the API's parameters as a JSON body."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{node.hub_server.port}{path}",
        data=None if params is None else json.dumps(params).encode(),
        method=method,
        headers={"Authorization": f"apikey {API_KEY}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, body, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, body, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    return status, json.loads(body) if kind.startswith("application/json") else body.decode()


def _pubs(r: Raw, until_offset: int) -> list[int]:
    """Offsets of the ``pub`` pushes ``r`` gets, up to and including ``until_offset`` (joins skipped)."""
    seen: list[int] = []
    while not seen or seen[-1] < until_offset:
        push = r.push()
        if "join" in push or "leave" in push:
            continue
        assert "pub" in push, push
        seen.append(push["pub"]["offset"])
    return seen


def test_a_publish_on_one_node_reaches_every_node_once_in_order(nodes: Nodes, clients: Any) -> None:
    a, b = nodes(), nodes()
    on_b, on_a = clients(b), clients(a)
    sub = on_b.ok("subscribe", {"channel": "chat:x"})
    assert sub["offset"] == 0 and sub["epoch"]
    on_a.ok("subscribe", {"channel": "chat:x"})
    publisher = clients(a)
    for i in range(1, 51):
        assert publisher.ok("publish", {"channel": "chat:x", "data": i}) == {
            "offset": i,
            "epoch": sub["epoch"],
        }
    expected = list(range(1, 51))
    assert _pubs(on_b, 50) == expected  # every one, once, in order
    assert _pubs(on_a, 50) == expected
    # nothing doubled behind them: the next push is the next publication
    publisher.ok("publish", {"channel": "chat:x", "data": "last"})
    assert on_b.push()["pub"]["offset"] == 51


def test_no_history_channels_and_wildcards_across_nodes(nodes: Nodes, clients: Any) -> None:
    a, b = nodes(), nodes()
    watcher = clients(b)
    watcher.ok("subscribe", {"channel": "stock:*"})
    watcher.ok("subscribe", {"channel": "stock:AAPL"})
    plain = clients(b)
    plain.ok("subscribe", {"channel": "bench:b"})
    publisher = clients(a)
    publisher.ok("publish", {"channel": "stock:AAPL", "data": 1})
    publisher.ok("publish", {"channel": "bench:b", "data": "x"})
    push = plain.push()
    assert push == {"channel": "bench:b", "pub": {"data": "x", "info": push["pub"]["info"]}}  # no offset
    got = [watcher.push(), watcher.push()]
    assert sorted(p["channel"] for p in got) == ["stock:*", "stock:AAPL"]  # once per subscription
    publisher.ok("publish", {"channel": "stock:MSFT", "data": 2})
    nxt = watcher.push()
    assert nxt["channel"] == "stock:*" and nxt["pub"]["channel"] == "stock:MSFT"  # no third AAPL before it


def test_server_side_publish_on_node_a_reaches_node_b(nodes: Nodes, clients: Any) -> None:
    a, b = nodes(), nodes()
    on_b = clients(b)
    on_b.ok("subscribe", {"channel": "chat:api"})
    reply = a.call(a.hub.publish, "chat:api", {"from": "server"})
    assert isinstance(reply, Reply)
    push = on_b.push()
    assert push == {"channel": "chat:api", "pub": {"offset": 1, "data": {"from": "server"}}}
    resolved = threading.Event()
    a.call(reply.observe, lambda done: resolved.set())
    assert resolved.wait(5) and reply.result().offset == 1
    with pytest.raises(HubError):
        a.call(a.hub.publish, "nope:x", 1)


def test_http_api_answers_once_redis_has(nodes: Nodes, clients: Any) -> None:
    """The API on node A with the Redis engine: each answer is deferred until Redis replied."""
    a, b = nodes(), nodes()
    on_b = clients(b, "bea")
    sub = on_b.ok("subscribe", {"channel": "chat:h"})
    status, result = _http(a, "/api/publish", {"channel": "chat:h", "data": {"n": 1}})
    assert (status, result) == (200, {"result": {"offset": 1, "epoch": sub["epoch"]}})
    assert on_b.push() == {"channel": "chat:h", "pub": {"offset": 1, "data": {"n": 1}}}
    status, result = _http(a, "/api/broadcast", {"channels": ["chat:h", "nope:x", "bench:h"], "data": 2})
    assert status == 200
    responses = result["result"]["responses"]
    assert responses[0] == {"result": {"offset": 2, "epoch": sub["epoch"]}} and responses[2] == {"result": {}}
    assert responses[1]["error"]["code"] == ErrorCode.UNKNOWN_CHANNEL
    assert on_b.push()["pub"]["offset"] == 2
    status, result = _http(a, "/api/presence", {"channel": "chat:h"})  # b's subscriber, seen from a
    presence = result["result"]["presence"].values()
    assert status == 200 and [c["conn_info"]["name"] for c in presence] == ["bea"]
    status, result = _http(a, "/api/history", {"channel": "chat:h", "limit": 10})
    assert status == 200 and [p["offset"] for p in result["result"]["publications"]] == [1, 2]
    status, text = _http(a, "/metrics", method="GET")
    assert status == 200 and 'wsproto_hub_engine_up{engine="redis"} 1\n' in text
    assert "wsproto_hub_engine_lost_events_total 0\n" in text
    assert _http(a, "/healthz", method="GET") == (200, "ok\n")


def test_history_remove_deletes_the_list_and_keeps_the_meta(nodes: Nodes, clients: Any) -> None:
    """centrifuge broker_redis.go ``removeHistory``: ``DEL`` of the stream key; the meta key (epoch, top)
    stays, so numbering continues and a recovery across the removed ones is not recovered."""
    a, b = nodes(), nodes()
    reader = clients(a)
    sub = reader.ok("subscribe", {"channel": "chat:rm"})
    for n in (1, 2):
        _http(b, "/api/publish", {"channel": "chat:rm", "data": n})
    assert _http(b, "/api/history_remove", {"channel": "chat:rm"}) == (200, {"result": {}})
    status, result = _http(a, "/api/history", {"channel": "chat:rm", "limit": -1})
    assert result["result"] == {"publications": [], "epoch": sub["epoch"], "offset": 2}
    assert _http(a, "/api/publish", {"channel": "chat:rm", "data": 3})[1]["result"]["offset"] == 3
    assert _pubs(reader, 3) == [1, 2, 3]
    back = clients(b)
    gap = back.ok("subscribe", {"channel": "chat:rm", "recover": True, "epoch": sub["epoch"], "offset": 1})
    assert "recovered" not in gap and gap["was_recovering"] is True and gap["offset"] == 3


def test_tags_cross_nodes_in_pushes_history_and_recovery(nodes: Nodes, clients: Any) -> None:
    """Publication ``tags`` through Redis: the stored entry and the pub/sub message carry them, with and
    without history."""
    a, b = nodes(), nodes()
    reader = clients(a)
    sub = reader.ok("subscribe", {"channel": "chat:tg"})
    reader.ok("subscribe", {"channel": "bench:tg"})  # no history: the publish-only path
    tags = {"kind": "news"}
    _http(b, "/api/publish", {"channel": "chat:tg", "data": 1, "tags": tags})
    assert reader.push() == {"channel": "chat:tg", "pub": {"data": 1, "offset": 1, "tags": tags}}
    _http(b, "/api/publish", {"channel": "bench:tg", "data": 2, "tags": tags})
    assert reader.push() == {"channel": "bench:tg", "pub": {"data": 2, "tags": tags}}
    _http(b, "/api/publish", {"channel": "chat:tg", "data": 3})
    assert "tags" not in reader.push()["pub"]
    history = _http(a, "/api/history", {"channel": "chat:tg", "limit": -1})[1]["result"]
    assert [p.get("tags") for p in history["publications"]] == [tags, None]
    back = clients(b)
    got = back.ok("subscribe", {"channel": "chat:tg", "recover": True, "epoch": sub["epoch"], "offset": 0})
    assert got["recovered"] is True and got["publications"][0] == {"data": 1, "offset": 1, "tags": tags}


def test_recovery_after_reconnecting_to_another_node(nodes: Nodes, clients: Any) -> None:
    a, b = nodes(), nodes()
    reader = clients(a)
    sub = reader.ok("subscribe", {"channel": "chat:r"})
    publisher = clients(b)
    publisher.ok("publish", {"channel": "chat:r", "data": 1})
    assert _pubs(reader, 1) == [1]
    reader.close()
    for i in (2, 3, 4):
        publisher.ok("publish", {"channel": "chat:r", "data": i})
    back = clients(b)  # the other node
    result = back.ok("subscribe", {"channel": "chat:r", "recover": True, "epoch": sub["epoch"], "offset": 1})
    assert result["recovered"] is True and result["epoch"] == sub["epoch"] and result["offset"] == 4
    assert [p["data"] for p in result["publications"]] == [2, 3, 4]
    since = {"epoch": sub["epoch"], "offset": 2}
    history = clients(a).ok("history", {"channel": "chat:r", "since": since, "limit": -1})
    assert [p["offset"] for p in history["publications"]] == [3, 4]
    other = {"epoch": "other", "offset": 1}
    assert clients(a).error("history", {"channel": "chat:r", "since": other, "limit": -1}) == 112
    publisher.ok("publish", {"channel": "chat:r", "data": 5})
    assert _pubs(back, 5) == [5]  # live after the recovered ones, nothing doubled


def test_history_is_trimmed_to_the_namespace_size(nodes: Nodes, clients: Any) -> None:
    a = nodes()
    c = clients(a)
    for i in range(15):
        c.ok("publish", {"channel": "stock:T", "data": i})  # stock keeps 10
    result = c.ok("history", {"channel": "stock:T", "limit": -1})
    assert [p["offset"] for p in result["publications"]] == list(range(6, 16)) and result["offset"] == 15
    assert [p["offset"] for p in c.ok("history", {"channel": "stock:T", "limit": 2})["publications"]] == [
        6,
        7,
    ]
    gap = c.ok("subscribe", {"channel": "stock:T", "recover": True, "epoch": result["epoch"], "offset": 2})
    assert "recovered" not in gap and gap["was_recovering"] is True and "publications" not in gap


def test_presence_and_join_leave_across_nodes(nodes: Nodes, clients: Any) -> None:
    a, b = nodes(), nodes()
    ann = clients(a, "ann")
    ann.ok("subscribe", {"channel": "chat:p"})
    bob = clients(b, "bob")
    bob.ok("subscribe", {"channel": "chat:p"})
    join = ann.push()
    assert join["join"]["info"]["conn_info"] == {"name": "bob"}  # from the other node
    carl = clients(a, "carl")
    carl.ok("subscribe", {"channel": "chat:p"})
    join = bob.push()
    assert join["join"]["info"]["conn_info"] == {"name": "carl"}
    names = {v["conn_info"]["name"] for v in bob.ok("presence", {"channel": "chat:p"})["presence"].values()}
    assert names == {"ann", "bob", "carl"}
    assert bob.ok("presence_stats", {"channel": "chat:p"}) == {"num_clients": 3, "num_users": 3}
    carl.close()
    leave = bob.push()
    assert leave["leave"]["info"]["conn_info"] == {"name": "carl"}
    assert ann.ok("presence_stats", {"channel": "chat:p"}) == {"num_clients": 2, "num_users": 2}


def test_redis_stopped_and_restarted_mid_traffic(nodes: Nodes, clients: Any) -> None:
    server = RedisServer()  # this test's own: it stops it
    try:
        a = nodes(server.url)
        reader, publisher = clients(a), clients(a)
        sub = reader.ok("subscribe", {"channel": "chat:f"})
        for i in range(1, 4):
            publisher.ok("publish", {"channel": "chat:f", "data": i})
        assert _pubs(reader, 3) == [1, 2, 3]
        health = f"http://127.0.0.1:{a.hub_server.port}/health"
        server.stop()
        # the node lives on: commands fail as temporarily unavailable, the health check says why
        reply = publisher.cmd("publish", {"channel": "chat:f", "data": 4})
        assert reply["error"]["code"] == ErrorCode.NOT_AVAILABLE and reply["error"]["temporary"] is True
        assert publisher.roundtrip()
        assert publisher.error("subscribe", {"channel": "chat:new"}) == ErrorCode.NOT_AVAILABLE  # no hang
        assert publisher.error("presence", {"channel": "chat:f"}) == ErrorCode.NOT_AVAILABLE
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(health, timeout=5)
        assert info.value.code == 503 and b'"ok": false' in info.value.read()
        status, report = _http(a, "/healthz", method="GET")  # the operations endpoint says the same
        assert status == 503 and report["ok"] is False and report["engine"] == "redis"
        status, text = _http(a, "/metrics", method="GET")
        assert status == 200 and 'wsproto_hub_engine_up{engine="redis"} 0\n' in text
        status, error = _http(a, "/api/publish", {"channel": "chat:f", "data": 4})
        assert status == 200 and error["error"]["code"] == ErrorCode.NOT_AVAILABLE  # retry later
        server.start()
        # once its pub/sub is back the node tells the channel's subscribers to reconnect and recover
        assert reader.closed(timeout=15) == (DisconnectCode.INSUFFICIENT_STATE, "insufficient state")
        back = clients(a)
        again = back.ok(
            "subscribe", {"channel": "chat:f", "recover": True, "epoch": sub["epoch"], "offset": 3}
        )
        assert "recovered" not in again and again["epoch"] != sub["epoch"]  # Redis lost it: said so
        publisher.ok("publish", {"channel": "chat:f", "data": 5})
        assert _pubs(back, 1) == [1]
        with urllib.request.urlopen(health, timeout=5) as ok:
            assert ok.status == 200
        assert _http(a, "/healthz", method="GET") == (200, "ok\n")
        assert "wsproto_hub_engine_lost_events_total 1\n" in _http(a, "/metrics", method="GET")[1]
        assert a.call(a.hub_server.engine.health)["lost_events"] == 1
    finally:
        server.stop()


def test_sharding_over_two_redis_servers(nodes: Nodes, clients: Any, redis_server: RedisServer) -> None:
    from wsproto_lite.hub.redis_engine import shard_of

    second = RedisServer()
    try:
        urls = f"{redis_server.url},{second.url}"
        a, b = nodes(urls), nodes(urls)
        names = [f"chat:s{i}" for i in range(20)]
        by_shard = {
            0: [n for n in names if shard_of(n, 2) == 0],
            1: [n for n in names if shard_of(n, 2) == 1],
        }
        assert by_shard[0] and by_shard[1]
        one, other = by_shard[0][0], by_shard[1][0]
        reader = clients(b)
        for channel in (one, other):
            reader.ok("subscribe", {"channel": channel})
        watcher = clients(b)
        watcher.ok("subscribe", {"channel": "stock:*"})
        publisher = clients(a)
        for channel in (one, other):
            publisher.ok("publish", {"channel": channel, "data": channel})
        got = {reader.push()["pub"]["data"], reader.push()["pub"]["data"]}
        assert got == {one, other}
        stocks = [f"stock:{i}" for i in range(8)]
        assert {shard_of(s, 2) for s in stocks} == {0, 1}
        for s in stocks:
            publisher.ok("publish", {"channel": s, "data": s})
        assert sorted(watcher.push()["pub"]["channel"] for _ in stocks) == sorted(stocks)  # spans shards
        # each channel's history lives on its own shard only
        first_keys = set(redis_server.client().keys("*:meta:*"))
        second_keys = set(second.client().keys("*:meta:*"))
        assert any(k.endswith(":" + one) for k in first_keys) and not any(
            k.endswith(":" + one) for k in second_keys
        )
        assert any(k.endswith(":" + other) for k in second_keys) and not any(
            k.endswith(":" + other) for k in first_keys
        )
    finally:
        second.stop()


def test_sessions_and_subscriptions_are_freed_with_gc_disabled(nodes: Nodes, clients: Any) -> None:
    a = nodes()
    publisher = clients(a)
    gc.collect()
    gc.disable()
    try:
        r = clients(a)
        r.ok("subscribe", {"channel": "chat:m"})
        r.ok("subscribe", {"channel": "stock:*"})
        publisher.ok("publish", {"channel": "chat:m", "data": 1})
        assert _pubs(r, 1) == [1]
        refs = a.call(
            lambda: (
                [weakref.ref(s) for s in a.hub.sessions.values()]
                + [weakref.ref(sub) for s in a.hub.sessions.values() for sub in s.subscriptions.values()]
            )
        )
        r.close()
        assert a.wait_sessions(1)
        publisher.roundtrip()  # the loop has finished with the closed one
        dead = a.call(lambda: sum(ref() is None for ref in refs))
        assert dead == len(refs) - 1  # all but the publisher's session
    finally:
        gc.enable()


def test_a_live_node_keeps_pushing_its_presence_expiry_forward(
    nodes: Nodes, clients: Any, redis_server: RedisServer
) -> None:
    """Presence entries expire ``presence_ttl`` after their last refresh (test_hub_supervisor kills a node
    and sees its entries go); a live node refreshes them. Observed in Redis, not by sleeping past TTLs
    and hoping the node's refresh thread was not starved meanwhile."""
    a, b = nodes(presence_ttl=1.0), nodes(presence_ttl=1.0)
    on_a = clients(a)
    on_a.ok("subscribe", {"channel": "chat:e"})
    on_b = clients(b)
    assert on_b.ok("presence_stats", {"channel": "chat:e"}) == {"num_clients": 1, "num_users": 1}
    redis = redis_server.client()
    expiries = f"{a.call(lambda: a.hub_server.engine.prefix)}:pexp:chat:e"  # client -> expiry (Redis ms)
    ((member, first),) = redis.zrange(expiries, 0, -1, withscores=True)
    deadline = time.monotonic() + 30
    while (redis.zscore(expiries, member) or 0) < first + 2000:  # refreshed past two whole TTLs
        assert time.monotonic() < deadline, "the live node stopped refreshing its presence"
        time.sleep(0.05)  # polling Redis: the refresh runs in the node's own thread, no event to await
    assert redis.zcard(expiries) == 1


def test_junk_published_on_our_redis_channels_is_ignored(
    nodes: Nodes, clients: Any, redis_server: RedisServer
) -> None:
    a = nodes()
    r = clients(a)
    r.ok("subscribe", {"channel": "bench:j"})
    prefix = a.call(lambda: a.hub_server.engine.prefix)
    junk = redis_server.client()
    for payload in ("", "p", "p\nx\nnot-a-number\n\n\n1", "j\n{", "j\n[]", "\x00\xff"):
        junk.publish(f"{prefix}:ch:bench:j", payload)
    clients(a).ok("publish", {"channel": "bench:j", "data": "fine"})
    push = r.push()
    assert push["pub"]["data"] == "fine"  # the node lives on and delivers what is ours
    # Redis delivers in publish order, so every junk message was handled before the push: each one
    # counted (a JSON array as a join once raised past the count and could drop the rest of its batch)
    assert a.call(lambda: a.hub_server.engine.health()["bad_messages"]) == 6


def test_junk_in_a_batch_does_not_cost_the_messages_after_it(
    nodes: Nodes, clients: Any, redis_server: RedisServer
) -> None:
    """Junk and a publication of ours read from Redis together are one batch for the loop thread: the
    junk is counted, the publication still delivered (each message of a batch on its own)."""
    a = nodes()
    r = clients(a)
    r.ok("subscribe", {"channel": "bench:jb"})
    engine = a.call(lambda: a.hub_server.engine)
    redis_channel = f"{engine.prefix}:ch:bench:jb"
    ours = 'p\n\n\n\n\n\n"fine"'  # a publication without history position, as the engine sends it
    batch = [["message", redis_channel, d] for d in ("j\n[]", "?", ours)]
    a.call(lambda: engine.on_messages(batch))
    assert r.push()["pub"]["data"] == "fine"
    assert a.call(lambda: engine.health()["bad_messages"]) == 2


def test_entries_written_before_tags_read_with_empty_tags() -> None:
    """History kept in Redis across the upgrade that added tags (and pub/sub messages from nodes still on
    the old version) have one field fewer: they read with empty tags, not as an error."""
    from wsproto_lite.hub.redis_history import entry_fields

    assert entry_fields('7\n0\n{"user":"u"}\n{"x":1}', 5) == ["7", "0", '{"user":"u"}', "", '{"x":1}']
    assert entry_fields('7\n0\n\n["a"]\n{"x":1}', 5) == ["7", "0", "", '["a"]', '{"x":1}']
    old_message = 'p\nep\n3\n0\n\n"hi"'
    assert entry_fields(old_message, 7) == ["p", "ep", "3", "0", "", "", '"hi"']


def test_parse_engine_urls_keeps_each_url_whole_without_our_parameters() -> None:
    from wsproto_lite.hub.redis_shard import parse_engine_urls

    urls, ours = parse_engine_urls(
        "unix:///run/redis.sock?db=2&presence_ttl=5, redis://h:1/0?prefix=p&socket_timeout=3,rediss://h:2/1"
    )
    # unix:///path kept with its three slashes (urlunsplit wrote "unix:/run/redis.sock": refused by redis-py)
    assert urls == ["unix:///run/redis.sock?db=2", "redis://h:1/0?socket_timeout=3", "rediss://h:2/1"]
    assert ours == {"presence_ttl": "5", "prefix": "p"}


def test_a_node_on_a_unix_socket(tmp_path: Any, nodes: Nodes, clients: Any) -> None:
    server = RedisServer(unix_socket=str(tmp_path / "redis.sock"))
    try:  # the node (stopped by its fixture) may fail to start: the server is stopped all the same
        node = nodes(server.unix_url)
        reader, publisher = clients(node), clients(node)
        reader.ok("subscribe", {"channel": "chat:unix"})
        assert publisher.ok("publish", {"channel": "chat:unix", "data": "over a unix socket"})["offset"] == 1
        assert reader.push()["pub"]["data"] == "over a unix socket"
    finally:
        server.stop()
