"""The Redis engine's Lua scripts go out by their SHA1 (EVALSHA), loaded once per connection, and a
NOSCRIPT (Redis flushed its scripts) neither loses nor doubles a publication.  A real redis-server."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from wsproto_lite.hub.config import HubConfig
from wsproto_lite.hub.limits import RateLimits
from wsproto_lite.hub.namespaces import DEFAULT_NAMESPACES, Namespaces

from .authkit import opened
from .conftest import HubThread, Raw
from .redis_util import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()  # each test its own: the command counts start at zero
    yield server
    server.stop()


@pytest.fixture
def node(redis_server: RedisServer) -> Iterator[HubThread]:
    from wsproto_lite.hub.redis_engine import RedisEngine

    namespaces = Namespaces(opened(DEFAULT_NAMESPACES, anonymous=True))
    hub = HubThread(
        # 200 commands pipelined at once: within the burst however fast the engine answers them
        HubConfig(port=0, namespaces=namespaces, rate_limits=RateLimits(commands_burst=1000)),
        engine=lambda: RedisEngine(redis_server.url, prefix="t" + secrets.token_hex(4)),
    )
    yield hub
    hub.stop()


@pytest.fixture
def client(node: HubThread) -> Iterator[Raw]:
    r = Raw(node.url)
    r.ok("connect", {})
    yield r
    r.close()


def _calls(redis_server: RedisServer) -> dict[str, int]:
    stats = redis_server.client().info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def test_scripts_go_out_by_sha_and_are_loaded_once(
    redis_server: RedisServer, node: HubThread, client: Raw
) -> None:
    from wsproto_lite.hub import redis_scripts

    client.ok("subscribe", {"channel": "chat:s"})  # presence add, position read
    for i in range(1, 31):
        assert client.ok("publish", {"channel": "chat:s", "data": i})["offset"] == i
    assert len(client.ok("history", {"channel": "chat:s", "limit": -1})["publications"]) == 30
    assert client.ok("presence", {"channel": "chat:s"})["presence"]
    calls = _calls(redis_server)
    assert calls.get("evalsha", 0) >= 33
    assert "eval" not in calls  # no script sent whole
    assert calls["script|load"] == len(redis_scripts.ALL)  # once, when the connection started
    assert "script|exists" not in calls  # redis-py's Script objects would ask on every pipeline


def test_script_flush_mid_traffic_publishes_each_exactly_once(
    redis_server: RedisServer, node: HubThread, client: Raw
) -> None:
    reader = Raw(node.url)
    try:
        reader.ok("connect", {})
        reader.ok("subscribe", {"channel": "chat:f"})
        count = 200
        for i in range(1, count + 1):  # pipelined: the flush lands somewhere among them
            client.send({"id": 100 + i, "publish": {"channel": "chat:f", "data": i}})
            if i == count // 2:
                redis_server.client().script_flush()
        acks = [client.reply(100 + i, timeout=10) for i in range(1, count + 1)]
        assert [a["publish"]["offset"] for a in acks] == list(range(1, count + 1))
        assert client.ok("publish", {"channel": "chat:f", "data": "last"})["offset"] == count + 1
        got = [p["pub"] for p in (reader.push(timeout=10) for _ in range(count + 1)) if "pub" in p]
        assert [p["offset"] for p in got] == list(range(1, count + 2))  # each once, in order
        assert [p["data"] for p in got[:count]] == list(range(1, count + 1))
        history = client.ok("history", {"channel": "chat:f", "limit": -1})["publications"]
        assert [json.dumps(p["data"]) for p in history[-3:]] == ["199", "200", '"last"']
        assert len(history) == 100  # the namespace's size: the stream itself was not doubled
        shard: Any = node.call(lambda: node.hub_server.engine.shards[0])
        assert shard.link.script_reloads >= 1  # a NOSCRIPT was answered, and handled
        assert _calls(redis_server).get("eval", 0) == 0
    finally:
        reader.close()
