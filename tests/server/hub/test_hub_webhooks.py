"""Signed event webhooks (issue 21): every event, batching, signatures, retries, a receiver that is down,
order per channel, once across nodes on one Redis, a bounded queue, freeing without the collector.

The receiver is a real HTTP server on 127.0.0.1 (``webhook_receiver.py``) that checks each signature."""

from __future__ import annotations

import gc
import threading
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.ports import unused_port
from wsproto_lite.hub.config import ConfigError, HubConfig, config_from_mapping
from wsproto_lite.hub.webhook_config import WebhookConfig
from wsproto_lite.hub.webhook_sender import WebhookSender, sign

from .conftest import HubThread, Raw
from .webhook_receiver import Receiver, verify

SECRET = "s3cret"


@pytest.fixture(autouse=True)
def no_sender_thread_outlives_its_test() -> Iterator[None]:
    import threading

    yield
    left = [t for t in threading.enumerate() if t.name == "hub-webhooks"]
    for thread in left:
        thread.join(5)
    assert not any(t.is_alive() for t in left)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.stop()


def _config(url: str, **options: Any) -> HubConfig:
    options.setdefault("batch_window", 0.01)
    options.setdefault("backoff", 0.01)
    return HubConfig(port=0, webhooks=WebhookConfig(urls=[url], secret=SECRET, **options))


@pytest.fixture
def hooked(receiver: Receiver) -> Iterator[HubThread]:
    h = HubThread(_config(receiver.url))
    yield h
    h.stop()


def _names(events: list[dict[str, Any]], channel: str | None = None) -> list[str]:
    return [e["name"] for e in events if channel is None or e.get("channel") == channel]


def test_every_event_signed_in_order(hooked: HubThread, receiver: Receiver) -> None:
    r = Raw(hooked.url)
    client = r.ok("connect", {"data": {"name": "ann"}})["client"]
    r.ok("subscribe", {"channel": "chat:room"})  # presence: a member too
    r.ok("subscribe", {"channel": "news"})  # no presence: occupied/vacated only
    r.close()
    events = receiver.wait_events(8)
    in_room = ["channel_occupied", "member_added", "member_removed", "channel_vacated"]
    assert _names(events, "chat:room") == in_room
    assert _names(events, "news") == ["channel_occupied", "channel_vacated"]
    assert events[0] == {"name": "connection_opened", "client": client, "user_id": ""}
    closed = events[-1]
    assert closed["name"] == "connection_closed" and closed["client"] == client
    added = next(e for e in events if e["name"] == "member_added")
    assert added == {
        "name": "member_added",
        "channel": "chat:room",
        "user_id": "",
        **{"client": client, "seq": 2},
    }
    seqs = [e["seq"] for e in events if "seq" in e]
    assert seqs == sorted(seqs)
    assert receiver.rejected == 0 and receiver.keys == {"hub"}
    assert all(isinstance(b["time_ms"], int) for b in receiver.batches)


def test_a_user_joins_once_whatever_its_connections(receiver: Receiver) -> None:
    from .authkit import hs256, hub_config

    config = hub_config()
    config.webhooks = _config(receiver.url, events=frozenset({"member_added", "member_removed"})).webhooks
    h = HubThread(config)
    try:
        first, second = Raw(h.url), Raw(h.url)
        for r in (first, second):
            r.ok("connect", {"token": hs256("bob")})
            r.ok("subscribe", {"channel": "chat:room"})
        first.close()
        assert h.wait_sessions(1)
        second.close()
        events = receiver.wait_events(2)
        seen = [(e["name"], e["user_id"]) for e in events]
        assert seen == [("member_added", "bob"), ("member_removed", "bob")]
    finally:
        h.stop()


def test_a_wrong_secret_is_refused_by_the_receiver_and_not_retried(receiver: Receiver) -> None:
    config = WebhookConfig(urls=[receiver.url], secret="not-the-secret", batch_window=0.01)
    sender = WebhookSender(config)
    sender.start()
    try:
        sender.submit({"name": "channel_occupied", "channel": "a"})
        assert receiver.wait_for(lambda: receiver.rejected == 1)
        assert _wait(lambda: sender.stats.failed == 1)
        assert (sender.stats.sent, sender.stats.retried, receiver.batches) == (0, 0, [])
    finally:
        sender.stop()


