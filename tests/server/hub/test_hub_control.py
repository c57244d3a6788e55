"""The control channel (``control.py``): server-side operations on every node, cluster-wide ``channels`` and
``info``, idempotent publishes across nodes; two hub nodes on one real redis-server."""

from __future__ import annotations

import gc
import json
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from wsproto_lite.hub.control import ClusterControl
from wsproto_lite.hub.hub import Hub
from wsproto_lite.hub.memory import MemoryEngine
from wsproto_lite.hub.namespaces import NamespaceOptions
from wsproto_lite.server.client import connect
from wsproto_lite.server.errors import ConnectionClosed

from .authkit import API_KEY, hs256, hub_config
from .conftest import HubThread, Raw
from .redis_util import RedisServer
from .test_hub_http_api import _closed_with, _request

pytest.importorskip("redis")

Nodes = Callable[[], HubThread]


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture
def nodes(redis_server: RedisServer) -> Iterator[Nodes]:
    from wsproto_lite.hub.redis_engine import RedisEngine

    prefix = "c" + secrets.token_hex(4)
    made: list[HubThread] = []

    def make() -> HubThread:
        node = HubThread(hub_config(), engine=lambda: RedisEngine(redis_server.url, prefix=prefix))
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def _two_nodes(nodes: Nodes) -> tuple[HubThread, HubThread]:
    """Two nodes that know each other (each has heard the other's hello or here)."""
    a, b = nodes(), nodes()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if a.call(lambda: len(a.hub.control.nodes)) == 1 and b.call(lambda: len(b.hub.control.nodes)) == 1:
            return a, b
        time.sleep(0.02)  # polling the loop threads: there is no event to wait on from here
    pytest.fail("the nodes did not meet over the control channel")


def _user(node: HubThread, user: str, *channels: str) -> Raw:
    r = Raw(node.url)
    r.ok("connect", {"token": hs256(user)})
    for channel in channels:
        r.ok("subscribe", {"channel": channel})
    return r


