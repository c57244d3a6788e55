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
receiver can order them.  A node killed without closing its connections leaves its counts behind (its
channels are not vacated): see "Webhooks" in the README.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Protocol

from .engine import Engine, Reply

if TYPE_CHECKING:
    from .redis_engine import RedisEngine

__all__ = ["Counts", "LocalCounts", "RedisCounts", "counts_for"]

#: KEYS count key, sequence key; ARGV op (sadd | srem | incr | decr), member.  Returns the next
#: sequence number when this change was the transition (first in, last out), else 0.
TRANSITION = """
local op, member = ARGV[1], ARGV[2]
local changed = false
if op == 'sadd' then
  changed = redis.call('sadd', KEYS[1], member) == 1 and redis.call('scard', KEYS[1]) == 1
elseif op == 'srem' then
  changed = redis.call('srem', KEYS[1], member) == 1 and redis.call('scard', KEYS[1]) == 0
elseif op == 'incr' then
  changed = redis.call('hincrby', KEYS[1], member, 1) == 1
else
  local left = redis.call('hincrby', KEYS[1], member, -1)
  if left <= 0 then redis.call('hdel', KEYS[1], member) end
  changed = left == 0
end
if changed then return redis.call('incr', KEYS[2]) end
return 0
"""


class Counts(Protocol):
    """Each method resolves to the transition's sequence number, or 0 when it was no transition."""

    def node_enter(self, channel: str) -> Reply[int]: ...

    def node_leave(self, channel: str) -> Reply[int]: ...

    def member_enter(self, channel: str, userkey: str) -> Reply[int]: ...

    def member_leave(self, channel: str, userkey: str) -> Reply[int]: ...


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


class RedisCounts:
    """The cluster's counts in Redis, on the channel's shard (``TRANSITION``)."""

    def __init__(self, engine: RedisEngine) -> None:
        self.engine = engine
        self.node = secrets.token_hex(8)
        """This process's id in the occupancy sets."""

    def _change(self, kind: str, channel: str, op: str, member: str) -> Reply[int]:
        from .redis_shard import Job

        shard = self.engine.shard_for(channel)
        keys = (shard.key(kind, channel), f"{self.engine.prefix}:whseq")
        reply: Reply[int] = Reply()

        def build(pipe: Any) -> None:
            pipe.eval(TRANSITION, 2, *keys, op, member)

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


def counts_for(engine: Engine) -> Counts:
    """Redis-side counts for the Redis engine, local ones otherwise (one process)."""
    if engine.kind == "redis":
        return RedisCounts(engine)  # type: ignore[arg-type]
    return LocalCounts()
