"""A shard's subscribing connection, on the hub's loop (``PubSub``).

It applies the loop's subscribe/unsubscribe requests in order (a quick unsubscribe + subscribe of one
channel ends subscribed), hands every readable chunk's messages to ``RedisEngine.on_messages`` in one
batch, each as Redis sent it (``["message", channel, data]`` or ``["pmessage", pattern, channel, data]``),
with the ``Wait`` of each confirmed subscription in its place among them (Redis confirms subscriptions in
the order they were sent).  Idle for ``HEALTH_INTERVAL`` it sends a PING; nothing read by the next check
means the link is dead.  A broken link: ``on_pubsub_down`` (the waits that will not be confirmed fail),
reconnect with backoff (0.1 s doubling to 5 s), subscribe to everything again, ``on_resubscribed``.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from .redis_resp import Connecting, RespSocket

if TYPE_CHECKING:
    from .redis_shard import Shard, Wait
    from .transport import Cancellable

__all__ = ["HEALTH_INTERVAL", "PubSub"]

logger = logging.getLogger("wsproto_lite.hub.redis")

HEALTH_INTERVAL = 10.0
"""Seconds without a byte from Redis after which the link is PINGed (and then found dead if it stays
silent as long again)."""

_MESSAGES = frozenset(("message", "pmessage"))
_CONFIRMATIONS = frozenset(("subscribe", "psubscribe"))


def _command(op: str, name: str) -> tuple[str, str]:
    """The command of a request: ``name`` is a Redis channel, or ``"p:"`` + a pattern."""
    if name.startswith("p:"):
        return ("PSUBSCRIBE" if op == "+" else "PUNSUBSCRIBE"), name[2:]
    return ("SUBSCRIBE" if op == "+" else "UNSUBSCRIBE"), name


class PubSub:
    """The subscribing connection of one shard and the names it listens to."""

    def __init__(self, shard: Shard, client: Any) -> None:
        self.shard = shard
        self.client = client  # redis-py's: makes the connections (URL, TLS, AUTH, timeouts)
        self.wanted: set[str] = set()  # Redis channels and patterns ("p:" + pattern) this node listens to
        self.sent: deque[Wait | None] = deque()  # subscribes sent, in order, awaiting confirmation
        self.confirm: dict[str, Wait | None] = {}  # requested while not connected: sent once connected
        self.link: RespSocket | None = None
        self.connecting: Connecting | None = None
        self.timer: Cancellable | None = None
        self.ping_sent_at: float | None = None
        self.backoff = 0.1
        self.first = True
        self.stopping = False
        self.ok = False
        self.failures = 0
        self.reconnects = 0

    def start(self) -> None:
        self._connect()

    def stop(self) -> None:
        """Close the connection (or the attempt), cancel the timer; nothing is reported after this."""
        self.stopping = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.connecting is not None:
            self.connecting.cancel()
            self.connecting = None
        if self.link is not None:
            self.link.close()
            self.link = None

    def request(self, op: str, name: str, wait: Wait | None) -> None:
        """``"+"`` (subscribe, ``wait`` resolved on Redis's confirmation) or ``"-"`` ``name``."""
        (self.wanted.add if op == "+" else self.wanted.discard)(name)
        if self.link is None:  # sent when connected
            if op == "+":
                self.confirm[name] = wait
            else:
                self.confirm.pop(name, None)
            return
        self.link.send([_command(op, name)])
        if op == "+":
            self.sent.append(wait)

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        self.timer = None
        if not self.stopping:
            name = f"hub-redis-sub-connect-{self.shard.index}"
            self.connecting = Connecting(self.shard.engine.require_loop(), self.client, name, self._connected)

    def _connected(self, attempt: Connecting) -> None:
        self.connecting = None
        if attempt.error is not None:
            self._down(str(attempt.error))
            return
        loop = self.shard.engine.require_loop()
        self.link = RespSocket(loop, attempt.connection, self._on_replies, self._down)
        commands = []
        for name in self.wanted:
            commands.append(_command("+", name))
            self.sent.append(self.confirm.pop(name, None))
        self.confirm.clear()
        if commands:
            self.link.send(commands)
        self.ok = True
        self.ping_sent_at = None
        self.timer = loop.call_later(HEALTH_INTERVAL, self._check_health)
        if not self.first:
            self.reconnects += 1
            logger.warning("redis shard %d (%s): pub/sub back", self.shard.index, self.shard.url)
            self.shard.engine.on_resubscribed(self.shard, set(self.wanted))
        self.first = False
        self.backoff = 0.1

    def _down(self, reason: str) -> None:
        """The link broke or could not be made: fail the waits, reconnect after the backoff."""
        self.link = None
        if self.timer is not None:
            self.timer.cancel()
        if self.ok or self.first:
            logger.warning("redis shard %d (%s): pub/sub lost: %s", self.shard.index, self.shard.url, reason)
            self.failures += 1
        self.ok = False
        self.first = False
        # nobody may wait for a confirmation that will not come
        waits = [w for w in self.sent if w is not None] + [w for w in self.confirm.values() if w is not None]
        self.sent.clear()
        self.confirm.clear()
        self.shard.engine.on_pubsub_down(self.shard, waits)
        if not self.stopping:
            self.timer = self.shard.engine.require_loop().call_later(self.backoff, self._connect)
            self.backoff = min(self.backoff * 2, 5.0)

    def _check_health(self) -> None:
        link = self.link
        if link is None:
            return
        loop = self.shard.engine.require_loop()
        now = loop.time()
        if self.ping_sent_at is not None and link.last_read < self.ping_sent_at:
            link.close()
            self._down(f"no answer to a PING in {HEALTH_INTERVAL:g} s")
            return
        self.ping_sent_at = None
        if now - link.last_read >= HEALTH_INTERVAL * 0.99:
            link.send([("PING",)])
            self.ping_sent_at = now
        self.timer = loop.call_later(HEALTH_INTERVAL, self._check_health)

    # -- reading -------------------------------------------------------------------------------

    def _on_replies(self, replies: list[Any]) -> None:
        batch: list[Any] = []
        sent = self.sent
        for reply in replies:
            kind = reply[0] if isinstance(reply, list) and reply else None
            if kind in _MESSAGES:
                batch.append(reply)
            elif kind in _CONFIRMATIONS:
                if sent:
                    wait = sent.popleft()
                    if wait is not None:
                        batch.append(wait)  # resolved in order with the messages around it
            elif isinstance(reply, UnicodeDecodeError):  # someone PUBLISHed bytes that are not text
                self.shard.engine.bad_messages += 1
                logger.warning("redis: ignoring a message that is not UTF-8")
            elif isinstance(reply, Exception):
                logger.warning("redis shard %d: pub/sub error answer: %s", self.shard.index, reply)
        if batch:
            self.shard.engine.on_messages(batch)