def test_a_banned_user_is_disconnected_on_every_node(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    on_a, on_b = _user(a, "mallory", "chat:x"), _user(b, "mallory", "chat:x")
    bystander = _user(b, "bob", "chat:x")
    status, result = _request(
        a, "/api/disconnect", {"user": "mallory", "disconnect": {"code": 4501, "reason": "ban"}}
    )
    assert (status, result) == (200, {"result": {}})
    assert _closed_with(on_a) == (4501, "ban")
    assert _closed_with(on_b) == (4501, "ban")  # before the control channel: still connected
    assert b.wait_sessions(1)
    assert bystander.roundtrip()
    for r in (on_a, on_b, bystander):
        r.close()


def test_disconnect_by_client_and_whitelist_across_nodes(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    keep = _user(b, "eve")
    keep_id = b.call(lambda: next(s.info.client for s in b.hub.sessions.values()))
    gone = _user(b, "eve")
    _request(a, "/api/disconnect", {"user": "eve", "whitelist": [keep_id]})
    assert _closed_with(gone) == (3503, "force disconnect")
    assert keep.roundtrip()
    _request(a, "/api/disconnect", {"user": "eve", "client": keep_id})
    assert _closed_with(keep)[0] == 3503
    gone.close()
    keep.close()


def test_unsubscribe_and_refresh_reach_the_other_node(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    carol = _user(b, "carol", "chat:u", "chat:v")
    assert _request(a, "/api/unsubscribe", {"user": "carol", "channel": "chat:u"}) == (200, {"result": {}})
    push = carol.push()
    assert push == {"channel": "chat:u", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    assert b.call(lambda: sorted(next(iter(b.hub.sessions.values())).subscriptions)) == ["chat:v"]
    assert _request(a, "/api/refresh", {"user": "carol", "expired": True}) == (200, {"result": {}})
    assert _closed_with(carol) == (3005, "connection expired")
    carol.close()


def test_channels_and_info_gather_every_node(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    clients = [
        _user(a, "u1", "chat:both", "chat:a-only"),
        _user(b, "u2", "chat:both"),
        _user(b, "u3", "stock:x"),
    ]
    status, result = _request(a, "/api/channels", {"pattern": "chat:*"})
    assert status == 200
    assert result["result"]["channels"] == {
        "chat:a-only": {"num_clients": 1},
        "chat:both": {"num_clients": 2},
    }
    status, result = _request(b, "/api/info", {})
    info = {node["uid"]: node for node in result["result"]["nodes"]}
    uid_a, uid_b = a.hub.control.uid, b.hub.control.uid
    assert set(info) == {uid_a, uid_b} and result["result"]["nodes"][0]["uid"] == uid_b  # its own first
    assert (info[uid_a]["num_clients"], info[uid_a]["num_subs"], info[uid_a]["num_channels"]) == (1, 2, 2)
    assert (info[uid_b]["num_clients"], info[uid_b]["num_users"], info[uid_b]["num_subs"]) == (2, 2, 2)
    for r in clients:
        r.close()


def test_a_node_that_stopped_is_left_out_of_info(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    b.stop()  # says bye
    deadline = time.monotonic() + 10
    while a.call(lambda: len(a.hub.control.nodes)) and time.monotonic() < deadline:
        time.sleep(0.02)
    status, result = _request(a, "/api/info", {})
    assert [node["uid"] for node in result["result"]["nodes"]] == [a.hub.control.uid]


def test_a_revoked_api_key_disconnects_its_connections_on_every_node(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    ws = connect(b.url, headers={"Authorization": f"apikey {API_KEY}"}, timeout=10, compression=False)
    ws.send(json.dumps({"id": 1, "connect": {}}))
    assert "connect" in json.loads(str(ws.recv(timeout=5)))
    assert a.call(a.hub.control.revoke_api_keys, ["another-key"]) == 0  # none on a
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=5)
    assert closed.value.code == 3500  # before the control channel: still connected to b
    assert b.wait_sessions(0)
    assert _request(b, "/api/info", {})[0] == 401  # b no longer accepts the key either
    ws.close()


def test_an_idempotency_key_publishes_once_across_nodes(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    first = _request(a, "/api/publish", {"channel": "chat:i", "data": 1, "idempotency_key": "k"})[1]["result"]
    again = _request(b, "/api/publish", {"channel": "chat:i", "data": 2, "idempotency_key": "k"})[1]["result"]
    other = _request(b, "/api/publish", {"channel": "chat:i", "data": 3, "idempotency_key": "k2"})[1][
        "result"
    ]
    assert again == first and other["offset"] == first["offset"] + 1
    plain = _request(a, "/api/publish", {"channel": "bench:i", "data": 1, "idempotency_key": "k"})
    assert plain == (200, {"result": {}})
    history = _request(a, "/api/history", {"channel": "chat:i", "limit": -1})[1]["result"]
    assert [p["data"] for p in history["publications"]] == [1, 3]


def test_memory_engine_idempotency_window_and_bound() -> None:
    now = [0.0]
    engine = MemoryEngine(clock=lambda: now[0], max_idempotency_keys=2)
    options = NamespaceOptions(history_size=10, history_ttl=600)
    first = engine.publish("c", "1", None, options, idempotency_key="k").result()
    assert engine.publish("c", "2", None, options, idempotency_key="k").result() is first
    assert engine.publish("d", "2", None, options, idempotency_key="k").result() is not first  # per channel
    now[0] += 301  # past the window: published again
    assert engine.publish("c", "3", None, options, idempotency_key="k").result().offset == 2
    for n in range(5):
        engine.publish("c", "x", None, options, idempotency_key=f"n{n}")
    assert len(engine._idempotent) == 2


def test_control_ignores_malformed_messages_and_frees_with_its_hub() -> None:
    gc.disable()
    try:
        hub = Hub()
        control = hub.control
        for junk in (
            "",
            "[]",
            '{"from": 1}',
            '{"from": "x", "op": "nope"}',
            '{"from":"x","op":"disconnect"}',
        ):
            control._receive(junk)
        assert control.bad_messages == 5
        assert isinstance(control, ClusterControl)
        ref = weakref.ref(hub)
        del hub, control
        assert ref() is None  # no cycle between the hub and its control object
    finally:
        gc.enable()


def test_info_with_two_nodes_answers_when_both_did(nodes: Nodes) -> None:
    a, b = _two_nodes(nodes)
    done = threading.Event()
    got: list[Any] = []

    def ask() -> None:
        a.hub.control.info().observe(lambda reply: (got.append(reply.result()), done.set()))

    a.call(ask)
    assert done.wait(5) and len(got[0]) == 2
