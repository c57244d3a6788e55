"""hub.py with an engine that answers later (as a networked one does): replies stay in command order,
a subscription's reply comes before its pushes, nothing is missed or doubled around it."""

from __future__ import annotations

import json
import threading
from typing import Any

from wsproto_lite.hub.engine import Publication, Reply
from wsproto_lite.hub.memory import MemoryEngine
from wsproto_lite.hub.namespaces import NamespaceOptions
from wsproto_lite.hub.protocol import DisconnectCode, Position

from .conftest import HubThread, Raw


class Later(MemoryEngine):
    """The in-memory engine, but reads answer ``read_delay`` s late (with the state at the call, as
    a reply in flight would) and publications reach the hub ``deliver_delay`` s after being stored."""

    read_delay = 0.2
    deliver_delay = 0.05

    def _later(self, delay: float, value: Any) -> Reply[Any]:
        reply: Reply[Any] = Reply()
        assert self.loop is not None
        self.loop.call_later(delay, reply.resolve, value)
        return reply

    def attach(self, loop: Any) -> None:
        self.loop = loop
        self.reading = threading.Event()

    def publish(
        self, channel: str, data_json: str, info_json: str | None, options: NamespaceOptions
    ) -> Reply[Publication]:
        deliver, self._deliver = self._deliver, None
        try:
            publication = self.publish_now(channel, data_json, info_json, options)
        finally:
            self._deliver = deliver
        if deliver is not None:
            self.loop.call_later(self.deliver_delay, deliver, publication)
        return Reply.of(publication)

    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
        self.reading.set()
        return self._later(self.read_delay, self.position_now(channel, options))


class FastReads(Later):
    read_delay = 0.0
    deliver_delay = 0.2


def test_replies_keep_the_order_of_the_commands() -> None:
    h = HubThread(engine=Later)
    try:
        r = Raw(h.url)
        r.ok("connect")
        r.send({"id": 2, "subscribe": {"channel": "chat:o"}})  # answered 0.2 s later
        r.send({"id": 3, "ping": {}})  # answerable at once
        r.send({"id": 4, "fly": {}})  # refused at once: 104
        r.send('{"id": 5, "ping": {}}\n{"id": 6, "presence_stats": {"channel": "chat:o"}}')  # a batch
        assert [r.recv()["id"] for _ in range(5)] == [2, 3, 4, 5, 6]
        r.close()
    finally:
        h.stop()


def test_a_publication_during_the_subscribe_comes_after_its_reply() -> None:
    h = HubThread(engine=Later)
    try:
        s, p = Raw(h.url), Raw(h.url)
        s.ok("connect")
        p.ok("connect")
        s.send({"id": 2, "subscribe": {"channel": "chat:o"}})  # position read: offset 0
        assert h.hub_server.engine.reading.wait(5)
        assert p.ok("publish", {"channel": "chat:o", "data": 1})["offset"] == 1  # delivered while pending
        reply = s.reply(2)
        assert reply["subscribe"]["offset"] == 0 and s.pushes == []  # the reply first
        assert s.push()["pub"]["offset"] == 1  # then what the reply did not carry
        s.close()
        p.close()
    finally:
        h.stop()


def test_publications_the_reply_already_counts_are_not_pushed_again() -> None:
    h = HubThread(engine=FastReads)
    try:
        s, p = Raw(h.url), Raw(h.url)
        s.ok("connect")
        p.ok("connect")
        for i in (1, 2, 3):
            p.ok("publish", {"channel": "chat:f", "data": i})  # reach the hub 0.2 s later
        sub = s.ok("subscribe", {"channel": "chat:f"})
        assert sub["offset"] == 3  # the position already counts 1..3
        p.ok("publish", {"channel": "chat:f", "data": 4})
        push = s.push()
        assert push["pub"]["offset"] == 4, push  # 1..3 arrived after the reply and were skipped
        s.close()
        p.close()
    finally:
        h.stop()


class Stalled(Later):
    """Reads wait until the test releases them: an engine (Redis) that answers slowly."""

    def attach(self, loop: Any) -> None:
        super().attach(loop)
        self.pending: list[tuple[Reply[Any], Position]] = []
        self.most = 0  # reads pending at once, at most
        self.arrived = threading.Semaphore(0)

    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
        reply: Reply[Position] = Reply()
        self.pending.append((reply, self.position_now(channel, options)))
        self.most = max(self.most, len(self.pending))
        self.arrived.release()
        return reply

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for reply, value in pending:
            reply.resolve(value)


def _stalled_hub(limit: int) -> HubThread:
    from wsproto_lite.hub.config import HubConfig
    from wsproto_lite.hub.hub import HubLimits

    return HubThread(HubConfig(port=0, limits=HubLimits(max_commands_in_flight=limit)), engine=Stalled)


def test_commands_waiting_on_a_slow_engine_pause_the_client_instead_of_dropping_it() -> None:
    h = _stalled_hub(4)
    try:
        engine = h.hub_server.engine
        r = Raw(h.url)
        r.ok("connect")
        count = 40
        for i in range(count):  # one frame each: far more than may wait at once
            r.send({"id": 100 + i, "subscribe": {"channel": f"chat:{i}"}})
        for _ in range(4):
            assert engine.arrived.acquire(timeout=5)
        for _ in range(count - 4):  # each time one more arrives, answer what waits
            h.call(engine.release)
            assert engine.arrived.acquire(timeout=5)
        h.call(engine.release)
        assert [r.recv(timeout=10)["id"] for _ in range(count)] == [100 + i for i in range(count)]
        assert h.call(lambda: engine.most) == 4  # never more than the limit read ahead of the answers
        assert r.ok("presence_stats", {"channel": "chat:0"}) == {"num_clients": 1, "num_users": 1}
        r.close()
    finally:
        h.stop()


def test_commands_batched_past_twice_the_limit_disconnect_as_slow() -> None:
    h = _stalled_hub(4)
    try:
        r = Raw(h.url)
        r.ok("connect")
        frame = "\n".join(json.dumps({"id": i, "subscribe": {"channel": f"chat:{i}"}}) for i in range(2, 12))
        r.send(frame)  # 10 commands in one frame: read before any pause could apply
        assert r.closed()[0] == DisconnectCode.SLOW  # 3008: reconnect
        assert r.pushes == []
        r.close()
    finally:
        h.stop()
