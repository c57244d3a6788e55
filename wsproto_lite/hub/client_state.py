"""What the hub's two Python clients share: their errors, ``Backoff``, ``RecoveryReport``, and the protocol
state of one client (``ClientState``: ids, subscriptions, pushes, recovery) that ``HubClient`` (blocking,
``client.py``) and ``LoopHubClient`` (event loop, ``loop_client.py``) drive over their own transports."""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wsproto_lite import CloseCode

from .protocol import DisconnectCode

logger = logging.getLogger("wsproto_lite.hub.client")

OnPublication = Callable[[dict[str, Any]], None]
OnPresence = Callable[[dict[str, Any]], None]


class HubCommandError(Exception):
    """The hub answered a command with an error."""

    def __init__(self, code: int, message: str, temporary: bool) -> None:
        super().__init__(f"{message} (code {code})")
        self.code = code
        self.message = message
        self.temporary = temporary


class HubDisconnected(ConnectionError):
    """The connection is gone and will not come back (closed, or the hub's close code said not to
    reconnect)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"disconnected: {code} {reason}")
        self.code = code
        self.reason = reason


class HubReplyLost(ConnectionError):
    """The connection broke before the reply; the client reconnected; the outcome is unknown."""

    def __init__(self, method: str) -> None:
        super().__init__(f"connection lost before the reply to {method!r}; reconnected")
        self.method = method


READ_ONLY = frozenset({"presence", "presence_stats", "history", "ping"})


@dataclass(frozen=True)
class RecoveryReport:
    """What re-subscribing after a reconnect found."""

    channel: str
    recovered: bool
    """True: every publication missed while away was delivered (``missed`` of them)."""
    missed: int
    """Publications delivered from history on this re-subscribe."""
    epoch_changed: bool
    """The channel's history was lost (e.g. the hub restarted): offsets start over."""

    def __str__(self) -> str:
        if self.recovered:
            return f"{self.channel}: recovered {self.missed} missed publication(s)"
        cause = "the hub lost its history (restart?)" if self.epoch_changed else "the gap is no longer held"
        return f"{self.channel}: recovery impossible, {cause}; {self.missed} delivered, some may be missing"


@dataclass
class Backoff:
    """Exponential backoff with jitter: attempt n waits between base·2ⁿ/2 and base·2ⁿ, capped."""

    base: float = 0.5
    cap: float = 20.0

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.base * 2 ** min(attempt, 30))
        return random.uniform(ceiling / 2, ceiling)


class Subscription:
    __slots__ = (
        "channel",
        "on_publication",
        "on_join",
        "on_leave",
        "on_recovery",
        "epoch",
        "offset",
        "recoverable",
    )

    def __init__(
        self,
        channel: str,
        on_publication: OnPublication,
        on_join: OnPresence | None,
        on_leave: OnPresence | None,
        on_recovery: Callable[[RecoveryReport], None] | None,
    ) -> None:
        self.channel = channel
        self.on_publication = on_publication
        self.on_join = on_join
        self.on_leave = on_leave
        self.on_recovery = on_recovery
        self.epoch = ""
        self.offset = 0
        self.recoverable = False


def allows_reconnect(code: int) -> bool:
    """Whether a close with ``code`` allows reconnecting: 3000-3499 and 4000-4499 (the hub's and the
    application's reconnect ranges) and transport-level codes, except 1009 (message too big)."""
    if DisconnectCode.reconnect(code):
        return True
    return code < DisconnectCode.FIRST and code != CloseCode.MESSAGE_TOO_BIG


