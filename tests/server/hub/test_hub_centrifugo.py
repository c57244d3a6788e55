"""What Centrifugo's client protocol v2 adds over the hub's former one, over the wire with raw frames:
app-level pings and pongs, server-side subscriptions (token, connect ``subs``, ``Hub.subscribe_user``),
``sub_refresh``, the JWT claims as Centrifugo reads them (``info``, ``expire_at``, empty ``sub``, ``caps``,
the subscription token's ``client``), and the memory of server-side subscriptions."""

from __future__ import annotations

import base64
import gc
import json
import socket
import struct
import time
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from wsproto_lite.hub.control import Target
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode

from .authkit import caps, hs256, hub_config
from .conftest import HubThread, Raw


@pytest.fixture
def secure() -> Iterator[HubThread]:
    h = HubThread(hub_config(leeway=0))
    yield h
    h.stop()


def _connected(h: HubThread, token: str, **params: Any) -> tuple[Raw, dict[str, Any]]:
    r = Raw(h.url)
    return r, r.ok("connect", {"token": token, **params})


# -- pings -------------------------------------------------------------------------------------------


def test_the_hub_pings_every_ping_seconds_and_closes_3012_without_a_pong(secure: HubThread) -> None:
    """centrifuge/client.go: ``{}`` every ``ping`` s; no ``{}`` back within ``pong`` s: 3012 no pong."""
    answering, result = _connected(secure, hs256("a"))
    assert result["ping"] == 25 and result["pong"] is True
    mute, _ = _connected(secure, hs256("b"))
    mute.answer_pings = False
    secure.loop.advance(26)  # the tick after the ping interval sends the ping
    answering.await_ping()
    mute.await_ping()
    assert answering.roundtrip()  # the pong went before this command: it is in
    secure.loop.advance(11)  # past the pong timeout: the mute one goes, the answering one stays
    assert mute.closed() == (DisconnectCode.NO_PONG, "no pong")
    assert mute.pings == 1
    secure.loop.advance(26)
    answering.await_ping()
    assert answering.roundtrip() and answering.pings == 2
    answering.close()


def test_a_ping_that_finds_a_reset_socket_does_not_break_the_round(secure: HubThread) -> None:
    """A ping written to a socket the peer reset fails at once, and the connection closes inside the
    round of pings: the others are still pinged (the round must not iterate over the live sessions)."""
    first, _ = _connected(secure, hs256("a"))
    victim, _ = _connected(secure, hs256("b"))
    last, _ = _connected(secure, hs256("c"))

    def reset_then_ping() -> int:
        sock = victim.ws.sock
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # an RST: the hub's next write to it fails, before its loop has read the reset
        hub = secure.hub
        hub._send_pings(secure.loop.time() + hub.limits.ping_interval + 1)
        return len(hub.sessions)

    assert secure.call(reset_then_ping) == 2
    first.await_ping()
    last.await_ping()
    first.close()
    last.close()


def test_a_pong_without_an_outstanding_ping_closes_3501(secure: HubThread) -> None:
    """centrifuge/client.go ``dispatchCommand``: ``{}`` when no ping is outstanding ("unnecessary pong")
    is ``DisconnectBadRequest`` -- before the first ping, and a second ``{}`` for one ping."""
    early, _ = _connected(secure, hs256("a"))
    early.send("{}")
    assert early.closed() == (DisconnectCode.BAD_REQUEST, "unnecessary pong")
    twice, _ = _connected(secure, hs256("b"))
    secure.loop.advance(26)
    twice.await_ping()  # answered once by Raw
    twice.cmd("presence_stats", {"channel": "chat:x"})  # a round trip: the pong is in
    twice.send("{}")
    assert twice.closed() == (DisconnectCode.BAD_REQUEST, "unnecessary pong")


def test_the_ping_command_is_not_available_as_in_centrifugo(secure: HubThread) -> None:
    """centrifuge client.go ``handlePing``: "Ping not supported by protocol v2" -> ``ErrorNotAvailable``."""
    r, _ = _connected(secure, hs256("a"))
    reply = r.cmd("ping")
    assert reply["error"] == {"code": ErrorCode.NOT_AVAILABLE, "message": "not available"}
    assert r.cmd("ping")["id"] == reply["id"] + 1  # an error reply, the connection lives on
    r.close()


