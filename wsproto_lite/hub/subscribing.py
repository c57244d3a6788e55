"""The subscription commands of a connection: ``subscribe``, ``unsubscribe``, ``sub_refresh``, and the
server-side subscriptions a token or the server's API makes.

A subscription is *pending* from the command until its reply is sent: publications that arrive meanwhile
are kept and delivered after the reply, without those the reply already carried (same epoch, offset <=
the reply's); a later duplicate of those is skipped too (``floors``), so nothing is missed or doubled in
between.  A subscription lasts as long as its permission: one allowed by a subscription token ends when
the token expires (``hub._expiring``, checked by the tick), one allowed by the identity when a
``refresh`` no longer grants it; either way with an ``unsubscribe`` push.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .bound import publications_size
from .engine import Publication, Reply
from .part import HubPart
from .protocol import (
    ErrorCode,
    HubError,
    Position,
    UnsubscribeCode,
    dumps,
    get_bool,
    get_channel,
    get_int,
    get_str,
)
from .session import Answer, Result, Session, Subscription, Then

if TYPE_CHECKING:
    from .auth import SubOptions, SubscriptionGrant
    from .hub import Hub
    from .namespaces import Channel

__all__ = [
    "SubscribeCommands",
    "Opened",
    "REPLY_HEAD",
    "gather",
    "with_data",
    "with_publications",
    "with_subs",
]

logger = logging.getLogger("wsproto_lite.hub")

#: Characters a reply may need besides its publications (id, epoch, offset, flags).
REPLY_HEAD = 512

#: (channel, SubscribeResult JSON, activate) of a server-side subscription.
Opened = tuple[str, str, Callable[[], None]]


class SubscribeCommands(HubPart):
    """The subscription half of :class:`~wsproto_lite.hub.commands.Commands`."""

    def __init__(self, hub: Hub) -> None:
        super().__init__(hub)

    def recheck_subscriptions(self, session: Session) -> None:
        """After a ``refresh``: end (push 2001) the subscriptions the new identity no longer grants.

        Those allowed by a subscription token are the token's (they end when it expires), not the
        identity's; server-side ones are the server's.
        """
        hub = self.hub
        for name, subscription in list(session.subscriptions.items()):
            if subscription.by_token or subscription.server_side or subscription.by_hook:
                continue
            try:
                hub.authz.check_read(session.identity, subscription.channel)
            except HubError:
                del session.subscriptions[name]
                hub.conns.end_subscription(
                    session, subscription, UnsubscribeCode.PERMISSION_REVOKED, "permission revoked"
                )

    def admit(
        self, session: Session, params: dict[str, Any], *, authorize: bool = True
    ) -> tuple[Channel, Position | None, SubscriptionGrant | None]:
        """What a subscribe must pass before the engine hears of it: authorization (unless the subscribe
        hook decides), limits, arguments.

        Returns the channel, the position to recover from, if any, and the subscription token's grant
        when that token is what allowed it.
        """
        hub = self.hub
        channel = hub.namespaces.resolve(get_channel(params), pattern_ok=True)
        subscription_token = get_str(params, "token", required=False, max_length=8192)
        assert session.info is not None
        grant = None
        if authorize:
            grant = hub.authz.check_read(
                session.identity, channel, subscription_token=subscription_token, client=session.info.client
            )
        self.check_room(session, channel)
        recover = None
        if get_bool(params, "recover"):
            epoch = get_str(params, "epoch", required=False, max_length=64)
            recover = Position(epoch, get_int(params, "offset", 0))
            if channel.is_pattern:
                raise HubError(ErrorCode.BAD_REQUEST, "wildcard subscriptions have no history to recover")
        return channel, recover, grant

    def check_room(self, session: Session, channel: Channel) -> None:
        """105 when already subscribed; 106 over the connection's or the hub's channel limits."""
        hub = self.hub
        if channel.name in session.subscriptions:
            raise HubError(ErrorCode.ALREADY_SUBSCRIBED, "already subscribed")
        if len(session.subscriptions) >= hub.limits.max_channels_per_connection:
            hub.conns.tripped(session, "subscriptions_per_connection")  # the reply is moot if this closes
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many subscriptions on this connection")
        registry = hub.registry
        if registry.count() >= hub.rate_limits.max_channels and not registry.has_subscribers(channel):
            hub.conns.tripped(session, "channels")
            raise HubError(ErrorCode.LIMIT_EXCEEDED, "too many channels on this hub", temporary=True)

    def subscribe(self, session: Session, params: dict[str, Any]) -> Answer:
        hub = self.hub
        if hub.hook_runner.has("subscribe") and not params.get("token"):
            # centrifugo internal/client/handler.go OnSubscribe: the proxy decides without a token
            return hub.hook_commands.subscribe(session, params)
        channel, recover, grant = self.admit(session, params)
        asked, reject_unrecovered = subscribe_flags(params)
        subscription = Subscription(
            channel,
            session.conn,
            by_token=grant is not None,
            chan_info=grant.info if grant is not None else "",
        )
        expires = grant.expires if grant is not None else None
        opened = self.open(
            session, subscription, recover, asked, expires, reject_unrecovered=reject_unrecovered
        )
        if grant is None or not grant.data:
            return opened
        return opened.then(_with_token_data(grant.data))

    def open(
        self,
        session: Session,
        subscription: Subscription,
        recover: Position | None,
        asked: set[str],
        expires: float | None,
        *,
        reject_unrecovered: bool = False,
    ) -> Reply[Result]:
        """Start a subscription: the reply resolves to its ``SubscribeResult`` (JSON text) and, right
        after that is sent, the subscription goes live (``Then``).  ``asked``: the request's
        ``recoverable``/``positioned`` flags, echoed when the namespace keeps history."""
        hub = self.hub
        channel = subscription.channel
        assert session.info is not None
        session.subscriptions[channel.name] = subscription
        ready = hub.registry.add(subscription)
        opening = _Opening(self, session, subscription, recover, reject_unrecovered)
        opening.result = _flags(channel, recover, asked)
        if expires is not None:
            ttl = max(0.0, expires - time.time())
            hub._expiring[subscription] = hub._now() + ttl + hub.limits.expired_sub_close_delay
            opening.result["expires"], opening.result["ttl"] = True, int(ttl)
        answer: Reply[Result] = ready.then(opening.subscribed)

        def failed(done: Reply[Result]) -> None:
            if done.error is not None:
                self.abandon(session, subscription)

        answer.observe(failed)
        return answer

    def server_subscription(
        self, session: Session, name: str, recover: Position | None, options: SubOptions | None = None
    ) -> Reply[Opened] | None:
        """A server-side subscription of ``session`` to ``name`` (no client authorization: the token or
        the server's API made it); its reply resolves to (channel, SubscribeResult JSON, activate).
        ``options``: the token's ``subs`` entry (``chan_info``, the result's ``data``).
        None when it cannot be made (a bad channel name, a limit): logged, the connection lives on."""
        try:
            channel = self.hub.namespaces.resolve(name, pattern_ok=True)
            self.check_room(session, channel)
        except HubError as exc:
            logger.info("%s: server-side subscription to %r refused: %s", session.conn, name, exc.message)
            return None
        if channel.is_pattern:
            recover = None
        info, data = (options.info, options.data) if options is not None else ("", "")
        subscription = Subscription(channel, session.conn, server_side=True, chan_info=info)
        asked = {"recoverable", "positioned"}
        return self.open(session, subscription, recover, asked, None).then(_opened(name, data))

    def abandon(self, session: Session, subscription: Subscription) -> None:
        """A subscribe that failed (the engine could not serve it): forget the subscription."""
        name = subscription.channel.name
        if session.subscriptions.get(name) is subscription:
            del session.subscriptions[name]
            self.hub.conns.drop_subscription(session, subscription)

    def unsubscribe(self, session: Session, params: dict[str, Any]) -> Result:
        """Succeeds when not subscribed too (Centrifugo; centrifuge-js reconnects on an error here)."""
        name = get_channel(params)
        subscription = session.subscriptions.pop(name, None)
        if subscription is not None:
            self.hub.conns.drop_subscription(session, subscription)
        return {}

    def sub_refresh(self, session: Session, params: dict[str, Any]) -> Result:
        """A fresh subscription token for a subscription allowed by one: it now lasts until the new expiry."""
        hub = self.hub
        name = get_channel(params)
        token = get_str(params, "token", max_length=8192)
        subscription = session.subscriptions.get(name)
        if subscription is None or not subscription.by_token or session.info is None:
            raise HubError(ErrorCode.BAD_REQUEST, "no subscription by token to this channel")
        grant = hub.auth.verify_subscription_token(token, session.identity.user, name, session.info.client)
        if grant is None:
            raise HubError(ErrorCode.PERMISSION_DENIED, "permission denied")
        if grant.expires is None:
            hub._expiring.pop(subscription, None)
            return {}
        ttl = max(0.0, grant.expires - time.time())
        hub._expiring[subscription] = hub._now() + ttl + hub.limits.expired_sub_close_delay
        return {"expires": True, "ttl": int(ttl)}


class _Opening:
    """One subscribe between its command and its reply: presence, then the position or the recovery."""

    __slots__ = ("commands", "session", "subscription", "recover", "reject_unrecovered", "result")

    def __init__(
        self,
        commands: SubscribeCommands,
        session: Session,
        subscription: Subscription,
        recover: Position | None,
        reject_unrecovered: bool,
    ) -> None:
        self.commands = commands
        self.session = session
        self.subscription = subscription
        self.recover = recover
        self.reject_unrecovered = reject_unrecovered
        self.result: dict[str, Any] = {}

    def subscribed(self, _: None) -> Answer:
        """The node receives the channel now: a position read from here on misses nothing."""
        hub = self.commands.hub
        session, subscription = self.session, self.subscription
        channel = subscription.channel
        options = channel.options
        current = session.subscriptions.get(channel.name) is subscription
        if options.presence and not channel.is_pattern and current and session.info is not None:
            info = subscription.presence_info(session.info)
            hub.engine.add_presence(channel.name, info)
            subscription.presence = True
            if hub.webhooks is not None:
                hub.webhooks.member_joined(channel.name, info)
            if options.join_leave:
                hub.engine.join_leave("join", channel.name, info)
        if not options.history or channel.is_pattern:
            return self.live(dumps(self.result), None)
        if self.recover is None:
            return hub.engine.position(channel.name, options).then(self.positioned)
        return hub.engine.recover(channel.name, options, self.recover).then(self.recovered)

    def live(self, text: str, floor: Position | None) -> Then:
        """The reply's text; right after it is sent the subscription goes live past ``floor``."""
        registry, subscription = self.commands.hub.registry, self.subscription
        return Then(text, lambda: registry.activate(subscription, floor))

    def positioned(self, position: Position) -> Result:
        self.result["epoch"], self.result["offset"] = position.epoch, position.offset
        return self.live(dumps(self.result), position)

    def recovered(self, recovery: Any) -> Result:
        hub, result = self.commands.hub, self.result
        position = recovery.position
        result["was_recovering"] = True
        result["epoch"], result["offset"] = position.epoch, position.offset
        complete = recovery.recovered
        if complete and publications_size(recovery.publications) > hub.bound.max_reply - REPLY_HEAD:
            hub.stats.trip("reply_size")  # the reply would be over the bound: not recovered
            complete = False
        if not complete:
            hub.stats.recovery_failures += 1
            if self.reject_unrecovered:  # flag 2: the client wants 112 rather than a gap
                raise HubError(ErrorCode.UNRECOVERABLE_POSITION, "unrecoverable position")
            return self.live(dumps(result), position)
        hub.stats.recoveries += 1
        result["recovered"] = True
        after = recovery.publications[-1].offset if recovery.publications else None
        floor = Position(position.epoch, max(position.offset, after or 0))
        return self.live(with_publications(result, recovery.publications), floor)


