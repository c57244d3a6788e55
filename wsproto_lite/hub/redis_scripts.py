"""The Lua scripts of the Redis engine: each runs atomically inside Redis.

Sent by their SHA1 (``EVALSHA``, :func:`call`), never whole: a shard loads them (``SCRIPT LOAD``) when its
command connection starts and again after it failed; a ``NOSCRIPT`` answer (Redis restarted or ran
``SCRIPT FLUSH``) means the script did not run, so the shard loads them and sends those commands again.

Keys of one channel ``C`` (``P`` is the engine's key prefix, ``hub`` by default):

- ``P:meta:C`` hash ``epoch``, ``top`` (latest offset): the stream's position, kept ``meta_ttl`` after
  the last publication;
- ``P:hist:C`` list of ``offset\\nexpires_ms\\ninfo\\ntags\\ndata`` (oldest first), at most ``history_size``
  long, entries past ``expires_ms`` (Redis's clock) dropped from the head on every read and publish;
- ``P:epoch`` the epoch a new stream takes (random, rotated every ``meta_ttl / 2``, so a stream
  that expired and comes back never continues an old numbering);
- ``P:pres:C`` hash client -> ``userkey\\ninfo json``, ``P:pexp:C`` sorted set client -> expiry (ms),
  ``P:pusr:C`` hash userkey -> connections: presence with expiry, counts in O(1).

The pub/sub channel of ``C`` is ``P:ch:C``; its messages are
``p\\nepoch\\noffset\\nexpires\\ninfo\\ntags\\ndata`` (publication; the first three fields empty
without history; ``info``/``tags`` empty when absent) or ``j\\ninfo json`` / ``l\\ninfo json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

__all__ = [
    "ALL",
    "PRESENCE",
    "PUBLISH",
    "PUBLISH_ONCE",
    "READ",
    "WEBHOOK_SWEEP",
    "WEBHOOK_TRANSITION",
    "LuaScript",
    "call",
]


class LuaScript:
    """A script's text and its SHA1 (the name ``EVALSHA`` runs it by: Redis's ``SCRIPT LOAD`` returns it)."""

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


def call(pipe: Any, script: LuaScript, keys: tuple[str, ...], *args: object) -> None:
    """Queue ``EVALSHA`` of ``script`` on a pipeline (redis-py's ``Script`` objects are not used: in a
    pipeline they send ``SCRIPT EXISTS`` on every ``execute``, an extra round trip)."""
    pipe.evalsha(script.sha, len(keys), *keys, *args)


_NOW = """
local t = redis.call('time')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

_PRUNE = """
while true do
  local head = redis.call('lindex', KEYS[2], 0)
  if not head then break end
  local expires = tonumber(string.match(head, '^%d+\\n(%d+)\\n'))
  if expires and expires > now then break end
  redis.call('lpop', KEYS[2])
end
"""

#: KEYS meta, hist, epoch[, idempotency key]; ARGV pubsub channel, info, data, size, ttl_ms, meta_ttl_ms,
#: epoch candidate, epoch_ttl_ms[, idempotency window ms].  Returns {epoch, offset}; with an idempotency
#: key already seen, nothing is stored nor published: {epoch, offset, 1} of the first publish.
PUBLISH = LuaScript(
    """
if KEYS[4] then
  local seen = redis.call('get', KEYS[4])
  if seen then
    local e, o = string.match(seen, '^(.*)\\n(%d+)$')
    return {e, tonumber(o), 1}
  end
end
local epoch = redis.call('hget', KEYS[1], 'epoch')
if not epoch then
  epoch = redis.call('get', KEYS[3])
  if not epoch then
    epoch = ARGV[7]
    redis.call('set', KEYS[3], epoch, 'px', ARGV[8])
  end
  redis.call('hset', KEYS[1], 'epoch', epoch)
end
local top = redis.call('hincrby', KEYS[1], 'top', 1)
redis.call('pexpire', KEYS[1], ARGV[6])
"""
    + _NOW
    + """
local expires = string.format('%d', now + tonumber(ARGV[5]))
local entry = top .. '\\n' .. expires .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3]
redis.call('rpush', KEYS[2], entry)
redis.call('ltrim', KEYS[2], -tonumber(ARGV[4]), -1)
"""
    + _PRUNE
    + """
redis.call('pexpire', KEYS[2], ARGV[5])
redis.call('publish', ARGV[1], 'p\\n' .. epoch .. '\\n' .. entry)
if KEYS[4] then redis.call('set', KEYS[4], epoch .. '\\n' .. top, 'px', ARGV[9]) end
return {epoch, top}
"""
)

#: KEYS idempotency key; ARGV pubsub channel, message, window ms.  A publication without history: sent
#: unless the key was seen within the window.  Returns 1 when published, 0 for a repeat.
PUBLISH_ONCE = LuaScript(
    """
if redis.call('set', KEYS[1], '1', 'nx', 'px', ARGV[3]) then
  redis.call('publish', ARGV[1], ARGV[2])
  return 1
end
return 0
"""
)

