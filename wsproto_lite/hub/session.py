"""One connection's state in the hub: its :class:`Session` and :class:`Subscription` objects, and the
shapes a command's answer takes (``Result``, ``Answer``, ``Then``).

Nothing here refers back from a subscription to its session, nor from either to the hub, so a closed
connection's objects are freed by reference counting alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import Identity
from .engine import ClientInfo, Reply
from .limits import RateLimits, TokenBucket
from .protocol import HubError

if TYPE_CHECKING:
    from .namespaces import Channel
    from .transport import HubConnection

__all__ = ["Answer", "ConnectRefused", "Result", "Session", "Slot", "Subscription", "Then"]


class Subscription:
    """One connection's subscription to one channel or pattern (no reference to the session)."""

    __slots__ = (
        "channel",
        "conn",
        "presence",
        "by_token",
        "server_side",
        "by_hook",
        "chan_info",
        "__weakref__",
    )

    def __init__(
        self,
        channel: Channel,
        conn: HubConnection,
        by_token: bool = False,
        *,
        server_side: bool = False,
        by_hook: bool = False,
        chan_info: str = "",
    ) -> None:
        self.channel = channel
        self.conn = conn
        self.presence = False
        """True once this subscription is in the engine's presence."""
        self.by_token = by_token
        """Allowed by a subscription token (it lasts as long as the token), not by the identity."""
        self.server_side = server_side
        """Made by the server (the token's ``channels``/``subs``, ``Hub.subscribe_user``)."""
        self.by_hook = by_hook
        """Allowed by the subscribe hook (``hook_commands.py``): its expiry asks ``sub_refresh``."""
        self.chan_info = chan_info
        """JSON text of the subscription token's ``info`` (``chan_info`` in presence), or ``""``."""

    def presence_info(self, info: ClientInfo) -> ClientInfo:
        """The connection's ``info`` as this subscription shows it in presence (with ``chan_info``)."""
        if not self.chan_info:
            return info
        return ClientInfo(info.client, info.user, info.conn_info, self.chan_info)


class Slot:
    """One reply's place in a session's outbox; ``after`` runs right after the frame is sent."""

    __slots__ = ("frame", "after")

    def __init__(self) -> None:
        self.frame: str | None = None
        self.after: Callable[[], None] | None = None


class Session:
    """The hub's state for one connection."""

    __slots__ = (
        "conn",
        "info",
        "info_json",
        "subscriptions",
        "deadline",
        "closed",
        "outbox",
        "outbox_bytes",
        "over_since",
        "identity",
        "expires",
        "command_bucket",
        "byte_bucket",
        "trip_bucket",
        "ping_due",
        "pong_due",
        "connecting",
        "server_refresh",
        "__weakref__",
    )

    def __init__(
        self, conn: HubConnection, now: float, deadline: float, identity: Identity, limits: RateLimits
    ) -> None:
        self.conn = conn
        self.info: ClientInfo | None = None
        """Set by ``connect``."""
        self.info_json: str | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.deadline = deadline
        self.closed = False
        self.outbox: list[Slot] = []
        """Replies in command order, from the first one still waiting for the engine. A list (at most
        ``max_commands_in_flight``, and pop(0) is cheap at that size): an empty deque costs 760 bytes per
        idle connection (issue 22)."""
        self.outbox_bytes = 0
        """Characters of the replies built in ``outbox`` (waiting for an earlier one)."""
        self.over_since: float | None = None
        """Loop time the tick first saw the connection over the queue bound (None: under it)."""
        self.identity = identity
        """From the upgrade request's credentials, then from ``connect`` / ``refresh``."""
        self.expires: float | None = None
        """Loop time when the token expires (the tick disconnects with 4003 unless refreshed)."""
        self.command_bucket = TokenBucket(limits.commands_per_second, limits.commands_burst, now)
        self.byte_bucket = TokenBucket(limits.bytes_per_second, limits.bytes_burst, now)
        self.trip_bucket = TokenBucket(limits.abuse_trips_per_second, limits.abuse_burst, now)
        self.ping_due = 0.0
        """Loop time of the next app-level ping (set by ``connect``)."""
        self.pong_due: float | None = None
        """Loop time by which the pong to the last ping must arrive; None when none is awaited."""
        self.connecting = False
        """A ``connect`` waits for the connect hook."""
        self.server_refresh = False
        """The connect hook made it, with an expiry: the refresh hook extends it (``hook_commands.py``)."""


class ConnectRefused(HubError):
    """A ``connect`` refused for a limit: the error reply, then a close with this code."""

    def __init__(self, code: int, message: str, disconnect_code: int) -> None:
        super().__init__(code, message)
        self.disconnect_code = disconnect_code


class Then:
    """A result and what to do right after its reply is sent (activate a subscription)."""

    __slots__ = ("result", "after")

    def __init__(self, result: dict[str, Any] | str, after: Callable[[], None]) -> None:
        self.result = result
        self.after = after


Result = dict[str, Any] | str | Then  # a result object, its JSON text already built, or either + after
Answer = Result | Reply[Result]
