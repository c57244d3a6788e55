"""Signed event webhooks (issue 21), as Pusher sends them: the hub tells the application that a channel
became occupied or vacated, that a user joined or left a presence channel, that a connection opened or
closed.

Events (Pusher's ``channel_occupied``, ``channel_vacated``, ``member_added``, ``member_removed``, and
ours for connections)::

    {"name": "channel_occupied", "channel": "chat:room", "seq": 7}
    {"name": "member_added", "channel": "chat:room", "user_id": "42", "seq": 8}
    {"name": "connection_opened", "client": "…", "user_id": "42"}
    {"name": "connection_closed", "client": "…", "user_id": "42", "code": 3000}

(``member_*`` of an anonymous connection carry its ``client`` too.)  They go out in batches,
``{"time_ms": …, "events": […]}``, signed in ``X-Hub-Signature`` (``webhook_sender.py``).

Once across the cluster: channel and member transitions are decided where every node sees them
(``webhook_counts.py``) and sent by the node whose change made them; connection events by the node
holding the connection.  In order per channel: a node's events go out in the order they were decided,
and ``seq`` orders those of one channel sent by different nodes.

The hub calls the ``channel_*``, ``member_*`` and ``connection_*`` methods where the things happen
(``channels.py``, ``subscribing.py``, ``connections.py``, ``commands.py``, ``hub.py``); nothing here
refers to a connection or a session, so a closed connection's objects are freed as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .engine import ClientInfo, Engine, Reply
from .webhook_config import WebhookConfig
from .webhook_counts import counts_for
from .webhook_sender import WebhookSender, WebhookStats

if TYPE_CHECKING:
    from .transport import Cancellable, HubLoop

__all__ = ["Webhooks", "WebhookConfig"]

_CHANNEL_EVENTS = frozenset({"channel_occupied", "channel_vacated"})
_MEMBER_EVENTS = frozenset({"member_added", "member_removed"})


def _userkey(info: ClientInfo) -> str:
    """A user once however many connections; an anonymous connection on its own."""
    return "u:" + info.user if info.user else "c:" + info.client


def _member(name: str, channel: str, info: ClientInfo) -> dict[str, Any]:
    event: dict[str, Any] = {"name": name, "channel": channel, "user_id": info.user}
    if not info.user:
        event["client"] = info.client
    return event


class Webhooks:
    """The hub's webhooks (``hub.webhooks``, None when none are configured)."""

    def __init__(self, config: WebhookConfig, engine: Engine) -> None:
        config = config.with_environment()
        config.check()
        self.config = config
        self.stats = WebhookStats()
        self.sender = WebhookSender(config, self.stats)
        self.counts = counts_for(engine)
        self._channels = bool(config.events & _CHANNEL_EVENTS)
        self._members = bool(config.events & _MEMBER_EVENTS)
        self._connections = config.events
        self._deciding = 0  # transitions asked of the engine, not answered yet
        self._waiters: list[Callable[[], object]] = []
        self._loop: HubLoop | None = None
        self._sweep_timer: Cancellable | None = None

    def start(self, loop: HubLoop) -> None:
        self._loop = loop
        self.sender.start()
        if self._channels and self.counts.sweep_every is not None:
            self._sweep_timer = loop.call_later(self.counts.sweep_every, self._sweep)

    def stop(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None  # the timer refers to this object: no cycle left behind
        self._loop = None
        self.sender.stop()

    def _sweep(self) -> None:
        """Every ``sweep_every`` s (Redis): this node is alive, and the channels only dead nodes
        occupied (their liveness expired) are vacated, by the one node whose sweep found them."""
        every = self.counts.sweep_every
        if self._loop is None or every is None:
            return
        self._sweep_timer = self._loop.call_later(every, self._sweep)
        for reply in self.counts.sweep():
            reply.observe(self._vacate)

    def _vacate(self, done: Reply[list[tuple[str, int]]]) -> None:
        if done.error is not None or "channel_vacated" not in self.config.events:
            return
        for channel, seq in done.result():
            self.sender.submit({"name": "channel_vacated", "channel": channel, "seq": seq})

    @property
    def deciding(self) -> int:
        """Transitions asked of the engine and not answered yet."""
        return self._deciding

    def after_decisions(self, loop: HubLoop, callback: Callable[[], object], timeout: float = 2.0) -> None:
        """Loop thread: ``callback()`` once every transition asked of the engine so far is answered (and
        its event queued), at most ``timeout`` s from now.  The hub's shutdown waits so before it closes
        the engine: the events of the connections it just closed are decided in Redis."""
        if not self._deciding:
            callback()
            return
        called = False

        def once() -> None:
            nonlocal called
            if not called:
                called = True
                callback()

        self._waiters.append(once)
        loop.call_later(timeout, once)

    # -- what the hub reports ----------------------------------------------------------------------

    def channel_added(self, channel: str) -> None:
        """This node's first subscriber of ``channel`` (an exact channel, not a pattern)."""
        if self._channels:
            event = {"name": "channel_occupied", "channel": channel}
            self._decide(self.counts.node_enter(channel), event)

    def channel_removed(self, channel: str) -> None:
        """This node's last subscriber of ``channel`` left."""
        if self._channels:
            event = {"name": "channel_vacated", "channel": channel}
            self._decide(self.counts.node_leave(channel), event)

    def member_joined(self, channel: str, info: ClientInfo) -> None:
        """``info`` is in ``channel``'s presence now."""
        if self._members:
            reply = self.counts.member_enter(channel, _userkey(info))
            self._decide(reply, _member("member_added", channel, info))

    def member_left(self, channel: str, info: ClientInfo) -> None:
        if self._members:
            reply = self.counts.member_leave(channel, _userkey(info))
            self._decide(reply, _member("member_removed", channel, info))

    def connection_opened(self, info: ClientInfo) -> None:
        """``connect`` succeeded."""
        if "connection_opened" in self._connections:
            self.sender.submit({"name": "connection_opened", "client": info.client, "user_id": info.user})

    def connection_closed(self, info: ClientInfo, code: int) -> None:
        """A connected client's connection closed (``code``: its close code)."""
        if "connection_closed" in self._connections:
            event = {"name": "connection_closed", "client": info.client, "user_id": info.user, "code": code}
            self.sender.submit(event)

    def _decide(self, reply: Reply[int], event: dict[str, Any]) -> None:
        """Send ``event`` when the count says this change was the transition."""
        wanted = event["name"] in self.config.events
        self._deciding += 1

        def settle(done: Reply[int]) -> None:
            self._deciding -= 1
            if done.error is not None:
                self.stats.undecided += 1
            elif done.result() and wanted:
                event["seq"] = done.result()
                self.sender.submit(event)
            if not self._deciding and self._waiters:
                waiters, self._waiters = self._waiters, []
                for waiter in waiters:
                    waiter()

        reply.observe(settle)
