"""The Redis engine: channels, presence and history shared by hub processes on one or many machines.

``RedisEngine("redis://127.0.0.1:6379/0")``; several URLs (``"redis://a:6379/0,redis://b:6379/0"``)
shard channels over several Redis servers by ``crc32(channel) % len(urls)``: a channel's history,
presence and pub/sub live on one server; wildcard subscriptions listen on all of them.  TLS
(``rediss://``) and passwords come with the URL; ``?presence_ttl=60&prefix=hub`` are this engine's own.

Never blocking the hub's loop, and no threads: each shard's two connections are non-blocking sockets
read and written on the hub's own loop (our ``EventLoop`` or an asyncio loop: ``add_reader``), replies
parsed by hiredis (``redis_resp.py``); only making a connection (connect, TLS, AUTH) runs in a
short-lived thread per attempt.  The *command connection* (``redis_link.py``) writes the jobs of a loop
iteration (publish, history, presence...) in one go and matches the answers to them in order; a timer
refreshes this node's presence entries (they expire ``presence_ttl`` after the node stops refreshing,
so a killed node disappears).  The *subscribing connection* (``redis_pubsub.py``) applies the hub's
subscribe/unsubscribe requests and hands every chunk of messages read to ``on_messages`` as one batch.
Publications of one channel come from one Lua script on one server (offset assigned and PUBLISHed
atomically), read by one connection, in order: every node delivers them once, in offset order.

Faults: a failed command answers ``HubError(108, temporary)``.  When the pub/sub link breaks the shard
is *degraded* (``health()``), local subscribers keep their connections; the shard reconnects with
backoff, resubscribes, and then reports every channel it listened to as *lost*: the hub tells their
subscribers to reconnect and recover (disconnect 4002), which gives them the missed publications from
history or ``recovered: false`` (a restarted Redis has a new epoch).  Never a silent gap.

Where it lives: ``redis_shard.py`` (one Redis server: its two connections and the presence refresh),
``redis_history.py`` (publishing, history, recovery), ``redis_presence.py`` (presence), ``redis_scripts.py``
(the Lua scripts); this module holds the engine itself: lifecycle, health, the control channel, and the
routing of pub/sub messages to the hub.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import redis_history, redis_presence
from .engine import (
    ClientInfo,
    ControlReceiver,
    Deliver,
    Engine,
    HistoryResult,
    JoinLeave,
    Lost,
    Publication,
    RecoveryResult,
    Reply,
    unavailable,
)
from .namespaces import NamespaceOptions, namespace_of
from .protocol import Position
from .redis_shard import (
    HAVE_REDIS,
    Job,
    Shard,
    Wait,
    parse_engine_urls,
    redacted,
    require_redis,
    shard_of,
)

if TYPE_CHECKING:
    from .transport import HubLoop

__all__ = ["HAVE_REDIS", "RedisEngine", "parse_engine_urls", "shard_of"]

logger = logging.getLogger("wsproto_lite.hub.redis")

_NO_HISTORY = Position("", 0)


class RedisEngine(Engine):
    kind = "redis"

    def __init__(
        self,
        urls: str | Sequence[str],
        *,
        presence_ttl: float | None = None,
        meta_ttl: float = 3600.0,
        prefix: str | None = None,
        command_timeout: float = 5.0,
    ) -> None:
        require_redis()
        spec = urls if isinstance(urls, str) else ",".join(urls)
        parsed, ours = parse_engine_urls(spec)
        self.urls = parsed
        self.presence_ttl = presence_ttl if presence_ttl is not None else float(ours.get("presence_ttl", 60))
        if self.presence_ttl <= 0:
            raise ValueError("presence_ttl must be > 0 (seconds)")
        self.meta_ttl = meta_ttl
        self.prefix = prefix if prefix is not None else ours.get("prefix", "hub")
        self._loop: HubLoop | None = None
        self._deliver: Deliver | None = None
        self._join_leave: JoinLeave | None = None
        self._lost: Lost | None = None
        self._control: ControlReceiver | None = None
        self._control_channel = f"{self.prefix}:control"
        """The control channel's Redis channel (on the first shard): every node of this prefix."""
        self._shards = [Shard(self, i, url, command_timeout) for i, url in enumerate(parsed)]
        self._exact: set[str] = set()
        self._patterns: dict[str, str] = {}  # hub pattern -> its prefix
        self._pubsub_down: set[int] = set()  # shards whose pub/sub link broke (until it is back)
        self._started = False
        self.bad_messages = 0
        """Pub/sub messages on our channels that were not in our format (ignored)."""
        self.lost_events = 0
        """Times a shard's pub/sub came back and its channels were reported lost."""

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self, loop: HubLoop) -> None:
        self._loop = loop

    def start(self, deliver: Deliver, join_leave: JoinLeave | None = None, lost: Lost | None = None) -> None:
        self.require_loop()
        self._deliver, self._join_leave, self._lost = deliver, join_leave, lost
        if not self._started:
            self._started = True
            for shard in self._shards:
                shard.start()

    def close(self) -> None:
        self._deliver = self._join_leave = self._lost = None
        self._control = None
        if self._started:
            self._started = False
            for shard in self._shards:
                shard.stop()

    @property
    def loop(self) -> HubLoop | None:
        return self._loop

    def require_loop(self) -> HubLoop:
        """The loop the shards' connections and timers run on (``attach``)."""
        if self._loop is None:
            raise RuntimeError("RedisEngine.attach(loop) first (Hub.start does it)")
        return self._loop

    def health(self) -> dict[str, Any]:
        shards = [
            {
                "url": redacted(s.url),
                "commands_ok": s.link.ok,
                "pubsub_ok": s.pubsub.ok,
                "command_failures": s.link.failures,
                "pubsub_failures": s.pubsub.failures,
                "reconnects": s.pubsub.reconnects,
            }
            for s in self._shards
        ]
        ok = all(s["commands_ok"] and s["pubsub_ok"] for s in shards)
        return {
            "engine": self.kind,
            "ok": ok,
            "shards": shards,
            "lost_events": self.lost_events,
            "bad_messages": self.bad_messages,
        }

    # -- the control channel -----------------------------------------------------------------------

    def start_control(self, receive: ControlReceiver) -> Reply[None]:
        """Listen on ``P:control`` (first shard); resolved once Redis confirmed the subscription."""
        self._control = receive
        reply: Reply[None] = Reply()
        shard = self._shards[0]
        wait: Wait | None = Wait(reply, 1)
        if shard.index in self._pubsub_down:
            reply.fail(unavailable())
            wait = None
        shard.pubsub.request("+", self._control_channel, wait)
        return reply

    def publish_control(self, payload: str) -> None:
        target = self._control_channel
        self._shards[0].submit(Job(lambda pipe: pipe.publish(target, payload)))

    # -- shards ----------------------------------------------------------------------------------

    def _shard(self, channel: str) -> Shard:
        return self._shards[shard_of(channel, len(self._shards))]

    @property
    def shards(self) -> list[Shard]:
        return list(self._shards)

    def shard_for(self, channel: str) -> Shard:
        """The shard that holds ``channel`` (the webhooks' counts live there too)."""
        return self._shard(channel)

    def _redis_channel(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    # -- pub/sub ---------------------------------------------------------------------------------

    def _names(self, channel: str) -> tuple[str, list[Shard]]:
        """The Redis channel (or ``p:`` + pattern) of a hub channel or pattern, and its shards."""
        if channel.endswith("*"):
            return "p:" + _glob_escape(self._redis_channel(channel[:-1])) + "*", self._shards
        return self._redis_channel(channel), [self._shard(channel)]

    def node_subscribe(self, channel: str) -> Reply[None]:
        reply: Reply[None] = Reply()
        name, shards = self._names(channel)
        if channel.endswith("*"):
            self._patterns[channel] = channel[:-1]
        else:
            self._exact.add(channel)
        wait: Wait | None = Wait(reply, len(shards))
        if any(s.index in self._pubsub_down for s in shards):
            # the shard subscribes when the link is back; nobody waits for that
            reply.fail(unavailable())
            wait = None
        for shard in shards:
            shard.pubsub.request("+", name, wait)
        return reply

    def node_unsubscribe(self, channel: str) -> None:
        name, shards = self._names(channel)
        if channel.endswith("*"):
            self._patterns.pop(channel, None)
        else:
            self._exact.discard(channel)
        for shard in shards:
            shard.pubsub.request("-", name, None)

    def on_messages(self, batch: list[Any]) -> None:
        """Pub/sub messages of one shard as Redis sent them (``["message", channel, data]``,
        ``["pmessage", pattern, channel, data]``) and the ``Wait`` of each confirmed subscription among
        them, in order (``redis_pubsub.py``)."""
        strip = len(self.prefix) + 4  # "P:ch:"
        for message in batch:
            if isinstance(message, Wait):
                message.remaining -= 1
                if message.remaining == 0:
                    message.reply.resolve(None)
                continue
            pattern = message[1] if len(message) == 4 else None
            redis_channel, data = message[-2], message[-1]
            if redis_channel == self._control_channel:
                if self._control is not None:
                    self._control(data)
                continue
            channel = redis_channel[strip:]
            if pattern is None or self._first_pattern_of(channel) == pattern:
                try:
                    self._on_payload(channel, data)
                except (ValueError, KeyError, TypeError):  # not ours (someone else PUBLISHed there)
                    self.bad_messages += 1
                    logger.warning("redis: ignoring a malformed message on %r", redis_channel)
                except Exception:  # a failure delivering one message must not lose the rest of the batch
                    logger.exception("redis: delivering a message on %r failed", redis_channel)

    def _first_pattern_of(self, channel: str) -> str | None:
        """The one pattern subscription through which this node takes a publication (none when the
        channel is subscribed exactly: Redis sends it to us once per matching subscription)."""
        if channel in self._exact:
            return None
        namespace = namespace_of(channel)
        best: str | None = None
        for prefix in self._patterns.values():
            if channel.startswith(prefix) and namespace_of(prefix) == namespace:
                name = _glob_escape(self._redis_channel(prefix)) + "*"
                if best is None or name < best:
                    best = name
        return best

    def _on_payload(self, channel: str, payload: str) -> None:
        kind = payload[:1]
        if kind == "p":
            _, epoch, offset, _expires, info_json, tags_json, data = redis_history.entry_fields(payload, 7)
            publication = Publication(
                channel,
                int(offset) if offset else None,
                data,
                info_json or None,
                epoch=epoch,
                tags_json=tags_json or None,
            )
            if self._deliver is not None:
                self._deliver(publication)
        elif kind in ("j", "l"):
            value = json.loads(payload[2:])
            if not isinstance(value, dict):  # what we publish is an object (ClientInfo.as_dict)
                raise TypeError(f"a join/leave is a JSON object, not {type(value).__name__}")
            info = ClientInfo.from_dict(value)
            if self._join_leave is not None:
                self._join_leave("join" if kind == "j" else "leave", channel, info)
        else:
            raise ValueError(f"no message of ours starts with {kind!r}")

    def on_pubsub_down(self, shard: Shard, waits: list[Wait]) -> None:
        """A shard's pub/sub link is down; node subscriptions waiting on it fail."""
        self._pubsub_down.add(shard.index)
        for wait in waits:
            wait.reply.fail(unavailable())

    def on_resubscribed(self, shard: Shard, names: set[str]) -> None:
        """A shard's pub/sub is back after a loss: its channels may have gaps."""
        self._pubsub_down.discard(shard.index)
        strip = len(self.prefix) + 4
        channels = [n[strip:] for n in names if not n.startswith("p:") and n != self._control_channel]
        channels += [p for p in self._patterns if self._names(p)[0] in names]
        if channels:
            self.lost_events += 1
            if self._lost is not None:
                self._lost(channels)

    def publish(
        self,
        channel: str,
        data_json: str,
        info_json: str | None,
        options: NamespaceOptions,
        *,
        idempotency_key: str = "",
        tags_json: str | None = None,
    ) -> Reply[Publication]:
        target = self._redis_channel(channel)
        shard = self._shard(channel)
        return redis_history.publish(
            shard,
            target,
            channel,
            data_json,
            info_json,
            options,
            idempotency_key=idempotency_key,
            tags_json=tags_json,
            meta_ttl=self.meta_ttl,
        )

    def join_leave(self, kind: str, channel: str, info: ClientInfo) -> None:
        payload = ("j\n" if kind == "join" else "l\n") + info.as_json()
        target = self._redis_channel(channel)
        self._shard(channel).submit(Job(lambda pipe: pipe.publish(target, payload)))

    # -- history (redis_history.py) --------------------------------------------------------------

    def _read(self, channel: str, entries: bool) -> Reply[redis_history.Read]:
        return redis_history.read(self._shard(channel), channel, entries=entries, meta_ttl=self.meta_ttl)

    def position(self, channel: str, options: NamespaceOptions) -> Reply[Position]:
        if not options.history:
            return Reply.of(_NO_HISTORY)
        return redis_history.position_of(self._read(channel, False))

    def history(
        self,
        channel: str,
        options: NamespaceOptions,
        *,
        since: Position | None,
        limit: int | None,
        reverse: bool,
    ) -> Reply[HistoryResult]:
        if not options.history:
            return Reply.of(HistoryResult([], _NO_HISTORY))
        reading = self._read(channel, True)
        return redis_history.history_of(reading, since=since, limit=limit, reverse=reverse)

    def recover(self, channel: str, options: NamespaceOptions, since: Position) -> Reply[RecoveryResult]:
        if not options.history:
            return Reply.of(RecoveryResult([], _NO_HISTORY, False))
        return redis_history.recovery_of(self._read(channel, True), since)

    def remove_history(self, channel: str) -> Reply[None]:
        return redis_history.remove(self._shard(channel), channel)

    # -- presence (redis_presence.py) ------------------------------------------------------------

    def add_presence(self, channel: str, info: ClientInfo) -> None:
        redis_presence.add_presence(self._shard(channel), channel, info, self.presence_ttl)

    def remove_presence(self, channel: str, client: str) -> None:
        redis_presence.remove_presence(self._shard(channel), channel, client)

    def presence(self, channel: str) -> Reply[list[ClientInfo]]:
        return redis_presence.presence(self._shard(channel), channel)

    def presence_stats(self, channel: str) -> Reply[tuple[int, int]]:
        return redis_presence.presence_stats(self._shard(channel), channel)

    def expire(self) -> None:
        pass  # Redis expires keys itself; history and presence are pruned by the scripts


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern (PSUBSCRIBE)."""
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)