def _wait(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll a counter the sender thread bumps (it has no event to wait on)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_batches_hold_at_most_max_batch(receiver: Receiver) -> None:
    config = WebhookConfig(urls=[receiver.url], secret=SECRET, batch_window=0.3, max_batch=3)
    sender = WebhookSender(config)
    for i in range(5):  # queued before the thread starts: one batch of 3, then one of 2
        sender.submit({"name": "channel_occupied", "channel": f"c{i}"})
    sender.start()
    try:
        receiver.wait_events(5)
        assert [len(b["events"]) for b in receiver.batches] == [3, 2]
        assert [e["channel"] for e in receiver.events] == [f"c{i}" for i in range(5)]
    finally:
        sender.stop()


def test_a_500_is_retried_then_delivered_once(receiver: Receiver) -> None:
    receiver.statuses = [500, 503]
    config = WebhookConfig(urls=[receiver.url], secret=SECRET, batch_window=0.01, backoff=0.01)
    sender = WebhookSender(config)
    sender.start()
    try:
        sender.submit({"name": "channel_vacated", "channel": "a"})
        assert receiver.wait_events(1) == [{"name": "channel_vacated", "channel": "a"}]
        assert _wait(lambda: sender.stats.sent == 1)
        assert (receiver.requests, sender.stats.retried, sender.stats.failed) == (3, 2, 0)
    finally:
        sender.stop()


def test_receiver_down_counts_failures_and_drops_and_the_hub_goes_on() -> None:
    config = _config(f"http://127.0.0.1:{unused_port()}/x", max_attempts=2, queue_size=2)
    h = HubThread(config)
    try:
        r = Raw(h.url)
        r.ok("connect")
        for i in range(20):
            r.ok("subscribe", {"channel": f"room{i}"})
        assert r.ok("publish", {"channel": "room1", "data": {"x": 1}}) == {}  # the hub answers as usual
        stats = h.hub.webhooks.stats
        assert _wait(lambda: stats.failed >= 1 and stats.queued == stats.lost)
        assert stats.dropped >= 1 and stats.sent == 0 and stats.retried == stats.failed
        assert stats.queued + stats.dropped == 1 + 20  # connection_opened, 20 channels occupied
        metrics = h.call(_metrics, h.hub)
        assert f"wsproto_hub_webhook_events_dropped_total {stats.dropped}" in metrics
        assert "wsproto_hub_webhook_requests_failed_total" in metrics
        assert "wsproto_hub_webhook_retries_total" in metrics
    finally:
        h.stop()


def _metrics(hub: Any) -> str:
    from wsproto_lite.hub.metrics import render

    return render(hub)


def test_order_per_channel_over_many_subscribes(hooked: HubThread, receiver: Receiver) -> None:
    a, b = Raw(hooked.url), Raw(hooked.url)
    a.ok("connect")
    b.ok("connect")
    for _ in range(5):
        a.ok("subscribe", {"channel": "x"})
        b.ok("subscribe", {"channel": "x"})
        a.ok("unsubscribe", {"channel": "x"})
        b.ok("unsubscribe", {"channel": "x"})
    events = receiver.wait_events(12)
    assert _names(events, "x") == ["channel_occupied", "channel_vacated"] * 5


def test_a_flood_keeps_the_queue_bounded() -> None:
    config = WebhookConfig(urls=[f"http://127.0.0.1:{unused_port()}/x"], secret=SECRET, queue_size=100)
    sender = WebhookSender(config)  # not started: nothing is taken from the queue
    event = {"name": "channel_occupied", "channel": "a"}
    for _ in range(1_000):
        sender.submit(dict(event))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(100_000):
            sender.submit(dict(event))
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert sender.queued_now == 100
    assert (sender.stats.queued, sender.stats.dropped) == (100, 100_900)
    assert grown < 64 * 1024, grown  # flat: 100 000 more events kept nothing
    sender.stop()


def test_webhooks_and_their_thread_are_freed_without_gc(receiver: Receiver) -> None:
    from wsproto_lite.hub.app import HubServer
    from wsproto_lite.server.loop import EventLoop

    gc.collect()
    gc.disable()
    try:
        loop = EventLoop()
        server = HubServer(_config(receiver.url), loop=loop)
        webhooks = server.hub.webhooks
        assert webhooks is not None
        thread = webhooks.sender._thread
        weak = [weakref.ref(server.hub), weakref.ref(webhooks), weakref.ref(webhooks.sender)]
        del webhooks
        server.close()
        del server
        assert [w() is None for w in weak] == [True, True, True]
        assert thread is not None
        thread.join(5)
        assert not thread.is_alive()
        loop.close()
    finally:
        gc.enable()


def test_a_closed_connection_is_freed_without_gc(hooked: HubThread, receiver: Receiver) -> None:
    r = Raw(hooked.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "chat:freed"})
    gc.disable()
    try:

        def refs() -> list[weakref.ref[Any]]:
            (session,) = hooked.hub.sessions.values()
            return [weakref.ref(session), *(weakref.ref(s) for s in session.subscriptions.values())]

        weak = hooked.call(refs)
        r.close()
        assert hooked.wait_sessions(0)
        receiver.wait_events(6)  # every event of the connection was sent
        assert hooked.call(lambda: [w() is None for w in weak]) == [True, True]
        assert hooked.call(lambda: hooked.hub.webhooks.counts._members) == {}  # nothing kept per user
    finally:
        gc.enable()