#: KEYS meta, hist, epoch; ARGV epoch candidate, epoch_ttl_ms, "1" to return the held entries.
#: Returns {epoch, top[, entries]}; a channel without a stream stores nothing (only the shared epoch).
READ = LuaScript(
    """
local epoch = redis.call('hget', KEYS[1], 'epoch')
if not epoch then
  epoch = redis.call('get', KEYS[3])
  if not epoch then
    epoch = ARGV[1]
    redis.call('set', KEYS[3], epoch, 'px', ARGV[2])
  end
  return {epoch, 0, {}}
end
local top = tonumber(redis.call('hget', KEYS[1], 'top'))
if ARGV[3] ~= '1' then return {epoch, top, {}} end
"""
    + _NOW
    + _PRUNE
    + """
return {epoch, top, redis.call('lrange', KEYS[2], 0, -1)}
"""
)

#: KEYS pres, pexp, pusr; ARGV op ("add" client userkey value ttl_ms | "remove" client | "stats" |
#: "get").  Expired members are removed (at most 1000 per call) before "stats" and "get".
PRESENCE = LuaScript(
    """
local function remove(client)
  local value = redis.call('hget', KEYS[1], client)
  redis.call('zrem', KEYS[2], client)
  if value then
    redis.call('hdel', KEYS[1], client)
    local userkey = string.match(value, '^([^\\n]*)')
    if redis.call('hincrby', KEYS[3], userkey, -1) <= 0 then redis.call('hdel', KEYS[3], userkey) end
  end
end
"""
    + _NOW
    + """
local op = ARGV[1]
if op == 'add' then
  if redis.call('hexists', KEYS[1], ARGV[2]) == 0 then
    redis.call('hset', KEYS[1], ARGV[2], ARGV[4])
    redis.call('hincrby', KEYS[3], ARGV[3], 1)
  end
  redis.call('zadd', KEYS[2], now + tonumber(ARGV[5]), ARGV[2])
  for i = 1, 3 do redis.call('pexpire', KEYS[i], ARGV[5]) end
  return 1
end
if op == 'remove' then
  remove(ARGV[2])
  return 1
end
local gone = redis.call('zrangebyscore', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, client in ipairs(gone) do remove(client) end
if op == 'stats' then
  return {redis.call('zcard', KEYS[2]), redis.call('hlen', KEYS[3])}
end
return redis.call('hvals', KEYS[1])
"""
)

#: KEYS count key, sequence key, this node's channels, the nodes, this node's liveness; ARGV op (sadd |
#: srem | incr | decr), member, channel, liveness ttl ms.  Returns the next sequence number when this
#: change was the transition (first in, last out), else 0.  ``sadd``/``srem`` (a node's occupancy) also
#: keep the node's own channel list, and its liveness, for the sweep of dead nodes (``WEBHOOK_SWEEP``).
WEBHOOK_TRANSITION = LuaScript(
    """
local op, member = ARGV[1], ARGV[2]
local changed = false
if op == 'sadd' then
  redis.call('sadd', KEYS[3], ARGV[3])
  redis.call('sadd', KEYS[4], member)
  redis.call('set', KEYS[5], '1', 'px', ARGV[4])
  changed = redis.call('sadd', KEYS[1], member) == 1 and redis.call('scard', KEYS[1]) == 1
elseif op == 'srem' then
  redis.call('srem', KEYS[3], ARGV[3])
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
)


#: KEYS the nodes, sequence key; ARGV prefix, this node, liveness ttl ms.  This node is alive (for
#: ttl); every node whose liveness expired is taken out of the occupancy of its channels (by the one
#: caller that removes it from the nodes: once).  Returns {channel, seq, ...} of the channels that
#: became empty: vacated.
WEBHOOK_SWEEP = LuaScript(
    """
local prefix = ARGV[1]
redis.call('set', prefix .. ':whalive:' .. ARGV[2], '1', 'px', ARGV[3])
redis.call('sadd', KEYS[1], ARGV[2])
local vacated = {}
for _, node in ipairs(redis.call('smembers', KEYS[1])) do
  if redis.call('exists', prefix .. ':whalive:' .. node) == 0 then
    redis.call('srem', KEYS[1], node)
    local channels = prefix .. ':whchan:' .. node
    for _, channel in ipairs(redis.call('smembers', channels)) do
      local key = prefix .. ':whn:' .. channel
      if redis.call('srem', key, node) == 1 and redis.call('scard', key) == 0 then
        table.insert(vacated, channel)
        table.insert(vacated, redis.call('incr', KEYS[2]))
      end
    end
    redis.call('del', channels)
  end
end
return vacated
"""
)

ALL = (PUBLISH, PUBLISH_ONCE, READ, PRESENCE, WEBHOOK_TRANSITION, WEBHOOK_SWEEP)
"""Every script a shard loads."""
