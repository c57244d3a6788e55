"""``GET /metrics``: the Prometheus text format, and counters that count what happened; per-connection auth
and limit state freed at close with the cyclic collector off."""

from __future__ import annotations

import gc
import http.client
import re
import weakref
from typing import Any

from wsproto_lite.server.errors import ConnectionClosed, HandshakeError

from .authkit import API_KEY, hs256, hub_config
from .conftest import HubThread, Raw
from .test_hub_auth import _open

_SAMPLE = re.compile(r'^(wsproto_hub_[a-z_]+)(\{[a-z_]+="[^"\\\n]*"\})? (\d+)$')


def _scrape(h: HubThread) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", h.hub_server.port, timeout=10)
    conn.request("GET", "/metrics", headers={"Authorization": f"apikey {API_KEY}"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    text = response.read().decode()
    conn.close()
    samples: dict[str, int] = {}
    declared: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line[7:].split()
            assert kind in ("counter", "gauge") and name not in declared
            declared.add(name)
        elif line.startswith("# HELP "):
            continue
        else:
            match = _SAMPLE.match(line)
            assert match, line
            assert match.group(1) in declared  # every sample after its TYPE line
            samples[match.group(1) + (match.group(2) or "")] = int(match.group(3))
    return samples


def test_metrics_count_what_happened() -> None:
    h = HubThread(hub_config())
    try:
        before = _scrape(h)
        assert before["wsproto_hub_connections"] == 0 and before["wsproto_hub_auth_failures_total"] == 0
        assert before['wsproto_hub_engine_up{engine="memory"}'] == 1  # the engine's health()
        a, b = Raw(h.url), Raw(h.url)
        a.ok("connect", {"token": hs256("a")})
        b.ok("connect", {"token": hs256("b")})
        sub = a.ok("subscribe", {"channel": "chat:m"})
        b.ok("subscribe", {"channel": "chat:m"})
        b.ok("subscribe", {"channel": "stock:*"})
        b.ok("publish", {"channel": "chat:m", "data": "x"})
        a.push()
        b.push()
        a.ok("unsubscribe", {"channel": "chat:m"})
        assert a.ok("subscribe", {"channel": "chat:m", "recover": {"epoch": sub["epoch"], "offset": 0}})[
            "recovered"
        ]
        a.ok("unsubscribe", {"channel": "chat:m"})
        a.ok("subscribe", {"channel": "chat:m", "recover": {"epoch": "gone", "offset": 0}})
        try:
            _open(h, Authorization="Bearer junk")
        except HandshakeError:
            pass
        bad = Raw(h.url)
        bad.error("connect", {"token": "junk"})
        assert bad.push()["code"] == 4501
        bad.close()
        assert a.error("subscribe", {"channel": "user:b"}) == 103
        assert h.wait_sessions(2)
        m = _scrape(h)
        assert m["wsproto_hub_connections"] == 2  # `bad` was disconnected
        assert m["wsproto_hub_connections_total"] == 3
        assert m["wsproto_hub_subscriptions"] == 3 and m["wsproto_hub_channels"] == 2
        assert m["wsproto_hub_publications_total"] == 1
        assert m["wsproto_hub_auth_failures_total"] == 2
        assert m["wsproto_hub_recoveries_total"] == 1 and m["wsproto_hub_recovery_failures_total"] == 1
        assert m["wsproto_hub_errors_total"] == 2
        assert m["wsproto_hub_messages_in_total"] == 12
        assert m["wsproto_hub_bytes_in_total"] > 12 * 20 and m["wsproto_hub_bytes_out_total"] > 0
        assert m["wsproto_hub_messages_out_total"] >= 12 + 2
        for r in (a, b):
            r.close()
        assert h.wait_sessions(0)
        assert _scrape(h)["wsproto_hub_connections"] == 0
    finally:
        h.stop()


def test_limit_trips_and_api_requests_are_visible() -> None:
    from wsproto_lite.hub.limits import RateLimits

    h = HubThread(hub_config(rate_limits=RateLimits(commands_per_second=1, commands_burst=1)))
    try:
        r = Raw(h.url)
        r.ok("connect", {"token": hs256("a")})
        assert r.error("ping") == 111
        conn = http.client.HTTPConnection("127.0.0.1", h.hub_server.port, timeout=10)
        conn.request("POST", "/api/channels", headers={"Authorization": f"apikey {API_KEY}"})
        assert conn.getresponse().status == 200
        conn.close()
        m = _scrape(h)
        assert m['wsproto_hub_limit_trips_total{limit="commands_per_connection"}'] == 1
        assert m["wsproto_hub_api_requests_total"] == 1 and m["wsproto_hub_api_refused_total"] == 0
        r.close()
    finally:
        h.stop()


def test_sessions_with_tokens_and_buckets_are_freed_without_gc() -> None:
    from wsproto_lite.hub.hub import Session

    h = HubThread(hub_config())
    try:
        r = _open(h, Authorization=f"Bearer {hs256('mem', ttl=600)}")
        r.ok("connect")
        r.ok("refresh", {"token": hs256("mem", ttl=900)})
        r.ok("subscribe", {"channel": "user:mem"})
        r.ok("subscribe", {"channel": "secret:room", "token": hs256("mem", channel="secret:room")})
        gc.disable()
        try:

            def refs() -> list[weakref.ref[Any]]:
                (session,) = h.hub.sessions.values()
                assert isinstance(session, Session) and session.expires is not None
                parts = [session, session.command_bucket, session.byte_bucket, session.trip_bucket]
                return [weakref.ref(p) for p in parts] + [
                    weakref.ref(s) for s in session.subscriptions.values()
                ]

            weak = h.call(refs)
            assert len(weak) == 6
            r.close()
            assert h.wait_sessions(0)
            assert h.call(lambda: [w() is None for w in weak]) == [True] * 6
            assert h.call(lambda: (h.hub._pending, h.hub.users._by_user, h.hub._clients)) == ({}, {}, {})
        finally:
            gc.enable()
    finally:
        h.stop()


def _closed(r: Raw) -> tuple[int, list[dict[str, Any]]]:
    """Read until the hub's close: its code, and the pushes before it."""
    pushes: list[dict[str, Any]] = []
    while True:
        try:
            pushes.append(r.recv(timeout=5))
        except ConnectionClosed as exc:
            return exc.code, pushes


def test_a_failure_on_one_connection_aborts_it_counted_and_the_others_are_still_reached() -> None:
    h = HubThread(hub_config())
    try:
        tabs = [Raw(h.url) for _ in range(3)]
        for tab in tabs:
            tab.ok("connect", {"token": hs256("u")})
            tab.ok("subscribe", {"channel": "chat:x"})

        def break_the_first_close() -> None:
            def close(code: int = 1000, reason: str = "") -> None:
                raise RuntimeError("the transport broke")

            first = h.hub.users.of("u")[0]
            first.close = close

        h.call(break_the_first_close)
        assert h.call(h.hub.disconnect_user, "u", 4100, "ban") == 3
        codes = [_closed(tab)[0] for tab in tabs]
        assert codes == [1006, 4100, 4100]  # the broken one dropped, not left open; the others closed
        assert h.wait_sessions(0)
        assert h.call(lambda: (h.hub._channels, h.hub.engine.presence_channel_count)) == ({}, 0)
        assert _scrape(h)["wsproto_hub_aborts_total"] == 1
        # a code no close frame may carry (an in-process caller's mistake): that connection is aborted too
        r = Raw(h.url)
        r.ok("connect", {"token": hs256("v")})
        h.call(lambda: h.hub.disconnect(h.hub.users.of("v")[0], 1005, "no status"))
        assert _closed(r)[0] == 1006
        assert _scrape(h)["wsproto_hub_aborts_total"] == 2
        for tab in (*tabs, r):
            tab.close()
    finally:
        h.stop()


def test_a_server_side_unsubscribe_that_fails_aborts_the_connection() -> None:
    h = HubThread(hub_config())
    try:
        r = Raw(h.url)
        client = r.ok("connect", {"token": hs256("u")})["client"]
        r.ok("subscribe", {"channel": "chat:x"})

        def unsubscribe_with_a_broken_send() -> bool:
            conn = h.hub.connection_of(client)

            def send(message: str | bytes) -> bool:
                raise RuntimeError("the transport broke")

            conn.send = send
            return bool(h.hub.unsubscribe(conn, "chat:x"))

        assert h.call(unsubscribe_with_a_broken_send) is True
        assert _closed(r)[0] == 1006  # not left subscribed to nothing while it believes otherwise
        assert h.wait_sessions(0)
        assert _scrape(h)["wsproto_hub_aborts_total"] == 1
        r.close()
    finally:
        h.stop()


def test_a_server_side_unsubscribe_whose_push_is_dropped_disconnects_as_slow() -> None:
    h = HubThread(hub_config())
    try:
        r = Raw(h.url)
        client = r.ok("connect", {"token": hs256("u")})["client"]
        r.ok("subscribe", {"channel": "chat:x"})

        def unsubscribe_over_the_hard_limit() -> bool:
            conn = h.hub.connection_of(client)
            conn.send = lambda message: False  # what send answers over write_hard_limit: dropped
            return bool(h.hub.unsubscribe(conn, "chat:x"))

        assert h.call(unsubscribe_over_the_hard_limit) is True
        assert _closed(r)[0] == 4001  # reconnect and recover, rather than wait for what will not come
        assert _scrape(h)["wsproto_hub_slow_disconnects_total"] == 1
        r.close()
    finally:
        h.stop()