class ClientState:
    """What both clients share: ids, subscriptions and their positions, push routing."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token
        self.next_id = 1
        self.subscriptions: dict[str, Subscription] = {}
        self.client_id = ""
        self.pong = False
        """The connect result asked for pongs: answer each ``{}`` ping with ``{}``."""
        self.disconnect: tuple[int, str, bool] | None = None
        """The last close: (code, reason, reconnect)."""
        self.server_subscriptions: dict[str, dict[str, Any]] = {}
        """Server-side subscriptions (the token's ``channels``, ``/api/subscribe``) -> their result."""
        self.on_server_publication: OnPublication | None = None
        """Publications of server-side subscriptions (``pub["channel"]`` says which)."""

    def frame(self, method: str, params: dict[str, Any] | None) -> tuple[int, str]:
        cid = self.next_id
        self.next_id += 1
        return cid, json.dumps({"id": cid, method: params or {}}, separators=(",", ":"))

    def connect_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": "wsproto-lite"}
        if self.name:
            params["data"] = {"name": self.name}  # shown as conn_info when the token gives no info
        if self.token:
            params["token"] = self.token
        subs = {
            channel: {"recover": True, "epoch": result["epoch"], "offset": result["offset"]}
            for channel, result in self.server_subscriptions.items()
            if result.get("recoverable") and result.get("epoch")
        }
        if subs:
            params["subs"] = subs
        return params

    def connected(self, result: dict[str, Any]) -> None:
        self.client_id = str(result.get("client", ""))
        self.pong = bool(result.get("pong"))
        for channel, sub in (result.get("subs") or {}).items():
            self.server_subscribed(channel, sub)

    def subscribe_params(self, sub: Subscription, resubscribe: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"channel": sub.channel, "recoverable": True, "positioned": True}
        if resubscribe and sub.recoverable and sub.epoch:
            params.update(recover=True, epoch=sub.epoch, offset=sub.offset)
        return params

    def subscribed(
        self, sub: Subscription, result: dict[str, Any], recovering: bool
    ) -> RecoveryReport | None:
        """Apply a subscribe result; when recovering, deliver what was missed and return the report."""
        sub.recoverable = bool(result.get("recoverable"))
        epoch, top = str(result.get("epoch", "")), int(result.get("offset", 0))
        if not recovering:
            sub.epoch, sub.offset = epoch, top
            return None
        epoch_changed = epoch != sub.epoch
        publications = result.get("publications", [])
        if epoch_changed:
            sub.epoch, sub.offset = epoch, 0
        for pub in publications:  # only when recovered in full (Centrifugo sends none otherwise)
            self._deliver(sub, pub)
        sub.offset = max(sub.offset, top)  # from here on, every publication arrives live
        return RecoveryReport(sub.channel, bool(result.get("recovered")), len(publications), epoch_changed)

    def _deliver(self, sub: Subscription, pub: dict[str, Any]) -> None:
        offset = pub.get("offset")
        if isinstance(offset, int) and "channel" not in pub:  # a wildcard's pubs have no one stream
            if offset <= sub.offset:
                return  # a duplicate (recovered and live)
            sub.offset = offset
        sub.on_publication(pub)

    def server_subscribed(self, channel: str, result: dict[str, Any]) -> None:
        known = self.server_subscriptions.get(channel)
        publications = result.get("publications") or []
        for pub in publications:
            self._server_publication(channel, pub)
        if known is None or not publications:
            known = self.server_subscriptions[channel] = dict(result)
        known["epoch"] = result.get("epoch", known.get("epoch", ""))
        known["offset"] = max(int(known.get("offset", 0)), int(result.get("offset", 0)))
        known["recoverable"] = result.get("recoverable", False)

    def _server_publication(self, channel: str, pub: dict[str, Any]) -> None:
        known = self.server_subscriptions.get(channel)
        offset = pub.get("offset")
        if known is not None and isinstance(offset, int):
            if offset <= int(known.get("offset", 0)):
                return
            known["offset"] = offset
        if self.on_server_publication is not None:
            self.on_server_publication({"channel": channel, **pub})

    def closed(self, code: int, reason: str) -> None:
        self.disconnect = (code, reason, allows_reconnect(code))

    def on_push(self, push: dict[str, Any]) -> None:
        channel = str(push.get("channel", ""))
        if "subscribe" in push:
            self.server_subscribed(channel, push["subscribe"])
            return
        sub = self.subscriptions.get(channel)
        if sub is None:
            if "pub" in push:
                self._server_publication(channel, push["pub"])
            elif "unsubscribe" in push:
                self.server_subscriptions.pop(channel, None)
            return
        if "pub" in push:
            self._deliver(sub, push["pub"])
        elif "join" in push and sub.on_join is not None:
            sub.on_join(push["join"]["info"])
        elif "leave" in push and sub.on_leave is not None:
            sub.on_leave(push["leave"]["info"])
        elif "unsubscribe" in push:
            self.subscriptions.pop(sub.channel, None)

    @staticmethod
    def report_recovery(sub: Subscription, report: RecoveryReport) -> None:
        if sub.on_recovery is not None:
            sub.on_recovery(report)
        elif not report.recovered:
            logger.warning("%s", report)


def messages_of(text: str | bytes) -> list[dict[str, Any]]:
    """The replies and pushes of one frame (``\n``-separated); ``{}`` is the hub's ping."""
    if isinstance(text, bytes):
        text = text.decode()
    return [json.loads(line) for line in text.split("\n") if line]


def result_of(method: str, reply: dict[str, Any]) -> dict[str, Any]:
    error = reply.get("error")
    if error is not None:
        raise HubCommandError(
            int(error.get("code", 0)), str(error.get("message", "")), bool(error.get("temporary"))
        )
    result = reply.get(method, {})
    return result if isinstance(result, dict) else {}
