"""The SDKs across two hub nodes on a real redis-server: publications, presence, recovery after a node
restart (Redis keeps the history), and server-side operations (disconnect, subscribe) that reach a user
connected to the other node.  Each node is a HubServer with its own RedisEngine in its own loop thread,
talking to the other only through Redis (as in test_hub_redis_engine.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import jwt
import pytest

from ..authkit import SECRET
from ..conftest import HubThread
from .conftest import API_KEY, SDKS, Drivers, Nodes, api_url, sdk_marks

pytestmark = sdk_marks()

cent = pytest.importorskip("cent", reason="pip install -r tests/server/hub/sdk/requirements.txt")


def token(user: str) -> str:
    return jwt.encode({"sub": user, "exp": int(time.time()) + 3600}, SECRET, algorithm="HS256")


def api(node: HubThread) -> Any:
    return cent.Client(api_url(node), API_KEY, timeout=5)


def test_a_publication_on_one_node_reaches_both_sdks_on_both(redis_nodes: Nodes, drivers: Drivers) -> None:
    a, b = redis_nodes(), redis_nodes()
    js, py, pb = drivers("js", a.url), drivers("python", b.url), drivers("js-protobuf", b.url)
    for c in (js, py, pb):
        c.connected()
        c.subscribed("chat:cluster")
    js.ok("sub_publish", channel="chat:cluster", data={"from": "js on a"})
    api(b).publish(cent.PublishRequest(channel="chat:cluster", data={"from": "api on b"}))
    for c in (js, py, pb):
        got = [c.expect("publication", channel="chat:cluster") for _ in range(2)]
        assert [p["data"]["from"] for p in got] == ["js on a", "api on b"]
        assert [p["offset"] for p in got] == [1, 2]


def test_presence_across_nodes(redis_nodes: Nodes, drivers: Drivers) -> None:
    a, b = redis_nodes(), redis_nodes()
    js, py = drivers("js", a.url, token=token("alice")), drivers("python", b.url, token=token("bob"))
    js.connected()
    py.connected()
    js.subscribed("chat:who")
    py.subscribed("chat:who")
    for c in (js, py):
        assert c.ok("presence_stats", channel="chat:who") == {"num_clients": 2, "num_users": 2}
        users = {info["user"] for info in c.ok("presence", channel="chat:who")["clients"].values()}
        assert users == {"alice", "bob"}


@pytest.mark.parametrize("sdk", SDKS)
def test_recovery_after_a_node_restart_with_redis_keeping_history(
    sdk: str, redis_nodes: Nodes, drivers: Drivers
) -> None:
    a, b = redis_nodes(), redis_nodes()
    c = drivers(sdk, a.url)
    c.connected()
    c.subscribed("chat:kept", recoverable=True)
    c.ok("sub_publish", channel="chat:kept", data={"n": 1})
    c.expect("publication", channel="chat:kept", offset=1)
    # node a stops; while it is down a publication goes through node b; a starts again on the same port
    stopped = threading.Event()
    a.call(a.hub_server.shutdown, 2.0, stopped.set)
    assert stopped.wait(10)
    api(b).publish(cent.PublishRequest(channel="chat:kept", data={"n": 2}))
    a.hub_server = a.call(a._start)
    again = c.expect("subscribed", channel="chat:kept")
    assert again["was_recovering"] is True and again["recovered"] is True, again
    missed = c.expect("publication", channel="chat:kept")
    assert missed["data"] == {"n": 2} and missed["offset"] == 2


@pytest.mark.parametrize("sdk", SDKS)
def test_api_disconnect_on_one_node_reaches_the_user_on_the_other(
    sdk: str, redis_nodes: Nodes, drivers: Drivers
) -> None:
    a, b = redis_nodes(), redis_nodes()
    c = drivers(sdk, b.url, token=token("banned"))
    c.connected()
    api(a).disconnect(
        cent.DisconnectRequest(user="banned", disconnect=cent.Disconnect(code=4500, reason="ban"))
    )
    disconnected = c.expect("disconnected", fail_on=lambda e: e.get("ev") == "connecting")
    assert disconnected["code"] == 4500  # terminal: the SDK does not come back


@pytest.mark.parametrize("sdk", SDKS)
def test_api_subscribe_on_one_node_reaches_the_user_on_the_other(
    sdk: str, redis_nodes: Nodes, drivers: Drivers
) -> None:
    a, b = redis_nodes(), redis_nodes()
    c = drivers(sdk, b.url, token=token("remote"))
    c.connected()
    api(a).subscribe(cent.SubscribeRequest(user="remote", channel="chat:pushed"))
    c.expect("server_subscribed", channel="chat:pushed")
    api(a).publish(cent.PublishRequest(channel="chat:pushed", data={"to": "remote"}))
    assert c.expect("server_publication", channel="chat:pushed")["data"] == {"to": "remote"}
    info = api(a).info(cent.InfoRequest())
    assert len(info.nodes) == 2 and sum(n.num_clients for n in info.nodes) == 1