def _flags(channel: Channel, recover: Position | None, asked: set[str]) -> dict[str, Any]:
    """``recoverable``/``positioned`` of the SubscribeResult, echoed when the namespace keeps history."""
    result: dict[str, Any] = {}
    if channel.options.history and not channel.is_pattern:
        if "recoverable" in asked or recover is not None:
            result["recoverable"] = True
        if asked & {"recoverable", "positioned"} or recover is not None:
            result["positioned"] = True
    return result


def subscribe_flags(params: dict[str, Any]) -> tuple[set[str], bool]:
    """A subscribe's ``recoverable``/``positioned``/``join_leave`` asked, and flag 2 (112 rather than
    a gap when the position cannot be recovered)."""
    flag = get_int(params, "flag", 0, maximum=2**32 - 1)
    asked = {name for name in ("recoverable", "positioned", "join_leave") if get_bool(params, name)}
    return asked, bool(flag & 2)


T = TypeVar("T")


def gather(replies: list[Reply[T]]) -> Reply[list[T]]:
    """One reply of every reply's value, in order; the first failure fails it."""
    gathered: Reply[list[T]] = Reply()
    values: list[Any] = [None] * len(replies)
    left = [len(replies)]

    def one(index: int, done: Reply[T]) -> None:
        if done.error is not None:
            gathered.fail(done.error)
            return
        values[index] = done.result()
        left[0] -= 1
        if left[0] == 0:
            gathered.resolve(values)

    if not replies:
        gathered.resolve([])
    for index, reply in enumerate(replies):
        reply.observe(lambda done, index=index: one(index, done))  # type: ignore[misc]
    return gathered


