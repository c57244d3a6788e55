"""Who decides a channel's occupied/vacated and a user's join/leave, so each fires once in a cluster.

A transition counts only where every node sees it: with the in-memory engine (one process) in this
process; with the Redis engine in Redis, by one Lua script on the channel's shard that changes the
count and tells the one caller whose change was the transition (0 -> 1 or 1 -> 0).  Only that node
sends the event, so N workers (``--workers N``) and several machines deliver each one once.

- Channel occupancy counts *nodes* with local subscribers (``P:whn:C``, a set of node ids: idempotent):
  the registry's own 0 -> 1 and 1 -> 0 per node feed it, one script call per node and channel.
- Members count a user's subscriptions to a presence channel on every node (``P:whm:C``, a hash
  userkey -> count): ``member_added`` for the user's first, ``member_removed`` for the last (Pusher's
  rule; anonymous connections count one each, by client id).

Each transition takes a number from a per-shard sequence (``P:whseq``), sent as the event's ``seq``:
the events of one channel (one shard) have increasing ``seq`` even when different nodes send them, so a
receiver can order them.  A change goes to Redis after the client's reply, so the transitions follow
the order in which the nodes' changes reach Redis: a leave on one node and a join on another a moment
later may reach it the other way round, and the channel is then never seen empty (no vacated/occupied).

A node killed without closing its connections: each node keeps ``P:whalive:NODE`` alive (``presence_ttl``,
refreshed every third of it) and lists its occupied channels in ``P:whchan:NODE``; every node's periodic
``WEBHOOK_SWEEP`` takes a node whose liveness expired out of its channels' occupancy (once: the sweep that
removes it from ``P:whnodes`` does it) and vacates those left empty.  Its members are not swept: a
user's count stays raised (no ``member_removed``, and no ``member_added`` for that user's next join).
A live node stalled longer than ``presence_ttl`` is swept too (its channels vacated while it still
has subscribers; its later leave is then no transition).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Protocol

from .engine import Engine, Reply
from .redis_scripts import WEBHOOK_SWEEP, WEBHOOK_TRANSITION, call

if TYPE_CHECKING:
    from .redis_engine import RedisEngine

__all__ = ["Counts", "LocalCounts", "RedisCounts", "counts_for"]


class Counts(Protocol):
    """Each method resolves to the transition's sequence number, or 0 when it was no transition."""

    def node_enter(self, channel: str) -> Reply[int]: ...

    def node_leave(self, channel: str) -> Reply[int]: ...

    def member_enter(self, channel: str, userkey: str) -> Reply[int]: ...

    def member_leave(self, channel: str, userkey: str) -> Reply[int]: ...

    def sweep(self) -> list[Reply[list[tuple[str, int]]]]:
        """This node is alive; the channels that dead nodes alone occupied, now vacated, with their seq."""
        ...

    @property
    def sweep_every(self) -> float | None:
        """Seconds between sweeps (None: nothing to sweep)."""
        ...


class LocalCounts:
    """One process: the registry's own transitions are the cluster's; members counted here."""

    def __init__(self) -> None:
        self._members: dict[tuple[str, str], int] = {}
        self._seq = 0

    def _next(self) -> Reply[int]:
        self._seq += 1
        return Reply.of(self._seq)

    def node_enter(self, channel: str) -> Reply[int]:
        return self._next()

    def node_leave(self, channel: str) -> Reply[int]:
        return self._next()

    def member_enter(self, channel: str, userkey: str) -> Reply[int]:
        key = (channel, userkey)
        count = self._members.get(key, 0) + 1
        self._members[key] = count
        return self._next() if count == 1 else Reply.of(0)

    def member_leave(self, channel: str, userkey: str) -> Reply[int]:
        key = (channel, userkey)
        count = self._members.get(key, 0) - 1
        if count > 0:
            self._members[key] = count
            return Reply.of(0)
        if self._members.pop(key, None) is None:
            return Reply.of(0)  # never entered: no transition
        return self._next()

    def sweep(self) -> list[Reply[list[tuple[str, int]]]]:
        return []  # one process: no other node can die

    @property
    def sweep_every(self) -> float | None:
        return None


class RedisCounts:
    """The cluster's counts in Redis, on the channel's shard (``WEBHOOK_TRANSITION``)."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.node = secrets.token_hex(8)
        """This process's id in the occupancy sets."""

    @property
    def sweep_every(self) -> float | None:
        return self.engine.presence_ttl / 3

    def _ttl_ms(self) -> int:
        return int(self.engine.presence_ttl * 1000)

    def _change(self, kind: str, channel: str, op: str, member: str) -> Reply[int]:
        from .redis_shard import Job

        shard = self.engine.shard_for(channel)
        prefix = self.engine.prefix
        keys = (
            shard.key(kind, channel),
            f"{prefix}:whseq",
            f"{prefix}:whchan:{self.node}",
            f"{prefix}:whnodes",
            f"{prefix}:whalive:{self.node}",
        )
        reply: Reply[int] = Reply()
        ttl_ms = self._ttl_ms()

        def build(pipe: Any) -> None:
            call(pipe, WEBHOOK_TRANSITION, keys, op, member, channel, ttl_ms)

        shard.submit(Job(build, lambda results: int(results[0]), reply))
        return reply

    def node_enter(self, channel: str) -> Reply[int]:
        return self._change("whn", channel, "sadd", self.node)

    def node_leave(self, channel: str) -> Reply[int]:
        return self._change("whn", channel, "srem", self.node)

    def member_enter(self, channel: str, userkey: str) -> Reply[int]:
        return self._change("whm", channel, "incr", userkey)

    def member_leave(self, channel: str, userkey: str) -> Reply[int]:
        return self._change("whm", channel, "decr", userkey)

    def sweep(self) -> list[Reply[list[tuple[str, int]]]]:
        """One ``WEBHOOK_SWEEP`` per shard (each keeps the nodes and channels of its own channels)."""
        from .redis_shard import Job

        prefix = self.engine.prefix
        keys = (f"{prefix}:whnodes", f"{prefix}:whseq")
        replies: list[Reply[list[tuple[str, int]]]] = []
        for shard in self.engine.shards:
            reply: Reply[list[tuple[str, int]]] = Reply()
            shard.submit(
                Job(
                    lambda pipe: call(pipe, WEBHOOK_SWEEP, keys, prefix, self.node, self._ttl_ms()),
                    lambda results: _pairs(results[0]),
                    reply,
                )
            )
            replies.append(reply)
        return replies


def _pairs(flat: list[Any]) -> list[tuple[str, int]]:
    return [(str(flat[i]), int(flat[i + 1])) for i in range(0, len(flat) - 1, 2)]


def counts_for(engine: Engine) -> Counts:
    """Redis-side counts for the Redis engine, local ones otherwise (one process)."""
    if engine.kind == "redis":
        return RedisCounts(engine)  # type: ignore[arg-type]
    return LocalCounts()