# -- server-side subscriptions -------------------------------------------------------------------


def test_the_tokens_channels_are_server_side_subscriptions(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("srv", channels=["chat:news"], subs={"chat:more": {}}))
    subs = result["subs"]
    assert set(subs) == {"chat:news", "chat:more"}
    assert subs["chat:news"]["recoverable"] is True and subs["chat:news"]["offset"] == 0
    assert secure.call(lambda: secure.hub.publish("chat:news", {"n": 1}).result().offset) == 1
    assert r.push() == {"channel": "chat:news", "pub": {"offset": 1, "data": {"n": 1}}}
    # reconnecting with connect ``subs`` recovers what was missed, as a client subscription would
    epoch = subs["chat:news"]["epoch"]
    r.close()
    assert secure.wait_sessions(0)
    for n in (2, 3):
        secure.call(lambda n=n: secure.hub.publish("chat:news", {"n": n}))
    again, result = _connected(
        secure,
        hs256("srv", channels=["chat:news"]),
        subs={"chat:news": {"recover": True, "epoch": epoch, "offset": 1}},
    )
    recovered = result["subs"]["chat:news"]
    assert recovered["recovered"] is True and recovered["was_recovering"] is True
    assert [p["data"]["n"] for p in recovered["publications"]] == [2, 3]
    secure.call(lambda: secure.hub.publish("chat:news", {"n": 4}))
    assert again.push()["pub"]["offset"] == 4  # live after the recovered ones, nothing doubled
    again.close()


def test_a_bad_channel_in_the_token_is_skipped_not_fatal(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("srv", channels=["nope:x", "chat:ok"]))
    assert set(result["subs"]) == {"chat:ok"}
    r.close()


def test_subscribe_user_pushes_subscribe_then_publications(secure: HubThread) -> None:
    tab1, first = _connected(secure, hs256("u"))
    tab2, _ = _connected(secure, hs256("u"))
    other, _ = _connected(secure, hs256("other"))
    reached = secure.call(secure.hub.subscribe_user, Target("u"), "chat:pushed", {"why": "api"})
    assert reached == 2
    for tab in (tab1, tab2):
        push = tab.push()
        assert push["channel"] == "chat:pushed" and push["subscribe"]["data"] == {"why": "api"}
        assert push["subscribe"]["recoverable"] is True and "offset" in push["subscribe"]
    only = Target("u", client=first["client"])
    assert secure.call(secure.hub.subscribe_user, only, "chat:pushed") == 0  # subscribed already
    secure.call(lambda: secure.hub.publish("chat:pushed", "hello"))
    for tab in (tab1, tab2):
        while "join" in (push := tab.push()):  # each sees the other tab join (chat: join_leave)
            pass
        assert push["pub"]["data"] == "hello"
    assert other.roundtrip() and other.pushes == []  # another user: nothing
    assert secure.call(secure.hub.control.unsubscribe, Target("u"), "chat:pushed") == 2
    assert tab1.push() == {
        "channel": "chat:pushed",
        "unsubscribe": {"code": 2000, "reason": "server unsubscribe"},
    }
    with pytest.raises(Exception) as info:
        secure.call(secure.hub.subscribe_user, Target("u"), "nope:x")
    assert getattr(info.value, "code", None) == ErrorCode.UNKNOWN_CHANNEL
    for r in (tab1, tab2, other):
        r.close()


def test_server_side_subscriptions_are_freed_at_close_without_gc(secure: HubThread) -> None:
    from wsproto_lite.hub.hub import Subscription

    r, _ = _connected(secure, hs256("srv", channels=["chat:m1"]))
    secure.call(secure.hub.subscribe_user, Target("srv"), "chat:m2")
    assert "subscribe" in r.push()
    gc.disable()
    try:

        def refs() -> list[weakref.ref[Any]]:
            (session,) = secure.hub.sessions.values()
            subs = list(session.subscriptions.values())
            assert len(subs) == 2 and all(isinstance(s, Subscription) and s.server_side for s in subs)
            return [weakref.ref(session), *(weakref.ref(s) for s in subs)]

        weak = secure.call(refs)
        r.close()
        assert secure.wait_sessions(0)
        assert secure.call(lambda: [w() is None for w in weak]) == [True, True, True]
        assert secure.call(lambda: (secure.hub._channels, secure.hub._clients)) == ({}, {})
    finally:
        gc.enable()


