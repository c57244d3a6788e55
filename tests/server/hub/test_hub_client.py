"""client.py: the blocking and the loop client against a real hub: callbacks, reconnect, recovery."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.ports import unused_port
from wsproto_lite.hub.client import (
    Backoff,
    HubClient,
    HubCommandError,
    HubDisconnected,
    LoopHubClient,
    RecoveryReport,
)
from wsproto_lite.hub.protocol import DisconnectCode
from wsproto_lite.server.loop import EventLoop

from .conftest import HubThread

FAST = Backoff(base=0.02, cap=0.1)


def _conn_of(hub: HubThread, client_id: str) -> Any:
    return next(c for c, s in hub.hub.sessions.items() if s.info is not None and s.info.client == client_id)


def test_subscribe_publish_presence_history(hub: HubThread) -> None:
    got: list[dict[str, Any]] = []
    joins: list[dict[str, Any]] = []
    with HubClient(hub.url, name="a", backoff=FAST) as a, HubClient(hub.url, name="b", backoff=FAST) as b:
        a.subscribe("chat:c", got.append, on_join=joins.append)
        b.subscribe("chat:c", lambda pub: None)
        assert b.publish("chat:c", {"n": 1})["offset"] == 1
        a.run(timeout=5, until=lambda: bool(got and joins))
        assert got[0]["data"] == {"n": 1} and joins[0]["conn_info"] == {"name": "b"}
        assert set(a.presence("chat:c")["presence"]) == {a.client_id, b.client_id}
        assert a.presence_stats("chat:c") == {"num_clients": 2, "num_users": 2}
        assert [p["data"] for p in a.history("chat:c", limit=5)["publications"]] == [{"n": 1}]
        assert a.history("chat:c")["publications"] == []  # no limit: the position only
        with pytest.raises(HubCommandError) as info:
            a.publish("nope:x", 1)
        assert info.value.code == 102
        a.ping()
        a.unsubscribe("chat:c")


def test_reconnect_recovers_what_was_missed(hub: HubThread) -> None:
    got: list[int] = []
    reports: list[RecoveryReport] = []
    with HubClient(hub.url, backoff=FAST) as a, HubClient(hub.url, backoff=FAST) as b:
        a.subscribe("chat:r", lambda pub: got.append(pub["data"]), on_recovery=reports.append)
        b.publish("chat:r", 1)
        a.run(timeout=5, until=lambda: got == [1])
        hub.call(lambda: hub.hub.disconnect(_conn_of(hub, a.client_id), DisconnectCode.SLOW, "slow"))
        b.publish("chat:r", 2)  # a is unsubscribed already: these it can only recover
        b.publish("chat:r", 3)
        a.run(timeout=5, until=lambda: bool(reports))
        assert got == [1, 2, 3] and a.reconnects == 1
        assert reports == [RecoveryReport("chat:r", recovered=True, missed=2, epoch_changed=False)]
        b.publish("chat:r", 4)
        a.run(timeout=5, until=lambda: got[-1] == 4)
        assert got == [1, 2, 3, 4]


def test_a_restart_is_reported_as_unrecoverable(hub: HubThread) -> None:
    reports: list[RecoveryReport] = []
    a = HubClient(hub.url, backoff=FAST)
    a.connect()
    a.subscribe("chat:x", lambda pub: None, on_recovery=reports.append)
    a.publish("chat:x", "before")
    hub.restart()
    a.run(timeout=10, until=lambda: bool(reports))
    (report,) = reports
    assert not report.recovered and report.epoch_changed
    assert "recovery impossible" in str(report)
    a.close()


def test_no_reconnect_when_the_hub_says_so(hub: HubThread) -> None:
    a = HubClient(hub.url, backoff=FAST)
    a.connect()
    hub.call(lambda: hub.hub.disconnect(_conn_of(hub, a.client_id), DisconnectCode.UNAUTHORIZED, "go away"))
    with pytest.raises(HubDisconnected) as info:
        a.run(timeout=5)
    assert info.value.code == DisconnectCode.UNAUTHORIZED
    a.close()


def test_gives_up_after_max_attempts() -> None:
    port = unused_port()  # nothing listens there
    client = HubClient(f"ws://127.0.0.1:{port}/ws", backoff=FAST, max_attempts=2, timeout=2)
    with pytest.raises(OSError):
        client.connect()


def test_loop_client(hub: HubThread) -> None:
    loop = EventLoop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    got: list[Any] = []
    reports: list[RecoveryReport] = []
    done = threading.Event()
    connected = threading.Semaphore(0)

    def on_pub(pub: dict[str, Any]) -> None:
        got.append(pub["data"])
        if len(got) == 3:
            done.set()

    client = LoopHubClient(loop, hub.url, name="loop", backoff=FAST, on_connect=lambda c: connected.release())
    client.subscribe("chat:l", on_pub, on_recovery=reports.append)
    thread.start()
    try:
        assert connected.acquire(timeout=10)
        with HubClient(hub.url) as b:
            while hub.call(lambda: "chat:l" not in hub.hub._channels):
                b.ping()
            b.publish("chat:l", 1)
            hub.call(
                lambda: hub.hub.disconnect(_conn_of(hub, client.state.client_id), DisconnectCode.SLOW, "slow")
            )
            b.publish("chat:l", 2)
            assert connected.acquire(timeout=10)  # reconnected
            replies: list[dict[str, Any]] = []
            loop.call_soon_threadsafe(client.publish, "chat:l", 3, replies.append)
            assert done.wait(10)
        assert got == [1, 2, 3] and reports[0].recovered and reports[0].missed == 1
    finally:
        loop.call_soon_threadsafe(client.close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_a_lost_reply_retries_reads_and_reports_writes(hub: HubThread) -> None:
    from wsproto_lite.hub.client import HubReplyLost

    with HubClient(hub.url, backoff=FAST) as a:
        a.subscribe("chat:w", lambda pub: None)
        # the hub drops the connection before answering: set up by disconnecting it in the loop first
        hub.call(lambda: hub.hub.disconnect(_conn_of(hub, a.client_id), DisconnectCode.SLOW, "slow"))
        assert a.presence_stats("chat:w") == {"num_clients": 1, "num_users": 1}  # reconnected, retried
        hub.call(lambda: hub.hub.disconnect(_conn_of(hub, a.client_id), DisconnectCode.SLOW, "slow"))
        with pytest.raises(HubReplyLost):
            a.publish("chat:w", "maybe")
        assert a.reconnects == 2
        assert a.publish("chat:w", "surely")["offset"] == 1  # the first never reached the hub


def test_refresh_renews_the_token_and_reconnects_use_it() -> None:
    from wsproto_lite.hub.client import HubClient

    from .authkit import hs256, hub_config

    h = HubThread(hub_config())
    try:
        with HubClient(h.url, token=hs256("ann", ttl=60), reconnect=True) as client:
            client.ping()
            assert client.refresh(hs256("ann", ttl=7200))["ttl"] > 7000
            new_token = client.state.token
            h.call(h.hub.disconnect_all)  # 4000: the client reconnects with the refreshed token
            client.ping()
            assert client.state.token == new_token
            (session,) = h.call(lambda: list(h.hub.sessions.values()))
            assert session.identity.user == "ann" and session.identity.expires > time.time() + 7000
    finally:
        h.stop()
