"""The channel registry of one node: which local connections receive which channel, and the fan-out.

Per channel (or pattern) a :class:`Subscribers`: the active subscriptions by connection, the pending
ones (their subscribe reply not sent yet) with the publications that arrived meanwhile, and the floors
of just activated ones (skip what their reply already carried).  A publication's frame is built once
per encoding present among the subscribers (``prepare_message``: JSON text, protobuf binary) and queued
on every subscriber (``send_prepared``; on our selectors layer ``defer_prepared``: written at the end of the
loop iteration, a burst in one ``send()`` per subscriber, see ``server/fanout.py``); a subscriber past
twice the queue bound is dropped as slow.

The registry refers to its hub weakly (the hub owns it): no reference cycle keeps either alive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from wsproto_lite import PreparedMessage, prepare_message
from wsproto_lite.server.fanout import TickFlush
from wsproto_lite.server.websocket import WebSocket

from .bound import QueueBound
from .engine import ClientInfo, Publication, Reply
from .namespaces import Channel, namespace_of
from .part import HubPart
from .pb_frames import publication_push, reply_of
from .protocol import DisconnectCode, Position, presence_push_frame, pub_push_frame

if TYPE_CHECKING:
    from .hub import Hub
    from .metrics import HubStats
    from .session import Subscription
    from .transport import HubConnection

__all__ = ["ChannelRegistry", "Subscribers", "covered"]

_DONE: Reply[None] = Reply.of(None)


class Subscribers:
    """The local subscribers of one channel or pattern: connection -> subscription.

    ``pending``: subscriptions whose reply is not sent yet, with the publications that arrived meanwhile;
    ``floors``: just activated subscriptions that must skip publications up to the position their reply
    gave (a networked engine may deliver those after the reply); ``ready``: the engine's node
    subscription.
    """

    __slots__ = ("by_conn", "prefix", "pending", "floors", "ready")

    def __init__(self, prefix: str | None, ready: Reply[None]) -> None:
        self.by_conn: dict[HubConnection, Subscription] = {}
        self.prefix = prefix
        self.pending: dict[HubConnection, list[Publication]] = {}
        self.floors: dict[HubConnection, Position] = {}
        self.ready = ready


class ChannelRegistry(HubPart):
    """Channels and patterns with local subscribers (``hub.registry``), and the engine's callbacks."""

    def __init__(self, hub: Hub, bound: QueueBound, stats: HubStats) -> None:
        super().__init__(hub)
        self.bound = bound
        self.stats = stats
        self._tick: TickFlush | None = None  # our selectors layer's connections: one write per iteration
        self.exact: dict[str, Subscribers] = {}
        """Exact channel -> subscribers."""
        self.patterns: dict[str, dict[str, Subscribers]] = {}
        """Namespace -> pattern -> subscribers."""

    # -- the registry ------------------------------------------------------------------------------

    def count(self) -> int:
        return len(self.exact) + sum(len(p) for p in self.patterns.values())

    def counts(self) -> dict[str, int]:
        """Every channel and pattern with subscribers here -> how many."""
        counts = {name: len(s.by_conn) for name, s in self.exact.items()}
        for patterns in self.patterns.values():
            counts.update((name, len(s.by_conn)) for name, s in patterns.items())
        return counts

    def has_subscribers(self, channel: Channel) -> bool:
        return self.subscribers(channel) is not None

    def subscribers(self, channel: Channel) -> Subscribers | None:
        if channel.prefix is None:
            return self.exact.get(channel.name)
        patterns = self.patterns.get(channel.namespace)
        return None if patterns is None else patterns.get(channel.name)

    def add(self, subscription: Subscription) -> Reply[None]:
        """Add a pending subscription; the reply of the node's subscription to the channel."""
        channel = subscription.channel
        subscribers = self.subscribers(channel)
        if subscribers is None:
            subscribers = Subscribers(channel.prefix, _DONE)
            if channel.prefix is None:
                self.exact[channel.name] = subscribers
            else:
                self.patterns.setdefault(channel.namespace, {})[channel.name] = subscribers
            subscribers.ready = self.hub.engine.node_subscribe(channel.name)
            if channel.prefix is None and self.hub.webhooks is not None:
                self.hub.webhooks.channel_added(channel.name)
        subscribers.pending[subscription.conn] = []
        return subscribers.ready

    def activate(self, subscription: Subscription, floor: Position | None) -> None:
        """The subscribe reply is sent: deliver what arrived meanwhile (past ``floor``), then live."""
        subscribers = self.subscribers(subscription.channel)
        if subscribers is None:
            return
        conn = subscription.conn
        held = subscribers.pending.pop(conn, None)
        if held is None:  # unsubscribed or closed in between
            return
        hub = self.hub
        session = hub.sessions.get(conn)
        for publication in held:
            if floor is not None and covered(publication, floor):
                continue
            if publication.offset is not None and floor is not None:
                floor = Position(publication.epoch, publication.offset)
            concrete = publication.channel if subscribers.prefix is not None else None
            frame = pub_push_frame(publication.json, subscription.channel.name, concrete)
            if session is None or not hub.conns.send_frame(session, frame):
                return  # dropped as slow: the subscription is gone with the session
        subscribers.by_conn[conn] = subscription
        if floor is not None and floor.offset:
            subscribers.floors[conn] = floor

    def remove(self, subscription: Subscription) -> None:
        channel = subscription.channel
        subscribers = self.subscribers(channel)
        if subscribers is None:
            return
        conn = subscription.conn
        if subscribers.by_conn.get(conn) is subscription:
            del subscribers.by_conn[conn]
        subscribers.pending.pop(conn, None)
        subscribers.floors.pop(conn, None)
        if not subscribers.by_conn and not subscribers.pending:
            if channel.prefix is None:
                del self.exact[channel.name]
                if self.hub.webhooks is not None:
                    self.hub.webhooks.channel_removed(channel.name)
            else:
                patterns = self.patterns[channel.namespace]
                del patterns[channel.name]
                if not patterns:
                    del self.patterns[channel.namespace]
            self.hub.engine.node_unsubscribe(channel.name)

    # -- the engine's callbacks: fan-out -----------------------------------------------------------

    def on_join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        """A ``join``/``leave`` on any node, for this node's subscribers."""
        subscribers = self.exact.get(channel)
        if subscribers is None or not subscribers.by_conn:
            return
        frame = presence_push_frame(kind, channel, info.as_json())
        self.send_push(subscribers.by_conn, frame, exclude=self.hub.connection_of(info.client))

    def on_lost(self, channels: Iterable[str]) -> None:
        """Publications on these channels may have been missed (the engine's link to the backend
        broke).  Their subscribers are told to reconnect and recover (3010)."""
        conns: set[HubConnection] = set()
        for name in channels:
            for subscribers in (
                self.exact.get(name),
                self.patterns.get(namespace_of(name), {}).get(name),
            ):
                if subscribers is not None:
                    conns.update(subscribers.by_conn)
                    conns.update(subscribers.pending)
        hub = self.hub
        for conn in conns:
            hub.disconnect(conn, DisconnectCode.INSUFFICIENT_STATE, "insufficient state")

    def deliver(self, publication: Publication) -> None:
        """Every publication to a channel this node has subscribers on."""
        self.stats.publications += 1
        channel = publication.channel
        subscribers = self.exact.get(channel)
        if subscribers is not None:
            if subscribers.by_conn:
                targets = (
                    subscribers.by_conn if not subscribers.floors else _past_floors(subscribers, publication)
                )
                frame = pub_push_frame(publication.json, channel)
                self.send_push(targets, frame, protobuf=lambda: publication_push(publication.json, channel))
            for held in subscribers.pending.values():
                held.append(publication)
        patterns = self.patterns.get(namespace_of(channel))
        if patterns is not None:
            for pattern, matching in list(patterns.items()):
                if channel.startswith(matching.prefix):  # type: ignore[arg-type]
                    if matching.by_conn:
                        frame = pub_push_frame(publication.json, pattern, channel)
                        binary = lambda p=pattern: publication_push(publication.json, p, channel)  # noqa: E731
                        self.send_push(matching.by_conn, frame, protobuf=binary)
                    for held in matching.pending.values():
                        held.append(publication)

    def send_push(
        self,
        conns: dict[HubConnection, Subscription],
        text: str,
        exclude: object = None,
        protobuf: Callable[[], bytes] | None = None,
    ) -> None:
        """Send the push ``text`` to ``conns``, its frame prepared once per encoding present among them
        (``protobuf`` builds the binary one, else it is converted from ``text``), never per subscriber."""
        binary_conns = self.hub.conns.protobuf
        if binary_conns and not binary_conns.isdisjoint(conns):
            binary = {conn: sub for conn, sub in conns.items() if conn in binary_conns}
            conns = {conn: sub for conn, sub in conns.items() if conn not in binary_conns}
            payload = protobuf() if protobuf is not None else reply_of(text)
            self.send_all(binary, prepare_message(payload), exclude)
        if conns:
            self.send_all(conns, prepare_message(text), exclude)

    def send_all(
        self, conns: dict[HubConnection, Subscription], frame: PreparedMessage, exclude: object = None
    ) -> None:
        size = len(frame.frame)
        threshold = self.bound.limit - size  # one comparison per subscriber on the fast path
        slow: list[HubConnection] | None = None
        targets = list(conns)  # a send may close a connection, which edits `conns`
        sent = 0
        for conn in targets:
            if conn.buffered_amount > threshold:  # this frame takes it over the bound, or it is already
                if not self.bound.admits(conn.buffered_amount, size):  # past the hard bound: dropped
                    if slow is None:
                        slow = []
                    slow.append(conn)
                elif conn is not exclude:  # queued; the tick times how long it stays over
                    conn.send_prepared(frame)
                    sent += 1
                    self.hub.conns.behind_conn(conn)
            elif conn is not exclude:
                if isinstance(conn, WebSocket):  # queued now, written at the end of the loop iteration
                    conn.defer_prepared(frame, self._tick or self._tick_for(conn))
                else:
                    conn.send_prepared(frame)
                sent += 1
        self.stats.deliveries += len(targets)
        self.stats.messages_out += sent
        self.stats.bytes_out += sent * len(frame.frame)
        if slow is not None:
            self.hub.conns.drop_slow(slow)

    def _tick_for(self, conn: WebSocket) -> TickFlush:
        """The end-of-iteration writer of the loop our connections run on (see ``server/fanout.py``)."""
        self._tick = TickFlush(conn.loop)
        return self._tick


def covered(publication: Publication, floor: Position) -> bool:
    """True when a subscriber whose reply gave position ``floor`` already has ``publication``."""
    return (
        publication.offset is not None
        and publication.epoch == floor.epoch
        and publication.offset <= floor.offset
    )


def _past_floors(subscribers: Subscribers, publication: Publication) -> dict[HubConnection, Subscription]:
    """The active subscribers that do not have ``publication`` yet (rare: right after a subscribe)."""
    targets = subscribers.by_conn
    for conn, floor in list(subscribers.floors.items()):
        if covered(publication, floor):
            if targets is subscribers.by_conn:
                targets = dict(targets)
            targets.pop(conn, None)
        else:
            del subscribers.floors[conn]  # publications arrive in offset order: no more duplicates
    return targets