# -- config, report ----------------------------------------------------------------------------------


def test_config_table_and_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSPROTO_HUB_WEBHOOK_SECRET", raising=False)
    config = config_from_mapping(
        {"webhooks": {"url": "http://127.0.0.1:9/h", "secret": "k", "events": ["channel_vacated"]}}
    )
    assert config.webhooks.urls == ["http://127.0.0.1:9/h"] and config.webhooks.events == {"channel_vacated"}
    for bad, word in (
        ({"url": "ftp://x/"}, "not an http"),
        ({"url": "http://x/"}, "secret is required"),
        ({"url": "http://x/", "secret": "k", "events": ["nope"]}, "unknown"),
        ({"url": "http://x/", "secret": "k", "max_batch": 0}, "max_batch"),
        ({"url": "http://x/", "secret": "k", "max_batch": 1.5}, "integer"),
        ({"colour": 1}, "unknown key webhooks.colour"),
    ):
        with pytest.raises(ConfigError, match=word):
            config_from_mapping({"webhooks": bad})
    monkeypatch.setenv("WSPROTO_HUB_WEBHOOK_SECRET", "from-env")
    from_env = config_from_mapping({"webhooks": {"url": "http://x/"}}).webhooks.with_environment()
    assert from_env.secret == "from-env"


def test_the_start_report_shows_webhooks_when_on(hooked: HubThread) -> None:
    from wsproto_lite.hub.report import exposure

    lines = exposure(hooked.hub_server)
    assert lines[-1].startswith("webhooks: POST to 127.0.0.1:") and "X-Hub-Signature" in lines[-1]
    off = HubThread()
    try:
        assert not any(line.startswith("webhooks") for line in exposure(off.hub_server))
    finally:
        off.stop()


@given(st.binary(max_size=512), st.text(min_size=1, max_size=40))
def test_a_signature_verifies_only_its_body(body: bytes, secret: str) -> None:
    signature = sign(secret, body)
    assert verify(secret, body, signature)
    assert not verify(secret, body + b" ", signature)
    assert not verify(secret + "x", body, signature)


# -- several nodes on one Redis: each transition once ------------------------------------------------


@pytest.fixture
def redis_url() -> Iterator[str]:
    from .redis_util import RedisServer

    server = RedisServer()
    yield server.url
    server.stop()


def _redis_node(url: str, prefix: str, receiver: Receiver, key: str) -> HubThread:
    from wsproto_lite.hub.redis_engine import RedisEngine

    from .authkit import hub_config

    config = hub_config()
    events = frozenset({"channel_occupied", "channel_vacated", "member_added", "member_removed"})
    config.webhooks = _config(receiver.url, events=events, key=key).webhooks
    return HubThread(config, engine=lambda: RedisEngine(url, prefix=prefix))


