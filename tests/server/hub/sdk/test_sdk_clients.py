"""centrifuge-js (Node + ws) and centrifuge-python against one hub node: each scenario with both SDKs.

What is asserted is Centrifugo's documented behaviour as the SDKs see it (client protocol v2, JSON), see
``shared/centrifugo-protocol.md`` and the sources it cites: these are the acceptance tests of issue 20.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import jwt
import pytest

from ..authkit import SECRET
from ..conftest import HubThread
from .conftest import API_KEY, SDKS, Drivers, api_url, sdk_marks

pytestmark = sdk_marks()


@pytest.fixture(params=SDKS)
def sdk(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def token(user: str, ttl: float = 3600, **claims: Any) -> str:
    """A connection (or, with ``channel``, subscription) JWT signed HS256 with the hub's secret."""
    now = int(time.time())
    return jwt.encode({"sub": user, "iat": now, "exp": now + int(ttl), **claims}, SECRET, algorithm="HS256")


def cent_client(node: HubThread) -> Any:
    cent = pytest.importorskip("cent")
    return cent.Client(api_url(node), API_KEY, timeout=5)


def test_connect(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    c = drivers(sdk, sdk_hub.url)
    connected = c.connected()
    assert isinstance(connected["client"], str) and connected["client"]
    assert not c.seen("error")


def test_subscribe_and_publish(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    alice, bob = drivers(sdk, sdk_hub.url), drivers(sdk, sdk_hub.url)
    alice.connected()
    bob.connected()
    subscribed = alice.subscribed("chat:lobby")
    assert subscribed["recoverable"] is False and subscribed["was_recovering"] is False
    bob.subscribed("chat:lobby")
    alice.ok("sub_publish", channel="chat:lobby", data={"text": "hi"})
    for c in (alice, bob):  # the publisher gets its own publication too
        pub = c.expect("publication", channel="chat:lobby")
        assert pub["data"] == {"text": "hi"}
        assert pub["offset"] == 1
    assert not alice.seen("error") and not bob.seen("error")


def test_presence_presence_stats_and_join_leave(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    alice = drivers(sdk, sdk_hub.url, token=token("alice"))
    bob = drivers(sdk, sdk_hub.url, token=token("bob"))
    alice.connected()
    alice.subscribed("chat:room", join_leave=True)
    bob_client = bob.connected()["client"]
    bob.subscribed("chat:room")
    join = alice.expect("join", channel="chat:room")
    assert join["info"]["user"] == "bob" and join["info"]["client"] == bob_client
    presence = alice.ok("presence", channel="chat:room")["clients"]
    assert {info["user"] for info in presence.values()} == {"alice", "bob"}
    assert presence[bob_client]["client"] == bob_client
    assert alice.ok("presence_stats", channel="chat:room") == {"num_clients": 2, "num_users": 2}
    bob.ok("unsubscribe", channel="chat:room")
    leave = alice.expect("leave", channel="chat:room")
    assert leave["info"]["client"] == bob_client
    assert alice.ok("presence_stats", channel="chat:room") == {"num_clients": 1, "num_users": 1}


def test_history_position_only_limit_and_all(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    c = drivers(sdk, sdk_hub.url)
    c.connected()
    c.subscribed("chat:history")
    for n in (1, 2, 3):
        c.ok("sub_publish", channel="chat:history", data={"n": n})
        c.expect("publication", channel="chat:history", offset=n)
    position = c.ok("history", channel="chat:history")  # no limit: the stream position only
    assert position["publications"] == [] and position["offset"] == 3 and position["epoch"]
    first_two = c.ok("history", channel="chat:history", limit=2)
    assert [p["data"] for p in first_two["publications"]] == [{"n": 1}, {"n": 2}]
    assert [p["offset"] for p in first_two["publications"]] == [1, 2]
    everything = c.ok("history", channel="chat:history", limit=-1)
    assert [p["data"]["n"] for p in everything["publications"]] == [1, 2, 3]
    assert everything["epoch"] == position["epoch"]


def test_unsubscribe_when_not_subscribed_succeeds_and_keeps_the_connection(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    c = drivers(sdk, sdk_hub.url)
    c.connected()
    c.subscribed("chat:once")
    c.ok("unsubscribe", channel="chat:once")
    c.expect("unsubscribed", channel="chat:once")
    c.ok("unsubscribe", channel="chat:once")
    c.subscribed("chat:once")  # still the same connection: no reconnect on the way
    assert len(c.seen("connected")) == 1 and not c.seen("disconnected")


def test_recovery_after_a_transport_drop(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    c = drivers(sdk, sdk_hub.url)
    c.connected()
    c.subscribed("chat:recover", recoverable=True)
    c.ok("sub_publish", channel="chat:recover", data={"n": 1})
    c.expect("publication", channel="chat:recover", offset=1)

    def drop_then_publish_twice() -> None:  # one loop callback: nothing can reconnect in between
        for conn in list(sdk_hub.hub.sessions):
            conn.abort()
        sdk_hub.hub.publish("chat:recover", {"n": 2})
        sdk_hub.hub.publish("chat:recover", {"n": 3})

    sdk_hub.call(drop_then_publish_twice)
    c.expect("subscribing", channel="chat:recover")
    again = c.expect("subscribed", channel="chat:recover")
    assert again["was_recovering"] is True and again["recovered"] is True, again
    assert [c.expect("publication", channel="chat:recover")["data"]["n"] for _ in range(2)] == [2, 3]
    assert len(c.seen("connected")) == 2
    assert [p["offset"] for p in c.seen("publication", channel="chat:recover")] == [1, 2, 3]


def test_recovery_after_a_hub_restart_reports_the_lost_history(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    """The memory engine loses history with the process: a new epoch, ``recovered: false``, and live
    publications flow again on the resubscribed channel."""
    c = drivers(sdk, sdk_hub.url)
    c.connected()
    c.subscribed("chat:restart", recoverable=True)
    c.ok("sub_publish", channel="chat:restart", data={"n": 1})
    first = c.expect("publication", channel="chat:restart")
    sdk_hub.restart()
    c.expect("connected")
    again = c.expect("subscribed", channel="chat:restart")
    assert again["was_recovering"] is True and again["recovered"] is False, again
    c.ok("sub_publish", channel="chat:restart", data={"n": 2})
    assert c.expect("publication", channel="chat:restart")["data"] == {"n": 2}
    assert first["offset"] == 1


def test_connection_token_refresh(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    """A 2 s token: the SDK asks getToken for a new one before it expires and refreshes in place, twice."""
    c = drivers(sdk, sdk_hub.url, token=token("alice", ttl=2), tokens=[token("alice", ttl=2), token("alice")])
    c.connected()
    c.subscribed("chat:refresh")
    # the second refresh: the connection outlived the first token (the first may come before the
    # subscribe's reply: a 2 s token is refreshed at once, so count rather than expect in order)
    c.wait_count("get_token", 2, timeout=16)
    c.ok("sub_publish", channel="chat:refresh", data={"still": "here"})
    c.expect("publication", channel="chat:refresh")
    assert len(c.seen("connected")) == 1 and not c.seen("connecting", code=3005)
    assert not c.seen("disconnected")


def test_an_expired_token_gets_109_then_get_token_and_connects(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    c = drivers(sdk, sdk_hub.url, token=token("alice", ttl=-60), tokens=[token("alice")])
    c.send("connect")
    c.expect("get_token", fail_on=lambda e: e.get("ev") == "disconnected")
    c.expect("connected", fail_on=lambda e: e.get("ev") == "disconnected")


def test_an_invalid_token_is_terminal(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    forged = jwt.encode({"sub": "alice"}, "another-secret-of-at-least-32-bytes!", algorithm="HS256")
    c = drivers(sdk, sdk_hub.url, token=forged)
    c.send("connect")
    # Centrifugo: 101 unauthorized as a connect error (terminal) or close 3500 invalid token
    disconnected = c.expect("disconnected", fail_on=lambda e: e.get("ev") == "connected")
    assert disconnected["code"] in (101, 3500), disconnected


def test_subscription_tokens(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    c = drivers(sdk, sdk_hub.url, token=token("alice"))
    c.connected()
    c.send("subscribe", channel="secret:plain")  # a private channel without a token: 103, terminal
    unsubscribed = c.expect("unsubscribed", channel="secret:plain")
    assert unsubscribed["code"] == 103, unsubscribed
    c.send("subscribe", channel="secret:other", token=token("alice", channel="secret:elsewhere"))
    assert c.expect("unsubscribed", channel="secret:other")["code"] in (101, 103)
    c.subscribed("secret:room", token=token("alice", channel="secret:room"))
    c.ok("publish", channel="secret:room", data={"ok": 1})  # namespace allows publishing
    assert c.expect("publication", channel="secret:room")["data"] == {"ok": 1}
    assert len(c.seen("connected")) == 1


def test_subscription_token_refresh(sdk: str, sdk_hub: HubThread, drivers: Drivers) -> None:
    short = token("alice", ttl=2, channel="secret:refresh")
    c = drivers(
        sdk,
        sdk_hub.url,
        token=token("alice"),
        sub_tokens={"secret:refresh": [short, token("alice", channel="secret:refresh")]},
    )
    c.connected()
    c.subscribed("secret:refresh")  # its first get_sub_token comes before the subscribed event
    c.wait_count("get_sub_token", 2, timeout=8, channel="secret:refresh")  # sub_refresh before the expiry
    c.ok("publish", channel="secret:refresh", data={"after": "refresh"})
    c.expect("publication", channel="secret:refresh")
    assert len(c.seen("subscribed", channel="secret:refresh")) == 1  # refreshed in place
    assert not c.seen("unsubscribed")


def test_server_side_subscriptions_from_the_token_and_the_api(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    cent = pytest.importorskip("cent")
    api = cent_client(sdk_hub)
    c = drivers(sdk, sdk_hub.url, token=token("srv-user", channels=["chat:server"]))
    c.connected()
    c.expect("server_subscribed", channel="chat:server")
    api.publish(cent.PublishRequest(channel="chat:server", data={"from": "api"}))
    assert c.expect("server_publication", channel="chat:server")["data"] == {"from": "api"}
    api.subscribe(cent.SubscribeRequest(user="srv-user", channel="chat:pushed"))
    c.expect("server_subscribed", channel="chat:pushed")
    api.unsubscribe(cent.UnsubscribeRequest(user="srv-user", channel="chat:pushed"))
    c.expect("server_unsubscribed", channel="chat:pushed")
    assert len(c.seen("connected")) == 1


#: (code, the SDK reconnects): 3000-3499 and 4000-4499 reconnect, 3500-3999 and 4500-4999 are terminal
DISCONNECT_CODES = [(3011, True), (3503, False), (4000, True), (4499, True), (4500, False), (4999, False)]


def test_disconnect_codes_and_the_sdks_reconnect_decisions(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    cent = pytest.importorskip("cent")
    api = cent_client(sdk_hub)
    c = drivers(sdk, sdk_hub.url, token=token("dc-user"))
    c.connected()
    for code, reconnects in DISCONNECT_CODES:
        api.disconnect(
            cent.DisconnectRequest(
                user="dc-user", disconnect=cent.Disconnect(code=code, reason=f"test {code}")
            )
        )
        if reconnects:
            connecting = c.expect("connecting", fail_on=lambda e: e.get("ev") == "disconnected")
            assert connecting["code"] == code, (code, connecting)
            c.expect("connected", fail_on=lambda e: e.get("ev") == "disconnected")
        else:
            disconnected = c.expect("disconnected", fail_on=lambda e: e.get("ev") == "connected")
            assert disconnected["code"] == code, (code, disconnected)
            c.connected()


def test_three_sdks_on_one_channel_json_and_protobuf_mixed(sdk_hub: HubThread, drivers: Drivers) -> None:
    """The JSON and the protobuf encodings on one channel: each gets every publication, in order, with
    the same payload, whoever published it (PROTOCOL.md, "Protobuf")."""
    sdks = ("js", "js-protobuf", "python")
    clients = [drivers(sdk, sdk_hub.url) for sdk in sdks]
    for c in clients:
        c.connected()
        c.subscribed("chat:mixed")
    for sdk, c in zip(sdks, clients, strict=True):
        c.ok("sub_publish", channel="chat:mixed", data={"from": sdk, "n": [1, 2.5, "ü"]})
    for c in clients:
        got = [c.expect("publication", channel="chat:mixed")["data"] for _ in sdks]
        assert got == [{"from": sdk, "n": [1, 2.5, "ü"]} for sdk in sdks]


def test_subscriptions_made_before_connect_go_in_the_first_frame(
    sdk: str, sdk_hub: HubThread, drivers: Drivers
) -> None:
    """centrifuge-js sends connect and every pending subscribe as one ``\\n``-separated frame."""
    c = drivers(sdk, sdk_hub.url)
    c.send("subscribe", channel="chat:early")
    c.send("subscribe", channel="chat:early2")
    c.connected()
    c.expect("subscribed", channel="chat:early")
    c.expect("subscribed", channel="chat:early2")
    assert not c.seen("connecting", code=3501) and len(c.seen("connected")) == 1


def test_binary_bytes_from_the_protobuf_build_reach_another_byte_exact(
    sdk_hub: HubThread, drivers: Drivers
) -> None:
    """centrifuge-js's protobuf build publishes a ``Uint8Array`` that is not JSON; a second protobuf
    client gets the same bytes, a JSON client their base64 string (PROTOCOL.md, "Protobuf")."""
    payload = base64.b64encode(bytes(range(256)) + b"\xff\xfe{").decode("ascii")
    publisher, reader, js = (drivers(sdk, sdk_hub.url) for sdk in ("js-protobuf", "js-protobuf", "js"))
    for c in (publisher, reader, js):
        c.connected()
        c.subscribed("chat:binary")
    publisher.ok("publish", channel="chat:binary", b64data=payload)
    assert reader.expect("publication", channel="chat:binary")["data"] == {"b64": payload}
    assert js.expect("publication", channel="chat:binary")["data"] == payload