# -- tokens as Centrifugo reads them -----------------------------------------------------------------


def test_info_is_conn_info_in_presence_join_and_publications(secure: HubThread) -> None:
    alice, a = _connected(secure, hs256("alice", info={"name": "Alice", "role": "admin"}))
    bob, b = _connected(secure, hs256("bob"))
    alice.ok("subscribe", {"channel": "chat:i"})
    bob.ok("subscribe", {"channel": "chat:i"})
    assert alice.push() == {"channel": "chat:i", "join": {"info": {"user": "bob", "client": b["client"]}}}
    presence = bob.ok("presence", {"channel": "chat:i"})["presence"]
    assert presence[a["client"]]["conn_info"] == {"name": "Alice", "role": "admin"}
    alice.ok("publish", {"channel": "chat:i", "data": 1})
    pub = bob.push()["pub"]
    assert pub["info"] == {
        "user": "alice",
        "client": a["client"],
        "conn_info": {"name": "Alice", "role": "admin"},
    }
    alice.close()
    bob.close()


def test_expire_at_overrides_exp_and_zero_never_expires(secure: HubThread) -> None:
    now = int(time.time())
    r, result = _connected(secure, hs256("u", ttl=60, expire_at=now + 600))
    assert result["expires"] is True and 540 < result["ttl"] <= 600
    r.close()
    r, result = _connected(secure, hs256("u", ttl=60, expire_at=0))
    assert "expires" not in result  # 0: the connection never expires (the token itself is valid)
    r.close()
    r = Raw(secure.url)
    assert r.error("connect", {"token": hs256("u", expire_at=now - 5)}) == ErrorCode.TOKEN_EXPIRED
    r.close()


def test_a_token_without_sub_is_anonymous_only_where_anonymous_use_is_allowed(secure: HubThread) -> None:
    r = Raw(secure.url)
    assert r.error("connect", {"token": hs256("")}) == ErrorCode.UNAUTHORIZED  # JWT configured: no anonymous
    assert r.closed()[0] == DisconnectCode.INVALID_TOKEN
    open_hub = HubThread(hub_config(allow_anonymous=True))
    try:
        anon, result = _connected(open_hub, hs256(""))
        assert open_hub.user_of(result["client"]) == ""
        anon.close()
    finally:
        open_hub.stop()


def test_grants_ride_in_caps_and_channels_no_longer_grants(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("g", caps=caps(["secret:*"], ["chat:*"])))
    r.ok("subscribe", {"channel": "secret:by-caps"})
    assert r.ok("publish", {"channel": "chat:x", "data": 1})["offset"] == 1
    r.close()
    # ``channels`` subscribes (server-side); it grants nothing for client-side subscriptions
    r, result = _connected(secure, hs256("g", channels=["secret:listed"]))
    assert set(result["subs"]) == {"secret:listed"}
    assert r.error("subscribe", {"channel": "secret:other"}) == ErrorCode.PERMISSION_DENIED
    assert r.error("publish", {"channel": "secret:other", "data": 1}) == ErrorCode.PERMISSION_DENIED
    r.close()


def test_a_subscription_tokens_client_claim_binds_it_to_one_connection(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("alice"))
    wrong = hs256("alice", channel="secret:c", client="someone-else")
    assert r.error("subscribe", {"channel": "secret:c", "token": wrong}) == ErrorCode.PERMISSION_DENIED
    mine = hs256("alice", channel="secret:c", client=result["client"], info={"seat": 3})
    r.ok("subscribe", {"channel": "secret:c", "token": mine})
    presence = r.ok("presence", {"channel": "secret:c"})["presence"]
    assert presence[result["client"]]["chan_info"] == {"seat": 3}
    r.close()