def test_two_nodes_on_one_redis_send_each_transition_once(redis_url: str, receiver: Receiver) -> None:
    from .authkit import hs256

    one = _redis_node(redis_url, "wh", receiver, "n1")
    two = _redis_node(redis_url, "wh", receiver, "n2")
    try:
        a, b = Raw(one.url), Raw(two.url)
        a.ok("connect", {"token": hs256("bob")})
        b.ok("connect", {"token": hs256("bob")})  # the same user on both nodes

        # A reply does not wait for Redis to decide the transition (the node's change of the counts goes
        # out after it): each step waits until its node's changes are decided, so that the two nodes'
        # changes reach Redis in the order of the steps. Without it a node's leave could reach Redis
        # after the other node's next join, and the channel would never be seen empty in between.
        def step(client: Raw, node: HubThread, command: str) -> None:
            client.ok(command, {"channel": "chat:x"})
            decided = threading.Event()
            node.call(lambda: node.hub.webhooks.after_decisions(node.loop, decided.set, timeout=10.0))
            assert decided.wait(10.0)

        for _ in range(3):
            step(a, one, "subscribe")  # node 1: occupied, bob added
            step(b, two, "subscribe")  # node 2: neither
            step(a, one, "unsubscribe")  # node 1: neither
            step(b, two, "unsubscribe")  # node 2: bob removed, vacated
        a.ok("subscribe", {"channel": "m1"})  # markers: every earlier decision of each node is sent
        b.ok("subscribe", {"channel": "m2"})
        events = receiver.wait_events(14)
        assert sorted(e["channel"] for e in events if e["channel"].startswith("m")) == ["m1", "m2"]
        in_x = [e for e in events if e["channel"] == "chat:x"]
        in_order = sorted(in_x, key=lambda e: e["seq"])
        expected = ["channel_occupied", "member_added", "member_removed", "channel_vacated"] * 3
        assert [e["name"] for e in in_order] == expected
        assert len({e["seq"] for e in in_x}) == 12
        assert set(receiver.senders) == {"n1", "n2"}  # each node sent what it decided
        a.close()
        b.close()
    finally:
        one.stop()
        two.stop()


# -- the command line --------------------------------------------------------------------------------


def _hub_process(*args: str, secret: str | None) -> Any:
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    env = {k: v for k, v in os.environ.items() if k != "WSPROTO_HUB_WEBHOOK_SECRET"}
    env["PYTHONPATH"] = str(root)
    if secret is not None:
        env["WSPROTO_HUB_WEBHOOK_SECRET"] = secret
    return subprocess.Popen(
        [sys.executable, "-m", "server", "hub", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_the_command_line_needs_a_secret() -> None:
    proc = _hub_process("--port", "0", "--webhook-url", "http://127.0.0.1:9/h", secret=None)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "a secret is required" in err


def test_the_command_line_reports_sends_and_flushes_at_stop(receiver: Receiver) -> None:
    import signal

    port = unused_port()
    proc = _hub_process("--port", str(port), "--webhook-url", receiver.url, secret=SECRET)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(7)]
        assert lines[-1].startswith("webhooks: POST to 127.0.0.1:"), lines
        r = Raw(f"ws://127.0.0.1:{port}/connection/websocket")
        r.ok("connect")
        r.ok("subscribe", {"channel": "chat:cli"})
        receiver.wait_events(3)  # opened, occupied, member added
        proc.send_signal(signal.SIGTERM)  # the shutdown disconnects r: its events go out before the exit
        assert proc.wait(timeout=15) == 0
        names = _names(receiver.events)
        assert names[3:] == ["member_removed", "channel_vacated", "connection_closed"], names
        r.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_readme_receiver_snippet_checks_signatures() -> None:
    import json
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    code = next(b for b in blocks if "def webhook_events" in b)
    scope: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), scope)
    body = json.dumps({"time_ms": 1, "events": [{"name": "channel_vacated", "channel": "a"}]}).encode()
    events = scope["webhook_events"](body, sign(SECRET, body), SECRET.encode())
    assert events == [{"name": "channel_vacated", "channel": "a"}]
    with pytest.raises(PermissionError):
        scope["webhook_events"](body, sign("other", body), SECRET.encode())
    with pytest.raises(PermissionError):
        scope["webhook_events"](body + b" ", sign(SECRET, body), SECRET.encode())


def test_two_workers_send_each_transition_once(redis_url: str, receiver: Receiver) -> None:
    import signal

    import redis

    from .test_hub_supervisor import Process

    port = unused_port()
    hub = Process(
        *("--workers", "2", "--port", str(port), "--engine", f"{redis_url}?prefix=ww"),
        *("--webhook-url", receiver.url),
        env={"WSPROTO_HUB_WEBHOOK_SECRET": SECRET},
    )
    clients: list[Raw] = []
    try:
        for _ in range(2):
            hub.expect(r"hub listening")
        nodes = redis.Redis.from_url(redis_url, decode_responses=True)
        while len(clients) < 40 and nodes.scard("ww:whn:chat:w") < 2:  # until both workers hold one
            r = Raw(f"ws://127.0.0.1:{port}/connection/websocket")
            clients.append(r)
            r.ok("connect")
            r.ok("subscribe", {"channel": "chat:w"})
        assert nodes.scard("ww:whn:chat:w") == 2  # subscribers on both workers
        nodes.close()
        for r in clients:
            r.close()
        # at once: a worker may still be deciding (in Redis) its clients' leaves when the signal comes;
        # it runs until they are decided and sent (app.py), then exits
        hub.proc.send_signal(signal.SIGTERM)
        assert hub.proc.wait(timeout=20) == 0
        names = _names(receiver.events)
        n = len(clients)
        assert names.count("channel_occupied") == names.count("channel_vacated") == 1, names
        assert names.count("connection_opened") == names.count("connection_closed") == n
        assert names.count("member_added") == names.count("member_removed") == n  # anonymous: one each
        # first in the order a receiver is told to use (seq): the two workers' batches reach it in either
        # order (seen: the other worker's whole batch, vacated included, before the occupied one's)
        events = [e for e in receiver.events if e.get("channel") == "chat:w"]
        assert min(events, key=lambda e: e["seq"])["name"] == "channel_occupied"
    finally:
        hub.stop()


