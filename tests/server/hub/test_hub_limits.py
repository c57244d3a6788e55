"""Rate limits: the buckets on a fake clock, then each limit tripping and recovering on a real hub.

On the hub, the rates are so slow that no test run refills a token by itself (one per 1000 s), and the
recovery comes from moving the hub's clock (``SteppedLoop.advance``): whether a limit trips never depends
on how fast the machine sends the commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from wsproto_lite.hub.config import ConfigError, HubConfig, config_from_mapping
from wsproto_lite.hub.hub import HubLimits
from wsproto_lite.hub.limits import IpLimiter, RateLimits, TokenBucket, UserConnections
from wsproto_lite.hub.protocol import DisconnectCode, ErrorCode
from wsproto_lite.server.errors import ConnectionClosed, HandshakeError

from .authkit import API_KEY, hs256, hub_config
from .conftest import HubThread, Raw

# -- units ---------------------------------------------------------------------------------------------


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert not bucket.take(100.4)  # 0.8 tokens
    assert bucket.take(100.5)  # 1.0
    assert not bucket.full(100.5)
    assert bucket.full(1000.0) and bucket.tokens == 3.0  # never above the burst
    assert not bucket.take(1000.0, 4.0)  # more than the burst: never
    assert bucket.take(1000.0, 3.0)
    assert not bucket.take(999.0)  # a clock going back refills nothing


def test_ip_limiter_is_bounded_and_forgets_refilled_buckets() -> None:
    limiter = IpLimiter(
        RateLimits(connections_per_second_per_ip=1, connections_burst_per_ip=2, max_tracked_ips=3)
    )
    assert [limiter.allow("a", 0.0) for _ in range(3)] == [True, True, False]
    assert limiter.allow("b", 0.0)
    assert limiter.allow("a", 1.0)  # refilled one
    for ip in ("c", "d", "e"):
        limiter.allow(ip, 1.0)
    assert len(limiter) == 3  # the oldest went first
    limiter.expire(10.0)
    assert len(limiter) == 0


def test_user_connections() -> None:
    users = UserConnections()
    users.add("u", 1)
    users.add("u", 2)
    assert users.count("u") == 2 and users.of("u") == [1, 2]
    users.remove("u", 1)
    users.remove("u", 2)
    users.remove("nobody", 3)
    assert users.count("u") == 0 and users._by_user == {}


def test_rate_limits_config() -> None:
    config = config_from_mapping({"rate_limits": {"commands_per_second": 5, "max_channels": 10}})
    assert config.rate_limits.commands_per_second == 5.0 and config.rate_limits.max_channels == 10
    assert isinstance(config.rate_limits.max_channels, int)
    for bad in ({"nope": 1}, {"commands_per_second": 0}, {"max_channels": "10"}, {"abuse_burst": True}):
        with pytest.raises(ConfigError, match="rate_limits"):
            config_from_mapping({"rate_limits": bad})


# -- on a hub -------------------------------------------------------------------------------------------


def _hub(**rates: Any) -> HubThread:
    return HubThread(HubConfig(port=0, rate_limits=RateLimits(**rates)))


def _trips(h: HubThread) -> dict[str, int]:
    return dict(h.call(lambda: dict(h.hub.stats.limit_trips)))


def test_commands_per_second_trip_and_recover() -> None:
    h = _hub(commands_per_second=0.001, commands_burst=5)
    try:
        r = Raw(h.url)
        r.ok("connect")
        for _ in range(4):
            r.roundtrip()
        reply = r.cmd("ping")
        assert reply["error"] == {
            "code": ErrorCode.TOO_MANY_REQUESTS,
            "message": "too many requests",
            "temporary": True,
        }
        assert _trips(h) == {"commands_per_connection": 1}
        h.loop.advance(1000)  # one command's worth of refill
        assert r.roundtrip()  # through the limiter: 108 from the command itself
        assert r.error("ping") == ErrorCode.TOO_MANY_REQUESTS  # and only one
        r.close()
    finally:
        h.stop()


def test_bytes_per_second_trip_and_recover() -> None:
    h = _hub(bytes_per_second=1, bytes_burst=2000)
    try:
        r = Raw(h.url)
        r.ok("connect")
        big = {"channel": "bench:b", "data": "x" * 1500}
        r.ok("publish", big)
        assert r.error("publish", big) == ErrorCode.TOO_MANY_REQUESTS
        assert _trips(h) == {"bytes_per_connection": 1}
        h.loop.advance(2000)  # the whole burst again
        r.ok("publish", big)
        r.close()
    finally:
        h.stop()


def test_sustained_abuse_is_closed_with_1008() -> None:
    h = _hub(commands_per_second=0.001, commands_burst=2, abuse_trips_per_second=0.001, abuse_burst=3)
    try:
        r = Raw(h.url)
        r.ok("connect")
        for i in range(10):  # a flood, without reading the replies
            r.send({"id": 100 + i, "ping": {}})
        codes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                frame = r.recv()
                codes.append(frame.get("error", {}).get("code", 0))
        assert info.value.code == 1008
        assert codes == [
            ErrorCode.NOT_AVAILABLE,  # the one the burst lets through: ``ping`` itself answers 108
            ErrorCode.TOO_MANY_REQUESTS,
            ErrorCode.TOO_MANY_REQUESTS,
            ErrorCode.TOO_MANY_REQUESTS,
        ]
        assert _trips(h)["abuse_close"] == 1
        assert h.wait_sessions(0)
        r.close()
    finally:
        h.stop()


_ABUSE = {"abuse_trips_per_second": 0.01, "abuse_burst": 3}


@pytest.mark.parametrize(
    ("limits", "rates", "frame", "limit"),
    [
        (
            HubLimits(max_command_size=100),
            {},
            lambda i: {"id": 100 + i, "ping": {"pad": "x" * 200}},
            "command_size",
        ),
        (
            HubLimits(max_channels_per_connection=1),
            {},
            lambda i: {"id": 100 + i, "subscribe": {"channel": f"chat:{i}"}},
            "subscriptions_per_connection",
        ),
        (
            HubLimits(),
            {"max_channels": 1},
            lambda i: {"id": 100 + i, "subscribe": {"channel": f"chat:{i}"}},
            "channels",
        ),
    ],
    ids=["command-size", "subscriptions", "channels"],
)
def test_sustained_abuse_of_any_limit_is_closed_with_1008(
    limits: HubLimits, rates: dict[str, Any], frame: Callable[[int], Any], limit: str
) -> None:
    h = HubThread(HubConfig(port=0, limits=limits, rate_limits=RateLimits(**_ABUSE, **rates)))
    try:
        r = Raw(h.url)
        r.ok("connect")
        r.ok("subscribe", {"channel": "chat:first"})
        for i in range(10):  # over the limit, again and again, without reading the replies
            r.send(frame(i))
        codes = []
        with pytest.raises(ConnectionClosed) as info:
            while True:
                codes.append(r.recv().get("error", {}).get("code", 0))
        assert info.value.code == 1008
        assert codes == [ErrorCode.LIMIT_EXCEEDED] * 3  # the burst of trips, then the close
        assert _trips(h) == {limit: 4, "abuse_close": 1}
        assert h.wait_sessions(0)
        r.close()
    finally:
        h.stop()


def test_api_key_clients_are_never_closed_for_tripping_limits() -> None:
    from .test_hub_auth import _open

    config = hub_config(rate_limits=RateLimits(**_ABUSE))
    config.limits = HubLimits(max_channels_per_connection=1)
    h = HubThread(config)
    try:
        server = _open(h, Authorization=f"apikey {API_KEY}")
        server.ok("connect")
        server.ok("subscribe", {"channel": "chat:0"})
        for i in range(1, 10):
            assert server.error("subscribe", {"channel": f"chat:{i}"}) == ErrorCode.LIMIT_EXCEEDED
        assert server.roundtrip()
        assert _trips(h) == {"subscriptions_per_connection": 9}
        server.close()
    finally:
        h.stop()


def test_connections_per_ip_trip_and_recover() -> None:
    h = _hub(connections_per_second_per_ip=0.001, connections_burst_per_ip=3)
    try:
        clients = [Raw(h.url) for _ in range(3)]
        with pytest.raises(HandshakeError) as info:
            Raw(h.url)
        assert info.value.status == 429
        assert _trips(h) == {"connections_per_ip": 1}
        h.loop.advance(1000)  # one connection's worth of refill
        clients.append(Raw(h.url))
        with pytest.raises(HandshakeError):
            Raw(h.url)
        for r in clients:
            r.close()
    finally:
        h.stop()


def test_subscriptions_per_connection_and_channels_trip_and_recover() -> None:
    config = HubConfig(
        port=0, limits=HubLimits(max_channels_per_connection=2), rate_limits=RateLimits(max_channels=3)
    )
    h = HubThread(config)
    try:
        a, b = Raw(h.url), Raw(h.url)
        a.ok("connect")
        b.ok("connect")
        a.ok("subscribe", {"channel": "chat:1"})
        a.ok("subscribe", {"channel": "chat:2"})
        assert a.error("subscribe", {"channel": "chat:3"}) == ErrorCode.LIMIT_EXCEEDED
        b.ok("subscribe", {"channel": "chat:1"})  # an existing channel: no new one
        b.ok("subscribe", {"channel": "stock:*"})  # the third (patterns count)
        b.ok("unsubscribe", {"channel": "chat:1"})
        assert b.error("subscribe", {"channel": "chat:4"}) == ErrorCode.LIMIT_EXCEEDED
        assert _trips(h) == {"subscriptions_per_connection": 1, "channels": 1}
        a.ok("unsubscribe", {"channel": "chat:2"})  # frees a channel and a subscription slot
        b.ok("subscribe", {"channel": "chat:4"})
        a.close()
        b.close()
    finally:
        h.stop()


def test_connections_per_user_trip_and_recover() -> None:
    h = HubThread(hub_config(rate_limits=RateLimits(max_connections_per_user=2)))
    try:
        first, second = Raw(h.url), Raw(h.url)
        first.ok("connect", {"token": hs256("u")})
        second.ok("connect", {"token": hs256("u")})
        third = Raw(h.url)
        assert third.error("connect", {"token": hs256("u")}) == ErrorCode.LIMIT_EXCEEDED
        assert third.closed() == (DisconnectCode.CONNECTION_LIMIT, "connection limit")  # 3504: terminal
        Raw(h.url).ok("connect", {"token": hs256("other")})  # per user
        first.close()
        assert h.wait_sessions(2)
        Raw(h.url).ok("connect", {"token": hs256("u")})
        assert _trips(h) == {"connections_per_user": 1}
    finally:
        h.stop()


def test_oversized_command_is_106_and_counted(raw: Any, hub: HubThread) -> None:
    r = raw()
    r.send(json.dumps({"id": 1, "ping": {"pad": "x" * 70000}}))
    assert r.recv()["error"]["code"] == ErrorCode.LIMIT_EXCEEDED
    assert _trips(hub) == {"command_size": 1}
