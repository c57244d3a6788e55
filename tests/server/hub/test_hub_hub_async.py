"""hub.py with an engine that answers later (as a networked one does): replies stay in command order,
a subscription's reply comes before its pushes, nothing is missed or doubled around it."""

from __future__ import annotations

import json
import threading
from typing import Any

from wsproto_lite.hub.engine import Publication, Reply
from wsproto_lite.hub.memory import MemoryEngine
from wsproto_lite.hub.namespaces import NamespaceOptions
from wsproto_lite.hub.protocol import Position

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
        r.send({"id": 2, "method": "subscribe", "params": {"channel": "chat:o"}})  # answered 0.2 s later
        r.send({"id": 3, "method": "ping"})  # answerable at once
        r.send("{oops")  # not even a command
        assert [r.recv()["id"] for _ in range(3)] == [2, 3, 0]
        r.close()
    finally:
        h.stop()


def test_a_publication_during_the_subscribe_comes_after_its_reply() -> None:
    h = HubThread(engine=Later)
    try:
        s, p = Raw(h.url), Raw(h.url)
        s.ok("connect")
        p.ok("connect")
        s.send({"id": 2, "method": "subscribe", "params": {"channel": "chat:o"}})  # position read: offset 0
        assert h.hub_server.engine.reading.wait(5)
        assert p.ok("publish", {"channel": "chat:o", "data": 1})["offset"] == 1  # delivered while pending
        reply = s.reply(2)
        assert reply["result"]["offset"] == 0 and s.pushes == []  # the reply first
        assert s.push()["offset"] == 1  # then what the reply did not carry
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
        assert push["offset"] == 4, push  # 1..3 arrived after the reply and were skipped
        s.close()
        p.close()
    finally:
        h.stop()


def test_commands_in_flight_are_bounded() -> None:
    from wsproto_lite.hub.config import HubConfig
    from wsproto_lite.hub.hub import HubLimits

    h = HubThread(HubConfig(port=0, limits=HubLimits(max_commands_in_flight=3)), engine=Later)
    try:
        r = Raw(h.url)
        r.ok("connect")
        for i in range(2, 7):
            r.send({"id": i, "method": "subscribe", "params": {"channel": f"chat:{i}"}})
        frames = []
        while not frames or frames[-1].get("push") != "disconnect":
            frames.append(r.recv())
        assert frames[-1]["code"] == 4001
        assert json.dumps(frames)  # whatever came before the disconnect was well-formed
        r.close()
    finally:
        h.stop()