def _b64json(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def test_subs_options_info_and_data_as_centrifugo_reads_them(secure: HubThread) -> None:
    """centrifugo token_verifier_jwt.go: ``subs[ch].info``/``b64info`` -> ``ChannelInfo`` (``chan_info``),
    ``data``/``b64data`` -> the subscription's ``data``; ``b64`` wins over the plain claim."""
    subs = {
        "chat:plain": {"info": {"seat": 1}, "data": {"hello": "plain"}},
        "chat:b64": {"b64info": _b64json({"seat": 2}), "info": {"seat": 0}, "b64data": _b64json([1, 2])},
        "chat:bare": {"override": {"presence": {"value": False}}},  # override: ignored
    }
    r, result = _connected(secure, hs256("srv", subs=subs))
    got = result["subs"]
    assert got["chat:plain"]["data"] == {"hello": "plain"} and got["chat:b64"]["data"] == [1, 2]
    assert "data" not in got["chat:bare"]
    for channel, seat in (("chat:plain", {"seat": 1}), ("chat:b64", {"seat": 2})):
        presence = r.ok("presence", {"channel": channel})["presence"]
        assert presence[result["client"]]["chan_info"] == seat
    assert "chan_info" not in r.ok("presence", {"channel": "chat:bare"})["presence"][result["client"]]
    r.close()


def test_b64info_in_connection_and_subscription_tokens_and_the_sub_tokens_data(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("alice", b64info=_b64json({"name": "A"})))
    token = hs256("alice", channel="secret:c", b64info=_b64json(7), data={"welcome": 1})
    assert r.ok("subscribe", {"channel": "secret:c", "token": token})["data"] == {"welcome": 1}
    mine = r.ok("presence", {"channel": "secret:c"})["presence"][result["client"]]
    assert mine["conn_info"] == {"name": "A"} and mine["chan_info"] == 7
    r.close()
    for bad in ("not base64!", base64.b64encode(b"not json").decode()):  # refused, never spliced in raw
        for token in (hs256("alice", b64info=bad), hs256("alice", subs={"chat:x": {"b64data": bad}})):
            refused = Raw(secure.url)  # Centrifugo: ErrInvalidToken
            assert refused.error("connect", {"token": token}) == ErrorCode.UNAUTHORIZED
            refused.close()


def test_sub_refresh_extends_a_subscription_made_with_a_token(secure: HubThread) -> None:
    r, result = _connected(secure, hs256("alice"))
    r.ok("subscribe", {"channel": "secret:s", "token": hs256("alice", 60, channel="secret:s")})
    r.ok("subscribe", {"channel": "chat:plain"})
    assert r.error("sub_refresh", {"channel": "chat:plain", "token": "x"}) == ErrorCode.BAD_REQUEST
    stolen = hs256("mallory", 600, channel="secret:s")
    assert r.error("sub_refresh", {"channel": "secret:s", "token": stolen}) == ErrorCode.PERMISSION_DENIED
    refreshed = r.ok("sub_refresh", {"channel": "secret:s", "token": hs256("alice", 600, channel="secret:s")})
    assert refreshed["expires"] is True and 540 < refreshed["ttl"] <= 600
    secure.loop.advance(120)  # past the first token's expiry: still subscribed
    assert r.ok("presence_stats", {"channel": "secret:s"}) == {"num_clients": 1, "num_users": 1}
    assert r.pushes == []
    secure.loop.advance(600)
    push = r.push(timeout=10)
    assert push == {"channel": "secret:s", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}
    r.close()


def test_a_subscriber_may_publish_in_a_private_namespace_that_allows_publishing(secure: HubThread) -> None:
    """The ``secret`` namespace says ``allow_publish = true``: Centrifugo's allow_publish_for_subscriber."""
    r, _ = _connected(secure, hs256("alice"))
    assert r.error("publish", {"channel": "secret:p", "data": 1}) == ErrorCode.PERMISSION_DENIED
    r.ok("subscribe", {"channel": "secret:p", "token": hs256("alice", channel="secret:p")})
    assert r.ok("publish", {"channel": "secret:p", "data": 1})["offset"] == 1
    r.close()