def with_subs(result: dict[str, Any], subscribed: list[Opened]) -> Result:
    """The connect result with ``"subs": {channel: SubscribeResult}``; the subscriptions go live after it."""
    head = dumps(result)[:-1]
    subs = ",".join(f"{dumps(name)}:{text}" for name, text, _ in subscribed)
    afters = [after for _, _, after in subscribed]

    def activate() -> None:
        for after in afters:
            after()

    return Then(f'{head},"subs":{{{subs}}}}}', activate)


def _opened(name: str, data_json: str) -> Callable[[Result], Opened]:
    """(channel, SubscribeResult JSON, activate) from what ``SubscribeCommands.open`` resolved to."""

    def unpack(value: Result) -> Opened:
        assert isinstance(value, Then) and isinstance(value.result, str)
        return name, with_data(value.result, data_json), value.after

    return unpack


def _with_token_data(data_json: str) -> Callable[[Result], Result]:
    """The subscription token's ``data`` in the SubscribeResult (centrifugo's ``SubscribeResult.data``)."""

    def add(value: Result) -> Result:
        assert isinstance(value, Then) and isinstance(value.result, str)
        return Then(with_data(value.result, data_json), value.after)

    return add


def with_data(result: str, data_json: str) -> str:
    """A SubscribeResult's JSON text with ``"data"`` spliced in (unchanged for ``""``)."""
    if not data_json:
        return result
    return f'{result[:-1]}{"," if len(result) > 2 else ""}"data":{data_json}}}'


def with_publications(result: dict[str, Any], publications: Sequence[Publication]) -> str:
    """``result`` plus ``"publications": [...]`` spliced in from the publications' stored JSON."""
    head = dumps(result)[:-1]
    items = ",".join(p.json for p in publications)
    return f'{head}{"," if len(head) > 1 else ""}"publications":[{items}]}}'