# -- hostile or stalled backends ---------------------------------------------------------------------


def test_a_stalled_backend_times_out_and_is_retried(receiver: Receiver) -> None:
    import threading

    receiver.hold = threading.Event()
    config = WebhookConfig(
        urls=[receiver.url], secret=SECRET, batch_window=0.01, timeout=0.2, max_attempts=2, backoff=0.01
    )
    sender = WebhookSender(config)
    sender.start()
    try:
        sender.submit({"name": "channel_occupied", "channel": "a"})
        assert _wait(lambda: sender.stats.failed == 1)
        assert (sender.stats.retried, sender.stats.lost, sender.stats.sent) == (1, 1, 0)
        assert receiver.wait_for(lambda: receiver.arrived == 2)
    finally:
        receiver.hold.set()
        sender.stop()


def test_a_huge_answer_is_not_read_and_sending_goes_on(receiver: Receiver) -> None:
    receiver.answer = b"x" * (8 << 20)
    config = WebhookConfig(urls=[receiver.url], secret=SECRET, batch_window=0.01, max_batch=1)
    sender = WebhookSender(config)
    sender.start()
    try:
        sender.submit({"name": "channel_occupied", "channel": "a"})
        sender.submit({"name": "channel_vacated", "channel": "a"})
        assert _names(receiver.wait_events(2)) == ["channel_occupied", "channel_vacated"]
        assert _wait(lambda: sender.stats.sent == 2)
        assert sender.stats.failed == 0
    finally:
        sender.stop()


def test_every_transport_sends_them(start_hub: Any, receiver: Receiver) -> None:
    h = start_hub(_config(receiver.url))  # our server, and HubASGI under uvicorn (two WebSocket classes)
    r = Raw(h.url)
    r.ok("connect")
    r.ok("subscribe", {"channel": "t"})
    r.close()
    assert _names(receiver.wait_events(4)) == [
        "connection_opened",
        "channel_occupied",
        "channel_vacated",
        "connection_closed",
    ]


def test_a_killed_node_s_channels_are_vacated_by_another(redis_url: str, receiver: Receiver) -> None:
    import signal

    from wsproto_lite.hub.redis_engine import RedisEngine

    from .test_hub_supervisor import Process

    port = unused_port()
    doomed_node = Process(
        *("--workers", "1", "--port", str(port), "--engine", f"{redis_url}?prefix=wk&presence_ttl=1"),
        *("--webhook-url", receiver.url),
        env={"WSPROTO_HUB_WEBHOOK_SECRET": SECRET},
    )
    config = _config(receiver.url, key="survivor")
    survivor = HubThread(config, engine=lambda: RedisEngine(redis_url, prefix="wk", presence_ttl=1.0))
    try:
        doomed_node.expect(r"hub listening")
        doomed = Raw(f"ws://127.0.0.1:{port}/connection/websocket")
        doomed.ok("connect")
        doomed.ok("subscribe", {"channel": "k"})
        assert _names(receiver.wait_events(2)) == ["connection_opened", "channel_occupied"]
        doomed_node.proc.send_signal(signal.SIGKILL)  # no close, no leave: its liveness expires in 1 s
        doomed_node.proc.wait(10)
        events = receiver.wait_events(3)
        assert events[2]["name"] == "channel_vacated" and events[2]["channel"] == "k"
        assert receiver.senders[-1] == "survivor" and events[2]["seq"] > events[1]["seq"]
        r = Raw(survivor.url)
        r.ok("connect")
        r.ok("subscribe", {"channel": "k"})  # empty again: occupied again
        assert _names(receiver.wait_events(5))[3:] == ["connection_opened", "channel_occupied"]
        r.close()
        doomed.close()
    finally:
        doomed_node.stop()
        survivor.stop()
